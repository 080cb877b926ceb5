# One route guarded: the sources WAF lets reach it, the shape of the credential WAF lets
# through, the key's secret and the wiring that rotates it. The web ACL stays the caller's:
# it refers to `web_acl_rule_groups` (outputs.tf), so one ACL can guard several routes.

locals {
  # How WAF reads the path before comparing it with the guarded one: decoded, normalised,
  # lower-cased. Matching this broadly over-blocks spellings; the backend is the authority.
  path_transformations = ["URL_DECODE", "NORMALIZE_PATH", "LOWERCASE"]

  # What shared-auth's verifier accepts (its crate docs): unix seconds as 1 to 12 digits, and
  # a Standard Webhooks `v1,` entry (base64 of a 32-byte HMAC) among space-separated entries.
  timestamp_shape = "^[0-9]{1,12}$"
  signature_shape = "(^| )v1,[A-Za-z0-9+/]{43}=( |$)"
}

resource "aws_wafv2_ip_set" "sources" {
  name               = "${var.name}-sources"
  description        = "Sources allowed to reach ${var.path}"
  scope              = "REGIONAL"
  ip_address_version = "IPV4"
  addresses          = [for c in var.allowed_cidrs : c if !strcontains(c, ":")]
}

# The route's rules, evaluated where the caller's web ACL refers to the group. Capacity is
# fixed at creation: the rules below use 71 WCUs (a byte match on the path, 2, with three text
# transformations, 30; an IP set reference, 1; two regex matches, 3 each), the rest is room.
resource "aws_wafv2_rule_group" "route" {
  name        = "${var.name}-route"
  description = "${var.path}: from the allowed sources only${var.mode == "hmac" ? ", with well-formed Standard Webhooks headers" : ""}"
  scope       = "REGIONAL"
  capacity    = 100

  # Block the path from any source outside the set, whatever the method (the backend answers
  # 405 to any other, so matching all methods loses nothing). Compared exactly after the
  # transformations: other spellings never reach the backend's guarded handler anyway.
  rule {
    name     = "from-allowed-sources"
    priority = 1
    action {
      block {}
    }
    statement {
      and_statement {
        statement {
          byte_match_statement {
            search_string         = var.path
            positional_constraint = "EXACTLY"
            field_to_match {
              uri_path {}
            }
            dynamic "text_transformation" {
              for_each = local.path_transformations
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
                arn = aws_wafv2_ip_set.sources.arn
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-from-allowed-sources"
      sampled_requests_enabled   = false
    }
  }

  # hmac: the timestamp must be plain unix seconds and the signature header must hold a
  # well-formed `v1,` entry; anything else is refused before the load balancer.
  dynamic "rule" {
    for_each = var.mode == "hmac" ? [1] : []
    content {
      name     = "signature-shape"
      priority = 2
      action {
        block {}
      }
      statement {
        and_statement {
          statement {
            byte_match_statement {
              search_string         = var.path
              positional_constraint = "EXACTLY"
              field_to_match {
                uri_path {}
              }
              dynamic "text_transformation" {
                for_each = local.path_transformations
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
                and_statement {
                  statement {
                    regex_match_statement {
                      regex_string = local.timestamp_shape
                      field_to_match {
                        single_header {
                          name = var.timestamp_header
                        }
                      }
                      text_transformation {
                        priority = 0
                        type     = "NONE"
                      }
                    }
                  }
                  statement {
                    regex_match_statement {
                      regex_string = local.signature_shape
                      field_to_match {
                        single_header {
                          name = var.signature_header
                        }
                      }
                      text_transformation {
                        priority = 0
                        type     = "NONE"
                      }
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
        metric_name                = "${var.name}-signature-shape"
        sampled_requests_enabled   = false
      }
    }
  }

  # No sampled requests: a sample keeps the request's headers, which carry the credential.
  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-route"
    sampled_requests_enabled   = false
  }
}

# static mode: the group holding the accepted header values. Created and kept through the WAF
# API (its rule holds the secret), read here by name only: its name and ARN enter the state.
data "aws_wafv2_rule_group" "static_secret" {
  count = var.mode == "static" ? 1 : 0
  name  = var.static_rule_group_name
  scope = "REGIONAL"

  lifecycle {
    precondition {
      condition     = var.static_rule_group_name != null
      error_message = "static mode needs static_rule_group_name."
    }
  }
}

# The key's shell only: its versions are written outside Terraform (the first by whoever
# deploys, every later one by the rotation function), so no value enters the state.
resource "aws_secretsmanager_secret" "key" {
  #checkov:skip=CKV_AWS_149:encrypted with the account's aws/secretsmanager key; a CMK adds key policy for every reader
  #checkov:skip=CKV2_AWS_57:rotated by aws_secretsmanager_secret_rotation.key below, which checkov does not link when its count depends on an input
  name                    = var.secret_name
  description             = var.secret_description
  recovery_window_in_days = var.deletion_protection ? 30 : 0
}
