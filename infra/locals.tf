locals {
  name     = "tollgate-${var.env}"
  is_local = var.aws_endpoint_url != null
  azs      = slice(data.aws_availability_zones.available.names, 0, 2)

  nat_count = var.nat_gateways == "per-az" ? 2 : 1

  # The allowlist: every NAT gateway's address by reference, never typed by hand.
  allowed_cidrs = concat([for eip in aws_eip.nat : "${eip.public_ip}/32"], var.extra_allowed_cidrs)

  # One value for both deployables: the contract, plus the allowlist computed here.
  contract_env = merge(var.contract_env, {
    TOLLGATE__GUARD__ALLOWED_CIDRS = join(",", local.allowed_cidrs)
  })

  # Every role carries the boundary infra/bootstrap made for this environment: the deploy role
  # may create or change a role only with it attached (infra/bootstrap/README.md).
  permissions_boundary = var.permissions_boundary == null ? null : data.aws_iam_policy.boundary[0].arn

  jwt_issuer = "https://cognito-idp.${var.region}.amazonaws.com/${aws_cognito_user_pool.this.id}"
}

# The partition (aws, aws-cn, aws-us-gov) every ARN built here names: never written literally.
data "aws_partition" "this" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:the first two zones are sliced by name; subnets never move when AWS adds a zone
  state = "available"
}

# Read, never made here: a deploy role cannot create or edit its own boundary. A missing one
# fails the plan (IAM refuses CreateRole naming a boundary that does not exist; moto does not).
data "aws_iam_policy" "boundary" {
  count = var.permissions_boundary == null ? 0 : 1
  name  = var.permissions_boundary
}
