# The picture an operator looks at: whether the heartbeat's synthetic sign-ups go through and
# how long they take, how registrations end and which way they went, what the
# guarded route refused and why, the retry queue's age and the dead letters, the api's 5xx and
# latency through the load balancer, and every alarm's state. Each graph names a metric the
# binaries print (namespace Tollgate, read by a SEARCH on the exact dimension set they print) or
# one AWS publishes for this stack's resources; the deploy test checks every one of them against
# what the running binaries printed, as it checks the alarms (testkit::rendered::metrics).

locals {
  # A SEARCH over one dimension set of a Tollgate metric: one line per value of the last
  # dimension (e.g. one per Outcome), for this environment's binaries.
  dashboard_searches = {
    outcomes  = "SEARCH('{Tollgate,Service,Path,Outcome} MetricName=\"Registration\" Service=\"post-confirm\"', 'Sum', 300)"
    refusals  = "SEARCH('{Tollgate,Service,Reason} MetricName=\"RegistrationRefused\" Service=\"api\"', 'Sum', 300)"
    heartbeat = "SEARCH('{Tollgate,Service,Result} MetricName=\"Heartbeat\" Service=\"post-confirm\"', 'Sum', 300)"
  }
}

resource "aws_cloudwatch_dashboard" "operations" {
  dashboard_name = "${local.name}-operations"
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title   = "Registrations by way and outcome (post-confirm)"
          region  = var.region
          view    = "timeSeries"
          period  = 300
          metrics = [[{ id = "outcomes", expression = local.dashboard_searches.outcomes, label = "" }]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Guarded route refusals by reason (api)"
          region  = var.region
          view    = "timeSeries"
          period  = 300
          metrics = [[{ id = "refusals", expression = local.dashboard_searches.refusals, label = "" }]]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title   = "Retry queue: oldest registration waiting (s)"
          region  = var.region
          view    = "timeSeries"
          period  = 300
          stat    = "Maximum"
          metrics = [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", aws_sqs_queue.retry.name]]
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title   = "Dead-lettered registrations"
          region  = var.region
          view    = "timeSeries"
          period  = 300
          stat    = "Maximum"
          metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dead_letters.name]]
        }
      },
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title  = "api through the load balancer: 5xx and p99 latency (s)"
          region = var.region
          view   = "timeSeries"
          period = 300
          metrics = [
            ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "Sum" }],
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "p99", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title   = "Heartbeat: synthetic sign-ups by result"
          region  = var.region
          view    = "timeSeries"
          period  = 300
          metrics = [[{ id = "heartbeat", expression = local.dashboard_searches.heartbeat, label = "" }]]
        }
      },
      {
        type = "metric", x = 12, y = 12, width = 12, height = 6
        properties = {
          title   = "Heartbeat: sign-up to stored row (ms)"
          region  = var.region
          view    = "timeSeries"
          period  = 300
          stat    = "Maximum"
          metrics = [["Tollgate", "HeartbeatLatency", "Service", "post-confirm", "Result", "ok"]]
          annotations = {
            horizontal = [{ label = "alarm", value = var.heartbeat_latency_alarm_ms }]
          }
        }
      },
      {
        type = "alarm", x = 0, y = 18, width = 24, height = 4
        properties = {
          title = "Alarms"
          alarms = concat(
            [
              aws_cloudwatch_metric_alarm.dead_letters.arn,
              aws_cloudwatch_metric_alarm.queue_age.arn,
              aws_cloudwatch_metric_alarm.refusals.arn,
              aws_cloudwatch_metric_alarm.api_5xx.arn,
              aws_cloudwatch_metric_alarm.heartbeat.arn,
              aws_cloudwatch_metric_alarm.heartbeat_latency.arn,
            ],
            [for a in aws_cloudwatch_metric_alarm.registration_outcome : a.arn],
          )
        }
      },
    ]
  })
}
