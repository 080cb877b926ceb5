//! IAM's policy evaluation for one account, small enough to read next to AWS's own description
//! of it, so a test can ask of the policies Terraform rendered: may this identity do this?
//!
//! Why here and not a tool: `parliament` and checkov lint one policy document at a time (a
//! wildcard here, a missing condition there); neither answers a request against an identity
//! policy *and* a permissions boundary *and* their explicit denies. The rules followed are
//! AWS's ("Policy evaluation logic", IAM User Guide):
//!
//! 1. An explicit `Deny` in any applicable policy (identity or boundary) wins.
//! 2. Otherwise the request is allowed only if an identity policy allows it **and**, when the
//!    identity has a permissions boundary, the boundary allows it too (their intersection).
//! 3. Otherwise it is implicitly denied.
//!
//! Statements match on `Action`/`NotAction` (case-insensitive, `*` and `?`), `Resource`/
//! `NotResource` (`*` and `?`), and `Condition`: every operator block and every key in it must
//! hold (AND), any of a key's values may (OR). A key absent from the request makes a positive
//! operator false and a negated one (`StringNotEquals`, `ArnNotLike`, …) true; `…IfExists`
//! holds when the key is absent; `Null` tests presence ("Condition operators", IAM User
//! Guide). Resource-based policies, SCPs and session policies are not modelled: the stack
//! uses none for these identities.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What one identity may do: its identity policies and its permissions boundary, if any.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub policies: Vec<Value>,
    pub boundary: Option<Value>,
}

/// One API call as IAM sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub action: String,
    pub resource: String,
    /// Condition keys present in the request (`iam:PermissionsBoundary`, `aws:ResourceTag/…`).
    pub context: BTreeMap<String, String>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Self {
        Request {
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: BTreeMap::new(),
        }
    }

    /// The request with condition key `key` set to `value`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.context
            .insert(key.to_ascii_lowercase(), value.to_owned());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

impl Identity {
    /// IAM's decision on `request` for this identity.
    pub fn decide(&self, request: &Request) -> Decision {
        let all = self.policies.iter().chain(self.boundary.iter());
        if all
            .flat_map(statements)
            .any(|s| effect(s) == "Deny" && matches(s, request))
        {
            return Decision::ExplicitDeny;
        }
        let allowed_by = |policy: &Value| {
            statements(policy).any(|s| effect(s) == "Allow" && matches(s, request))
        };
        let identity = self.policies.iter().any(allowed_by);
        let boundary = self.boundary.as_ref().is_none_or(allowed_by);
        if identity && boundary {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

/// The statements of a policy document (a JSON value or a JSON string of one).
fn statements(policy: &Value) -> impl Iterator<Item = &Value> {
    let list = match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    list.into_iter()
}

/// A policy document from Terraform's attribute (a JSON string).
pub fn document(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a policy document ({e}): {json}"))
}

fn effect(statement: &Value) -> &str {
    statement
        .get("Effect")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A policy element that is one string or a list of them (`Action`, `Resource`, a
/// condition's values), as a list.
pub fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn matches(statement: &Value, request: &Request) -> bool {
    let action = |patterns: Vec<&str>| {
        patterns.iter().any(|p| {
            glob(
                &p.to_ascii_lowercase(),
                &request.action.to_ascii_lowercase(),
            )
        })
    };
    let resource = |patterns: Vec<&str>| patterns.iter().any(|p| glob(p, &request.resource));
    let action_ok = match statement.get("NotAction") {
        Some(not) => !action(strings(Some(not))),
        None => action(strings(statement.get("Action"))),
    };
    let resource_ok = match statement.get("NotResource") {
        Some(not) => !resource(strings(Some(not))),
        None => resource(strings(statement.get("Resource"))),
    };
    action_ok && resource_ok && conditions_hold(statement.get("Condition"), request)
}

fn conditions_hold(conditions: Option<&Value>, request: &Request) -> bool {
    let Some(Value::Object(blocks)) = conditions else {
        return true;
    };
    blocks.iter().all(|(operator, keys)| {
        let Value::Object(keys) = keys else {
            return false;
        };
        keys.iter().all(|(key, wanted)| {
            let present = request.context.get(&key.to_ascii_lowercase());
            holds(
                operator,
                present.map(String::as_str),
                &strings(Some(wanted)),
            )
        })
    })
}

/// One condition operator on one key: `present` is the request's value, `wanted` the
/// policy's (any may match).
fn holds(operator: &str, present: Option<&str>, wanted: &[&str]) -> bool {
    if operator == "Null" {
        let absent = present.is_none();
        return wanted.iter().any(|w| (*w == "true") == absent);
    }
    let (operator, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    let negated = operator.contains("Not");
    let Some(value) = present else {
        return if_exists || negated;
    };
    let any = |f: &dyn Fn(&str) -> bool| wanted.iter().any(|w| f(w));
    match operator {
        "StringEquals" | "ArnEquals" => any(&|w| w == value),
        "StringNotEquals" | "ArnNotEquals" => !any(&|w| w == value),
        "StringEqualsIgnoreCase" => any(&|w| w.eq_ignore_ascii_case(value)),
        "StringLike" | "ArnLike" => any(&|w| glob(w, value)),
        "StringNotLike" | "ArnNotLike" => !any(&|w| glob(w, value)),
        "Bool" => any(&|w| w.eq_ignore_ascii_case(value)),
        other => panic!("condition operator {other} is not modelled: add it to testkit::iam"),
    }
}

/// IAM's wildcards: `*` any run of characters, `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `infra/bootstrap` as applied to a local AWS; destroyed when dropped, so a later run can
/// apply it again.
#[derive(Debug)]
pub struct Bootstrap {
    module: PathBuf,
    /// `terraform show -json` of its state.
    pub state: Value,
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let destroy = ["destroy", "-input=false", "-no-color", "-auto-approve"];
        let _ = Command::new("terraform")
            .current_dir(&self.module)
            .args(destroy)
            .output();
    }
}

/// `infra/bootstrap` applied to the local AWS at `endpoint` (moto), in a copy under `work`, for
/// `environments` in one account and the given state buckets. Terraform's override file
/// points the provider at moto; nothing else differs from what an administrator applies.
/// Panics on failure (for tests); [`try_apply_bootstrap`] says why instead.
pub fn apply_bootstrap(
    root: &Path,
    work: &Path,
    endpoint: &str,
    environments: &[&str],
    state_bucket_arns: &[&str],
) -> Bootstrap {
    try_apply_bootstrap(root, work, endpoint, environments, state_bucket_arns)
        .unwrap_or_else(|e| panic!("the bootstrap: {e:#}"))
}

/// [`apply_bootstrap`], failing with why.
pub fn try_apply_bootstrap(
    root: &Path,
    work: &Path,
    endpoint: &str,
    environments: &[&str],
    state_bucket_arns: &[&str],
) -> anyhow::Result<Bootstrap> {
    use anyhow::Context;
    let module = work.join("infra/bootstrap");
    let workflows = work.join(".github/workflows");
    for dir in [&module, &workflows] {
        std::fs::create_dir_all(dir).context("a work folder")?;
    }
    std::fs::copy(root.join("infra/bootstrap/main.tf"), module.join("main.tf"))?;
    std::fs::copy(
        root.join(".github/workflows/deploy.yml"),
        workflows.join("deploy.yml"),
    )?;
    std::fs::write(
        module.join("moto_override.tf"),
        format!(
            r#"provider "aws" {{
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {{
    iam = "{endpoint}"
    sts = "{endpoint}"
    s3  = "{endpoint}"
  }}
}}
"#
        ),
    )?;
    let vars = serde_json::json!({
        "github_repository": "tollgate/tollgate",
        "environments": environments,
        "state_bucket_arns": state_bucket_arns,
    });
    std::fs::write(module.join("terraform.tfvars.json"), vars.to_string())?;
    let mut init = vec!["init", "-input=false", "-no-color"];
    let mirror = "-plugin-dir=/opt/tf-plugins";
    if Path::new("/opt/tf-plugins").is_dir() {
        init.push(mirror);
    }
    terraform(&module, &init)?;
    terraform(
        &module,
        &["apply", "-input=false", "-no-color", "-auto-approve"],
    )?;
    let shown = terraform(&module, &["show", "-json"])?;
    let state = serde_json::from_slice(&shown).context("terraform show -json")?;
    Ok(Bootstrap { module, state })
}

fn terraform(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("terraform")
        .current_dir(dir)
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .map_err(|e| {
            anyhow::anyhow!("terraform is needed (1.11+; https://developer.hashicorp.com/terraform/install): {e}")
        })?;
    if !out.status.success() {
        anyhow::bail!(
            "terraform {args:?} failed in {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// The managed resources of a `terraform show -json` state (root module), by address.
pub fn resources(state: &Value) -> BTreeMap<String, Value> {
    state["values"]["root_module"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["mode"] == "managed")
        .map(|r| {
            (
                r["address"].as_str().unwrap_or("").to_owned(),
                r["values"].clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(policy: Value, boundary: Option<Value>) -> Identity {
        Identity {
            name: "test".into(),
            policies: vec![policy],
            boundary,
        }
    }

    #[test]
    fn wildcards_match_as_iam_documents_them() {
        assert!(glob("iam:Put*", "iam:PutRolePolicy"));
        assert!(glob(
            "arn:aws:iam::1:role/tollgate-staging-*",
            "arn:aws:iam::1:role/tollgate-staging-api"
        ));
        assert!(!glob(
            "arn:aws:iam::1:role/tollgate-staging-*",
            "arn:aws:iam::1:role/tollgate-production-api"
        ));
        assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
        assert!(glob("*", "") && !glob("a", ""));
    }

    #[test]
    fn an_explicit_deny_wins_over_any_allow() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:AttachRolePolicy", "Resource": "arn:aws:iam::1:role/self"},
        ]});
        let who = identity(policy, None);
        assert_eq!(
            who.decide(&Request::new(
                "iam:AttachRolePolicy",
                "arn:aws:iam::1:role/self"
            )),
            Decision::ExplicitDeny
        );
        assert_eq!(
            who.decide(&Request::new(
                "iam:AttachRolePolicy",
                "arn:aws:iam::1:role/other"
            )),
            Decision::Allow
        );
        assert_eq!(
            who.decide(&Request::new("s3:GetObject", "*")),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn a_boundary_intersects_with_the_identity_policy() {
        let policy = json!({"Statement": {"Effect": "Allow", "Action": ["sqs:*", "iam:*"], "Resource": "*"}});
        let boundary =
            json!({"Statement": {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}});
        let who = identity(policy, Some(boundary));
        assert_eq!(
            who.decide(&Request::new("sqs:SendMessage", "q")),
            Decision::Allow
        );
        assert_eq!(
            who.decide(&Request::new("iam:CreateRole", "r")),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn absent_keys_fail_positive_operators_and_pass_negated_ones() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:CreateRole", "Resource": "*",
             "Condition": {"StringEquals": {"iam:PermissionsBoundary": "b"}}},
            {"Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"StringNotEquals": {"aws:ResourceTag/tollgate:env": "staging"},
                           "Null": {"aws:ResourceTag/tollgate:env": "false"}}},
        ]});
        let who = identity(policy, None);
        let create = Request::new("iam:CreateRole", "r");
        assert_eq!(
            who.decide(&create),
            Decision::ImplicitDeny,
            "no boundary named"
        );
        let create = create.with("iam:PermissionsBoundary", "b");
        assert_eq!(
            who.decide(&create),
            Decision::Allow,
            "untagged: the deny's Null fails"
        );
        let tagged = create
            .clone()
            .with("aws:ResourceTag/tollgate:env", "production");
        assert_eq!(who.decide(&tagged), Decision::ExplicitDeny);
        let own = create.with("aws:ResourceTag/tollgate:env", "staging");
        assert_eq!(who.decide(&own), Decision::Allow);
    }

    #[test]
    fn not_action_and_if_exists_behave() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*",
             "Condition": {"StringEqualsIfExists": {"aws:RequestedRegion": "ap-northeast-1"}}},
        ]});
        let who = identity(policy, None);
        assert_eq!(
            who.decide(&Request::new("sqs:SendMessage", "q")),
            Decision::Allow
        );
        assert_eq!(
            who.decide(&Request::new("iam:GetRole", "r")),
            Decision::ImplicitDeny
        );
        let elsewhere =
            Request::new("sqs:SendMessage", "q").with("aws:RequestedRegion", "us-east-1");
        assert_eq!(who.decide(&elsewhere), Decision::ImplicitDeny);
    }
}
