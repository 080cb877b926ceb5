# What the operator must hear about: a registration dead-lettered, one lost (neither
# registered nor queued) or given up, the queue falling behind, the guarded route refused more
# than the threshold (an attack, or a sender whose secret or address went wrong), the api
# answering 5xx. Each notifies alarm_topic_arn when one is set.

locals {
  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
  # The sign-up function's and the api's metrics (CloudWatch embedded metric format). CloudWatch
  # treats every combination of dimensions as a metric of its own, so each alarm names exactly
  # a set the binaries print (`Service` is in every set; shared_auth::emf). The deploy test
  # checks every alarm here against the metric lines the real binaries printed.
  metrics_namespace = "Tollgate"
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${local.name}-registrations-dead-lettered"
  alarm_description   = "A registration is in the dead-letter queue: read its reason, fix the cause, run cargo xtask redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letters.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "queue_age" {
  alarm_name          = "${local.name}-registrations-waiting"
  alarm_description   = "A queued registration has waited over 15 minutes: the api or the path to it is down."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.retry.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 900
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "registration_outcome" {
  for_each            = toset(["lost", "gave_up"])
  alarm_name          = "${local.name}-registrations-${replace(each.key, "_", "-")}"
  alarm_description   = each.key == "lost" ? "A confirmed user was neither registered nor queued; the next sweep registers them." : "A queued registration was dead-lettered."
  namespace           = local.metrics_namespace
  metric_name         = "Registration"
  dimensions          = { Service = "post-confirm", Outcome = each.key }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "refusals" {
  alarm_name        = "${local.name}-guarded-route-refusals"
  alarm_description = "The guarded route refused more than the threshold in 5 minutes."
  namespace         = local.metrics_namespace
  metric_name       = "RegistrationRefused"
  # Every reason together: the api prints each refusal count under {Service, Reason} and under
  # {Service} alone for this alarm.
  dimensions          = { Service = "api" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.refusal_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${local.name}-api-5xx"
  alarm_description   = "The api answered 5xx through the ALB."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}
