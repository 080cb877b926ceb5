# The guard secret's rotation function (rotate-secret), in the post-confirm Lambda's subnets:
# it proves a new version through the NAT gateway, the WAF and the ALB exactly as the sender
# will use it, and asks every running api task directly (its private address, from ECS)
# whether it holds the version. Secrets Manager runs its four steps on a schedule.

data "aws_iam_policy_document" "rotation_secret" {
  statement {
    sid = "RotateTheGuardSecretOnly"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecretVersionStage",
    ]
    resources = [aws_secretsmanager_secret.guard.arn]
  }
}

# Where the api's tasks are: the service's task list and each task's private address.
data "aws_iam_policy_document" "rotation_tasks" {
  statement {
    sid       = "ListTheServicesTasks"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "DescribeTheClustersTasks"
    actions   = ["ecs:DescribeTasks"]
    resources = ["${replace(aws_ecs_cluster.this.arn, ":cluster/", ":task/")}/*"]
  }
}

resource "aws_iam_role_policy" "rotation_tasks" {
  name   = "find-api-tasks"
  role   = data.aws_iam_role.rotation.id
  policy = data.aws_iam_policy_document.rotation_tasks.json
}

# Its own group: HTTPS out (Secrets Manager, the ALB through the NAT gateway) and the api
# port on the api tasks. The sign-up function keeps only the first.
resource "aws_security_group" "rotation" {
  name        = "${local.name}-rotate-secret"
  description = "rotate-secret Lambda: HTTPS out, and the api tasks' port"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-rotate-secret" }
}

resource "aws_security_group_rule" "rotation_https" {
  type              = "egress"
  description       = "HTTPS to Secrets Manager, ECS and the ALB (through the NAT gateway)"
  security_group_id = aws_security_group.rotation.id
  cidr_blocks       = ["0.0.0.0/0"]
  from_port         = 443
  to_port           = 443
  protocol          = "tcp"
}

resource "aws_security_group_rule" "rotation_to_api" {
  type                     = "egress"
  description              = "GET /readyz on each api task"
  security_group_id        = aws_security_group.rotation.id
  source_security_group_id = aws_security_group.api.id
  from_port                = var.api_port
  to_port                  = var.api_port
  protocol                 = "tcp"
}

resource "aws_security_group_rule" "api_from_rotation" {
  type                     = "ingress"
  description              = "The rotation function asks each task which secret versions it holds"
  security_group_id        = aws_security_group.api.id
  source_security_group_id = aws_security_group.rotation.id
  from_port                = var.api_port
  to_port                  = var.api_port
  protocol                 = "tcp"
}

resource "aws_iam_role_policy" "rotation_secret" {
  name   = "rotate-guard-secret"
  role   = data.aws_iam_role.rotation.id
  policy = data.aws_iam_policy_document.rotation_secret.json
}

# static mode: the function keeps the WAF's rule group in step with the secret's versions. It
# writes the group whole (UpdateRuleGroup, with the lock token ListRuleGroups gives) and never
# reads its rules, which hold the secret: GetRuleGroup on the group is denied outright.
data "aws_iam_policy_document" "rotation_waf" {
  count = var.guard_mode == "static" ? 1 : 0
  statement {
    sid       = "FindTheGuardRuleGroup"
    actions   = ["wafv2:ListRuleGroups"]
    resources = ["*"]
  }
  statement {
    sid       = "WriteTheGuardRuleGroup"
    actions   = ["wafv2:UpdateRuleGroup"]
    resources = [data.aws_wafv2_rule_group.guard_secret[0].arn]
  }
  statement {
    sid       = "NeverReadTheSecretBack"
    effect    = "Deny"
    actions   = ["wafv2:GetRuleGroup"]
    resources = [data.aws_wafv2_rule_group.guard_secret[0].arn]
  }
}

resource "aws_iam_role_policy" "rotation_waf" {
  count  = var.guard_mode == "static" ? 1 : 0
  name   = "keep-guard-rule-group"
  role   = data.aws_iam_role.rotation.id
  policy = data.aws_iam_policy_document.rotation_waf[0].json
}

resource "aws_cloudwatch_log_group" "rotation" {
  #checkov:skip=CKV_AWS_338:retention is per environment (deploy.log_retention_days; 365 in production)
  #checkov:skip=CKV_AWS_158:encrypted at rest with the AWS-owned key; the function logs version ids, never values
  name              = "/aws/lambda/${local.name}-rotate-secret"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "rotation" {
  #checkov:skip=CKV_AWS_116:Secrets Manager invokes it synchronously and retries a failed step itself
  #checkov:skip=CKV_AWS_115:one rotation runs at a time (Secrets Manager refuses a second)
  #checkov:skip=CKV_AWS_272:the artifact is built and hash-checked by cargo xtask from source; no code-signing profile
  #checkov:skip=CKV_AWS_173:the environment holds the contract and ids only, no secret
  #checkov:skip=CKV_AWS_50:no X-Ray: the function logs each step with its version id
  function_name    = "${local.name}-rotate-secret"
  role             = data.aws_iam_role.rotation.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.rotation_zip
  source_code_hash = filebase64sha256(var.rotation_zip)
  memory_size      = 128
  timeout          = var.rotation_timeout_s
  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.rotation.id]
  }
  environment {
    variables = merge(
      local.contract_env,
      var.rotation_env,
      {
        TOLLGATE_ENV                  = var.env
        TOLLGATE_ROTATION_ECS_CLUSTER = aws_ecs_cluster.this.name
        TOLLGATE_ROTATION_ECS_SERVICE = aws_ecs_service.api.name
        TOLLGATE_ROTATION_API_PORT    = tostring(var.api_port)
      },
      var.guard_mode == "static" ? { TOLLGATE_GUARD_RULE_GROUP_ARN = data.aws_wafv2_rule_group.guard_secret[0].arn } : {},
    )
  }
  depends_on = [aws_cloudwatch_log_group.rotation, aws_iam_role_policy.rotation_tasks]
}

resource "aws_lambda_permission" "secrets_manager" {
  statement_id  = "AllowSecretsManagerRotation"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.rotation.function_name
  principal     = "secretsmanager.amazonaws.com"
  source_arn    = aws_secretsmanager_secret.guard.arn
}

# The schedule. Attaching it does not rotate at once (rotate_immediately = false): Secrets
# Manager only runs testSecret, which proves the function reaches the api with the current
# version, through https://<domain_name>. So it attaches only once that name reaches this
# stack's ALB: after the stack's alias record with a hosted zone; without one, on the deploy
# after the name was pointed by hand (xtask passes name_points_at_alb; README, Deploying).
# Not attached when secret_rotation_days = 0 (local: moto's RotateSecret would try to invoke
# the function and cannot).
locals {
  rotation_attached = var.secret_rotation_days > 0 && (var.hosted_zone_id != null || var.name_points_at_alb)
}

resource "aws_secretsmanager_secret_rotation" "guard" {
  count               = local.rotation_attached ? 1 : 0
  secret_id           = aws_secretsmanager_secret.guard.id
  rotation_lambda_arn = aws_lambda_function.rotation.arn
  rotate_immediately  = false
  rotation_rules {
    automatically_after_days = var.secret_rotation_days
  }
  depends_on = [aws_lambda_permission.secrets_manager, aws_ecs_service.api, aws_route53_record.api]
}
