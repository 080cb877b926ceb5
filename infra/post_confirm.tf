# The post-confirm Lambda in the private subnets: its only way out is the NAT gateway.

data "aws_iam_policy_document" "post_confirm_secret" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [module.registration.secret_arn]
  }
}

resource "aws_iam_role_policy" "post_confirm_secret" {
  name   = "guard-secret"
  role   = data.aws_iam_role.post_confirm.id
  policy = data.aws_iam_policy_document.post_confirm_secret.json
}

resource "aws_security_group" "post_confirm" {
  name        = "${local.name}-post-confirm"
  description = "post-confirm Lambda: egress only"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-post-confirm" }
}

resource "aws_vpc_security_group_egress_rule" "post_confirm_https" {
  description       = "HTTPS to Secrets Manager, SQS, Cognito and the ALB (through the NAT gateway)"
  security_group_id = aws_security_group.post_confirm.id
  cidr_ipv4         = "0.0.0.0/0"
  from_port         = 443
  to_port           = 443
  ip_protocol       = "tcp"
}

resource "aws_cloudwatch_log_group" "post_confirm" {
  #checkov:skip=CKV_AWS_338:retention is per environment (deploy.log_retention_days; 365 in production)
  #checkov:skip=CKV_AWS_158:encrypted at rest with the AWS-owned key; credential headers never reach these logs
  name              = "/aws/lambda/${local.name}-post-confirm"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "post_confirm" {
  #checkov:skip=CKV_AWS_116:Cognito and the sweep's schedule invoke it synchronously and the queue is its retry path (queue.tf); a Lambda DLQ is for asynchronous invocations
  #checkov:skip=CKV_AWS_115:a concurrency cap would make Cognito fail sign-ups under load
  #checkov:skip=CKV_AWS_272:the artifact is built and hash-checked by cargo xtask from source; no code-signing profile
  #checkov:skip=CKV_AWS_173:the environment holds the contract and ids only, no secret
  #checkov:skip=CKV_AWS_50:no X-Ray: the function logs its outcome per invocation
  function_name    = "${local.name}-post-confirm"
  role             = data.aws_iam_role.post_confirm.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)
  memory_size      = 128
  timeout          = var.lambda_timeout_s
  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.post_confirm.id]
  }
  environment {
    variables = merge(local.contract_env, var.lambda_env, {
      TOLLGATE_ENV                         = var.env
      TOLLGATE__LAMBDA__RETRY_QUEUE        = aws_sqs_queue.retry.url
      TOLLGATE__LAMBDA__DEAD_LETTER_QUEUE  = aws_sqs_queue.dead_letters.url
      TOLLGATE__DEPLOY__RETRY_MAX_RECEIVES = tostring(var.retry_max_receives)
    })
  }
  depends_on = [aws_cloudwatch_log_group.post_confirm]
}

resource "aws_lambda_permission" "cognito" {
  statement_id  = "AllowCognitoPostConfirmation"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.post_confirm.function_name
  principal     = "cognito-idp.amazonaws.com"
  source_arn    = aws_cognito_user_pool.this.arn
}
