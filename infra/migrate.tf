# Migrations in a one-off task of their own: the api's image running `api --migrate` as the
# database owner (the RDS-managed master secret), then making the serving login a member of
# tollgate_app with the db-app secret's password. `cargo xtask deploy` runs it and waits for its
# exit code before the service rolls; only this task's role can read the master secret.

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
  role   = data.aws_iam_role.migrate.id
  policy = data.aws_iam_policy_document.migrate.json
}

locals {
  # `api --migrate` loads the api's whole settings before it touches the database, so the task
  # carries the contract the serving task carries (the allowlist rendered from the NAT
  # gateways among it: outside local the contract file's list is empty), the api's own
  # variables and the database's, and the owner's secret. Not the serving task's whole
  # environment: its JWT issuer and client would make the migration depend on the user pool
  # and, through its trigger, on the sign-up function, which must not change before the api's
  # new tasks serve.
  migrate_environment = merge(local.contract_env, var.api_env, local.database_environment, {
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
  execution_role_arn       = data.aws_iam_role.api_execution.arn
  task_role_arn            = data.aws_iam_role.migrate.arn
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
  # What the task needs at run time without referring to it, so that `cargo xtask deploy`'s
  # migration step (a targeted apply of this resource alone, before the service rolls) brings
  # it too: the execution role's policy (ECS pulls the image and writes the log with it), the
  # task role's, the cluster RunTask names, the private subnets' way out (their route tables
  # through the NAT gateway, and the public subnets' route to the internet gateway that the
  # NAT gateway itself uses), and the security group rules both ways to the database and out
  # to AWS's endpoints. The deploy test runs the migration on exactly what this apply left.
  depends_on = [
    aws_iam_role_policy.migrate,
    aws_ecs_cluster.this,
    aws_route_table_association.private,
    aws_route_table_association.public,
    aws_security_group_rule.api_https_out,
    aws_security_group_rule.api_to_db,
    aws_security_group_rule.db_from_api,
  ]
}
