# What the stack renders from its variables, planned against a mock AWS provider (no account,
# no moto): `terraform test` in crates/xtask/tests/terraform.rs. Each run names the AWS rule it
# holds the rendering to. What AWS does with the rendered values is the deploy test's (moto, and
# the runner that starts what the stack renders).

mock_provider "aws" {
  # The mocked values below hold at plan time too, so a plan can be asserted on.
  override_during = plan
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/tollgate-staging-api-task" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  override_data {
    target = data.aws_availability_zones.available
    values = { names = ["ap-northeast-1a", "ap-northeast-1c"] }
  }
  mock_resource "aws_eip" {
    defaults = { public_ip = "203.0.113.7" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:tollgate-staging/db-app-AbCdEf" }
  }
  mock_resource "aws_db_instance" {
    defaults = {
      endpoint           = "tollgate-staging.cluster.ap-northeast-1.rds.amazonaws.com:5432"
      master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:rds!db-1-AbCdEf", kms_key_id = "", secret_status = "active" }]
    }
  }
}

variables {
  env                = "staging"
  region             = "ap-northeast-1"
  domain_name        = "api.staging.example.com"
  hosted_zone_id     = "Z0123456789ABCDEFGHIJ"
  alb_idle_timeout_s = 60
  db_app_secret_name = "tollgate-staging/db-app"
  lambda_zip         = "tests/fixtures/artifact.txt"
  rotation_zip       = "tests/fixtures/artifact.txt"
  api_image          = "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/tollgate-staging-api@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  credential_headers = ["x-custom-auth", "x-tollgate-signature", "authorization", "cookie"]
  guard_secret_name  = "tollgate/staging/registration"
  contract_env = {
    TOLLGATE__GUARD__METHOD          = "POST"
    TOLLGATE__GUARD__PATH            = "/user"
    TOLLGATE__GUARD__MODE            = "hmac"
    TOLLGATE__GUARD__TRUSTED_PROXIES = "10.20.0.0/16"
  }
}

# EventBridge Scheduler takes `rate(value unit)` with the singular unit for 1 and the plural
# otherwise, and refuses "rate(1 minutes)" (Scheduler User Guide, "Schedule types on
# EventBridge Scheduler", rate-based schedules).
run "a_schedule_every_minute_is_written_in_the_singular" {
  command = plan
  variables {
    sweep_every_minutes     = 1
    heartbeat_every_minutes = 1
  }
  assert {
    condition     = aws_scheduler_schedule.sweep.schedule_expression == "rate(1 minute)"
    error_message = "every minute renders ${aws_scheduler_schedule.sweep.schedule_expression}"
  }
  assert {
    condition     = aws_scheduler_schedule.heartbeat.schedule_expression == "rate(1 minute)"
    error_message = "a heartbeat every minute renders ${aws_scheduler_schedule.heartbeat.schedule_expression}"
  }
}

run "the_default_intervals_are_written_in_the_plural" {
  command = plan
  assert {
    condition     = can(regex("^rate\\(([2-9]|[1-9][0-9]+) minutes\\)$", aws_scheduler_schedule.sweep.schedule_expression))
    error_message = "the default interval renders ${aws_scheduler_schedule.sweep.schedule_expression}"
  }
  assert {
    condition     = aws_scheduler_schedule.heartbeat.schedule_expression == "rate(5 minutes)"
    error_message = "the default heartbeat renders ${aws_scheduler_schedule.heartbeat.schedule_expression}"
  }
}

# The migration task runs `api --migrate`, which loads the api's whole settings first: it must
# carry every contract variable, the allowlist rendered from the NAT gateway included (the
# contract files leave it empty outside local).
run "the_migration_task_carries_the_whole_contract" {
  command = plan
  assert {
    condition = alltrue([
      for name in concat(keys(var.contract_env), ["TOLLGATE__GUARD__ALLOWED_CIDRS", "TOLLGATE_ENV", "TOLLGATE__API__DB_OWNER_SECRET_ID", "DATABASE_URL"]) :
      contains([for e in jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0].environment : e.name], name)
    ])
    error_message = "the migration task lacks a contract variable"
  }
  assert {
    condition     = [for e in jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0].environment : e.value if e.name == "TOLLGATE__GUARD__ALLOWED_CIDRS"] == ["203.0.113.7/32"]
    error_message = "the migration task's allowlist is not the NAT gateway's address"
  }
}

# The rotation's configuration test calls https://<domain_name>. With a zone the stack points
# the name itself, and the schedule waits for that record; without one it attaches only once
# xtask saw the name lead to the ALB.
run "with_a_zone_the_rotation_schedule_attaches" {
  command = plan
  assert {
    condition     = module.registration.rotation_attached
    error_message = "a stack with its own alias record must attach the schedule"
  }
}

run "without_a_zone_the_rotation_waits_for_the_name" {
  command = plan
  variables {
    hosted_zone_id  = null
    certificate_arn = "arn:aws:acm:ap-northeast-1:123456789012:certificate/0b0b0b0b-0000-4000-8000-000000000000"
  }
  assert {
    condition     = !module.registration.rotation_attached
    error_message = "the schedule attached before the name leads to the ALB"
  }
}

run "without_a_zone_the_rotation_attaches_once_the_name_leads_to_the_alb" {
  command = plan
  variables {
    hosted_zone_id     = null
    certificate_arn    = "arn:aws:acm:ap-northeast-1:123456789012:certificate/0b0b0b0b-0000-4000-8000-000000000000"
    name_points_at_alb = true
  }
  assert {
    condition     = module.registration.rotation_attached
    error_message = "the schedule must attach once the name leads to the ALB"
  }
}

# The drain shares the function's concurrency with the PostConfirmation trigger.
run "the_drain_leaves_the_trigger_concurrency" {
  command = plan
  assert {
    condition     = aws_lambda_event_source_mapping.retry.scaling_config[0].maximum_concurrency == 5
    error_message = "the event source mapping has no maximum concurrency"
  }
}

# ECS's surge, set rather than defaulted: the contract's connection budget counts it.
run "the_deployment_surge_is_the_contracts" {
  command = plan
  variables {
    deployment_maximum_percent = 150
  }
  assert {
    condition     = aws_ecs_service.api.deployment_maximum_percent == 150
    error_message = "the service's maximum percent is not the variable's"
  }
}

# Every name is `tollgate-<env>…`: RDS identifiers and load balancer names end in a letter or
# digit and hold no "--" (CreateDBInstance, CreateLoadBalancer).
run "an_env_ending_in_a_hyphen_is_refused" {
  command = plan
  variables {
    env = "qa-"
  }
  expect_failures = [var.env]
}

run "an_env_with_a_double_hyphen_is_refused" {
  command = plan
  variables {
    env = "q--a"
  }
  expect_failures = [var.env]
}

run "an_env_too_long_for_a_target_group_is_refused" {
  command = plan
  variables {
    env = "a-very-long-env-name"
  }
  expect_failures = [var.env]
}
