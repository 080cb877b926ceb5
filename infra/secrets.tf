# The api's serving credentials, JSON {"username","password"} as RDS stores them: the shell
# only. `cargo xtask deploy` writes the first version before any task starts (both names come
# from xtask, which needs them before this stack has outputs); the api, migrating at start as
# the RDS master user, makes that login a member of `tollgate_app` with the secret's password.
resource "aws_secretsmanager_secret" "db_app" {
  #checkov:skip=CKV_AWS_149:encrypted with the account's aws/secretsmanager key; a CMK adds key policy for every reader
  #checkov:skip=CKV2_AWS_57:no rotation function in this stack yet (infra/README.md); the api follows rotations
  name                    = var.db_app_secret_name
  description             = "The api's PostgreSQL login (member of tollgate_app); versions written by cargo xtask"
  recovery_window_in_days = var.deletion_protection ? 30 : 0
}

locals {
  db_app_username = var.db_app_username
}
