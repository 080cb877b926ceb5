# PostgreSQL on RDS in the private subnets, reachable from the api only. RDS manages the
# master password in Secrets Manager; it never appears in Terraform state or variables.

locals {
  final_snapshot = coalesce(var.final_snapshot, var.deletion_protection)
}

resource "aws_db_subnet_group" "this" {
  name       = local.name
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_security_group" "db" {
  name        = "${local.name}-db"
  description = "PostgreSQL: from the api only"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-db" }
}

resource "aws_security_group_rule" "db_from_api" {
  type                     = "ingress"
  description              = "PostgreSQL from the api tasks"
  security_group_id        = aws_security_group.db.id
  source_security_group_id = aws_security_group.api.id
  from_port                = 5432
  to_port                  = 5432
  protocol                 = "tcp"
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is per environment (deploy.db_multi_az; on in production)
  #checkov:skip=CKV_AWS_353:Performance Insights is not offered on every instance class; enable it with a larger class
  #checkov:skip=CKV_AWS_118:enhanced monitoring (an extra role and cost) is left to the operator; CloudWatch metrics and exported logs are on
  #checkov:skip=CKV_AWS_161:the api authenticates with rotating Secrets Manager credentials (api.db_secret_id), not IAM tokens
  #checkov:skip=CKV2_AWS_30:statement logging would write users' email addresses to the logs; errors and slow statements are logged
  identifier                  = local.name
  engine                      = "postgres"
  engine_version              = "15"
  instance_class              = var.db_instance_class
  allocated_storage           = 20
  max_allocated_storage       = 100 # storage autoscaling
  storage_type                = "gp3"
  storage_encrypted           = true
  multi_az                    = var.db_multi_az
  db_name                     = "tollgate"
  username                    = "tollgate"
  manage_master_user_password = true
  db_subnet_group_name        = aws_db_subnet_group.this.name
  vpc_security_group_ids      = [aws_security_group.db.id]
  backup_retention_period     = 7
  deletion_protection         = var.deletion_protection
  skip_final_snapshot         = !local.final_snapshot
  final_snapshot_identifier   = local.final_snapshot ? "${local.name}-final${var.final_snapshot_suffix}" : null
  publicly_accessible         = false
  # PostgreSQL's own log and upgrade log to CloudWatch Logs (retention below).
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  auto_minor_version_upgrade      = true
  copy_tags_to_snapshot           = true
  depends_on                      = [aws_cloudwatch_log_group.db]
}

resource "aws_cloudwatch_log_group" "db" {
  #checkov:skip=CKV_AWS_338:retention is per environment (deploy.log_retention_days; 365 in production)
  #checkov:skip=CKV_AWS_158:encrypted at rest with the AWS-owned key; credential headers never reach these logs
  for_each          = toset(["postgresql", "upgrade"])
  name              = "/aws/rds/instance/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
}
