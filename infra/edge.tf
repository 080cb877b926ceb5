# The public edge: an ALB open to everyone (app users need it) behind a WAF that blocks the
# guarded route from every source but the NAT gateway's Elastic IP.

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Public HTTPS (and HTTP redirect) to the ALB"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-alb" }
}

resource "aws_security_group_rule" "alb_public" {
  #checkov:skip=CKV_AWS_260:port 80 only redirects to HTTPS (listener http)
  for_each          = toset(["80", "443"])
  type              = "ingress"
  description       = each.key == "443" ? "HTTPS from anyone (app users and the Lambda)" : "HTTP from anyone, redirected to HTTPS"
  security_group_id = aws_security_group.alb.id
  cidr_blocks       = ["0.0.0.0/0"]
  ipv6_cidr_blocks  = ["::/0"]
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  protocol          = "tcp"
}

# Every rule of the ALB and api groups is an aws_security_group_rule (one style per group, as
# the provider asks): moto reports the newer rule resources' referenced group ids in another
# form, which would show as drift on every plan.
resource "aws_security_group_rule" "alb_to_api" {
  type                     = "egress"
  description              = "HTTP to the api tasks"
  security_group_id        = aws_security_group.alb.id
  source_security_group_id = aws_security_group.api.id
  from_port                = var.api_port
  to_port                  = var.api_port
  protocol                 = "tcp"
}

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_76:KnownBadInputs (Log4j) runs in count mode by default; waf_managed_rules = "enforce" blocks
  name                       = local.name
  load_balancer_type         = "application"
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  # The api reads the caller from the right end of X-Forwarded-For: the ALB must append.
  xff_header_processing_mode = "append"
  # Set, not defaulted: the api keeps idle connections longer than this (api.keep_alive_idle_s,
  # checked against deploy.alb_idle_timeout_s), so the ALB, which reuses them, closes first.
  idle_timeout               = var.alb_idle_timeout_s
  enable_deletion_protection = var.deletion_protection
  access_logs {
    bucket  = aws_s3_bucket.alb_logs.id
    enabled = true
  }
  depends_on = [aws_s3_bucket_policy.alb_logs]
}

# ALB access logs: a private, encrypted bucket whose objects expire after the retention.
data "aws_caller_identity" "this" {}
data "aws_elb_service_account" "this" {}

resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_18:this bucket holds access logs; logging it would need another bucket for the same records
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the log bucket
  #checkov:skip=CKV_AWS_144:access logs are not replicated across regions; they expire after the retention
  #checkov:skip=CKV_AWS_145:ALB log delivery supports SSE-S3 only, not SSE-KMS
  #checkov:skip=CKV_AWS_21:log objects are written once and expire; versioning would only keep expired copies
  bucket        = "${local.name}-alb-logs-${data.aws_caller_identity.this.account_id}"
  force_destroy = !var.deletion_protection
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  bucket                  = aws_s3_bucket.alb_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ALB log delivery writes with SSE-S3 only (not KMS).
resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "alb_logs" {
  statement {
    sid       = "AlbLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/AWSLogs/${data.aws_caller_identity.this.account_id}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.alb_logs.arn, "${aws_s3_bucket.alb_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "alb_logs" {
  bucket     = aws_s3_bucket.alb_logs.id
  policy     = data.aws_iam_policy_document.alb_logs.json
  depends_on = [aws_s3_bucket_public_access_block.alb_logs]
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

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = local.listener_certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
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
  managed_rule_groups = [
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
  ]
}

resource "aws_wafv2_web_acl" "this" {
  name  = local.name
  scope = "REGIONAL"

  default_action {
    allow {}
  }

  # The guarded route's rules (infra/modules/guarded-route): from the allowed sources only,
  # with a well-formed credential (hmac: the Standard Webhooks headers' shape; static: an
  # accepted value, through the rule group xtask and the rotation function keep). First, so
  # nothing below can decide the guarded path before them.
  dynamic "rule" {
    for_each = module.registration.web_acl_rule_groups
    content {
      name     = rule.value.name
      priority = 1 + rule.key
      override_action {
        none {}
      }
      statement {
        rule_group_reference_statement {
          arn = rule.value.arn
        }
      }
      visibility_config {
        cloudwatch_metrics_enabled = true
        metric_name                = rule.value.name
        sampled_requests_enabled   = false
      }
    }
  }

  # Rate-limit app traffic per client address — on every path but the guarded one. Every
  # legitimate sign-up leaves through the one NAT address: a rate rule counting the guarded
  # path would block real registrations (≈1 sign-up/s at 300 per 5 min), and the guarded path
  # is closed to every other source by the rule above anyway.
  rule {
    name     = "app-rate-limit"
    priority = 5
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
                  for_each = module.registration.path_transformations
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
      sampled_requests_enabled   = false
    }
  }

  # AWS managed protections for app traffic, counted (not blocking) unless
  # waf_managed_rules = "enforce". Scoped to every path but the guarded one: the Lambda's
  # requests are already held to the NAT address and the secret, and a managed rule (e.g. no
  # User-Agent) must never refuse a real sign-up.
  dynamic "rule" {
    for_each = local.managed_rule_groups
    content {
      name     = rule.value
      priority = 10 + rule.key
      override_action {
        dynamic "count" {
          for_each = var.waf_managed_rules == "enforce" ? [] : [1]
          content {}
        }
        dynamic "none" {
          for_each = var.waf_managed_rules == "enforce" ? [1] : []
          content {}
        }
      }
      statement {
        managed_rule_group_statement {
          name        = rule.value
          vendor_name = "AWS"
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
                    for_each = module.registration.path_transformations
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
        metric_name                = "${local.name}-${rule.value}"
        sampled_requests_enabled   = false
      }
    }
  }

  # No sampled requests anywhere: a sample keeps the request's headers, and the Lambda's carry
  # the credential (the secret itself in `static` mode). The audit trail is the log below,
  # with those headers redacted.
  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = local.name
    sampled_requests_enabled   = false
  }
}

# WAF's request log. The name must start with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  #checkov:skip=CKV_AWS_338:retention is per environment (deploy.log_retention_days; 365 in production)
  #checkov:skip=CKV_AWS_158:encrypted at rest with the AWS-owned key; credential headers never reach these logs
  name              = "aws-waf-logs-${local.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]
  # Every credential header the contract names (both modes, whichever is active) and the app's
  # bearer tokens and cookies: WAF writes [REDACTED] instead of their values.
  dynamic "redacted_fields" {
    for_each = toset(var.credential_headers)
    content {
      single_header {
        name = redacted_fields.value
      }
    }
  }
}

resource "aws_wafv2_web_acl_association" "alb" {
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this.arn
}
