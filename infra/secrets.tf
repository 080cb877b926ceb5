# The guard secret's shell only: `cargo xtask deploy` / `rotate-secret` write its versions, so
# the value never enters Terraform state.

resource "aws_secretsmanager_secret" "guard" {
  name                    = var.guard_secret_name
  description             = "Shared secret between post-confirm and the api's POST /user (versions written by cargo xtask)"
  recovery_window_in_days = var.deletion_protection ? 30 : 0
}
