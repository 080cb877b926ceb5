# Two public and two private subnets in two AZs. By default the private subnets route to the
# internet through ONE NAT gateway, so everything the Lambda sends leaves from one Elastic IP:
# the address WAF and the api allow on the guarded route.
#
# That NAT gateway lives in the first AZ: a single point of failure by design. If that AZ
# fails, the private subnets lose their route out: sign-ups still confirm in Cognito but their
# registration fails until the AZ returns (`cargo xtask reconcile` replays them), and the api
# cannot reach Secrets Manager or the JWKS (it keeps the secrets it holds).
#
# nat_gateways = "per-az" puts a NAT gateway in each AZ, each private subnet routing through
# its own: no AZ takes the others' way out down with it, and every Elastic IP is in the
# allowlist (locals.tf), so the WAF and both ends of the contract still agree.

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = local.name }
}

resource "aws_subnet" "public" {
  count                   = 2
  vpc_id                  = aws_vpc.this.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false
  tags                    = { Name = "${local.name}-public-${count.index}", Tier = "public" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)
  availability_zone = local.azs[count.index]
  tags              = { Name = "${local.name}-private-${count.index}", Tier = "private" }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = local.name }
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"
  tags   = { Name = count.index == 0 ? "${local.name}-nat" : "${local.name}-nat-${count.index}" }
}

resource "aws_nat_gateway" "this" {
  count         = local.nat_count
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = { Name = count.index == 0 ? local.name : "${local.name}-${count.index}" }
  depends_on    = [aws_internet_gateway.this]
}

# Stacks deployed before NAT gateways were counted keep their address: the first EIP is the
# one they had.
moved {
  from = aws_eip.nat
  to   = aws_eip.nat[0]
}

moved {
  from = aws_nat_gateway.this
  to   = aws_nat_gateway.this[0]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
  tags = { Name = "${local.name}-public" }
}

# One route table per private subnet: through the single NAT gateway, or its AZ's own.
resource "aws_route_table" "private" {
  count  = 2
  vpc_id = aws_vpc.this.id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[min(count.index, local.nat_count - 1)].id
  }
  tags = { Name = "${local.name}-private-${count.index}" }
}

moved {
  from = aws_route_table.private
  to   = aws_route_table.private[0]
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table_association" "private" {
  count          = 2
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# The VPC's default security group is never used; with no rules it admits nothing.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${local.name}-default-unused" }
}

# VPC flow logs (accepted and rejected) to CloudWatch Logs.
resource "aws_cloudwatch_log_group" "flow" {
  #checkov:skip=CKV_AWS_338:retention is per environment (deploy.log_retention_days; 365 in production)
  #checkov:skip=CKV_AWS_158:encrypted at rest with the AWS-owned key; credential headers never reach these logs
  name              = "/vpc/${local.name}/flow"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "flow_write" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow" {
  name   = "write-flow-logs"
  role   = data.aws_iam_role.flow.id
  policy = data.aws_iam_policy_document.flow_write.json
}

resource "aws_flow_log" "this" {
  vpc_id          = aws_vpc.this.id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow.arn
  iam_role_arn    = data.aws_iam_role.flow.arn
}
