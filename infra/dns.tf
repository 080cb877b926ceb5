# The api's public name and its certificate. With a hosted zone (deploy.hosted_zone_id) the
# stack does both: an ACM certificate validated by DNS in that zone, and an alias record from
# the name to the ALB. Without one, deploy.certificate_arn names an issued certificate and the
# name is pointed at the ALB by hand (README, Deploying); `cargo xtask verify` checks it.

locals {
  # Request a certificate unless one is given.
  request_certificate = var.certificate_arn == null
  # Under a local AWS without a zone the requested certificate cannot be validated; moto
  # attaches it all the same. In AWS a listener needs an issued one.
  validate_in_zone = local.request_certificate && var.hosted_zone_id != null
}

resource "aws_acm_certificate" "api" {
  count             = local.request_certificate ? 1 : 0
  domain_name       = var.domain_name
  validation_method = "DNS"
  lifecycle {
    create_before_destroy = true
    precondition {
      condition     = var.hosted_zone_id != null || local.is_local
      error_message = "Without deploy.hosted_zone_id, deploy.certificate_arn must name an issued ACM certificate for the domain."
    }
  }
}

# ACM asks for one CNAME per name; the certificate has one name.
resource "aws_route53_record" "certificate_validation" {
  count           = local.validate_in_zone ? 1 : 0
  zone_id         = var.hosted_zone_id
  name            = tolist(aws_acm_certificate.api[0].domain_validation_options)[0].resource_record_name
  type            = tolist(aws_acm_certificate.api[0].domain_validation_options)[0].resource_record_type
  records         = [tolist(aws_acm_certificate.api[0].domain_validation_options)[0].resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

# Waits until ACM has seen the record and issued the certificate (minutes in AWS).
resource "aws_acm_certificate_validation" "api" {
  count                   = local.validate_in_zone ? 1 : 0
  certificate_arn         = aws_acm_certificate.api[0].arn
  validation_record_fqdns = [aws_route53_record.certificate_validation[0].fqdn]
}

locals {
  listener_certificate_arn = coalesce(
    var.certificate_arn,
    one(aws_acm_certificate_validation.api[*].certificate_arn),
    one(aws_acm_certificate.api[*].arn),
  )
}

# The name the Lambda calls (https://<domain_name>) and app users reach.
resource "aws_route53_record" "api" {
  count   = var.hosted_zone_id != null ? 1 : 0
  zone_id = var.hosted_zone_id
  name    = var.domain_name
  type    = "A"
  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
