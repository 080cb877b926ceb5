# The api on ECS Fargate in the private subnets, reachable from the ALB only.

resource "aws_ecr_repository" "api" {
  name                 = "${local.name}-api"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = !var.deletion_protection
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS" # the account's aws/ecr key
  }
}

resource "aws_ecs_cluster" "this" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "api" {
  #checkov:skip=CKV_AWS_338:retention is per environment (deploy.log_retention_days; 365 in production)
  #checkov:skip=CKV_AWS_158:encrypted at rest with the AWS-owned key; credential headers never reach these logs
  name              = "/ecs/${local.name}-api"
  retention_in_days = var.log_retention_days
}

# The serving task reads the guard secret (both versions) and its serving credentials — never
# the owner's: migrations run in their own task (migrate.tf), whose role alone reads those.
data "aws_iam_policy_document" "api_task" {
  statement {
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      module.registration.secret_arn,
      aws_secretsmanager_secret.db_app.arn,
    ]
  }
  # Before GET /users/me creates a missing row from a token: does the pool still have the
  # user, enabled?
  statement {
    sid       = "LookUpAUserToProvision"
    actions   = ["cognito-idp:AdminGetUser"]
    resources = [aws_cognito_user_pool.this.arn]
  }
}

resource "aws_iam_role_policy" "api_task" {
  name   = "secrets"
  role   = data.aws_iam_role.api_task.id
  policy = data.aws_iam_policy_document.api_task.json
}

resource "aws_security_group" "api" {
  name        = "${local.name}-api"
  description = "api tasks: from the ALB only"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-api" }
}

# One rule style per group (aws_security_group_rule: see edge.tf for why), a description on
# each. Egress is what the api needs and nothing else: HTTPS out through the NAT gateway
# (Secrets Manager, ECR, CloudWatch Logs, Cognito's JWKS) and PostgreSQL to the database.
resource "aws_security_group_rule" "api_from_alb" {
  type                     = "ingress"
  description              = "HTTP from the ALB to the api port"
  security_group_id        = aws_security_group.api.id
  source_security_group_id = aws_security_group.alb.id
  from_port                = var.api_port
  to_port                  = var.api_port
  protocol                 = "tcp"
}

resource "aws_security_group_rule" "api_https_out" {
  type              = "egress"
  description       = "HTTPS to AWS APIs and the Cognito JWKS (through the NAT gateway)"
  security_group_id = aws_security_group.api.id
  cidr_blocks       = ["0.0.0.0/0"]
  from_port         = 443
  to_port           = 443
  protocol          = "tcp"
}

resource "aws_security_group_rule" "api_to_db" {
  type                     = "egress"
  description              = "PostgreSQL to the database"
  security_group_id        = aws_security_group.api.id
  source_security_group_id = aws_security_group.db.id
  from_port                = 5432
  to_port                  = 5432
  protocol                 = "tcp"
}

locals {
  # Where the database is, and the serving login's secret: for the service and the migration.
  database_environment = {
    # Host and database only: the user and password come from the secrets, re-read as they
    # rotate. TLS is verify-full against the RDS CA bundle built into the api.
    DATABASE_URL                = "postgres://${local.db_app_username}@${aws_db_instance.this.endpoint}/${aws_db_instance.this.db_name}"
    TOLLGATE__API__DB_SECRET_ID = aws_secretsmanager_secret.db_app.arn
  }
  api_environment = merge(local.contract_env, var.api_env, local.database_environment, {
    TOLLGATE_ENV                 = var.env
    TOLLGATE__API__LISTEN        = "0.0.0.0:${var.api_port}"
    TOLLGATE__API__JWT_ISSUER    = local.jwt_issuer
    TOLLGATE__API__JWT_CLIENT_ID = aws_cognito_user_pool_client.app.id
    # Never the owner's secret: the serving task does not migrate (migrate.tf does).
    TOLLGATE__API__MIGRATE_ON_START = "false"
  })
}

resource "aws_ecs_task_definition" "api" {
  family                   = "${local.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = var.api_task_memory_mib
  execution_role_arn       = data.aws_iam_role.api_execution.arn
  task_role_arn            = data.aws_iam_role.api_task.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = upper(var.api_architecture)
  }
  container_definitions = jsonencode([{
    name         = "api"
    image        = var.api_image
    essential    = true
    portMappings = [{ containerPort = var.api_port, protocol = "tcp" }]
    # The task's memory, stated on the container too (as the migration's): the same limit
    # either way on Fargate, and moto's RunTask, which the tests' runner calls to place the
    # service's tasks, adds up the containers' memory and fails on one without it.
    memory      = var.api_task_memory_mib
    environment = [for k in sort(keys(local.api_environment)) : { name = k, value = local.api_environment[k] }]
    # ECS sends SIGTERM, then SIGKILL after this: the api drains in-flight requests meanwhile.
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.api.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "api"
      }
    }
  }])
}

resource "aws_ecs_service" "api" {
  name            = "${local.name}-api"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.api.arn
  # Autoscaling owns the count after the first deploy (below).
  desired_count = var.api_min_count
  launch_type   = "FARGATE"
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.api.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = var.api_port
  }
  # Set, not defaulted: every task ECS starts during a deployment opens its pool, and the
  # contract's connection budget counts api_max_count × this (shared-auth's capacity check).
  deployment_maximum_percent         = var.deployment_maximum_percent
  deployment_minimum_healthy_percent = 100
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  # The apply ends when the new tasks serve (or the circuit breaker rolled back and the apply
  # fails): what comes after it (the rotation schedule, whose configuration test calls the
  # api; `cargo xtask verify`) meets a running service.
  wait_for_steady_state = true
  depends_on            = [aws_lb_listener.https]
  lifecycle {
    ignore_changes = [availability_zone_rebalancing, desired_count]
  }
}

# Between api_min_count and api_max_count tasks, tracking CPU and ALB requests per task.
# Not under moto: its Application Auto Scaling lacks ListTagsForResource, which the provider
# calls on every read (infra/README.md).
resource "aws_appautoscaling_target" "api" {
  count              = local.is_local ? 0 : 1
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.api.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.api_min_count
  max_capacity       = var.api_max_count
}

resource "aws_appautoscaling_policy" "api_cpu" {
  count              = local.is_local ? 0 : 1
  name               = "${local.name}-api-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api[0].service_namespace
  resource_id        = aws_appautoscaling_target.api[0].resource_id
  scalable_dimension = aws_appautoscaling_target.api[0].scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = 60
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "api_requests" {
  count              = local.is_local ? 0 : 1
  name               = "${local.name}-api-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api[0].service_namespace
  resource_id        = aws_appautoscaling_target.api[0].resource_id
  scalable_dimension = aws_appautoscaling_target.api[0].scalable_dimension
  # 60 % of the lower knee of one task (GET /users/me, 3,183 req/s at 0.25 vCPU in
  # infra/capacity.toml, BENCHMARKS.md "Capacity"), per minute: the room for load arriving while
  # a task starts. The bench's machine is not Graviton; the CPU policy above still governs a
  # heavier mix. A test derives this number from infra/capacity.toml.
  target_tracking_scaling_policy_configuration {
    target_value       = 114588
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.api.arn_suffix}"
    }
  }
}
