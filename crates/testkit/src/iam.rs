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
//! holds when the key is absent; `Null` tests presence; `ForAllValues:`/`ForAnyValue:` compare
//! a multi-valued key's every or any value ("Condition operators", "Multivalued context keys",
//! IAM User Guide; `ForAllValues` holds for an absent key, which is why the bootstrap pairs it
//! with `Null`).
//!
//! Across accounts ("Cross-account policy evaluation logic"): when the identity's account
//! (from its ARN) is not the resource's, the request is allowed only if the identity's side
//! allows it **and** the resource's own policy names the identity, its account or `*`. A
//! resource without a policy, or a service without resource policies, grants nothing to
//! another account. SCPs and session policies are not modelled: the stack uses none.

pub mod catalogue;

// The bootstrap and the state reader live where the deploy path reads them too.
pub use opskit::bootstrap::{
    Account, Bootstrap, GITHUB_REPOSITORY, apply_bootstrap, try_apply_bootstrap,
};
pub use opskit::state::resources;

use std::collections::BTreeMap;

use serde_json::Value;

/// What one identity may do: its identity policies and its permissions boundary, if any.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub policies: Vec<Value>,
    pub boundary: Option<Value>,
    /// The identity's ARN (`arn:aws:iam::<account>:role/<name>`): its account decides whether a
    /// request crosses accounts. `None`: every resource is the identity's own account's.
    pub arn: Option<String>,
}

/// One API call as IAM sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub action: String,
    pub resource: String,
    /// Condition keys present in the request (`iam:PermissionsBoundary`, `aws:ResourceTag/…`),
    /// each with its values (one for a single-valued key).
    pub context: BTreeMap<String, Vec<String>>,
    /// The resource's account, where its ARN does not say (an S3 bucket's).
    pub resource_account: Option<String>,
    /// The resource's own policy (a bucket, queue, function or secret policy), if any.
    pub resource_policy: Option<Value>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Self {
        Request {
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: BTreeMap::new(),
            resource_account: None,
            resource_policy: None,
        }
    }

    /// The request with condition key `key` set to `value`.
    pub fn with(self, key: &str, value: &str) -> Self {
        self.with_values(key, &[value])
    }

    /// The request with the multi-valued condition key `key` set to `values`.
    pub fn with_values(mut self, key: &str, values: &[&str]) -> Self {
        self.context.insert(
            key.to_ascii_lowercase(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        );
        self
    }

    /// The request on a resource of `account` whose own policy is `policy` (if any).
    pub fn in_account(mut self, account: &str, policy: Option<Value>) -> Self {
        self.resource_account = Some(account.to_owned());
        self.resource_policy = policy;
        self
    }

    /// The resource's account: as set, or the ARN's fifth field.
    fn account(&self) -> Option<&str> {
        self.resource_account
            .as_deref()
            .or_else(|| self.resource.split(':').nth(4).filter(|a| !a.is_empty()))
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
        let grants = |policy: &Value| {
            statements(policy).any(|s| effect(s) == "Allow" && matches(s, request))
        };
        let identity = self.policies.iter().any(grants);
        let boundary = self.boundary.as_ref().is_none_or(grants);
        if !(identity && boundary) {
            return Decision::ImplicitDeny;
        }
        let own = self.arn.as_deref().and_then(|a| a.split(':').nth(4));
        match (own, request.account()) {
            (Some(own), Some(theirs)) if own != theirs => self.granted_by_resource(request),
            _ => Decision::Allow,
        }
    }

    /// The identity policy's statement that allows `request` (for a report), if any.
    pub fn allowed_by(&self, request: &Request) -> Option<&Value> {
        self.policies
            .iter()
            .flat_map(statements)
            .find(|s| effect(s) == "Allow" && matches(s, request))
    }

    /// Across accounts: the resource's policy must name this identity (an explicit deny there
    /// wins too).
    fn granted_by_resource(&self, request: &Request) -> Decision {
        let Some(policy) = &request.resource_policy else {
            return Decision::ImplicitDeny;
        };
        let arn = self.arn.as_deref().unwrap_or_default();
        let names_me = |s: &Value| principal_matches(s.get("Principal"), arn);
        if statements(policy)
            .any(|s| effect(s) == "Deny" && names_me(s) && matches_on_resource(s, request))
        {
            return Decision::ExplicitDeny;
        }
        if statements(policy)
            .any(|s| effect(s) == "Allow" && names_me(s) && matches_on_resource(s, request))
        {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

/// Whether a role's trust policy admits `request` (`sts:AssumeRole…` with the caller's claims
/// as its context): an `Allow` statement whose action and conditions hold, and no `Deny`. The
/// principal is the one the statement names (GitHub's OIDC provider, a service).
pub fn trust_admits(trust: &Value, request: &Request) -> bool {
    let holds = |s: &Value| matches_on_resource(s, request);
    !statements(trust).any(|s| effect(s) == "Deny" && holds(s))
        && statements(trust).any(|s| effect(s) == "Allow" && holds(s))
}

/// Whether a resource policy's `Principal` names the role `arn`: `*`, `{"AWS": "*"}`, the
/// role's ARN, its account's root or its account id. A `Service` or `Federated` principal
/// names no role.
fn principal_matches(principal: Option<&Value>, arn: &str) -> bool {
    let account = arn.split(':').nth(4).unwrap_or_default();
    let root = format!("arn:aws:iam::{account}:root");
    let names = |value: Option<&Value>| {
        strings(value)
            .iter()
            .any(|p| *p == "*" || *p == arn || *p == root || *p == account)
    };
    match principal {
        Some(Value::String(all)) => all == "*",
        Some(Value::Object(by_kind)) => names(by_kind.get("AWS")),
        _ => false,
    }
}

/// A resource policy's statement on `request`: its action, resource (a statement without
/// `Resource` applies to the resource holding it) and conditions.
fn matches_on_resource(statement: &Value, request: &Request) -> bool {
    if statement.get("Resource").is_none() && statement.get("NotResource").is_none() {
        let mut with_resource = statement.clone();
        with_resource["Resource"] = Value::String("*".into());
        return matches(&with_resource, request);
    }
    matches(statement, request)
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
            holds(operator, present.map(Vec::as_slice), &strings(Some(wanted)))
        })
    })
}

/// One condition operator on one key: `present` is the request's values (one for a
/// single-valued key), `wanted` the policy's (any may match).
fn holds(operator: &str, present: Option<&[String]>, wanted: &[&str]) -> bool {
    if operator == "Null" {
        let absent = present.is_none_or(<[String]>::is_empty);
        return wanted.iter().any(|w| (*w == "true") == absent);
    }
    if let Some(base) = operator.strip_prefix("ForAllValues:") {
        // Every value of the request's set matches one of the policy's; an absent key or an
        // empty set holds (IAM User Guide: use it with `Null`).
        return present
            .unwrap_or_default()
            .iter()
            .all(|v| single(base, Some(v), wanted));
    }
    if let Some(base) = operator.strip_prefix("ForAnyValue:") {
        return present
            .unwrap_or_default()
            .iter()
            .any(|v| single(base, Some(v), wanted));
    }
    match present {
        None => single(operator, None, wanted),
        Some(values) => values.iter().any(|v| single(operator, Some(v), wanted)),
    }
}

/// One operator on one value of a key (`None`: the key is absent).
fn single(operator: &str, present: Option<&String>, wanted: &[&str]) -> bool {
    let (operator, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    let negated = operator.contains("Not");
    let Some(value) = present.map(String::as_str) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(policy: Value, boundary: Option<Value>) -> Identity {
        Identity {
            name: "test".into(),
            policies: vec![policy],
            boundary,
            arn: None,
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

    #[test]
    fn for_all_values_needs_null_beside_it_and_for_any_value_one_match() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Action": "acm:RequestCertificate", "Resource": "*",
             "Condition": {"ForAllValues:StringEquals": {"acm:DomainNames": ["api.example.com"]},
                           "Null": {"acm:DomainNames": "false"}}},
            {"Effect": "Allow", "Action": "acm:DescribeCertificate", "Resource": "*",
             "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": ["tollgate:*"]}}},
        ]});
        let who = identity(policy, None);
        let request = |names: &[&str]| {
            Request::new("acm:RequestCertificate", "*").with_values("acm:DomainNames", names)
        };
        assert_eq!(who.decide(&request(&["api.example.com"])), Decision::Allow);
        assert_eq!(
            who.decide(&request(&["api.example.com", "api.other.com"])),
            Decision::ImplicitDeny,
            "one name outside the set"
        );
        assert_eq!(
            who.decide(&Request::new("acm:RequestCertificate", "*")),
            Decision::ImplicitDeny,
            "absent: ForAllValues alone would hold, Null refuses"
        );
        let tags = |keys: &[&str]| {
            Request::new("acm:DescribeCertificate", "*").with_values("aws:TagKeys", keys)
        };
        assert_eq!(who.decide(&tags(&["a", "tollgate:env"])), Decision::Allow);
        assert_eq!(who.decide(&tags(&["a"])), Decision::ImplicitDeny);
    }

    #[test]
    fn another_accounts_resource_needs_its_own_policy_to_name_the_caller() {
        let mut who = identity(
            json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
            None,
        );
        who.arn = Some("arn:aws:iam::111111111111:role/tollgate-staging-github-deploy".into());
        let theirs = "arn:aws:sqs:ap-northeast-1:222222222222:tollgate-production-registrations";
        let send = || Request::new("sqs:SendMessage", theirs);
        assert_eq!(who.decide(&send()), Decision::ImplicitDeny, "no policy");
        let service_only = json!({"Statement": {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                                                "Action": "sqs:SendMessage", "Resource": theirs}});
        assert_eq!(
            who.decide(&send().in_account("222222222222", Some(service_only))),
            Decision::ImplicitDeny,
            "a service principal names no role"
        );
        let account = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": "111111111111"},
                                           "Action": "sqs:*"}});
        assert_eq!(
            who.decide(&send().in_account("222222222222", Some(account))),
            Decision::Allow,
            "the account named, the statement on its own resource"
        );
        let tls_only = json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": theirs,
                                            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}});
        assert_eq!(
            who.decide(
                &send()
                    .with("aws:SecureTransport", "true")
                    .in_account("222222222222", Some(tls_only))
            ),
            Decision::ImplicitDeny,
            "a deny-only policy grants nothing"
        );
        let own = Request::new(
            "sqs:SendMessage",
            "arn:aws:sqs:ap-northeast-1:111111111111:q",
        );
        assert_eq!(who.decide(&own), Decision::Allow, "its own account");
        let bucket = Request::new(
            "s3:PutBucketPolicy",
            "arn:aws:s3:::tollgate-state-production",
        )
        .in_account("222222222222", None);
        assert_eq!(
            who.decide(&bucket),
            Decision::ImplicitDeny,
            "a bucket's account is set, not read from its ARN"
        );
    }
}
