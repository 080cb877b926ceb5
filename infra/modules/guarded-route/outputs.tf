output "web_acl_rule_groups" {
  description = "The rule groups the caller's web ACL refers to, in order, each as {name, arn}: the route's own, and in static mode the one holding the accepted values. Give each a rule with rule_group_reference_statement and override_action none, before any rule that could allow the path."
  value = concat(
    [{ name = "${var.name}-route", arn = aws_wafv2_rule_group.route.arn }],
    [for g in data.aws_wafv2_rule_group.static_secret : { name = "${var.name}-secret", arn = g.arn }],
  )
}

output "secret_arn" {
  description = "ARN of the route's key: the sender and the backend need secretsmanager:GetSecretValue on it (both read AWSCURRENT and AWSPENDING)."
  value       = aws_secretsmanager_secret.key.arn
}

output "secret_name" {
  description = "Name of the route's key (the contract's guard.secret_id)."
  value       = aws_secretsmanager_secret.key.name
}

output "ip_set" {
  description = "The WAF IP set of allowed sources: {id, name, arn}."
  value = {
    id   = aws_wafv2_ip_set.sources.id
    name = aws_wafv2_ip_set.sources.name
    arn  = aws_wafv2_ip_set.sources.arn
  }
}

output "rule_group_arn" {
  description = "ARN of the route's own rule group."
  value       = aws_wafv2_rule_group.route.arn
}

output "allowed_cidrs" {
  description = "The allowed sources as given: the backend's contract must allow the same (guard.allowed_cidrs), since it re-checks the client address."
  value       = var.allowed_cidrs
}

output "rotation_attached" {
  description = "Whether the rotation schedule is attached."
  value       = length(aws_secretsmanager_secret_rotation.key) == 1
}

output "static_rule_group_arn" {
  description = "static mode: ARN of the rule group holding the accepted values (the rotation function writes it); null in hmac mode."
  value       = one(data.aws_wafv2_rule_group.static_secret[*].arn)
}

output "guard_env" {
  description = "The route's guard contract as the environment a tollgate-guard backend loads (shared-auth's TOLLGATE__GUARD__* overrides): path, mode, key's secret, allowed sources and, in hmac mode, the header names WAF checks. The backend adds its own trusted_proxies (the load balancer's range)."
  value = merge(
    {
      TOLLGATE__GUARD__PATH          = var.path
      TOLLGATE__GUARD__MODE          = var.mode
      TOLLGATE__GUARD__SECRET_ID     = aws_secretsmanager_secret.key.name
      TOLLGATE__GUARD__ALLOWED_CIDRS = join(",", var.allowed_cidrs)
    },
    var.mode == "hmac" ? {
      TOLLGATE__GUARD__TIMESTAMP_HEADER = var.timestamp_header
      TOLLGATE__GUARD__SIGNATURE_HEADER = var.signature_header
    } : {},
  )
}

output "path_transformations" {
  description = "How the route's rules read the path before comparing it (decoded, normalised, lower-cased): a caller's rules that exclude the path (rate rules, managed groups' scope-down) must read it the same way, or a spelling escapes the exclusion."
  value       = local.path_transformations
}
