# Cognito: email sign-up; after confirmation it invokes post-confirm.

resource "aws_cognito_user_pool" "this" {
  name                     = local.name
  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]
  deletion_protection      = var.deletion_protection ? "ACTIVE" : "INACTIVE"
  password_policy {
    minimum_length    = 12
    require_lowercase = true
    require_uppercase = true
    require_numbers   = true
    require_symbols   = false
  }
  lambda_config {
    post_confirmation = aws_lambda_function.post_confirm.arn
  }
  # With an SES identity the pool sends through SES (its own quota); without one, Cognito's
  # built-in sender, whose small daily quota suits local and trial stacks only.
  email_configuration {
    email_sending_account = var.ses_source_arn == null ? "COGNITO_DEFAULT" : "DEVELOPER"
    source_arn            = var.ses_source_arn
    from_email_address    = var.ses_from_address
  }
}

resource "aws_cognito_user_pool_client" "app" {
  name                          = "${local.name}-app"
  user_pool_id                  = aws_cognito_user_pool.this.id
  generate_secret               = false
  explicit_auth_flows           = ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors = "ENABLED"
}
