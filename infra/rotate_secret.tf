# The guard secret's rotation function (post-confirm's second binary, rotate-secret), in the
# post-confirm Lambda's subnets: it proves a new version through the NAT gateway, the WAF and
# the ALB exactly as the sender will use it. Secrets Manager runs its four steps on a schedule.

resource "aws_iam_role" "rotation" {
  name               = "${local.name}-rotate-secret"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy_attachment" "rotation_vpc" {
  role       = aws_iam_role.rotation.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

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

resource "aws_iam_role_policy" "rotation_secret" {
  name   = "rotate-guard-secret"
  role   = aws_iam_role.rotation.id
  policy = data.aws_iam_policy_document.rotation_secret.json
}

# static mode: the function keeps the WAF's rule group in step with the secret's versions.
data "aws_iam_policy_document" "rotation_waf" {
  count = var.guard_mode == "static" ? 1 : 0
  statement {
    sid       = "KeepTheGuardRuleGroup"
    actions   = ["wafv2:GetRuleGroup", "wafv2:UpdateRuleGroup"]
    resources = [data.aws_wafv2_rule_group.guard_secret[0].arn]
  }
}

resource "aws_iam_role_policy" "rotation_waf" {
  count  = var.guard_mode == "static" ? 1 : 0
  name   = "keep-guard-rule-group"
  role   = aws_iam_role.rotation.id
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
  role             = aws_iam_role.rotation.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.rotation_zip
  source_code_hash = filebase64sha256(var.rotation_zip)
  memory_size      = 128
  timeout          = var.rotation_timeout_s
  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.post_confirm.id]
  }
  environment {
    variables = merge(
      local.contract_env,
      var.rotation_env,
      { TOLLGATE_ENV = var.env },
      var.guard_mode == "static" ? { TOLLGATE_GUARD_RULE_GROUP_ARN = data.aws_wafv2_rule_group.guard_secret[0].arn } : {},
    )
  }
  depends_on = [aws_cloudwatch_log_group.rotation, aws_iam_role_policy_attachment.rotation_vpc]
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
# version. Not attached when secret_rotation_days = 0 (local: moto's RotateSecret would try to
# invoke the function and cannot).
resource "aws_secretsmanager_secret_rotation" "guard" {
  count               = var.secret_rotation_days > 0 ? 1 : 0
  secret_id           = aws_secretsmanager_secret.guard.id
  rotation_lambda_arn = aws_lambda_function.rotation.arn
  rotate_immediately  = false
  rotation_rules {
    automatically_after_days = var.secret_rotation_days
  }
  depends_on = [aws_lambda_permission.secrets_manager, aws_ecs_service.api]
}
