terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 6.0"
    }
  }
  # The backend is not set here: `cargo xtask deploy` writes it per environment (S3 with
  # native locking, bucket from deploy/<env>.toml; local state for --env local).
}
