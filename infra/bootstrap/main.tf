# One-time, per AWS account: lets GitHub Actions deploy Tollgate with no stored AWS key.
# GitHub's OIDC token is exchanged for a role per environment; the trust policy admits only
# this repository's workflow runs in the matching GitHub environment.

terraform {
  required_version = ">= 1.11.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 5.100.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "ap-northeast-1"
}

variable "github_repository" {
  type        = string
  description = "owner/name of the repository whose workflows may deploy."
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "environments" {
  type        = set(string)
  default     = ["staging", "production"]
  description = "Deploy environments; each gets a role usable only from the GitHub environment of the same name."
}

variable "state_bucket_arns" {
  type        = list(string)
  description = "ARNs of the S3 buckets holding the Terraform state (deploy.state_bucket)."
}

# Create it only if the account has none yet; otherwise import it.
resource "aws_iam_openid_connect_provider" "github" {
  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_policy_document" "trust" {
  for_each = var.environments
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:environment:${each.key}"]
    }
  }
}

# The session length is set once, in the deploy workflow (DEPLOY_SESSION_SECONDS), which asks
# for exactly that: a longer request than the role allows would fail, a shorter one could
# expire during a Multi-AZ apply.
locals {
  deploy_session_seconds = tonumber(yamldecode(file("${path.module}/../../.github/workflows/deploy.yml")).env.DEPLOY_SESSION_SECONDS)
}

resource "aws_iam_role" "deploy" {
  for_each             = var.environments
  name                 = "tollgate-${each.key}-github-deploy"
  description          = "GitHub Actions deploys tollgate-${each.key} (cargo xtask deploy)"
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  max_session_duration = local.deploy_session_seconds
}

# The stack spans VPC, ECS, ECR, RDS, WAF, Cognito, Lambda, Secrets Manager and CloudWatch:
# PowerUserAccess covers those. IAM is limited to the stack's own roles (tollgate-<env>-*).
resource "aws_iam_role_policy_attachment" "power_user" {
  for_each   = var.environments
  role       = aws_iam_role.deploy[each.key].name
  policy_arn = "arn:aws:iam::aws:policy/PowerUserAccess"
}

data "aws_caller_identity" "this" {}

data "aws_iam_policy_document" "stack_roles" {
  for_each = var.environments
  statement {
    sid = "StackRolesOnly"
    actions = [
      "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:TagRole",
      "iam:UntagRole", "iam:UpdateAssumeRolePolicy", "iam:PassRole", "iam:ListRolePolicies",
      "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole", "iam:PutRolePolicy",
      "iam:GetRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
    ]
    resources = ["arn:aws:iam::${data.aws_caller_identity.this.account_id}:role/tollgate-${each.key}-*"]
  }
  statement {
    sid       = "TerraformState"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    resources = concat(var.state_bucket_arns, [for arn in var.state_bucket_arns : "${arn}/tollgate/${each.key}/*"])
  }
}

resource "aws_iam_role_policy" "stack_roles" {
  for_each = var.environments
  name     = "stack-roles-and-state"
  role     = aws_iam_role.deploy[each.key].id
  policy   = data.aws_iam_policy_document.stack_roles[each.key].json
}

output "deploy_role_arns" {
  description = "Set each as the repository variable AWS_DEPLOY_ROLE_ARN of the GitHub environment of the same name."
  value       = { for env, role in aws_iam_role.deploy : env => role.arn }
}
