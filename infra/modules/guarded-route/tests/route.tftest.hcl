# What the module renders on its own, planned against a mock AWS provider, as a caller
# elsewhere would use it: `terraform test` in crates/xtask/tests/terraform.rs.

mock_provider "aws" {
  override_during = plan
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_wafv2_rule_group" {
    defaults = { arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/rulegroup/billing-secret/0b0b0b0b-0000-4000-8000-000000000000" }
  }
  mock_resource "aws_wafv2_ip_set" {
    defaults = { arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/ipset/billing-sources/0a0a0a0a-0000-4000-8000-000000000000" }
  }
  mock_resource "aws_wafv2_rule_group" {
    defaults = { arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/rulegroup/billing-route/0c0c0c0c-0000-4000-8000-000000000000" }
  }
}

variables {
  name                = "billing"
  path                = "/hooks/billing"
  allowed_cidrs       = ["203.0.113.7/32", "2001:db8::/64"]
  mode                = "hmac"
  secret_name         = "billing/hooks"
  deletion_protection = true
  rotation = {
    function_arn  = "arn:aws:lambda:eu-west-1:123456789012:function:billing-rotate"
    function_name = "billing-rotate"
    role_name     = "billing-rotate"
    days          = 30
    attach        = true
  }
}

# hmac: the route's group holds the source rule and the Standard Webhooks shape rule, in that
# order, and is the only group the web ACL refers to.
run "hmac_checks_the_source_then_the_signature_shape" {
  command = plan
  assert {
    condition     = toset([for r in aws_wafv2_rule_group.route.rule : "${r.priority}:${r.name}"]) == toset(["1:from-allowed-sources", "2:signature-shape"])
    error_message = "the route's rules are not the source rule (1) and the shape rule (2)"
  }
  assert {
    condition     = length(output.web_acl_rule_groups) == 1 && output.static_rule_group_arn == null
    error_message = "hmac mode refers the web ACL to more than the route's group"
  }
  assert {
    condition     = !contains(aws_wafv2_ip_set.sources.addresses, "2001:db8::/64") && contains(aws_wafv2_ip_set.sources.addresses, "203.0.113.7/32")
    error_message = "the IPv4 set must hold the IPv4 sources only"
  }
  assert {
    condition     = output.guard_env["TOLLGATE__GUARD__PATH"] == "/hooks/billing" && output.guard_env["TOLLGATE__GUARD__ALLOWED_CIDRS"] == "203.0.113.7/32,2001:db8::/64" && output.guard_env["TOLLGATE__GUARD__SIGNATURE_HEADER"] == "webhook-signature"
    error_message = "the backend's contract must name the route, every allowed source (the backend checks IPv6 too) and the headers WAF checks"
  }
  assert {
    condition     = output.rotation_attached && aws_secretsmanager_secret.key.recovery_window_in_days == 30
    error_message = "the schedule must attach, and a protected key stays recoverable"
  }
}

# static: the route's group holds the source rule alone; the accepted values come from the
# group kept outside Terraform, which the web ACL refers to second and the rotation role may
# write but never read.
run "static_refers_the_acl_to_the_kept_group_second" {
  command = plan
  variables {
    mode                   = "static"
    static_rule_group_name = "billing-secret"
  }
  assert {
    condition     = [for r in aws_wafv2_rule_group.route.rule : r.name] == ["from-allowed-sources"]
    error_message = "static mode's route group must hold the source rule alone"
  }
  assert {
    condition     = [for g in output.web_acl_rule_groups : g.name] == ["billing-route", "billing-secret"]
    error_message = "the web ACL must refer to the route's group, then the kept one"
  }
  assert {
    condition     = output.guard_env["TOLLGATE__GUARD__MODE"] == "static" && !contains(keys(output.guard_env), "TOLLGATE__GUARD__SIGNATURE_HEADER")
    error_message = "static mode's contract names no signature header"
  }
  assert {
    condition     = length(aws_iam_role_policy.static_secret) == 1
    error_message = "the rotation role cannot keep the static rule group"
  }
}

run "static_without_its_rule_group_is_refused" {
  command = plan
  variables {
    mode = "static"
  }
  expect_failures = [data.aws_wafv2_rule_group.static_secret]
}

# No schedule until the caller says the function can reach the route, and none at 0 days.
run "the_schedule_waits_for_attach" {
  command = plan
  variables {
    rotation = {
      function_arn  = "arn:aws:lambda:eu-west-1:123456789012:function:billing-rotate"
      function_name = "billing-rotate"
      role_name     = "billing-rotate"
      days          = 30
      attach        = false
    }
  }
  assert {
    condition     = !output.rotation_attached
    error_message = "the schedule attached before the caller said the route is reachable"
  }
}

run "no_schedule_at_zero_days" {
  command = plan
  variables {
    rotation = {
      function_arn  = "arn:aws:lambda:eu-west-1:123456789012:function:billing-rotate"
      function_name = "billing-rotate"
      role_name     = "billing-rotate"
      days          = 0
      attach        = true
    }
  }
  assert {
    condition     = !output.rotation_attached
    error_message = "0 days must attach no schedule"
  }
}

run "a_path_with_upper_case_is_refused" {
  command = plan
  variables {
    path = "/Hooks/Billing"
  }
  expect_failures = [var.path]
}

run "no_allowed_source_is_refused" {
  command = plan
  variables {
    allowed_cidrs = []
  }
  expect_failures = [var.allowed_cidrs]
}
