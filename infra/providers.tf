provider "aws" {
  region = var.region

  # A local AWS (moto_server) for --env local: test credentials and every endpoint pointed at
  # it. In the cloud `aws_endpoint_url` is null and all of these fall back to their defaults.
  access_key                  = local.is_local ? "test" : null
  secret_key                  = local.is_local ? "test" : null
  skip_credentials_validation = local.is_local
  skip_requesting_account_id  = local.is_local
  skip_metadata_api_check     = local.is_local
  s3_use_path_style           = local.is_local

  endpoints {
    acm                    = var.aws_endpoint_url
    applicationautoscaling = var.aws_endpoint_url
    cloudwatch             = var.aws_endpoint_url
    cloudwatchlogs         = var.aws_endpoint_url
    cognitoidp             = var.aws_endpoint_url
    ec2                    = var.aws_endpoint_url
    ecr                    = var.aws_endpoint_url
    ecs                    = var.aws_endpoint_url
    elbv2                  = var.aws_endpoint_url
    iam                    = var.aws_endpoint_url
    lambda                 = var.aws_endpoint_url
    rds                    = var.aws_endpoint_url
    route53                = var.aws_endpoint_url
    s3                     = var.aws_endpoint_url
    scheduler              = var.aws_endpoint_url
    secretsmanager         = var.aws_endpoint_url
    sqs                    = var.aws_endpoint_url
    sts                    = var.aws_endpoint_url
    wafv2                  = var.aws_endpoint_url
  }

  default_tags {
    tags = {
      Project     = "tollgate"
      Environment = var.env
      ManagedBy   = "terraform"
      # What the deploy roles' conditions read (aws:ResourceTag / aws:RequestTag): a role of
      # one environment can neither touch nor create the other's resources.
      "tollgate:env" = var.env
    }
  }
}
