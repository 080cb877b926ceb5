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
  tags                 = { "tollgate:env" = each.key }
}

data "aws_caller_identity" "this" {}
data "aws_partition" "this" {}

locals {
  account = data.aws_caller_identity.this.account_id
  arn     = "arn:${data.aws_partition.this.partition}"
  # Per environment: its name prefix, and the other environments this account holds (none
  # when each environment has its own account, as recommended).
  envs = {
    for env in var.environments : env => {
      role     = "${local.arn}:iam::${local.account}:role/tollgate-${env}-*"
      self     = "${local.arn}:iam::${local.account}:role/tollgate-${env}-github-deploy"
      boundary = "${local.arn}:iam::${local.account}:policy/tollgate-${env}-boundary"
      deploy   = "${local.arn}:iam::${local.account}:policy/tollgate-${env}-deploy"
      others   = sort(tolist(setsubtract(var.environments, [env])))
    }
  }
  oidc_provider = "${local.arn}:iam::${local.account}:oidc-provider/token.actions.githubusercontent.com"
  # IAM's write verbs: what the explicit denies forbid on the deploy role itself, its policies,
  # its boundary and the OIDC provider (reads stay: the stack reads its boundary).
  iam_writes = [
    "iam:Add*", "iam:Attach*", "iam:Create*", "iam:Delete*", "iam:Detach*", "iam:PassRole",
    "iam:Put*", "iam:Remove*", "iam:Set*", "iam:Tag*", "iam:Untag*", "iam:Update*",
  ]
  # The services the stack's roles are passed to (iam:PassedToService).
  passed_to = [
    "ecs-tasks.amazonaws.com", "lambda.amazonaws.com", "scheduler.amazonaws.com",
    "vpc-flow-logs.amazonaws.com",
  ]
}

# ---- What no identity of an environment may touch: another environment's resources --------
# Every resource of the stack carries the tollgate:env tag (the provider's default_tags):
# denied whatever is tagged for another environment, or a request that would tag it so.
data "aws_iam_policy_document" "other_environments" {
  for_each = var.environments
  dynamic "statement" {
    for_each = { NeverResourcesOfAnotherEnvironment = "aws:ResourceTag", NeverCreateForAnotherEnvironment = "aws:RequestTag" }
    content {
      sid       = statement.key
      effect    = "Deny"
      actions   = ["*"]
      resources = ["*"]
      condition {
        test     = "StringNotEquals"
        variable = "${statement.value}/tollgate:env"
        values   = [each.key]
      }
      condition {
        test     = "Null"
        variable = "${statement.value}/tollgate:env"
        values   = ["false"]
      }
    }
  }
}

# ---- The permissions boundary: the most any role the stack creates can ever do ----------
# The deploy role may create or change a role only with this boundary attached, and can edit
# neither the boundary nor itself: whatever policy it writes on a stack role, that role can do
# at most the runtime work below, in its own environment, and never IAM.
data "aws_iam_policy_document" "boundary" {
  #checkov:skip=CKV_AWS_111:a boundary grants nothing, it caps: each role's own policy names its resources; the runtime writes on * are those AWS's managed execution policies take on * (network interfaces, log streams, metrics)
  #checkov:skip=CKV_AWS_356:the same: a cap, not a grant; the roles' own policies name their resources, and AWS's managed execution policies take these actions on *
  for_each = var.environments
  # Nothing tagged for another environment, whatever the role's own policy says.
  source_policy_documents = [data.aws_iam_policy_document.other_environments[each.key].json]
  statement {
    sid     = "OwnSecrets"
    actions = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"]
    resources = [
      "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate/${each.key}/*",
      "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate-${each.key}/*",
      # The RDS-managed master secret (the migration task's role alone is granted it).
      "${local.arn}:secretsmanager:*:${local.account}:secret:rds!*",
    ]
  }
  statement {
    sid       = "OwnQueuesAndFunctions"
    actions   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "lambda:InvokeFunction"]
    resources = ["${local.arn}:sqs:*:${local.account}:tollgate-${each.key}-*", "${local.arn}:lambda:*:${local.account}:function:tollgate-${each.key}-*"]
  }
  statement {
    sid = "RuntimeServices"
    actions = [
      "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams",
      "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
      "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage",
      "ecs:ListTasks", "ecs:DescribeTasks", "wafv2:ListRuleGroups", "wafv2:UpdateRuleGroup",
      "cognito-idp:AdminGetUser", "cognito-idp:ListUsers", "cloudwatch:PutMetricData",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "NeverIdentity"
    effect    = "Deny"
    actions   = ["iam:*", "sts:AssumeRole", "organizations:*", "account:*"]
    resources = ["*"]
  }
}

resource "aws_iam_policy" "boundary" {
  for_each    = var.environments
  name        = "tollgate-${each.key}-boundary"
  description = "Permissions boundary of every role the tollgate-${each.key} stack creates"
  policy      = data.aws_iam_policy_document.boundary[each.key].json
  tags        = { "tollgate:env" = each.key }
}

# ---- The deploy role's own policy: the stack's services, its environment only -------------
data "aws_iam_policy_document" "deploy" {
  for_each = var.environments
  # Nothing tagged for another environment, nor created tagged for it.
  source_policy_documents = [data.aws_iam_policy_document.other_environments[each.key].json]
  # The services the stack is made of. Their resources are told apart by the tollgate:env tag
  # every resource carries (the provider's default_tags): the denies below refuse another
  # environment's, and creating one tagged for another environment.
  statement {
    sid = "StackServices"
    actions = [
      "ec2:*", "elasticloadbalancing:*", "ecs:*", "ecr:*", "rds:*", "wafv2:*", "cognito-idp:*",
      "logs:*", "cloudwatch:*", "scheduler:*", "acm:*", "route53:*", "application-autoscaling:*",
      "sts:GetCallerIdentity", "secretsmanager:ListSecrets", "secretsmanager:GetRandomPassword",
      "lambda:ListFunctions", "lambda:GetAccountSettings", "lambda:*EventSourceMapping*",
      "sqs:ListQueues",
    ]
    resources = ["*"]
  }
  statement {
    sid     = "OwnFunctionsQueuesSecrets"
    actions = ["lambda:*", "sqs:*", "secretsmanager:*"]
    resources = [
      "${local.arn}:lambda:*:${local.account}:function:tollgate-${each.key}-*",
      "${local.arn}:sqs:*:${local.account}:tollgate-${each.key}-*",
      "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate/${each.key}/*",
      "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate-${each.key}/*",
    ]
  }
  # RDS creates the managed master secret in the caller's name; its value is never read here.
  statement {
    sid       = "RdsManagedSecret"
    actions   = ["secretsmanager:CreateSecret", "secretsmanager:TagResource", "secretsmanager:RotateSecret", "secretsmanager:DescribeSecret", "secretsmanager:DeleteSecret"]
    resources = ["${local.arn}:secretsmanager:*:${local.account}:secret:rds!*"]
  }
  statement {
    sid       = "KeysThroughTheServices"
    actions   = ["kms:DescribeKey", "kms:CreateGrant", "kms:RetireGrant", "kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["ecr.*.amazonaws.com", "rds.*.amazonaws.com", "secretsmanager.*.amazonaws.com", "logs.*.amazonaws.com", "sqs.*.amazonaws.com"]
    }
  }
  statement {
    sid       = "StateAndLogBuckets"
    actions   = ["s3:*"]
    resources = concat(var.state_bucket_arns, ["${local.arn}:s3:::tollgate-${each.key}-*"])
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["true"]
    }
  }
  statement {
    sid       = "StateObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = concat([for arn in var.state_bucket_arns : "${arn}/tollgate/${each.key}/*"], ["${local.arn}:s3:::tollgate-${each.key}-*/*"])
  }
  # Roles: only the stack's, only with the boundary attached, read freely.
  statement {
    sid       = "StackRolesWithTheBoundary"
    actions   = ["iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:DeleteRolePolicy", "iam:PutRolePermissionsBoundary"]
    resources = [local.envs[each.key].role]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [local.envs[each.key].boundary]
    }
  }
  statement {
    sid = "StackRoles"
    actions = [
      "iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole", "iam:DeleteRole", "iam:TagRole", "iam:UntagRole",
      "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy",
    ]
    resources = [local.envs[each.key].role]
  }
  statement {
    sid       = "PassStackRolesToTheirServices"
    actions   = ["iam:PassRole"]
    resources = [local.envs[each.key].role]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = local.passed_to
    }
  }
  statement {
    sid       = "ReadPolicies"
    actions   = ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions", "iam:ListPolicies"]
    resources = ["*"]
  }
  statement {
    sid       = "ServiceLinkedRoles"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["ecs.amazonaws.com", "elasticloadbalancing.amazonaws.com", "rds.amazonaws.com", "ecs.application-autoscaling.amazonaws.com"]
    }
  }

  # ---- Explicit denies: win over any allow, here or in a policy someone adds later --------
  statement {
    sid       = "NeverItselfItsPoliciesOrTheProvider"
    effect    = "Deny"
    actions   = local.iam_writes
    resources = [local.envs[each.key].self, local.envs[each.key].boundary, local.envs[each.key].deploy, local.oidc_provider]
  }
  statement {
    sid       = "NeverARoleWithoutTheBoundary"
    effect    = "Deny"
    actions   = ["iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary"]
    resources = ["*"]
    condition {
      test     = "StringNotEquals"
      variable = "iam:PermissionsBoundary"
      values   = [local.envs[each.key].boundary]
    }
  }
  statement {
    sid       = "NeverDropABoundary"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary", "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:CreateUser", "iam:CreateAccessKey"]
    resources = ["*"]
  }
  dynamic "statement" {
    # Names of the other environments in this account: their roles, functions, queues,
    # secrets, buckets and state, whatever their tags say.
    for_each = length(local.envs[each.key].others) == 0 ? [] : [local.envs[each.key].others]
    content {
      sid     = "NeverAnotherEnvironmentByName"
      effect  = "Deny"
      actions = ["*"]
      resources = flatten([for other in statement.value : concat([
        "${local.arn}:iam::${local.account}:role/tollgate-${other}-*",
        "${local.arn}:iam::${local.account}:policy/tollgate-${other}-*",
        "${local.arn}:lambda:*:${local.account}:function:tollgate-${other}-*",
        "${local.arn}:sqs:*:${local.account}:tollgate-${other}-*",
        "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate/${other}/*",
        "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate-${other}/*",
        "${local.arn}:s3:::tollgate-${other}-*",
        "${local.arn}:ecs:*:${local.account}:*/tollgate-${other}*",
        "${local.arn}:ecr:*:${local.account}:repository/tollgate-${other}-*",
        "${local.arn}:rds:*:${local.account}:db:tollgate-${other}",
        ], [for arn in var.state_bucket_arns : "${arn}/tollgate/${other}/*"])
      ])
    }
  }
}

resource "aws_iam_policy" "deploy" {
  for_each    = var.environments
  name        = "tollgate-${each.key}-deploy"
  description = "What GitHub Actions may do to deploy tollgate-${each.key}, and nothing of another environment"
  policy      = data.aws_iam_policy_document.deploy[each.key].json
  tags        = { "tollgate:env" = each.key }
}

resource "aws_iam_role_policy_attachment" "deploy" {
  for_each   = var.environments
  role       = aws_iam_role.deploy[each.key].name
  policy_arn = aws_iam_policy.deploy[each.key].arn
}

output "deploy_role_arns" {
  description = "Set each as the repository variable AWS_DEPLOY_ROLE_ARN of the GitHub environment of the same name."
  value       = { for env, role in aws_iam_role.deploy : env => role.arn }
}

output "permissions_boundary_arns" {
  description = "The boundary every role of each environment's stack carries (deploy.permissions_boundary names it)."
  value       = { for env, policy in aws_iam_policy.boundary : env => policy.arn }
}
