//! Proof by enumeration that neither environment reaches the other: every action each
//! identity of one environment is granted (its deploy role's policy; a stack role at its
//! worst, `*` under the boundary) expanded over AWS's whole action catalogue, against every
//! resource of the other environment that action can name, as planned (production: its
//! first-deploy plan in its own account) or applied (staging), once with the resource's
//! `tollgate:env` tag and once without, decided by IAM's rules (`testkit::iam`, across
//! accounts: the resource's own policy must name the caller). Account-level targets are in it:
//! the state bucket, the hosted zone, and every action that acts on `*` (an account policy of
//! CloudWatch Logs, ECR's registry policy, schedules' groups), which AWS runs in the caller's
//! account. The count is printed; the first request allowed fails the test with the statement
//! that allowed it. Then one mutation: an image repository policy of production naming
//! staging's account must be found.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use testkit::iam::catalogue::{Action, Catalogue, takes};
use testkit::iam::{Decision, Identity, Request, document, resources};

/// What one side of the enumeration is made of.
pub struct Side<'a> {
    pub env: &'a str,
    /// Its bootstrap's state (`terraform show -json`).
    pub bootstrap: &'a Value,
    /// Its stack: an applied state or a saved plan (`terraform show -json`).
    pub stack: &'a Value,
    /// Its user's values (the state bucket, the zone).
    pub values: &'a [(String, String)],
}

pub struct Isolation<'a> {
    pub staging: Side<'a>,
    pub production: Side<'a>,
}

/// A resource of one environment, as a request of the other names it.
#[derive(Debug, Clone)]
struct Target {
    arn: String,
    account: String,
    policy: Option<Value>,
    tag: Option<String>,
    address: String,
}

/// Resources that have no ARN of their own: a setting or a part of another resource (its
/// ARN is the parent's, which is a target). A type neither here nor with an ARN fails the
/// enumeration, so a new kind of resource is never skipped silently.
const PARTS: &[&str] = &[
    "aws_acm_certificate_validation",
    "aws_appautoscaling_policy",
    "aws_cloudwatch_log_subscription_filter",
    "aws_cognito_user_pool_client",
    "aws_ecs_cluster_capacity_providers",
    "aws_iam_role_policy",
    "aws_lambda_event_source_mapping",
    "aws_lambda_permission",
    "aws_lb_listener_rule",
    "aws_main_route_table_association",
    "aws_route",
    "aws_route53_record",
    "aws_route_table_association",
    "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_logging",
    "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_policy",
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_versioning",
    "aws_secretsmanager_secret_rotation",
    "aws_secretsmanager_secret_version",
    "aws_security_group_rule",
    "aws_sqs_queue_policy",
    "aws_sqs_queue_redrive_allow_policy",
    "aws_sqs_queue_redrive_policy",
    "aws_wafv2_web_acl_association",
    "aws_wafv2_web_acl_logging_configuration",
    "terraform_data",
];

fn account_of(bootstrap: &Value) -> String {
    resources(bootstrap)["aws_iam_role.deploy"]["arn"]
        .as_str()
        .and_then(|arn| arn.split(':').nth(4))
        .expect("the deploy role's ARN names the account")
        .to_owned()
}

fn value(values: &[(String, String)], key: &str) -> String {
    values
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} is supplied"))
}

impl Side<'_> {
    /// The identities of this side whose every grant is enumerated.
    fn identities(&self) -> Vec<Identity> {
        let boot = resources(self.bootstrap);
        let policy =
            |address: &str| document(boot[address]["policy"].as_str().expect("a policy document"));
        let account = account_of(self.bootstrap);
        vec![
            Identity {
                name: format!("{} deploy role", self.env),
                policies: vec![policy("aws_iam_policy.deploy")],
                boundary: None,
                arn: boot["aws_iam_role.deploy"]["arn"]
                    .as_str()
                    .map(str::to_owned),
            },
            Identity {
                name: format!(
                    "{} stack role at its worst (`*` under the boundary)",
                    self.env
                ),
                policies: vec![
                    json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
                ],
                boundary: Some(policy("aws_iam_policy.boundary")),
                arn: Some(format!(
                    "arn:aws:iam::{account}:role/tollgate-{}-api-task",
                    self.env
                )),
            },
        ]
    }

    /// Every resource of this side's stack, its resource policies attached, and the account-
    /// level targets.
    fn targets(&self, twin: Option<&Side<'_>>) -> Result<Vec<Target>, String> {
        let account = account_of(self.bootstrap);
        let applied = twin.map(|t| (stack_model::resources(t.stack), t, account_of(t.bootstrap)));
        // What the plan does not know yet, from the other side's applied counterpart (the
        // same configuration), its account and names swapped.
        let counterpart = |address: &str, key: &str| -> Option<Value> {
            let (state, twin, twin_account) = applied.as_ref()?;
            let found = state.iter().find(|r| r.address == address)?;
            let text = serde_json::to_string(&found.values[key]).ok()?;
            let swapped = text
                .replace(twin_account.as_str(), &account)
                .replace(
                    &format!("tollgate-{}", twin.env),
                    &format!("tollgate-{}", self.env),
                )
                .replace(
                    &format!("tollgate/{}/", twin.env),
                    &format!("tollgate/{}/", self.env),
                );
            serde_json::from_str(&swapped)
                .ok()
                .filter(|v: &Value| !v.is_null())
        };
        let known = |r: &stack_model::Resource, key: &str| -> Option<Value> {
            Some(r.values[key].clone())
                .filter(|v| !v.is_null())
                .or_else(|| counterpart(&r.address, key))
        };
        // The stack's region, from its VPC's ARN.
        let region = stack_model::resources(self.stack)
            .iter()
            .filter(|r| r.kind == "aws_vpc")
            .find_map(|r| match known(r, "arn") {
                Some(Value::String(arn)) => arn.split(':').nth(3).map(str::to_owned),
                _ => None,
            })
            .ok_or("the stack has no VPC whose ARN names its region")?;
        let mut targets = Vec::new();
        let mut policies = Vec::new();
        let mut unplaced = Vec::new();
        for r in stack_model::resources(self.stack) {
            match r.kind.as_str() {
                "aws_sqs_queue_policy" | "aws_s3_bucket_policy" => {
                    if let Some(text) =
                        known(&r, "policy").and_then(|p| p.as_str().map(str::to_owned))
                    {
                        policies.push(document(&text));
                    }
                }
                "aws_lambda_permission" => {
                    let function = known(&r, "function_name");
                    let principal = known(&r, "principal");
                    if let (Some(Value::String(function)), Some(Value::String(principal))) =
                        (function, principal)
                    {
                        let kind = if principal.ends_with(".amazonaws.com") {
                            "Service"
                        } else {
                            "AWS"
                        };
                        policies.push(json!({"Statement": {
                            "Effect": "Allow",
                            "Principal": {kind: principal},
                            "Action": known(&r, "action").unwrap_or(json!("lambda:InvokeFunction")),
                            "Resource": format!("arn:aws:lambda:*:{account}:function:{function}"),
                        }}));
                    }
                }
                _ => {}
            }
            let tag = r.values["tags_all"]["tollgate:env"]
                .as_str()
                .map(str::to_owned);
            let arn = match known(&r, "arn") {
                Some(Value::String(arn)) => Some(arn),
                // A dashboard's ARN is `dashboard_arn`, unknown in a plan; its name is known.
                _ if r.kind == "aws_cloudwatch_dashboard" => match known(&r, "dashboard_name") {
                    Some(Value::String(name)) => {
                        Some(format!("arn:aws:cloudwatch::{account}:dashboard/{name}"))
                    }
                    _ => None,
                },
                _ => match known(&r, "id") {
                    Some(Value::String(id)) => arn_from_id(&r.kind, &id, &region, &account),
                    _ => None,
                },
            };
            match arn {
                Some(arn) => targets.push(Target {
                    arn,
                    account: account.clone(),
                    policy: None,
                    tag,
                    address: r.address.clone(),
                }),
                _ if PARTS.contains(&r.kind.as_str()) => {}
                _ => unplaced.push(format!("{} ({})", r.address, r.kind)),
            }
        }
        if !unplaced.is_empty() {
            return Err(format!(
                "resources without an ARN that are not parts of another: {}",
                unplaced.join(", ")
            ));
        }
        for target in &mut targets {
            let applying: Vec<&Value> = policies
                .iter()
                .filter(|p| names_resource(p, &target.arn))
                .collect();
            if !applying.is_empty() {
                let statements: Vec<Value> = applying
                    .iter()
                    .flat_map(|p| match &p["Statement"] {
                        Value::Array(list) => list.clone(),
                        one => vec![one.clone()],
                    })
                    .collect();
                target.policy = Some(json!({ "Statement": statements }));
            }
        }
        // The account's own: the state bucket (its policy is the administrator's; the
        // bootstrap README asks for none naming another account), the hosted zone (Route 53
        // has no resource policies), and `*` for actions on the account itself.
        let bucket = value(self.values, "TOLLGATE__DEPLOY__STATE_BUCKET");
        let zone = value(self.values, "TOLLGATE__DEPLOY__HOSTED_ZONE_ID");
        for (arn, address) in [
            (format!("arn:aws:s3:::{bucket}"), "the state bucket"),
            (
                format!(
                    "arn:aws:s3:::{bucket}/tollgate/{}/terraform.tfstate",
                    self.env
                ),
                "the state",
            ),
            (
                format!("arn:aws:route53:::hostedzone/{zone}"),
                "the hosted zone",
            ),
            ("*".to_owned(), "the account itself"),
        ] {
            targets.push(Target {
                arn,
                account: account.clone(),
                policy: None,
                tag: None,
                address: address.to_owned(),
            });
        }
        Ok(targets)
    }
}

/// Whether a resource policy's statements name `arn` (their `Resource`).
fn names_resource(policy: &Value, arn: &str) -> bool {
    let statements = match &policy["Statement"] {
        Value::Array(list) => list.iter().collect::<Vec<_>>(),
        one => vec![one],
    };
    statements.iter().any(|s| {
        testkit::iam::strings(s.get("Resource"))
            .iter()
            .any(|p| testkit::iam::glob(p, arn) || testkit::iam::glob(p, &format!("{arn}/x")))
    })
}

/// The ARN AWS gives a resource whose provider exposes none, from its id (Service
/// Authorization Reference, the resource types of ECS and EC2).
fn arn_from_id(kind: &str, id: &str, region: &str, account: &str) -> Option<String> {
    match kind {
        // The provider's id of a service is its ARN.
        "aws_ecs_service" => Some(id.to_owned()).filter(|id| id.starts_with("arn:")),
        "aws_nat_gateway" => Some(format!("arn:aws:ec2:{region}:{account}:natgateway/{id}")),
        _ => None,
    }
}

/// The concrete actions an identity may be allowed: its boundary's allows where it has one
/// (nothing outside them is ever allowed), else its policies'.
fn granted<'c>(catalogue: &'c Catalogue, who: &Identity) -> Vec<&'c Action> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    let granting: Vec<&Value> = match &who.boundary {
        Some(boundary) => vec![boundary],
        None => who.policies.iter().collect(),
    };
    for policy in granting {
        let statements = match &policy["Statement"] {
            Value::Array(list) => list.clone(),
            one => vec![one.clone()],
        };
        for s in statements.iter().filter(|s| s["Effect"] == "Allow") {
            for pattern in testkit::iam::strings(s.get("Action")) {
                for action in catalogue.expand(pattern) {
                    if names.insert(action.name.clone()) {
                        out.push(action);
                    }
                }
            }
        }
    }
    out
}

/// What one direction of the enumeration found.
#[derive(Default)]
struct Tally {
    requests: usize,
    allowed_by_identity: usize,
    allowed: Vec<String>,
}

fn enumerate(catalogue: &Catalogue, who: &Identity, targets: &[Target], tally: &mut Tally) {
    for action in granted(catalogue, who) {
        let named: Vec<&Target> = targets
            .iter()
            .filter(|t| {
                if action.resources.is_empty() {
                    t.arn == "*"
                } else {
                    t.arn != "*" && takes(action, &t.arn)
                }
            })
            .collect();
        for target in named {
            for tagged in [true, false] {
                let mut request = Request::new(&action.name, &target.arn)
                    .in_account(&target.account, target.policy.clone());
                if let (true, Some(tag)) = (tagged, &target.tag) {
                    request = request.with("aws:ResourceTag/tollgate:env", tag);
                }
                tally.requests += 1;
                let same_account = Identity {
                    arn: None,
                    ..who.clone()
                };
                if same_account.decide(&request) == Decision::Allow {
                    tally.allowed_by_identity += 1;
                }
                if who.decide(&request) == Decision::Allow {
                    let statement = who
                        .allowed_by(&request)
                        .map(|s| s.get("Sid").cloned().unwrap_or_else(|| s.clone()))
                        .unwrap_or(Value::Null);
                    tally.allowed.push(format!(
                        "{}: {} on {} ({}{}) allowed by {statement}",
                        who.name,
                        action.name,
                        target.arn,
                        target.address,
                        if tagged { "" } else { ", untagged" }
                    ));
                }
            }
        }
    }
}

impl Isolation<'_> {
    /// Both directions; panics with the first cross-environment request allowed.
    pub fn assert_no_request_crosses(&self) {
        let catalogue = Catalogue::installed().unwrap_or_else(|e| panic!("{e:#}"));
        let mut report = Vec::new();
        for (from, to, twin) in [
            (&self.staging, &self.production, Some(&self.staging)),
            (&self.production, &self.staging, None),
        ] {
            let targets = to
                .targets(twin)
                .unwrap_or_else(|e| panic!("{} : {e}", to.env));
            for who in from.identities() {
                let mut tally = Tally::default();
                enumerate(&catalogue, &who, &targets, &mut tally);
                report.push(format!(
                    "{} → {}'s {} resources: {} requests, {} the identity's policies allow, {} allowed across the accounts",
                    who.name,
                    to.env,
                    targets.len(),
                    tally.requests,
                    tally.allowed_by_identity,
                    tally.allowed.len()
                ));
                assert!(
                    tally.requests > 0 && tally.allowed_by_identity > 0,
                    "an enumeration that asks nothing proves nothing:\n{}",
                    report.join("\n")
                );
                assert!(
                    tally.allowed.is_empty(),
                    "a request crosses environments: {}\n({} in all)\n{}",
                    tally.allowed[0],
                    tally.allowed.len(),
                    report.join("\n")
                );
            }
        }
        println!(
            "isolation ({} actions in AWS's catalogue):\n  {}",
            catalogue.len(),
            report.join("\n  ")
        );
        self.a_policy_naming_the_other_account_is_found(&catalogue);
    }

    /// The enumeration fails when it should: production's image repository with a repository
    /// policy naming staging's account (a policy no deploy role may write:
    /// `ecr:SetRepositoryPolicy` is denied) is reported, since staging's deploy role, which
    /// pushes images in its own account by `ecr:*` on `*`, could then push one production runs.
    fn a_policy_naming_the_other_account_is_found(&self, catalogue: &Catalogue) {
        let staging_account = account_of(self.staging.bootstrap);
        let mut targets = self
            .production
            .targets(Some(&self.staging))
            .expect("targets");
        let repository = targets
            .iter_mut()
            .find(|t| t.address == "aws_ecr_repository.api")
            .expect("production's image repository");
        repository.policy = Some(
            json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": staging_account},
            "Action": "ecr:*", "Resource": repository.arn}}),
        );
        let mut tally = Tally::default();
        enumerate(
            catalogue,
            &self.staging.identities()[0],
            &targets,
            &mut tally,
        );
        assert!(
            tally
                .allowed
                .iter()
                .any(|a| a.contains("ecr:PutImage") && a.contains("tollgate-production-api")),
            "a repository policy naming staging's account went unreported"
        );
        println!(
            "  caught: a repository policy naming staging's account: {} requests allowed",
            tally.allowed.len()
        );
    }
}

/// The account's authorization details as `aws iam get-account-authorization-details` writes
/// them, read from the local AWS at `endpoint` with boto3 (cloudsplaining's own dependency);
/// the AWS managed policies kept only where attached. moto leaves out a managed policy's
/// `PolicyName` and `PolicyId`, which IAM's answer carries: they are filled in from the ARN.
const AUTHORIZATION_DETAILS: &str = r#"
import boto3, hashlib, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
out = {"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": [], "Policies": []}
for page in iam.get_paginator("get_account_authorization_details").paginate():
    for key in out:
        out[key] += page.get(key, [])
attached = {p["PolicyArn"] for r in out["RoleDetailList"] for p in r.get("AttachedManagedPolicies", [])}
out["Policies"] = [p for p in out["Policies"] if p["Arn"] in attached or ":aws:policy/" not in p["Arn"]]
for p in out["Policies"]:
    p.setdefault("PolicyName", p["Arn"].split("/")[-1])
    p.setdefault("PolicyId", "ANPA" + hashlib.sha1(p["Arn"].encode()).hexdigest()[:17].upper())
json.dump(out, open(sys.argv[2], "w"), default=str)
"#;

/// What cloudsplaining reports beside privilege escalation, and why each stays (the deploy
/// role needs the stack's services; the account holds one environment). Also in
/// infra/bootstrap/README.md.
const CLOUDSPLAINING_EXPLAINED: &[(&str, &str)] = &[
    (
        "ServiceWildcard",
        "the deploy role's `ec2:*`, `ecs:*` … on its own account, which holds this environment alone",
    ),
    (
        "InfrastructureModification",
        "writes without resource constraints: creating the stack is the deploy role's job; the runtime roles' are network interfaces and log streams",
    ),
    (
        "CredentialsExposure",
        "ecr:GetAuthorizationToken (pushing and pulling the image) and cognito-idp:GetSigningCertificate (a public certificate, granted by cognito-idp:*)",
    ),
    (
        "ResourceExposure",
        "permissions-management actions the wildcards grant, listed without the explicit denies: those that share with another account are denied (NeverInstancesShellsOrSharing)",
    ),
    (
        "AssumableByComputeServices",
        "the stack roles are assumed by ECS tasks and Lambda: their job",
    ),
];

/// cloudsplaining (an analyser nobody here wrote) over the account's roles and policies as
/// applied at `endpoint`: no privilege-escalation path, no role another account or anyone may
/// assume, each other category explained. Then the same scan with one policy that can escalate
/// (PassRole and a new Lambda function on `*`) must report it.
pub fn assert_cloudsplaining_finds_no_escalation(endpoint: &str, work: &std::path::Path) {
    let tools = testkit::cmd::tool_in("security", "cloudsplaining").expect(
        "cloudsplaining is missing: `cargo xtask setup` installs it (crates/xtask/tools/security.txt)",
    );
    std::fs::create_dir_all(work).expect("a work folder");
    let details = work.join("authorization-details.json");
    let out = std::process::Command::new(tools.with_file_name("python3"))
        .args(["-c", AUTHORIZATION_DETAILS, endpoint])
        .arg(&details)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", testkit::cmd::transcript(&out));
    let scan = |input: &std::path::Path, name: &str| -> Value {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("a folder");
        let out = std::process::Command::new(&tools)
            .args(["scan", "--skip-open-report", "-t", "--input-file"])
            .arg(input)
            .arg("--output")
            .arg(&dir)
            .output()
            .expect("cloudsplaining runs");
        assert!(
            out.status.success(),
            "cloudsplaining ({}):\n{}",
            tools.display(),
            testkit::cmd::transcript(&out)
        );
        let stem = input
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let findings = dir.join(format!("iam-findings-{stem}.json"));
        serde_json::from_str(&std::fs::read_to_string(&findings).expect("the findings file"))
            .expect("JSON")
    };
    let found = scan(&details, "scan");
    let escalating = escalations(&found);
    assert!(
        escalating.is_empty(),
        "cloudsplaining finds privilege escalation: {escalating:?}"
    );
    let mut seen = BTreeSet::new();
    for (_, role) in found["roles"].as_object().into_iter().flatten() {
        for risky in [
            "AssumableByCrossAccountPrincipal",
            "AssumableByAnyPrincipal",
            "AssumableByAnyPrincipalWithConditions",
        ] {
            let findings = &role[risky]["findings"];
            assert!(
                findings.as_array().is_none_or(Vec::is_empty),
                "{} is {risky}: {findings}",
                role["name"]
            );
        }
        if role["AssumableByComputeServices"]["findings"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            seen.insert("AssumableByComputeServices".to_owned());
        }
    }
    for policy in policies(&found) {
        for (category, detail) in policy.as_object().into_iter().flatten() {
            if detail["findings"].as_array().is_some_and(|f| !f.is_empty())
                && category != "PrivilegeEscalation"
            {
                seen.insert(category.clone());
            }
        }
    }
    let unexplained: Vec<&String> = seen
        .iter()
        .filter(|c| !CLOUDSPLAINING_EXPLAINED.iter().any(|(e, _)| e == c))
        .collect();
    assert!(
        unexplained.is_empty(),
        "cloudsplaining reports {unexplained:?}, unexplained"
    );
    println!(
        "cloudsplaining: no privilege escalation, no role assumable from another account; reported and explained: {seen:?}"
    );
    // The scan fails when it should.
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&details).expect("details")).expect("JSON");
    let role = doc["RoleDetailList"][0].as_object_mut().expect("a role");
    role.entry("RolePolicyList")
        .or_insert(json!([]))
        .as_array_mut()
        .expect("a list")
        .push(json!({"PolicyName": "escalates", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iam:PassRole", "lambda:CreateFunction", "lambda:InvokeFunction"], "Resource": "*"}]}}));
    let mutated = work.join("escalating.json");
    std::fs::write(&mutated, doc.to_string()).expect("write");
    let caught = escalations(&scan(&mutated, "mutated"));
    assert!(
        !caught.is_empty(),
        "cloudsplaining missed PassRole with a new function on *"
    );
    println!("  caught: a role policy with PassRole and a new function on *: {caught:?}");
}

/// Every policy the findings file describes (managed and inline).
fn policies(found: &Value) -> Vec<&Value> {
    [
        "aws_managed_policies",
        "customer_managed_policies",
        "inline_policies",
    ]
    .iter()
    .flat_map(|k| found[*k].as_object().into_iter().flatten().map(|(_, v)| v))
    .collect()
}

fn escalations(found: &Value) -> Vec<String> {
    policies(found)
        .iter()
        .flat_map(|p| {
            p["PrivilegeEscalation"]["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| format!("{}: {}", p["PolicyName"], f["type"]))
        })
        .collect()
}
