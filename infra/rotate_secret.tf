# The guard secret's rotation function (rotate-secret), in the post-confirm Lambda's subnets:
# it proves a new version through the NAT gateway, the WAF and the ALB exactly as the sender
# will use it, and asks every running api task directly (its private address, from ECS)
# whether it holds the version. Secrets Manager runs its four steps on a schedule.

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
      var.guard_mode == "static" ? { TOLLGATE_GUARD_RULE_GROUP_ARN = module.registration.static_rule_group_arn } : {},
    )
  }
  depends_on = [aws_cloudwatch_log_group.rotation, aws_iam_role_policy.rotation_tasks]
}
