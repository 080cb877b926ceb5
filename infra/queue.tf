# Nothing confirmed is lost. The trigger hands what it could not register in time to the retry
# queue, and the same function drains it (an event source mapping: same subnets, so the same
# NAT address). What keeps failing ends in the dead-letter queue (14 days), which an alarm
# watches and `cargo xtask redrive` empties back. A schedule sweeps the user pool for
# confirmed users the database lacks.

resource "aws_sqs_queue" "dead_letters" {
  name                      = "${local.name}-registrations-dead"
  message_retention_seconds = 14 * 24 * 3600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "retry" {
  name                    = "${local.name}-registrations"
  sqs_managed_sse_enabled = true
  # AWS: at least six times the function's timeout, so a batch in flight is never handed out
  # twice. The function sets each failed message's own backoff (doubling per receive).
  visibility_timeout_seconds = 6 * var.lambda_timeout_s
  message_retention_seconds  = 4 * 24 * 3600
  # The redrive policy is its own resource below: moto returns it re-spaced, which the
  # queue's own attribute shows as a change on every plan.
  lifecycle {
    ignore_changes = [redrive_policy]
  }
}

resource "aws_sqs_queue_redrive_policy" "retry" {
  queue_url = aws_sqs_queue.retry.id
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letters.arn
    maxReceiveCount     = var.retry_max_receives
  })
}

# Only the retry queue may use the dead-letter queue. moto has no RedriveAllowPolicy (its
# GetQueueAttributes refuses the name), so the stack leaves it out under a local AWS.
resource "aws_sqs_queue_redrive_allow_policy" "dead_letters" {
  count     = local.is_local ? 0 : 1
  queue_url = aws_sqs_queue.dead_letters.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.retry.arn]
  })
}

# No one outside this account, and nothing over plain HTTP.
data "aws_iam_policy_document" "queue_tls_only" {
  for_each = {
    retry        = aws_sqs_queue.retry.arn
    dead_letters = aws_sqs_queue.dead_letters.arn
  }
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "retry" {
  queue_url = aws_sqs_queue.retry.id
  policy    = data.aws_iam_policy_document.queue_tls_only["retry"].json
  # After the redrive policy: moto's SetQueueAttributes clears a queue's Policy whenever a call
  # leaves it out, as the redrive policy's does, and the provider then waits for a policy that
  # is gone. AWS changes only the attributes named; the order costs nothing there.
  depends_on = [aws_sqs_queue_redrive_policy.retry]
}

resource "aws_sqs_queue_policy" "dead_letters" {
  queue_url = aws_sqs_queue.dead_letters.id
  policy    = data.aws_iam_policy_document.queue_tls_only["dead_letters"].json
}

# The function may send to both queues (the trigger, and a refusal dead-lettered at once),
# and drain the retry queue; and list the pool's users for the sweep.
data "aws_iam_policy_document" "post_confirm_queues" {
  statement {
    sid       = "SendRegistrations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.retry.arn, aws_sqs_queue.dead_letters.arn]
  }
  statement {
    sid = "DrainTheRetryQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.retry.arn]
  }
  statement {
    sid       = "SweepThePool"
    actions   = ["cognito-idp:ListUsers"]
    resources = [aws_cognito_user_pool.this.arn]
  }
}

resource "aws_iam_role_policy" "post_confirm_queues" {
  name   = "retry-queue-and-sweep"
  role   = data.aws_iam_role.post_confirm.id
  policy = data.aws_iam_policy_document.post_confirm_queues.json
}

resource "aws_lambda_event_source_mapping" "retry" {
  event_source_arn = aws_sqs_queue.retry.arn
  function_name    = aws_lambda_function.post_confirm.arn
  batch_size       = 10
  # One message's failure never retries the rest of its batch.
  function_response_types = ["ReportBatchItemFailures"]
  # The drain and the PostConfirmation trigger share the function's (and the account's)
  # concurrency, which is low in a new account: after an outage a full queue must not take it
  # all and throttle the trigger, whose failure Cognito shows the person signing up. The
  # trigger's budget is seconds; the queue can wait.
  scaling_config {
    maximum_concurrency = var.drain_maximum_concurrency
  }
  depends_on = [aws_iam_role_policy.post_confirm_queues]
}

# The sweep: every sweep_every_minutes, the function registers the pool's confirmed users
# created in the last sweep_window_s.
data "aws_iam_policy_document" "sweep_schedule" {
  statement {
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.post_confirm.arn]
  }
}

resource "aws_iam_role_policy" "sweep_schedule" {
  name   = "invoke-the-sweep"
  role   = data.aws_iam_role.sweep_schedule.id
  policy = data.aws_iam_policy_document.sweep_schedule.json
}

locals {
  # Every schedule of the stack, by its interval in minutes. EventBridge Scheduler's rate
  # expressions take the singular unit for 1 ("rate(1 minute)") and refuse "rate(1 minutes)"
  # (Scheduler User Guide, "Schedule types", rate-based): one rule for all of them.
  schedule_expressions = {
    for name, minutes in {
      sweep     = var.sweep_every_minutes
      heartbeat = var.heartbeat_every_minutes
    } : name => minutes == 1 ? "rate(1 minute)" : "rate(${minutes} minutes)"
  }
}

resource "aws_scheduler_schedule" "sweep" {
  #checkov:skip=CKV_AWS_297:the schedule's input is the user pool's id and a window, no secret: the AWS-owned key suffices
  name                = "${local.name}-sweep"
  schedule_expression = local.schedule_expressions.sweep
  flexible_time_window {
    mode = "OFF"
  }
  target {
    arn      = aws_lambda_function.post_confirm.arn
    role_arn = data.aws_iam_role.sweep_schedule.arn
    input = jsonencode({
      tollgate     = "sweep"
      user_pool_id = aws_cognito_user_pool.this.id
      window_s     = var.sweep_window_s
    })
    retry_policy {
      maximum_retry_attempts = 2
    }
  }
}
