# The heartbeat: every heartbeat_every_minutes, the sign-up function signs a synthetic user up in
# the pool (an address in the reserved domain heartbeat.tollgate.invalid, which no person can
# confirm), confirms it so that Cognito runs the PostConfirmation trigger, reads the row back
# through the guarded route (DELETE, which removes it) and deletes the user. It prints
# Heartbeat{Service, Result} (ok only when the trigger itself registered the user) and
# HeartbeatLatency; the alarms below read them. crates/post-confirm/src/heartbeat.rs.

# Confirming and deleting its own synthetic users. SignUp needs no IAM permission (the app
# client's public call); the function deletes only users it signed up (in the reserved domain),
# which IAM cannot express for Cognito users: the code does, and a test shows it.
data "aws_iam_policy_document" "post_confirm_heartbeat" {
  statement {
    sid       = "HeartbeatUsers"
    actions   = ["cognito-idp:AdminConfirmSignUp", "cognito-idp:AdminDeleteUser"]
    resources = [aws_cognito_user_pool.this.arn]
  }
}

resource "aws_iam_role_policy" "post_confirm_heartbeat" {
  name   = "heartbeat"
  role   = data.aws_iam_role.post_confirm.id
  policy = data.aws_iam_policy_document.post_confirm_heartbeat.json
}

locals {
  heartbeat_period_s = var.heartbeat_every_minutes * 60
}

# The sweep's schedule role invokes the same function with another input.
resource "aws_scheduler_schedule" "heartbeat" {
  #checkov:skip=CKV_AWS_297:the schedule's input is the user pool's and app client's ids, no secret: the AWS-owned key suffices
  name                = "${local.name}-heartbeat"
  schedule_expression = local.schedule_expressions.heartbeat
  flexible_time_window {
    mode = "OFF"
  }
  target {
    arn      = aws_lambda_function.post_confirm.arn
    role_arn = data.aws_iam_role.sweep_schedule.arn
    input = jsonencode({
      tollgate     = "heartbeat"
      user_pool_id = aws_cognito_user_pool.this.id
      client_id    = aws_cognito_user_pool_client.app.id
    })
    # A failed heartbeat is the signal; a retry would only blur it.
    retry_policy {
      maximum_retry_attempts = 0
    }
  }
  depends_on = [aws_iam_role_policy.post_confirm_heartbeat]
}

# No successful heartbeat in two periods running: sign-ups may be failing end to end. Missing
# data breaches, so a heartbeat that never ran (the schedule, the function, its network) raises
# it as surely as one that failed.
resource "aws_cloudwatch_metric_alarm" "heartbeat" {
  alarm_name          = "${local.name}-heartbeat-failing"
  alarm_description   = "No synthetic sign-up went all the way through (Cognito, trigger, NAT, WAF, ALB, api, database) in two heartbeat periods: read the function's 'heartbeat failed' log line for the step and the cause."
  namespace           = local.metrics_namespace
  metric_name         = "Heartbeat"
  dimensions          = { Service = "post-confirm", Result = "ok" }
  statistic           = "Sum"
  period              = local.heartbeat_period_s
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "heartbeat_latency" {
  alarm_name          = "${local.name}-heartbeat-slow"
  alarm_description   = "Synthetic sign-ups took longer than heartbeat_latency_alarm_ms from sign-up to stored row in two heartbeat periods: the trigger's budget is at risk."
  namespace           = local.metrics_namespace
  metric_name         = "HeartbeatLatency"
  dimensions          = { Service = "post-confirm", Result = "ok" }
  statistic           = "Maximum"
  period              = local.heartbeat_period_s
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.heartbeat_latency_alarm_ms
  # The failing alarm covers no data; this one speaks of the heartbeats that did go through.
  treat_missing_data = "notBreaching"
  alarm_actions      = local.alarm_actions
}
