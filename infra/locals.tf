locals {
  name     = "tollgate-${var.env}"
  is_local = var.aws_endpoint_url != null
  azs      = slice(data.aws_availability_zones.available.names, 0, 2)

  nat_count = var.nat_gateways == "per-az" ? 2 : 1

  # The allowlist: every NAT gateway's address by reference, never typed by hand.
  allowed_cidrs = concat([for eip in aws_eip.nat : "${eip.public_ip}/32"], var.extra_allowed_cidrs)

  # One value for every deployable: the contract, with the guarded route's part as its module
  # renders it (the allowlist computed here among it), so the backend checks what WAF checks.
  contract_env = merge(var.contract_env, module.registration.guard_env)

  jwt_issuer = "https://cognito-idp.${var.region}.amazonaws.com/${aws_cognito_user_pool.this.id}"
}

# The partition (aws, aws-cn, aws-us-gov) every ARN built here names: never written literally.
data "aws_partition" "this" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:the first two zones are sliced by name; subnets never move when AWS adds a zone
  state = "available"
}

