variable "name" {
  type        = string
  description = "Prefix of every name this module gives (e.g. tollgate-staging-registration): the IP set, the rule group and its metrics."
  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,100}$", var.name))
    error_message = "name must be 1 to 100 letters, digits or hyphens (WAF names)."
  }
}

variable "path" {
  type        = string
  description = "The guarded route's path, as the backend's contract names it (guard.path). WAF compares it decoded, normalised and lower-cased."
  validation {
    condition     = can(regex("^/[a-z0-9/_-]*$", var.path))
    error_message = "path must be a lower-case absolute path."
  }
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "Every source allowed to reach the route: the sender's fixed egress addresses (e.g. NAT gateways' Elastic IPs as /32) and any extra range the contract allows. IPv4 entries go into the WAF IP set."
  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs must be a non-empty list of CIDR ranges."
  }
}

variable "mode" {
  type        = string
  description = "The contract's guard.mode. hmac: Standard Webhooks signatures, WAF checks the headers' shape. static: a shared header value, which WAF checks through a rule group kept outside Terraform (static_rule_group_name)."
  validation {
    condition     = contains(["hmac", "static"], var.mode)
    error_message = "mode must be hmac or static."
  }
}

variable "timestamp_header" {
  type        = string
  default     = "webhook-timestamp"
  description = "hmac mode: the timestamp header (the contract's guard.timestamp_header), lower case."
  validation {
    condition     = var.timestamp_header == lower(var.timestamp_header)
    error_message = "timestamp_header must be lower case."
  }
}

variable "signature_header" {
  type        = string
  default     = "webhook-signature"
  description = "hmac mode: the signature header (the contract's guard.signature_header), lower case."
  validation {
    condition     = var.signature_header == lower(var.signature_header)
    error_message = "signature_header must be lower case."
  }
}

variable "static_rule_group_name" {
  type        = string
  default     = null
  description = "static mode: name of the WAF rule group holding the accepted header values, created and kept through the WAF API (cargo xtask deploy, the rotation function) so no value enters Terraform state. Read by name only."
}

variable "secret_name" {
  type        = string
  description = "Secrets Manager name of the route's key (the contract's guard.secret_id). This module makes the secret's shell only: no value ever enters Terraform state."
}

variable "secret_description" {
  type        = string
  default     = "The guarded route's key: a Standard Webhooks whsec_ key (hmac) or a shared header value (static). Versions are written outside Terraform."
  description = "Description of the secret."
}

variable "deletion_protection" {
  type        = bool
  description = "Keep a deleted secret recoverable for 30 days (true) or delete it at once (false)."
}

variable "rotation" {
  type = object({
    function_arn  = string
    function_name = string
    role_name     = string
    days          = number
    attach        = bool
  })
  description = <<-EOT
    The function that rotates the key, and when. The module grants its role the four
    rotation actions on this secret alone (and, in static mode, writing the rule group), lets
    Secrets Manager invoke it for this secret alone, and attaches the schedule every `days`
    when `attach` is true. Attaching runs the function's testSecret at once, so set `attach`
    only once the function can reach the route (see ready_after).
  EOT
  validation {
    condition     = var.rotation.days >= 0 && var.rotation.days <= 1000 && floor(var.rotation.days) == var.rotation.days
    error_message = "rotation.days must be a whole number from 0 to 1000 (0 attaches no schedule)."
  }
}

variable "ready_after" {
  type        = list(string)
  default     = []
  description = "Values of what must exist before the schedule attaches (e.g. the backend service's id and the DNS record's name): the schedule waits for every resource they come from."
}
