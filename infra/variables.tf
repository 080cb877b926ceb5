variable "env" {
  type        = string
  description = "Environment name (local, staging, production); names every resource."
  validation {
    # The longest derived name, the target group `tollgate-<env>-api`, must fit AWS's 32. RDS
    # identifiers and load balancer names end in a letter or digit and never hold "--"
    # (CreateDBInstance, DBInstanceIdentifier; CreateLoadBalancer, Name), and every name here
    # is `tollgate-<env>…`: the same rule as shared-auth's environment names.
    condition     = can(regex("^[a-z]([a-z0-9]|-[a-z0-9]){1,18}$", var.env)) && length(var.env) <= 19
    error_message = "env must start with a lower-case letter, hold lower-case letters, digits and single '-' between them, and end in a letter or digit; 2 to 19 characters (tollgate-<env>-api is a target group name, at most 32)."
  }
}

variable "region" {
  type        = string
  description = "AWS region."
}

variable "aws_endpoint_url" {
  type        = string
  default     = null
  description = "A local AWS endpoint (moto_server) for --env local; null in the cloud."
}

variable "vpc_cidr" {
  type        = string
  default     = "10.20.0.0/16"
  description = "VPC range. Must equal the contract's guard.trusted_proxies (the ALB lives here)."
  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR of /20 or larger."
  }
}

variable "certificate_arn" {
  type        = string
  default     = null
  description = "An issued ACM certificate for domain_name (deploy.certificate_arn). Null: the stack requests one (validated in hosted_zone_id; under a local AWS, unvalidated)."
  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "domain_name" {
  type        = string
  description = "The api's public name (deploy.domain; api.tollgate.local under a local AWS). The HTTPS listener's certificate is for it, and the Lambda calls https://<domain_name>."
  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.domain_name))
    error_message = "domain_name must be a lower-case DNS name such as api.example.com."
  }
}

variable "hosted_zone_id" {
  type        = string
  default     = null
  description = "Route 53 hosted zone of domain_name (deploy.hosted_zone_id). Set: the stack requests the certificate, validates it by DNS there, and points the name at the ALB. Null: certificate_arn is required and the name is pointed at the ALB by hand."
  validation {
    condition     = var.hosted_zone_id == null || can(regex("^[A-Z0-9]{1,32}$", var.hosted_zone_id))
    error_message = "hosted_zone_id must be a Route 53 hosted zone id (upper-case letters and digits, no /hostedzone/ prefix)."
  }
}

variable "alb_idle_timeout_s" {
  type        = number
  description = "The ALB's idle timeout in seconds (deploy.alb_idle_timeout_s), 1–4000. The api's keep-alive (api.keep_alive_idle_s) is longer, which xtask checks."
  validation {
    condition     = var.alb_idle_timeout_s >= 1 && var.alb_idle_timeout_s <= 4000
    error_message = "alb_idle_timeout_s must be 1 to 4000 seconds."
  }
}

variable "db_instance_class" {
  type        = string
  default     = "db.t4g.micro"
  description = "RDS instance class for PostgreSQL."
  validation {
    condition     = can(regex("^db\\.", var.db_instance_class))
    error_message = "db_instance_class must look like db.t4g.micro."
  }
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Protect the database (and ALB) from deletion. Switch off only for throwaway environments."
}

variable "lambda_architecture" {
  type        = string
  default     = "arm64"
  description = "Lambda architecture: arm64 or x86_64 (must match the built bootstrap.zip)."
  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "lambda_zip" {
  type        = string
  description = "Path of the post-confirm bootstrap.zip built by `cargo xtask package`."
}

variable "lambda_timeout_s" {
  type        = number
  default     = 60
  description = "The sign-up function's timeout (deploy.lambda_timeout_s). Cognito still waits 5 s for the trigger, which hands off to the queue within lambda.trigger_budget_ms; draining the queue and sweeping take longer."
  validation {
    condition     = var.lambda_timeout_s >= 10 && var.lambda_timeout_s <= 900
    error_message = "lambda_timeout_s must be 10 to 900 seconds."
  }
}

variable "retry_max_receives" {
  type        = number
  default     = 5
  description = "Receives of a queued registration before the retry queue's redrive policy moves it to the dead-letter queue (deploy.retry_max_receives)."
  validation {
    condition     = var.retry_max_receives >= 1 && var.retry_max_receives <= 1000
    error_message = "retry_max_receives must be 1 to 1000."
  }
}

variable "sweep_every_minutes" {
  type        = number
  default     = 60
  description = "Minutes between the scheduled sweeps that register confirmed users the database lacks (deploy.sweep_every_minutes)."
  validation {
    condition     = var.sweep_every_minutes >= 1 && var.sweep_every_minutes <= 1440
    error_message = "sweep_every_minutes must be 1 to 1440."
  }
}

variable "heartbeat_every_minutes" {
  type        = number
  default     = 5
  description = "Minutes between heartbeats: a synthetic sign-up through the whole path (deploy.heartbeat_every_minutes)."
  validation {
    condition     = var.heartbeat_every_minutes >= 1 && var.heartbeat_every_minutes <= 60
    error_message = "heartbeat_every_minutes must be 1 to 60: its alarm reads one period per heartbeat."
  }
}

variable "heartbeat_latency_alarm_ms" {
  type        = number
  default     = 5000
  description = "A heartbeat slower than this, sign-up to row read in milliseconds, raises the latency alarm (deploy.heartbeat_latency_alarm_ms)."
}

variable "sweep_window_s" {
  type        = number
  default     = 7200
  description = "How far back each scheduled sweep looks for confirmed users (lambda.sweep_window_s); longer than the interval, so sweeps overlap."
}

variable "alarm_topic_arn" {
  type        = string
  default     = null
  description = "An SNS topic the alarms notify (deploy.alarm_topic_arn); null: the alarms are only in CloudWatch."
  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN."
  }
}

variable "refusal_alarm_threshold" {
  type        = number
  default     = 100
  description = "Refusals of the guarded route in 5 minutes that raise the refusal alarm (deploy.refusal_alarm_threshold)."
}

variable "api_task_memory_mib" {
  type        = number
  default     = 512
  description = "The api task's memory in MiB, rendered from shared-auth's capacity table: api.max_connections × api.max_header_bytes is checked against it."
}

variable "api_image" {
  type        = string
  description = "The api's container image by digest (registry/repository@sha256:…), pushed by cargo xtask deploy. A tag is refused: every deploy of new code must roll the service, and an unchanged image must change nothing."
  validation {
    condition     = can(regex("^[^/@\\s]+/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$", var.api_image))
    error_message = "api_image must name the image by digest: <registry>/<repository>@sha256:<64 hex>."
  }
}

variable "api_architecture" {
  type        = string
  default     = "arm64"
  description = "CPU of the api task; the image is built for it (deploy.api_architecture)."
  validation {
    condition     = contains(["arm64", "x86_64"], var.api_architecture)
    error_message = "api_architecture must be arm64 or x86_64."
  }
}

variable "api_port" {
  type        = number
  default     = 8080
  description = "Port the api listens on in its container (the contract's api.listen port)."
}

variable "guard_secret_name" {
  type        = string
  description = "Secrets Manager name of the guard secret (the contract's guard.secret_id)."
}

variable "guard_path" {
  type        = string
  default     = "/user"
  description = "The guarded route's path (the contract's guard.path); WAF blocks it from other sources."
  validation {
    condition     = can(regex("^/[a-z0-9/_-]*$", var.guard_path))
    error_message = "guard_path must be a lower-case absolute path."
  }
}

variable "extra_allowed_cidrs" {
  type        = list(string)
  default     = []
  description = "Sources allowed besides the NAT gateway's Elastic IP (the contract's allowed_cidrs)."
  validation {
    condition     = alltrue([for c in var.extra_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "extra_allowed_cidrs must be CIDR blocks."
  }
}

variable "contract_env" {
  type        = map(string)
  description = "The shared contract as TOLLGATE__GUARD__* variables, rendered by xtask; both the Lambda and the task get exactly these (plus the allowlist with the NAT EIP)."
}

variable "lambda_env" {
  type        = map(string)
  default     = {}
  description = "Lambda-only variables rendered by xtask (TOLLGATE__LAMBDA__*, TOLLGATE__AWS__*)."
}

variable "api_env" {
  type        = map(string)
  default     = {}
  description = "Task-only variables rendered by xtask (TOLLGATE__API__*, TOLLGATE__AWS__*)."
}

variable "app_rate_limit" {
  type        = number
  default     = 2000
  description = "WAF rate limit for app traffic (every path but the guarded one), requests per 5 minutes per client address. The guarded path is never rate-limited: every sign-up leaves through the one NAT address."
  validation {
    condition     = var.app_rate_limit >= 10 && var.app_rate_limit <= 2000000000 && floor(var.app_rate_limit) == var.app_rate_limit
    error_message = "app_rate_limit must be a whole number from 10 to 2,000,000,000 (WAF's range for rate-based rules)."
  }
}

variable "log_retention_days" {
  type        = number
  default     = 30
  description = "CloudWatch log retention (api, Lambda, WAF, VPC flow logs, RDS) and ALB access-log expiry, in days."
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, … 3653)."
  }
}

variable "api_min_count" {
  type        = number
  default     = 2
  description = "Fewest api tasks autoscaling keeps (one per AZ for availability)."
}

variable "api_max_count" {
  type        = number
  default     = 6
  description = "Most api tasks autoscaling starts."
  validation {
    condition     = var.api_max_count >= var.api_min_count && var.api_min_count >= 1
    error_message = "api_max_count must be at least api_min_count, which must be at least 1."
  }
}

variable "deployment_maximum_percent" {
  type        = number
  default     = 200
  description = "How many api tasks, in percent of the running count, ECS may run during a deployment (deploy.deployment_maximum_percent; ECS's default is 200). Every one opens its pool: the contract's connection budget counts api_max_count × this."
  validation {
    condition     = var.deployment_maximum_percent >= 100 && var.deployment_maximum_percent <= 200 && floor(var.deployment_maximum_percent) == var.deployment_maximum_percent
    error_message = "deployment_maximum_percent must be a whole number from 100 to 200."
  }
}

variable "drain_maximum_concurrency" {
  type        = number
  default     = 5
  description = "Most concurrent invocations of the sign-up function the retry queue's event source mapping starts (2 to 1000). The PostConfirmation trigger shares the function's concurrency: an unbounded drain after an outage could take it all and make Cognito fail sign-ups."
  validation {
    condition     = var.drain_maximum_concurrency >= 2 && var.drain_maximum_concurrency <= 1000 && floor(var.drain_maximum_concurrency) == var.drain_maximum_concurrency
    error_message = "drain_maximum_concurrency must be a whole number from 2 to 1000 (SQS event source mappings' ScalingConfig)."
  }
}

variable "db_multi_az" {
  type        = bool
  default     = false
  description = "RDS Multi-AZ: a synchronous standby in the other AZ, failed over to automatically."
}

variable "ses_source_arn" {
  type        = string
  default     = null
  description = "SES identity ARN the user pool sends its email from; null keeps Cognito's built-in sender (low daily quota)."
}

variable "ses_from_address" {
  type        = string
  default     = null
  description = "From address for SES email (an address of the verified identity); used with ses_source_arn."
}

variable "credential_headers" {
  type        = list(string)
  description = "Request headers that carry credentials (the contract's static and signature headers, authorization, cookie), lower case: redacted in WAF logs."
  validation {
    condition     = length(var.credential_headers) > 0 && alltrue([for h in var.credential_headers : h == lower(h)])
    error_message = "credential_headers must be non-empty and lower case."
  }
}

variable "waf_managed_rules" {
  type        = string
  default     = "count"
  description = "AWS managed rule groups (common, known bad inputs, IP reputation) on app traffic: count (observe) or enforce (block)."
  validation {
    condition     = contains(["count", "enforce"], var.waf_managed_rules)
    error_message = "waf_managed_rules must be count or enforce."
  }
}

variable "rotation_zip" {
  type        = string
  description = "Path of the rotate-secret function's zip built by `cargo xtask package` (next to lambda_zip)."
}

variable "rotation_env" {
  type        = map(string)
  default     = {}
  description = "The rotation function's own TOLLGATE__… variables (the Lambda's, plus the api's refresh interval), rendered by xtask."
}

variable "rotation_timeout_s" {
  type        = number
  default     = 240
  description = "The rotation function's timeout: longer than one step may wait (three api refresh intervals plus 30 s)."
  validation {
    condition     = var.rotation_timeout_s >= 30 && var.rotation_timeout_s <= 900
    error_message = "rotation_timeout_s must be 30 to 900 seconds (Lambda's limit)."
  }
}

variable "secret_rotation_days" {
  type        = number
  default     = 30
  description = "Days between scheduled rotations of the guard secret; 0 attaches no schedule (local: moto cannot invoke a function)."
  validation {
    condition     = var.secret_rotation_days >= 0 && var.secret_rotation_days <= 1000 && floor(var.secret_rotation_days) == var.secret_rotation_days
    error_message = "secret_rotation_days must be a whole number from 0 to 1000."
  }
}

variable "name_points_at_alb" {
  type        = bool
  default     = false
  description = "Without hosted_zone_id only: whether domain_name already resolves to this stack's ALB (xtask looks before it plans). Attaching the rotation schedule runs the function's testSecret, which calls https://<domain_name>, so without a zone the schedule attaches on the deploy after the name is pointed at the ALB; with a zone, after the stack's own alias record."
}

variable "guard_mode" {
  type        = string
  default     = "hmac"
  description = "The contract's guard.mode. hmac: WAF requires well-formed timestamp and signature headers on the guarded route. static: WAF requires an accepted x-custom-auth value, through the rule group xtask and the rotation function keep (never in this state)."
  validation {
    condition     = contains(["hmac", "static"], var.guard_mode)
    error_message = "guard_mode must be hmac or static."
  }
}

variable "guard_timestamp_header" {
  type        = string
  default     = "webhook-timestamp"
  description = "The contract's guard.timestamp_header (hmac mode), lower case."
  validation {
    condition     = var.guard_timestamp_header == lower(var.guard_timestamp_header)
    error_message = "guard_timestamp_header must be lower case."
  }
}

variable "guard_signature_header" {
  type        = string
  default     = "webhook-signature"
  description = "The contract's guard.signature_header (hmac mode), lower case."
  validation {
    condition     = var.guard_signature_header == lower(var.guard_signature_header)
    error_message = "guard_signature_header must be lower case."
  }
}

variable "nat_gateways" {
  type        = string
  default     = "single"
  description = "single: one NAT gateway, one Elastic IP, in the first AZ (a single point of failure for the private subnets' way out). per-az: one per AZ, every Elastic IP in the allowlist."
  validation {
    condition     = contains(["single", "per-az"], var.nat_gateways)
    error_message = "nat_gateways must be single or per-az."
  }
}

variable "db_app_secret_name" {
  type        = string
  description = "Secrets Manager name of the api's serving credentials (tollgate-<env>/db-app), rendered by xtask, which writes its first version before any task starts."
}

variable "db_app_username" {
  type        = string
  default     = "tollgate_api"
  description = "The api's PostgreSQL login (a member of tollgate_app)."
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.db_app_username))
    error_message = "db_app_username must be a lower-case PostgreSQL identifier."
  }
}

variable "final_snapshot_suffix" {
  type        = string
  default     = ""
  description = "Appended to the final snapshot's name (tollgate-<env>-final<suffix>): `cargo xtask destroy` gives each destroy its own (a UTC time), so a second destroy never meets the first one's snapshot."
  validation {
    condition     = can(regex("^(-[a-z0-9-]{1,40})?$", var.final_snapshot_suffix))
    error_message = "final_snapshot_suffix must be empty or a dash followed by lower-case letters, digits and dashes."
  }
}

variable "final_snapshot" {
  type        = bool
  default     = null
  description = "Take a final database snapshot when the instance is deleted; null follows deletion_protection. `cargo xtask destroy` of a protected environment lifts the protection but keeps the snapshot."
}
