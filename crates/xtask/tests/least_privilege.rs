//! What the deploy roles can and cannot do, read from the policies `infra/bootstrap` renders
//! (applied to a moto of this test's own, `terraform show -json`), decided by IAM's evaluation
//! rules (`testkit::iam`). Both environments in one account: the harder case. The stack's own
//! roles (api task, migration, sign-up function, rotation) are judged in `deploy.rs`, on the
//! staging stack as applied.

use std::path::Path;

use serde_json::Value;
use testkit::iam::{Decision, Identity, Request, apply_bootstrap, document, resources};
use testkit::services::Moto;

const ACCOUNT: &str = "123456789012"; // moto's
const STATE_BUCKET: &str = "arn:aws:s3:::tollgate-terraform-state";

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

fn boundary(env: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:policy/tollgate-{env}-boundary")
}

/// The deploy role of `env` as bootstrap made it: its attached policies, no boundary.
fn deploy_role(all: &std::collections::BTreeMap<String, Value>, env: &str) -> Identity {
    let role = &all[&format!("aws_iam_role.deploy[\"{env}\"]")];
    assert_eq!(role["name"], format!("tollgate-{env}-github-deploy"));
    assert!(
        all[&format!("aws_iam_role_policy_attachment.deploy[\"{env}\"]")]["policy_arn"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&format!("policy/tollgate-{env}-deploy"))),
        "the deploy policy is attached to the deploy role"
    );
    let managed = all
        .iter()
        .filter(|(address, _)| address.starts_with("aws_iam_role_policy_attachment."))
        .filter(|(_, a)| a["role"] == role["name"])
        .map(|(_, a)| a["policy_arn"].as_str().unwrap_or("").to_owned())
        .collect::<Vec<_>>();
    assert_eq!(
        managed.len(),
        1,
        "only the deploy policy, no AWS-managed one (PowerUserAccess is account-wide): {managed:?}"
    );
    Identity {
        name: format!("{env} deploy"),
        policies: vec![document(
            all[&format!("aws_iam_policy.deploy[\"{env}\"]")]["policy"]
                .as_str()
                .expect("a policy"),
        )],
        boundary: None,
    }
}

/// The checks for the deploy role of `env`, whose account also holds `other`.
fn deploy_table(env: &str, other: &str) -> Vec<(Request, Decision, &'static str)> {
    use Decision::{Allow, ExplicitDeny, ImplicitDeny};
    let own_role = role(&format!("tollgate-{env}-api-task"));
    let their_role = role(&format!("tollgate-{other}-api-task"));
    let me = role(&format!("tollgate-{env}-github-deploy"));
    let bounded = |r: Request| r.with("iam:PermissionsBoundary", &boundary(env));
    let region = "arn:aws:secretsmanager:ap-northeast-1";
    vec![
        (
            bounded(Request::new("iam:CreateRole", &own_role)),
            Allow,
            "create a stack role with the boundary",
        ),
        (
            bounded(Request::new("iam:PutRolePolicy", &own_role)),
            Allow,
            "write a stack role's policy",
        ),
        (
            Request::new("iam:PassRole", &own_role)
                .with("iam:PassedToService", "ecs-tasks.amazonaws.com"),
            Allow,
            "pass a stack role to ECS tasks",
        ),
        (
            Request::new("iam:GetPolicy", &boundary(env)),
            Allow,
            "read its boundary (the stack looks it up)",
        ),
        (
            Request::new(
                "secretsmanager:PutSecretValue",
                &format!("{region}:{ACCOUNT}:secret:tollgate/{env}/registration-AbCdEf"),
            )
            .with("aws:ResourceTag/tollgate:env", env),
            Allow,
            "write its guard secret",
        ),
        (
            Request::new(
                "s3:PutObject",
                &format!("{STATE_BUCKET}/tollgate/{env}/terraform.tfstate"),
            ),
            Allow,
            "write its state",
        ),
        (
            Request::new(
                "lambda:UpdateFunctionCode",
                &format!(
                    "arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:tollgate-{env}-post-confirm"
                ),
            )
            .with("aws:ResourceTag/tollgate:env", env),
            Allow,
            "replace its function's code",
        ),
        (
            Request::new("ec2:CreateVpc", "*").with("aws:RequestTag/tollgate:env", env),
            Allow,
            "create its VPC",
        ),
        (
            Request::new("iam:CreateRole", &own_role),
            ExplicitDeny,
            "create a role without the boundary",
        ),
        (
            Request::new("iam:CreateRole", &own_role)
                .with("iam:PermissionsBoundary", &boundary(other)),
            ExplicitDeny,
            "create a role with the other boundary",
        ),
        (
            bounded(Request::new("iam:AttachRolePolicy", &me)),
            ExplicitDeny,
            "attach a policy to itself",
        ),
        (
            bounded(Request::new("iam:PutRolePolicy", &me)),
            ExplicitDeny,
            "write its own inline policy",
        ),
        (
            Request::new("iam:UpdateAssumeRolePolicy", &me),
            ExplicitDeny,
            "change who may assume it",
        ),
        (
            Request::new("iam:CreatePolicyVersion", &boundary(env)),
            ExplicitDeny,
            "rewrite its boundary",
        ),
        (
            Request::new(
                "iam:CreatePolicyVersion",
                &format!("arn:aws:iam::{ACCOUNT}:policy/tollgate-{env}-deploy"),
            ),
            ExplicitDeny,
            "rewrite its own policy",
        ),
        (
            Request::new("iam:DeleteRolePermissionsBoundary", &own_role),
            ExplicitDeny,
            "strip a stack role's boundary",
        ),
        (
            Request::new(
                "iam:UpdateOpenIDConnectProviderThumbprint",
                &format!(
                    "arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
                ),
            ),
            ExplicitDeny,
            "change the OIDC provider",
        ),
        (
            Request::new("iam:PassRole", &own_role)
                .with("iam:PassedToService", "ec2.amazonaws.com"),
            ImplicitDeny,
            "pass a stack role to EC2",
        ),
        (
            Request::new("iam:CreateUser", &format!("arn:aws:iam::{ACCOUNT}:user/x")),
            ExplicitDeny,
            "create an IAM user",
        ),
        (
            Request::new("iam:AttachRolePolicy", &their_role)
                .with("iam:PermissionsBoundary", &boundary(other)),
            ExplicitDeny,
            "attach a policy to the other environment's role",
        ),
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &format!("{region}:{ACCOUNT}:secret:tollgate/{other}/registration-AbCdEf"),
            ),
            ExplicitDeny,
            "read the other environment's guard secret",
        ),
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &format!("{region}:{ACCOUNT}:secret:rds!db-1234"),
            ),
            ImplicitDeny,
            "read a database master secret",
        ),
        (
            Request::new(
                "s3:PutObject",
                &format!("{STATE_BUCKET}/tollgate/{other}/terraform.tfstate"),
            ),
            ExplicitDeny,
            "rewrite the other environment's state",
        ),
        (
            Request::new(
                "lambda:UpdateFunctionCode",
                &format!(
                    "arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:tollgate-{other}-post-confirm"
                ),
            ),
            ExplicitDeny,
            "replace the other environment's function",
        ),
        (
            Request::new("ec2:TerminateInstances", "*").with("aws:ResourceTag/tollgate:env", other),
            ExplicitDeny,
            "touch a resource tagged for the other environment",
        ),
        (
            Request::new("ec2:CreateVpc", "*").with("aws:RequestTag/tollgate:env", other),
            ExplicitDeny,
            "create a resource tagged for the other environment",
        ),
    ]
}

/// A stack role as the deploy role could write it at worst: any action on anything, under the
/// boundary of `env`.
fn worst_stack_role(all: &std::collections::BTreeMap<String, Value>, env: &str) -> Identity {
    Identity {
        name: format!("{env} stack role, policy `*`"),
        policies: vec![
            serde_json::json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
        ],
        boundary: Some(document(
            all[&format!("aws_iam_policy.boundary[\"{env}\"]")]["policy"]
                .as_str()
                .expect("a policy"),
        )),
    }
}

fn boundary_table(env: &str, other: &str) -> Vec<(Request, Decision, &'static str)> {
    use Decision::{Allow, ExplicitDeny, ImplicitDeny};
    let region = "arn:aws:secretsmanager:ap-northeast-1";
    vec![
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &format!("{region}:{ACCOUNT}:secret:tollgate/{env}/registration-AbCdEf"),
            )
            .with("aws:ResourceTag/tollgate:env", env),
            Allow,
            "read its environment's secret",
        ),
        (
            Request::new(
                "iam:AttachRolePolicy",
                &role(&format!("tollgate-{env}-api-task")),
            ),
            ExplicitDeny,
            "any IAM write",
        ),
        (
            Request::new(
                "sts:AssumeRole",
                &role(&format!("tollgate-{env}-github-deploy")),
            ),
            ExplicitDeny,
            "assume the deploy role",
        ),
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &format!("{region}:{ACCOUNT}:secret:tollgate/{other}/registration-AbCdEf"),
            ),
            ImplicitDeny,
            "read the other environment's secret",
        ),
        (
            Request::new("sqs:SendMessage", "*").with("aws:ResourceTag/tollgate:env", other),
            ExplicitDeny,
            "a resource tagged for the other environment",
        ),
        (
            Request::new("ec2:RunInstances", "*"),
            ImplicitDeny,
            "start an instance",
        ),
    ]
}

fn check(
    who: &Identity,
    table: Vec<(Request, Decision, &'static str)>,
    report: &mut String,
    wrong: &mut Vec<String>,
) {
    for (request, expected, what) in table {
        let got = who.decide(&request);
        let mark = if got == expected { "✓" } else { "✗" };
        report.push_str(&format!(
            "{mark} {:<32} {:<13} {what}: {} on {}\n",
            who.name,
            format!("{got:?}"),
            request.action,
            request.resource
        ));
        if got != expected {
            wrong.push(format!(
                "{}: {what}: expected {expected:?}, got {got:?}",
                who.name
            ));
        }
    }
}

#[test]
fn no_deploy_role_can_escalate_or_reach_the_other_environment() {
    let work = tempfile_dir();
    let moto = Moto::start(&work).expect("moto starts");
    let bootstrap = apply_bootstrap(
        root(),
        &work,
        &moto.endpoint(),
        &["staging", "production"],
        &[STATE_BUCKET],
    );
    let all = resources(&bootstrap.state);
    let (mut report, mut wrong) = (String::new(), Vec::new());
    for (env, other) in [("staging", "production"), ("production", "staging")] {
        check(
            &deploy_role(&all, env),
            deploy_table(env, other),
            &mut report,
            &mut wrong,
        );
        check(
            &worst_stack_role(&all, env),
            boundary_table(env, other),
            &mut report,
            &mut wrong,
        );
    }
    println!("{report}");
    assert!(wrong.is_empty(), "{}\n\n{report}", wrong.join("\n"));
    drop(bootstrap);
    std::fs::remove_dir_all(&work).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-least-privilege-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp folder");
    dir
}
