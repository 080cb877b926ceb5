# POST /user, guarded (infra/modules/guarded-route): the WAF IP set and rules the web ACL
# refers to (edge.tf), the guard secret's shell, and the rotation function's wiring. The
# function itself (rotate_secret.tf) is this stack's: it proves a version against the api's
# tasks, which only this stack knows.

module "registration" {
  source = "./modules/guarded-route"

  name                   = "${local.name}-registration"
  path                   = var.guard_path
  allowed_cidrs          = local.allowed_cidrs
  mode                   = var.guard_mode
  timestamp_header       = var.guard_timestamp_header
  signature_header       = var.guard_signature_header
  static_rule_group_name = var.guard_mode == "static" ? "${local.name}-guard-secret" : null

  secret_name         = var.guard_secret_name
  secret_description  = "Shared secret between post-confirm and the api's POST /user (first version by cargo xtask, then the rotation function)"
  deletion_protection = var.deletion_protection

  # The schedule's configuration test calls https://<domain_name>, so it attaches only once
  # that name reaches this stack's ALB: after the stack's alias record with a hosted zone;
  # without one, on the deploy after the name was pointed by hand (xtask passes
  # name_points_at_alb; README, Deploying). None when secret_rotation_days = 0 (local: moto's
  # RotateSecret would try to invoke the function and cannot).
  rotation = {
    function_arn  = aws_lambda_function.rotation.arn
    function_name = aws_lambda_function.rotation.function_name
    role_name     = data.aws_iam_role.rotation.name
    days          = var.secret_rotation_days
    attach        = var.hosted_zone_id != null || var.name_points_at_alb
  }
  ready_after = concat(
    [aws_ecs_service.api.id, aws_iam_role_policy.rotation_tasks.id],
    aws_route53_record.api[*].fqdn,
  )
}

# Where these lived before the module: an existing environment's resources move, unchanged.
# Terraform refuses a targeted plan that leaves out a pending move, so every targeted apply
# xtask runs (the first deploy's secrets, the migration task, destroy's unprotect) adds both
# ends of each move the state still needs (`terraform::target_args`); the deploy test moves a
# deployed staging back to these addresses and deploys it again.
moved {
  from = aws_wafv2_ip_set.registration
  to   = module.registration.aws_wafv2_ip_set.sources
}

moved {
  from = aws_secretsmanager_secret.guard
  to   = module.registration.aws_secretsmanager_secret.key
}

moved {
  from = aws_iam_role_policy.rotation_secret
  to   = module.registration.aws_iam_role_policy.rotate
}

moved {
  from = aws_iam_role_policy.rotation_waf
  to   = module.registration.aws_iam_role_policy.static_secret
}

moved {
  from = aws_lambda_permission.secrets_manager
  to   = module.registration.aws_lambda_permission.rotate
}

moved {
  from = aws_secretsmanager_secret_rotation.guard
  to   = module.registration.aws_secretsmanager_secret_rotation.key
}
