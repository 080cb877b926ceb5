# One-time, per AWS account, by the account's administrator: lets GitHub Actions deploy one
# Tollgate environment to this account with no stored AWS key. One account holds one
# environment (README: why, and what refuses a second): the account is the fence between
# staging and production, not a list of denies that must name every way in.
#
# Made here, never by a deploy: the OIDC provider, the deploy role and its policy, the
# permissions boundary, and every role the stack's services assume, with trust policies that
# name only the AWS service each serves. The deploy role writes those roles' inline policies
# (under the boundary) and passes each only to its service; it creates, re-trusts or deletes
# no role.

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

variable "environment" {
  type        = string
  description = "The one environment this account holds (staging, production); the GitHub environment of the same name deploys it."
  validation {
    # The stack's rule for environment names (infra/variables.tf, var.env).
    condition     = can(regex("^[a-z]([a-z0-9]|-[a-z0-9]){1,18}$", var.environment))
    error_message = "environment must start with a lower-case letter, hold lower-case letters, digits and single '-' between them, and end in a letter or digit; 2 to 19 characters."
  }
}

variable "github_repository" {
  type        = string
  description = "owner/name of the repository whose deploy workflow may deploy."
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "default_branch" {
  type        = string
  default     = "main"
  description = "The branch whose .github/workflows/deploy.yml alone may assume the deploy role."
}

variable "state_bucket" {
  type        = string
  description = "Name of the S3 bucket in this account holding the stack's Terraform state (deploy.state_bucket). Its settings and policy are the administrator's; the deploy role reads and writes its state objects only."
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket))
    error_message = "state_bucket must be an S3 bucket name, not an ARN."
  }
}

variable "hosted_zone_id" {
  type        = string
  default     = null
  description = "The Route 53 hosted zone the stack writes its records in (deploy.hosted_zone_id). Null: the deploy role may write no record anywhere."
  validation {
    condition     = var.hosted_zone_id == null || can(regex("^[A-Z0-9]{1,32}$", var.hosted_zone_id))
    error_message = "hosted_zone_id must be a hosted zone id (upper-case letters and digits, no /hostedzone/ prefix)."
  }
}

variable "domain" {
  type        = string
  default     = null
  description = "The api's public name (deploy.domain): the only name the deploy role may request an ACM certificate for. Null: it may request none."
}

# Create it only if the account has none yet; otherwise import it.
resource "aws_iam_openid_connect_provider" "github" {
  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  depends_on     = [terraform_data.one_environment_per_account]
}

# ---- One environment per account ----------------------------------------------------------
# A deploy role of another environment in this account means the fence is gone: refuse before
# anything is made (terraform plan fails with this message).
data "aws_iam_roles" "deploy_roles" {
  name_regex = "^tollgate-.+-github-deploy$"
}

resource "terraform_data" "one_environment_per_account" {
  input = var.environment
  lifecycle {
    precondition {
      condition     = length(local.other_deploy_roles) == 0
      error_message = "This account already holds another Tollgate environment (${join(", ", local.other_deploy_roles)}). Tollgate ships one environment per account: bootstrap ${var.environment} in an account of its own (infra/bootstrap/README.md)."
    }
  }
}

data "aws_caller_identity" "this" {}
data "aws_partition" "this" {}

locals {
  account = data.aws_caller_identity.this.account_id
  arn     = "arn:${data.aws_partition.this.partition}"
  name    = "tollgate-${var.environment}"
  other_deploy_roles = sort([
    for n in data.aws_iam_roles.deploy_roles.names : n if n != "${local.name}-github-deploy"
  ])
  boundary_arn = "${local.arn}:iam::${local.account}:policy/${local.name}-boundary"
  deploy_arn   = "${local.arn}:iam::${local.account}:policy/${local.name}-deploy"
  self_arn     = "${local.arn}:iam::${local.account}:role/${local.name}-github-deploy"

  # The roles the stack's services assume: the one service each trusts, and the AWS managed
  # policies each carries (the stack adds its inline policies). Names are the stack's
  # (infra/*.tf reads them with data "aws_iam_role").
  stack_roles = {
    api-execution  = { service = "ecs-tasks.amazonaws.com", managed = ["service-role/AmazonECSTaskExecutionRolePolicy"] }
    api-task       = { service = "ecs-tasks.amazonaws.com", managed = [] }
    migrate        = { service = "ecs-tasks.amazonaws.com", managed = [] }
    post-confirm   = { service = "lambda.amazonaws.com", managed = ["service-role/AWSLambdaVPCAccessExecutionRole"] }
    rotate-secret  = { service = "lambda.amazonaws.com", managed = ["service-role/AWSLambdaVPCAccessExecutionRole"] }
    sweep-schedule = { service = "scheduler.amazonaws.com", managed = [] }
    vpc-flow-logs  = { service = "vpc-flow-logs.amazonaws.com", managed = [] }
  }
  stack_role_arns = { for k, _ in local.stack_roles : k => "${local.arn}:iam::${local.account}:role/${local.name}-${k}" }
  # The services that accept aws:SourceAccount in a trust policy (the confused-deputy guard,
  # IAM User Guide, "The confused deputy problem"); Lambda's execution role trust takes none.
  source_account_services = ["ecs-tasks.amazonaws.com", "scheduler.amazonaws.com", "vpc-flow-logs.amazonaws.com"]
}

# ---- Who may assume the deploy role: this repository's deploy workflow, on the default
# branch, in this environment's GitHub environment --------------------------------------------
# The repository's OIDC subject carries the workflow file (README: the one-time
# `include_claim_keys` call): `repo:<repo>:environment:<env>:job_workflow_ref:<repo>/.github/
# workflows/deploy.yml@refs/heads/<branch>`. AWS reads no custom claim, so the workflow is
# pinned through `sub`. Another workflow, branch, environment, repository or fork does not match.
data "aws_iam_policy_document" "trust" {
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
      values   = ["repo:${var.github_repository}:environment:${var.environment}:job_workflow_ref:${var.github_repository}/.github/workflows/deploy.yml@refs/heads/${var.default_branch}"]
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
  name                 = "${local.name}-github-deploy"
  description          = "GitHub Actions deploys ${local.name} (cargo xtask deploy)"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = local.deploy_session_seconds
  tags                 = { "tollgate:env" = var.environment }
  depends_on           = [terraform_data.one_environment_per_account]
}

# ---- The stack's roles: each trusts its one service ---------------------------------------
data "aws_iam_policy_document" "service_trust" {
  for_each = local.stack_roles
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.value.service]
    }
    dynamic "condition" {
      for_each = contains(local.source_account_services, each.value.service) ? [1] : []
      content {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account]
      }
    }
  }
}

resource "aws_iam_role" "stack" {
  for_each             = local.stack_roles
  name                 = "${local.name}-${each.key}"
  description          = "${local.name}: assumed by ${each.value.service} only; its policies are the stack's, under the boundary"
  assume_role_policy   = data.aws_iam_policy_document.service_trust[each.key].json
  permissions_boundary = aws_iam_policy.boundary.arn
  tags                 = { "tollgate:env" = var.environment }
}

resource "aws_iam_role_policy_attachment" "stack" {
  for_each = merge([
    for role, r in local.stack_roles : { for p in r.managed : "${role}/${p}" => { role = role, policy = p } }
  ]...)
  role       = aws_iam_role.stack[each.value.role].name
  policy_arn = "${local.arn}:iam::aws:policy/${each.value.policy}"
}

# ---- The permissions boundary: the most any of the stack's roles can ever do --------------
data "aws_iam_policy_document" "boundary" {
  #checkov:skip=CKV_AWS_111:a boundary grants nothing, it caps: each role's own policy names its resources; the runtime writes on * are those AWS's managed execution policies take on * (network interfaces, log streams, metrics)
  #checkov:skip=CKV_AWS_356:the same: a cap, not a grant; the roles' own policies name their resources, and AWS's managed execution policies take these actions on *
  statement {
    sid     = "OwnSecrets"
    actions = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"]
    resources = [
      "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate/${var.environment}/*",
      "${local.arn}:secretsmanager:*:${local.account}:secret:${local.name}/*",
      # The RDS-managed master secret (the migration task's role alone is granted it). The
      # account holds this environment's database only.
      "${local.arn}:secretsmanager:*:${local.account}:secret:rds!*",
    ]
  }
  statement {
    sid       = "OwnQueuesAndFunctions"
    actions   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "lambda:InvokeFunction"]
    resources = ["${local.arn}:sqs:*:${local.account}:${local.name}-*", "${local.arn}:lambda:*:${local.account}:function:${local.name}-*"]
  }
  statement {
    sid       = "OwnGuardRuleGroup"
    actions   = ["wafv2:UpdateRuleGroup"]
    resources = ["${local.arn}:wafv2:*:${local.account}:regional/rulegroup/${local.name}-guard-secret/*"]
  }
  statement {
    sid = "RuntimeServices"
    actions = [
      "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams",
      "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
      "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage",
      "ecs:ListTasks", "ecs:DescribeTasks", "wafv2:ListRuleGroups",
      "cognito-idp:AdminGetUser", "cognito-idp:ListUsers", "cloudwatch:PutMetricData",
      "cognito-idp:AdminConfirmSignUp", "cognito-idp:AdminDeleteUser",
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
  name        = "${local.name}-boundary"
  description = "Permissions boundary of every role of the ${local.name} stack"
  policy      = data.aws_iam_policy_document.boundary.json
  tags        = { "tollgate:env" = var.environment }
  depends_on  = [terraform_data.one_environment_per_account]
}

# ---- The deploy role's own policy ---------------------------------------------------------
data "aws_iam_policy_document" "deploy" {
  #checkov:skip=CKV_AWS_111:the account holds this environment alone (one environment per account, refused otherwise): writes on * reach only its own stack; the services whose resources have no name before creation (VPC, ELB, ECS, RDS, WAF, Cognito) cannot be narrowed by ARN; crates/xtask/tests/isolation.rs shows no request reaches the other environment
  #checkov:skip=CKV_AWS_356:the same: * is this account's, which holds this environment alone; every identity-changing, sharing and account-setting action is denied explicitly below
  #checkov:skip=CKV_AWS_109:permissions management is limited to writing the seven stack roles' inline policies by exact ARN (under the boundary) and the four service-linked roles by name; resource policies that share (ECR, snapshots, web ACLs, Logs, RAM) are denied below
  #checkov:skip=CKV_AWS_107:ecr:GetAuthorizationToken is how the deploy pushes the api's image to its own repository; it grants no other credential
  # The services the stack is made of, in this account (which holds this environment alone).
  statement {
    sid = "StackServices"
    actions = [
      "ec2:*", "elasticloadbalancing:*", "ecs:*", "ecr:*", "rds:*", "wafv2:*", "cognito-idp:*",
      "logs:*", "cloudwatch:*", "scheduler:*", "application-autoscaling:*",
      "sts:GetCallerIdentity", "secretsmanager:ListSecrets", "secretsmanager:GetRandomPassword",
      "lambda:ListFunctions", "lambda:GetAccountSettings", "lambda:*EventSourceMapping*",
      "sqs:ListQueues", "acm:DescribeCertificate", "acm:ListCertificates", "acm:ListTagsForCertificate",
      "acm:DeleteCertificate", "acm:AddTagsToCertificate", "acm:RemoveTagsFromCertificate",
      "route53:ListHostedZones", "route53:ListHostedZonesByName", "route53:GetChange",
    ]
    resources = ["*"]
  }
  statement {
    sid     = "OwnFunctionsQueuesSecrets"
    actions = ["lambda:*", "sqs:*", "secretsmanager:*"]
    resources = [
      "${local.arn}:lambda:*:${local.account}:function:${local.name}-*",
      "${local.arn}:sqs:*:${local.account}:${local.name}-*",
      "${local.arn}:secretsmanager:*:${local.account}:secret:tollgate/${var.environment}/*",
      "${local.arn}:secretsmanager:*:${local.account}:secret:${local.name}/*",
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
  # The state: list the bucket, read and write this environment's state and lock objects.
  # Nothing of the bucket itself (policy, versioning, lifecycle, public access): the
  # administrator's, so a deploy cannot expire or expose the state it runs on.
  statement {
    sid       = "StateBucketList"
    actions   = ["s3:ListBucket"]
    resources = ["${local.arn}:s3:::${var.state_bucket}"]
  }
  statement {
    sid       = "StateObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.arn}:s3:::${var.state_bucket}/tollgate/${var.environment}/*"]
  }
  # The stack's own buckets (the ALB's access logs), by name.
  statement {
    sid       = "StackBuckets"
    actions   = ["s3:*"]
    resources = ["${local.arn}:s3:::${local.name}-*"]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["true"]
    }
  }
  # Certificates for the api's name only (ACM's acm:DomainNames holds every name requested).
  dynamic "statement" {
    for_each = var.domain == null ? [] : [var.domain]
    content {
      sid       = "CertificateForTheDomain"
      actions   = ["acm:RequestCertificate"]
      resources = ["*"]
      condition {
        test     = "ForAllValues:StringEquals"
        variable = "acm:DomainNames"
        values   = [statement.value]
      }
      condition {
        test     = "Null"
        variable = "acm:DomainNames"
        values   = ["false"]
      }
    }
  }
  # Records in the environment's hosted zone only.
  dynamic "statement" {
    for_each = var.hosted_zone_id == null ? [] : [var.hosted_zone_id]
    content {
      sid       = "RecordsInTheZone"
      actions   = ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets", "route53:GetHostedZone", "route53:ListTagsForResource"]
      resources = ["${local.arn}:route53:::hostedzone/${statement.value}"]
    }
  }
  # The stack's roles: read them and write their inline policies (the boundary caps what any
  # policy can grant). Exact ARNs, no wildcard: a role of another name or path is not one.
  statement {
    sid       = "StackRolePolicies"
    actions   = ["iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:PutRolePolicy", "iam:DeleteRolePolicy"]
    resources = values(local.stack_role_arns)
  }
  # Each role to its one service.
  dynamic "statement" {
    for_each = local.stack_roles
    content {
      sid       = "Pass${replace(title(replace(statement.key, "-", " ")), " ", "")}"
      actions   = ["iam:PassRole"]
      resources = [local.stack_role_arns[statement.key]]
      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = [statement.value.service]
      }
    }
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

  # ---- Explicit denies: win over any allow, here or in a policy someone attaches later ----
  # No identity is made, re-trusted or widened by a deploy: every role, user, key and policy is
  # this module's.
  statement {
    sid    = "NeverIdentities"
    effect = "Deny"
    actions = [
      "iam:CreateRole", "iam:DeleteRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
      "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary",
      "iam:DeleteRolePermissionsBoundary", "iam:TagRole", "iam:UntagRole",
      "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy",
      "iam:CreateUser", "iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:CreateGroup",
      "iam:AddUserToGroup", "iam:PutUserPolicy", "iam:PutGroupPolicy", "iam:AttachUserPolicy",
      "iam:AttachGroupPolicy", "iam:CreateOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint",
      "iam:AddClientIDToOpenIDConnectProvider", "iam:CreateSAMLProvider", "iam:CreateInstanceProfile",
      "iam:AddRoleToInstanceProfile", "iam:PassRole",
    ]
    resources = ["*"]
    # PassRole stays open to the allows above, which name each stack role and its service.
    condition {
      test     = "StringNotEquals"
      variable = "iam:PassedToService"
      values   = distinct([for r in local.stack_roles : r.service])
    }
  }
  statement {
    sid       = "NeverItselfItsPoliciesOrTheProvider"
    effect    = "Deny"
    actions   = ["iam:*"]
    resources = [local.self_arn, local.boundary_arn, local.deploy_arn, aws_iam_openid_connect_provider.github.arn]
  }
  # What the stack never does and would let a deploy escalate or expose (the paths
  # cloudsplaining knows, crates/xtask/tests/isolation.rs): instances and their profiles, launch
  # templates, shells into tasks, instance passwords, and resource policies that share a
  # snapshot, an image repository, a network interface or a web ACL with another account. The
  # stack runs on Fargate and Lambda and shares nothing.
  statement {
    sid    = "NeverInstancesShellsOrSharing"
    effect = "Deny"
    actions = [
      "ec2:RunInstances", "ec2:StartInstances", "ec2:StopInstances", "ec2:ModifyInstanceAttribute",
      "ec2:AssociateIamInstanceProfile", "ec2:ReplaceIamInstanceProfileAssociation",
      "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate",
      "ec2:GetPasswordData", "ec2:CreateKeyPair", "ec2:ImportKeyPair", "ecs:ExecuteCommand",
      "ec2:CreateNetworkInterfacePermission", "ec2:ModifySnapshotAttribute", "ec2:ModifyImageAttribute",
      "ec2:PutResourcePolicy", "ecr:SetRepositoryPolicy", "rds:ModifyDBSnapshotAttribute",
      "rds:ModifyDBClusterSnapshotAttribute", "wafv2:PutPermissionPolicy",
    ]
    resources = ["*"]
  }
  # Account-wide settings the stack never needs: an account policy of CloudWatch Logs, ECR's
  # registry policy and replication, Lambda's and SQS's account settings.
  statement {
    sid    = "NeverAccountSettings"
    effect = "Deny"
    actions = [
      "logs:PutAccountPolicy", "logs:DeleteAccountPolicy", "logs:PutResourcePolicy", "logs:DeleteResourcePolicy",
      "ecr:PutRegistryPolicy", "ecr:DeleteRegistryPolicy", "ecr:PutReplicationConfiguration",
      "ecr:PutRegistryScanningConfiguration", "ec2:ModifyEbsDefaultKmsKeyId", "ec2:EnableEbsEncryptionByDefault",
      "ec2:DisableEbsEncryptionByDefault", "ec2:CreateVpcPeeringConnection", "ec2:AcceptVpcPeeringConnection",
      "ram:*",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_policy" "deploy" {
  name        = "${local.name}-deploy"
  description = "What GitHub Actions may do to deploy ${local.name}"
  policy      = data.aws_iam_policy_document.deploy.json
  tags        = { "tollgate:env" = var.environment }
  depends_on  = [terraform_data.one_environment_per_account]
}

resource "aws_iam_role_policy_attachment" "deploy" {
  role       = aws_iam_role.deploy.name
  policy_arn = aws_iam_policy.deploy.arn
}

output "deploy_role_arn" {
  description = "Set as the variable AWS_DEPLOY_ROLE_ARN of the GitHub environment named like this environment."
  value       = aws_iam_role.deploy.arn
}

output "stack_role_arns" {
  description = "The roles the stack's services assume; the stack reads them by name."
  value       = { for k, r in aws_iam_role.stack : k => r.arn }
}

output "permissions_boundary_arn" {
  description = "The boundary every stack role carries."
  value       = aws_iam_policy.boundary.arn
}
