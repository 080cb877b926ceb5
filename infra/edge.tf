# The public edge: an ALB open to everyone (app users need it) behind a WAF that blocks the
# guarded route from every source but the NAT gateway's Elastic IP.

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Public HTTPS (and HTTP redirect) to the ALB"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each          = { for r in setproduct(["0.0.0.0/0", "::/0"], [80, 443]) : "${r[0]}-${r[1]}" => r }
  security_group_id = aws_security_group.alb.id
  cidr_ipv4         = strcontains(each.value[0], ":") ? null : each.value[0]
  cidr_ipv6         = strcontains(each.value[0], ":") ? each.value[0] : null
  from_port         = each.value[1]
  to_port           = each.value[1]
  ip_protocol       = "tcp"
}

# Group-to-group rules use aws_security_group_rule: moto reports the newer rule resources'
# referenced group ids in another form, which would show as drift on every plan.
resource "aws_security_group_rule" "alb_to_api" {
  type                     = "egress"
  security_group_id        = aws_security_group.alb.id
  source_security_group_id = aws_security_group.api.id
  from_port                = var.api_port
  to_port                  = var.api_port
  protocol                 = "tcp"
}

resource "aws_lb" "this" {
  name                       = local.name
  load_balancer_type         = "application"
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  # The api reads the caller from the right end of X-Forwarded-For: the ALB must append.
  xff_header_processing_mode = "append"
  enable_deletion_protection = var.deletion_protection
}

resource "aws_lb_target_group" "api" {
  name        = "${local.name}-api"
  port        = var.api_port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = aws_vpc.this.id
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
  deregistration_delay = 30
}

# Local only: moto cannot see a real domain, so the stack requests a certificate itself.
resource "aws_acm_certificate" "local" {
  count             = local.is_local ? 1 : 0
  domain_name       = var.domain_name
  validation_method = "DNS"
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = coalesce(var.certificate_arn, one(aws_acm_certificate.local[*].arn))
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
  lifecycle {
    precondition {
      condition     = local.is_local || var.certificate_arn != null
      error_message = "certificate_arn is required outside --env local (deploy.certificate_arn in deploy/<env>.toml)."
    }
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

locals {
  # How WAF reads the path before comparing it with the guarded one, in both rules: decoded,
  # normalised, lower-cased. Matching this broadly over-blocks spellings; the api is the authority.
  guarded_path_transformations = ["URL_DECODE", "NORMALIZE_PATH", "LOWERCASE"]
}

resource "aws_wafv2_ip_set" "registration" {
  name               = "${local.name}-registration-sources"
  description        = "The NAT gateway's Elastic IP and the contract's extra allowed sources"
  scope              = "REGIONAL"
  ip_address_version = "IPV4"
  addresses          = [for c in local.allowed_cidrs : c if !strcontains(c, ":")]
}

resource "aws_wafv2_web_acl" "this" {
  name  = local.name
  scope = "REGIONAL"

  default_action {
    allow {}
  }

  # Block the guarded path from any source outside the set, whatever the method (the api
  # answers 405 to anything but the guarded method, so matching all methods loses nothing).
  # The path is compared decoded, normalised and lower-cased, exactly: `/users/me` is app
  # traffic, and other spellings of the path never reach the api's guarded handler anyway.
  rule {
    name     = "registration-from-nat-only"
    priority = 1
    action {
      block {}
    }
    statement {
      and_statement {
        statement {
          byte_match_statement {
            search_string         = var.guard_path
            positional_constraint = "EXACTLY"
            field_to_match {
              uri_path {}
            }
            dynamic "text_transformation" {
              for_each = local.guarded_path_transformations
              content {
                priority = text_transformation.key
                type     = text_transformation.value
              }
            }
          }
        }
        statement {
          not_statement {
            statement {
              ip_set_reference_statement {
                arn = aws_wafv2_ip_set.registration.arn
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-registration-blocked"
      sampled_requests_enabled   = true
    }
  }

  # Rate-limit app traffic per client address — on every path but the guarded one. Every
  # legitimate sign-up leaves through the one NAT address: a rate rule counting the guarded
  # path would block real registrations (≈1 sign-up/s at 300 per 5 min), and the guarded path
  # is closed to every other source by the rule above anyway.
  rule {
    name     = "app-rate-limit"
    priority = 2
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.app_rate_limit
        aggregate_key_type = "IP"
        scope_down_statement {
          not_statement {
            statement {
              byte_match_statement {
                search_string         = var.guard_path
                positional_constraint = "EXACTLY"
                field_to_match {
                  uri_path {}
                }
                dynamic "text_transformation" {
                  for_each = local.guarded_path_transformations
                  content {
                    priority = text_transformation.key
                    type     = text_transformation.value
                  }
                }
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-app-rate"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = local.name
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "alb" {
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this.arn
}
