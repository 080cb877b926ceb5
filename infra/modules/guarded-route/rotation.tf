# The rotation function's wiring: its role may rotate this secret alone (and, in static mode,
# write the WAF rule group without ever reading it back), Secrets Manager may invoke it for
# this secret alone, and the schedule attaches once what the function proves against exists.

data "aws_iam_policy_document" "rotate" {
  statement {
    sid = "RotateThisKeyOnly"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecretVersionStage",
    ]
    resources = [aws_secretsmanager_secret.key.arn]
  }
}

resource "aws_iam_role_policy" "rotate" {
  name   = "rotate-${var.name}"
  role   = var.rotation.role_name
  policy = data.aws_iam_policy_document.rotate.json
}

# static mode: the function writes the rule group whole (UpdateRuleGroup, with the lock token
# ListRuleGroups gives) and never reads its rules, which hold the secret.
data "aws_iam_policy_document" "static_secret" {
  count = var.mode == "static" ? 1 : 0
  statement {
    sid       = "FindTheRuleGroup"
    actions   = ["wafv2:ListRuleGroups"]
    resources = ["*"]
  }
  statement {
    sid       = "WriteTheRuleGroup"
    actions   = ["wafv2:UpdateRuleGroup"]
    resources = [data.aws_wafv2_rule_group.static_secret[0].arn]
  }
  statement {
    sid       = "NeverReadTheSecretBack"
    effect    = "Deny"
    actions   = ["wafv2:GetRuleGroup"]
    resources = [data.aws_wafv2_rule_group.static_secret[0].arn]
  }
}

resource "aws_iam_role_policy" "static_secret" {
  count  = var.mode == "static" ? 1 : 0
  name   = "keep-${var.name}-rule-group"
  role   = var.rotation.role_name
  policy = data.aws_iam_policy_document.static_secret[0].json
}

resource "aws_lambda_permission" "rotate" {
  statement_id  = "AllowSecretsManagerRotation"
  action        = "lambda:InvokeFunction"
  function_name = var.rotation.function_name
  principal     = "secretsmanager.amazonaws.com"
  source_arn    = aws_secretsmanager_secret.key.arn
}

# Whatever the caller names in ready_after: the schedule below waits for it.
resource "terraform_data" "ready" {
  input = var.ready_after
}

# Attaching does not rotate at once (rotate_immediately = false): Secrets Manager runs only
# testSecret, which proves the function reaches the route with the current version.
resource "aws_secretsmanager_secret_rotation" "key" {
  #checkov:skip=CKV_AWS_304:the days are the caller's input, which checkov cannot follow into a module; this stack passes deploy.secret_rotation_days, 30 in staging and production
  count               = var.rotation.attach && var.rotation.days > 0 ? 1 : 0
  secret_id           = aws_secretsmanager_secret.key.id
  rotation_lambda_arn = var.rotation.function_arn
  rotate_immediately  = false
  rotation_rules {
    automatically_after_days = var.rotation.days
  }
  depends_on = [aws_lambda_permission.rotate, aws_iam_role_policy.rotate, terraform_data.ready]
}
