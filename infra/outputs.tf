output "alb_dns_name" {
  description = "Public DNS name of the ALB (point the API's domain here)."
  value       = aws_lb.this.dns_name
}

output "nat_eip" {
  description = "The first NAT gateway's Elastic IP (the only one unless nat_gateways = \"per-az\"; nat_eips lists all)."
  value       = aws_eip.nat[0].public_ip
}

output "user_pool_id" {
  description = "Cognito user pool id."
  value       = aws_cognito_user_pool.this.id
}

output "user_pool_client_id" {
  description = "Cognito app client id (the ID token audience)."
  value       = aws_cognito_user_pool_client.app.id
}

output "jwt_issuer" {
  description = "Issuer of the pool's tokens; its JWKS is at <issuer>/.well-known/jwks.json."
  value       = local.jwt_issuer
}

output "guard_secret_arn" {
  description = "ARN of the guard secret (versions written by cargo xtask)."
  value       = module.registration.secret_arn
}

output "ecr_repository_url" {
  description = "ECR repository for the api image."
  value       = aws_ecr_repository.api.repository_url
}

output "lambda_function_name" {
  description = "Name of the post-confirm Lambda."
  value       = aws_lambda_function.post_confirm.function_name
}

output "ecs_cluster_name" {
  description = "ECS cluster of the api."
  value       = aws_ecs_cluster.this.name
}

output "ecs_service_name" {
  description = "ECS service of the api."
  value       = aws_ecs_service.api.name
}

output "task_definition_arn" {
  description = "The api's current task definition."
  value       = aws_ecs_task_definition.api.arn
}

output "web_acl_name" {
  description = "The WAF web ACL in front of the ALB."
  value       = aws_wafv2_web_acl.this.name
}

output "ip_set_id" {
  description = "The WAF IP set of allowed registration sources."
  value       = module.registration.ip_set.id
}

output "ip_set_name" {
  description = "Name of the WAF IP set."
  value       = module.registration.ip_set.name
}

output "private_subnet_ids" {
  description = "Private subnets (routed through the NAT gateway); the Lambda must sit in these."
  value       = aws_subnet.private[*].id
}

output "lambda_security_group_id" {
  description = "The Lambda's security group."
  value       = aws_security_group.post_confirm.id
}

output "private_route_table_nat_gateway_id" {
  description = "The first NAT gateway (the one every private subnet routes through unless nat_gateways = \"per-az\")."
  value       = aws_nat_gateway.this[0].id
}

output "web_acl_id" {
  description = "Id of the WAF web ACL."
  value       = aws_wafv2_web_acl.this.id
}

output "db_app_secret_arn" {
  description = "Secrets Manager ARN of the api's serving credentials (JSON username/password; versions written by cargo xtask)"
  value       = aws_secretsmanager_secret.db_app.arn
}

output "db_app_username" {
  description = "The api's PostgreSQL login, a member of tollgate_app"
  value       = local.db_app_username
}

output "rotation_function_name" {
  description = "Name of the guard secret's rotation function."
  value       = aws_lambda_function.rotation.function_name
}

output "nat_eips" {
  description = "Every NAT gateway's Elastic IP (one, or one per AZ with nat_gateways = \"per-az\"): all are allowed registration sources."
  value       = aws_eip.nat[*].public_ip
}

output "api_url" {
  description = "Where the api answers: https://<domain_name> (the Lambda's lambda.api_base_url)."
  value       = "https://${var.domain_name}"
}

output "api_dns_record" {
  description = "The alias record from domain_name to the ALB, when the stack manages the hosted zone (null otherwise: point the name at alb_dns_name yourself)."
  value       = one(aws_route53_record.api[*].fqdn)
}

output "retry_queue_url" {
  description = "The retry queue the trigger hands unfinished registrations to (drained by the same function)."
  value       = aws_sqs_queue.retry.url
}

output "retry_queue_arn" {
  description = "The retry queue's ARN (cargo xtask verify finds the function's event source mapping by it)."
  value       = aws_sqs_queue.retry.arn
}

output "dead_letter_queue_url" {
  description = "Registrations refused for good or failing too often, with their reasons (cargo xtask redrive moves them back)."
  value       = aws_sqs_queue.dead_letters.url
}

output "alarm_names" {
  description = "The stack's CloudWatch alarms, for the operator's dashboards and runbooks."
  value = concat(
    [
      aws_cloudwatch_metric_alarm.dead_letters.alarm_name,
      aws_cloudwatch_metric_alarm.queue_age.alarm_name,
      aws_cloudwatch_metric_alarm.refusals.alarm_name,
      aws_cloudwatch_metric_alarm.api_5xx.alarm_name,
    ],
    [for a in aws_cloudwatch_metric_alarm.registration_outcome : a.alarm_name],
  )
}

output "heartbeat_schedule_name" {
  description = "The EventBridge Scheduler schedule that runs the heartbeat."
  value       = aws_scheduler_schedule.heartbeat.name
}

output "sweep_schedule_name" {
  description = "The EventBridge Scheduler schedule that sweeps the user pool."
  value       = aws_scheduler_schedule.sweep.name
}

output "migrate_task_definition_arn" {
  description = "The one-off migration task (api --migrate as the database owner); deploy runs it before the service rolls."
  value       = aws_ecs_task_definition.migrate.arn
}

output "api_security_group_id" {
  description = "The api tasks' security group (the migration task runs in it too)."
  value       = aws_security_group.api.id
}
