# The roles the stack's services assume are made once per account by infra/bootstrap, with the
# trust policy naming each one's service and the permissions boundary attached; a deploy cannot
# create, re-trust or delete a role (infra/bootstrap/README.md). The stack reads them by name
# and writes their inline policies (the *.tf file of each service).

data "aws_iam_role" "api_execution" {
  name = "${local.name}-api-execution"
}

data "aws_iam_role" "api_task" {
  name = "${local.name}-api-task"
}

data "aws_iam_role" "migrate" {
  name = "${local.name}-migrate"
}

data "aws_iam_role" "post_confirm" {
  name = "${local.name}-post-confirm"
}

data "aws_iam_role" "rotation" {
  name = "${local.name}-rotate-secret"
}

data "aws_iam_role" "sweep_schedule" {
  name = "${local.name}-sweep-schedule"
}

data "aws_iam_role" "flow" {
  name = "${local.name}-vpc-flow-logs"
}
