# Migrations in a one-off task of their own: the api's image running `api --migrate` as the
# database owner (the RDS-managed master secret), then making the serving login a member of
# tollgate_app with the db-app secret's password. `cargo xtask deploy` runs it and waits for its
# exit code before the service rolls; only this task's role can read the master secret.

resource "aws_iam_role" "migrate" {
  name                 = "${local.name}-migrate"
  assume_role_policy   = data.aws_iam_policy_document.ecs_assume.json
  permissions_boundary = local.permissions_boundary
}

data "aws_iam_policy_document" "migrate" {
  statement {
    sid     = "OwnerAndServingLogin"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_db_instance.this.master_user_secret[0].secret_arn,
      aws_secretsmanager_secret.db_app.arn,
    ]
  }
}

resource "aws_iam_role_policy" "migrate" {
  name   = "owner-secret"
  role   = aws_iam_role.migrate.id
  policy = data.aws_iam_policy_document.migrate.json
}

locals {
  migrate_environment = merge(var.api_env, local.database_environment, {
    TOLLGATE_ENV                      = var.env
    TOLLGATE__API__DB_OWNER_SECRET_ID = aws_db_instance.this.master_user_secret[0].secret_arn
  })
}

resource "aws_ecs_task_definition" "migrate" {
  family                   = "${local.name}-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = var.api_task_memory_mib
  execution_role_arn       = aws_iam_role.api_execution.arn
  task_role_arn            = aws_iam_role.migrate.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = upper(var.api_architecture)
  }
  container_definitions = jsonencode([{
    name      = "migrate"
    image     = var.api_image
    essential = true
    command   = ["--migrate"]
    # The task's memory, stated on the container too: the same limit either way.
    memory      = var.api_task_memory_mib
    environment = [for k in sort(keys(local.migrate_environment)) : { name = k, value = local.migrate_environment[k] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.api.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "migrate"
      }
    }
  }])
}
