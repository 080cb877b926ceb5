terraform {
  required_version = ">= 1.11.0" # the S3 backend's native locking (use_lockfile)

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 5.100.0" # exact: .terraform.lock.hcl (made by the provider-lock workflow) pins its hashes
    }
  }
  # The backend is not set here: `cargo xtask deploy` writes it per environment (S3 with
  # native locking, bucket from deploy/<env>.toml; local state for --env local).
}
