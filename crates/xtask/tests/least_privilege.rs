//! What the deploy roles and the stack's roles can and cannot do, read from the policies
//! `infra/bootstrap` renders, decided by IAM's evaluation rules (`testkit::iam`). Each
//! environment is bootstrapped in an account of its own (a moto_server each, `MOTO_ACCOUNT_ID`),
//! as shipped: a second environment in one account is refused, the deploy role's trust admits
//! the deploy workflow of this repository's default branch alone, and each numbered finding of
//! the isolation review is a row here. The stack's own roles as applied are judged in
//! `deploy.rs`; every request of one environment against every resource of the other in
//! `isolation.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use testkit::iam::{
    Account, Decision, GITHUB_REPOSITORY, Identity, Request, apply_bootstrap, document, resources,
    try_apply_bootstrap,
};
use testkit::services::Moto;

/// moto's default account (staging's here) and production's.
const ACCOUNTS: [(&str, &str); 2] = [("staging", "123456789012"), ("production", "210987654321")];

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn account_of(env: &str) -> &'static str {
    ACCOUNTS
        .iter()
        .find(|(e, _)| *e == env)
        .map(|(_, a)| *a)
        .expect("an environment of the table")
}

/// What the administrator of `env`'s account supplies.
fn supplied(env: &str) -> Account {
    Account {
        environment: env.into(),
        state_bucket: format!("tollgate-state-{env}"),
        hosted_zone_id: Some(format!("Z{}", env.to_ascii_uppercase())),
        domain: Some(format!("api.{env}.example.com")),
    }
}

fn role(env: &str, name: &str) -> String {
    format!(
        "arn:aws:iam::{}:role/tollgate-{env}-{name}",
        account_of(env)
    )
}

/// The deploy role of `env` as bootstrap made it: its attached policy, no boundary.
fn deploy_role(all: &BTreeMap<String, Value>, env: &str) -> Identity {
    let role = &all["aws_iam_role.deploy"];
    assert_eq!(role["name"], format!("tollgate-{env}-github-deploy"));
    let managed: Vec<&str> = all
        .iter()
        .filter(|(address, _)| opskit::state::is(address, "aws_iam_role_policy_attachment"))
        .filter(|(_, a)| a["role"] == role["name"])
        .filter_map(|(_, a)| a["policy_arn"].as_str())
        .collect();
    assert!(
        managed.len() == 1 && managed[0].ends_with(&format!("policy/tollgate-{env}-deploy")),
        "only the deploy policy, no AWS-managed one (PowerUserAccess is account-wide): {managed:?}"
    );
    Identity {
        name: format!("{env} deploy"),
        policies: vec![document(
            all["aws_iam_policy.deploy"]["policy"]
                .as_str()
                .expect("a policy"),
        )],
        boundary: None,
        arn: role["arn"].as_str().map(str::to_owned),
    }
}

/// A stack role as the deploy role could write it at worst: any action on anything, under the
/// boundary of `env`.
fn worst_stack_role(all: &BTreeMap<String, Value>, env: &str) -> Identity {
    Identity {
        name: format!("{env} stack role, policy `*`"),
        policies: vec![
            serde_json::json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
        ],
        boundary: Some(document(
            all["aws_iam_policy.boundary"]["policy"]
                .as_str()
                .expect("a policy"),
        )),
        arn: Some(role(env, "api-task")),
    }
}

type Row = (Request, Decision, &'static str);

/// The deploy role of `env` in its own account.
fn deploy_own_rows(env: &str) -> Vec<Row> {
    use Decision::{Allow, ExplicitDeny, ImplicitDeny};
    let acct = account_of(env);
    let own = supplied(env);
    let region = format!("arn:aws:secretsmanager:ap-northeast-1:{acct}");
    let passed = |name: &str, service: &str| {
        Request::new("iam:PassRole", &role(env, name)).with("iam:PassedToService", service)
    };
    let certificate = |names: &[&str]| {
        Request::new("acm:RequestCertificate", "*").with_values("acm:DomainNames", names)
    };
    let zone = |id: &str| format!("arn:aws:route53:::hostedzone/{id}");
    let bucket = format!("arn:aws:s3:::{}", own.state_bucket);
    vec![
        (
            Request::new("iam:PutRolePolicy", &role(env, "api-task")),
            Allow,
            "write a stack role's inline policy",
        ),
        (
            passed("api-task", "ecs-tasks.amazonaws.com"),
            Allow,
            "pass the api's task role to ECS tasks",
        ),
        (
            passed("post-confirm", "lambda.amazonaws.com"),
            Allow,
            "pass the function's role to Lambda",
        ),
        (
            passed("api-task", "lambda.amazonaws.com"),
            ImplicitDeny,
            "pass the api's role to Lambda (each role to its one service)",
        ),
        (
            passed("api-task", "ec2.amazonaws.com"),
            ExplicitDeny,
            "pass a stack role to EC2",
        ),
        (
            Request::new("iam:CreateRole", &role(env, "anything")),
            ExplicitDeny,
            "#5 create a role (every role is the bootstrap's)",
        ),
        (
            Request::new("iam:UpdateAssumeRolePolicy", &role(env, "api-task")),
            ExplicitDeny,
            "#5 make a stack role trust someone else",
        ),
        (
            Request::new("iam:AttachRolePolicy", &role(env, "api-task")),
            ExplicitDeny,
            "attach a managed policy to a stack role",
        ),
        (
            Request::new("iam:DeleteRolePermissionsBoundary", &role(env, "api-task")),
            ExplicitDeny,
            "strip a stack role's boundary",
        ),
        (
            Request::new(
                "iam:PutRolePolicy",
                &format!("arn:aws:iam::{acct}:role/x/tollgate-{env}-api-task"),
            ),
            ImplicitDeny,
            "#6 a role of the same name under another path",
        ),
        (
            Request::new("iam:PutRolePolicy", &role(env, "github-deploy")),
            ExplicitDeny,
            "write its own inline policy",
        ),
        (
            Request::new(
                "iam:CreatePolicyVersion",
                &format!("arn:aws:iam::{acct}:policy/tollgate-{env}-boundary"),
            ),
            ExplicitDeny,
            "rewrite its boundary",
        ),
        (
            Request::new(
                "iam:UpdateOpenIDConnectProviderThumbprint",
                &format!("arn:aws:iam::{acct}:oidc-provider/token.actions.githubusercontent.com"),
            ),
            ExplicitDeny,
            "change the OIDC provider",
        ),
        (
            Request::new("iam:CreateUser", &format!("arn:aws:iam::{acct}:user/x")),
            ExplicitDeny,
            "create an IAM user",
        ),
        (
            Request::new(
                "secretsmanager:PutSecretValue",
                &format!("{region}:secret:tollgate/{env}/registration-AbCdEf"),
            ),
            Allow,
            "write its guard secret",
        ),
        (
            Request::new(
                "s3:PutObject",
                &format!("{bucket}/tollgate/{env}/terraform.tfstate"),
            ),
            Allow,
            "write its state",
        ),
        (
            Request::new("s3:ListBucket", &bucket),
            Allow,
            "list its state bucket",
        ),
        (
            Request::new("s3:PutBucketPolicy", &bucket),
            ImplicitDeny,
            "#1 rewrite the state bucket's policy",
        ),
        (
            Request::new("s3:PutLifecycleConfiguration", &bucket),
            ImplicitDeny,
            "#1 expire the state",
        ),
        (
            Request::new("s3:PutBucketVersioning", &bucket),
            ImplicitDeny,
            "#1 suspend the state's versions",
        ),
        (
            Request::new("s3:PutBucketPublicAccessBlock", &bucket),
            ImplicitDeny,
            "#1 open the state bucket",
        ),
        (
            Request::new(
                "lambda:UpdateFunctionCode",
                &format!(
                    "arn:aws:lambda:ap-northeast-1:{acct}:function:tollgate-{env}-post-confirm"
                ),
            ),
            Allow,
            "replace its function's code",
        ),
        (Request::new("ec2:CreateVpc", "*"), Allow, "create its VPC"),
        (
            Request::new(
                "route53:ChangeResourceRecordSets",
                &zone(own.hosted_zone_id.as_deref().expect("a zone")),
            ),
            Allow,
            "write a record in its zone",
        ),
        (
            Request::new("route53:ChangeResourceRecordSets", &zone("ZSOMEONEELSE")),
            ImplicitDeny,
            "#2 write a record in another zone of the account",
        ),
        (
            certificate(&[own.domain.as_deref().expect("a name")]),
            Allow,
            "request a certificate for its name",
        ),
        (
            certificate(&["api.someone-else.example.com"]),
            ImplicitDeny,
            "#2 request a certificate for another name",
        ),
        (
            certificate(&[
                own.domain.as_deref().expect("a name"),
                "api.someone-else.example.com",
            ]),
            ImplicitDeny,
            "#2 its name and another",
        ),
        (
            Request::new("logs:PutAccountPolicy", "*"),
            ExplicitDeny,
            "#6 an account-wide logs policy",
        ),
        (
            Request::new("ecr:PutRegistryPolicy", "*"),
            ExplicitDeny,
            "#6 the registry's policy",
        ),
        (
            Request::new(
                "secretsmanager:DescribeSecret",
                &format!("{region}:secret:rds!db-1234-AbCdEf"),
            ),
            Allow,
            "describe its database's managed secret",
        ),
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &format!("{region}:secret:rds!db-1234-AbCdEf"),
            ),
            ImplicitDeny,
            "read a database master secret",
        ),
    ]
}

/// The deploy role of `env` against the other environment's account `other`.
fn deploy_cross_rows(env: &str, other: &str) -> Vec<Row> {
    use Decision::{ExplicitDeny, ImplicitDeny};
    let theirs = account_of(other);
    let in_theirs =
        |action: &str, resource: &str| Request::new(action, resource).in_account(theirs, None);
    let bucket = format!("arn:aws:s3:::{}", supplied(other).state_bucket);
    let zone = format!(
        "arn:aws:route53:::hostedzone/{}",
        supplied(other).hosted_zone_id.expect("a zone")
    );
    let _ = env;
    vec![
        (
            in_theirs("s3:PutBucketPolicy", &bucket),
            ImplicitDeny,
            "#1 rewrite the other's state bucket policy",
        ),
        (
            in_theirs(
                "s3:PutObject",
                &format!("{bucket}/tollgate/{other}/terraform.tfstate"),
            ),
            ImplicitDeny,
            "#1 rewrite the other's state",
        ),
        (
            in_theirs("route53:ChangeResourceRecordSets", &zone),
            ImplicitDeny,
            "#2 point the other's name elsewhere",
        ),
        (
            in_theirs(
                "secretsmanager:RotateSecret",
                &format!(
                    "arn:aws:secretsmanager:ap-northeast-1:{theirs}:secret:rds!db-1234-AbCdEf"
                ),
            ),
            ImplicitDeny,
            "#3 rotate the other's database master secret",
        ),
        (
            in_theirs(
                "ecs:CreateService",
                &format!("arn:aws:ecs:ap-northeast-1:{theirs}:service/tollgate-{other}/x"),
            ),
            ImplicitDeny,
            "#4 a service in the other's network",
        ),
        (
            in_theirs("iam:UpdateAssumeRolePolicy", &role(other, "api-task")),
            ExplicitDeny,
            "#5 make the other's role trust someone",
        ),
        (
            in_theirs(
                "wafv2:UpdateRuleGroup",
                &format!(
                    "arn:aws:wafv2:ap-northeast-1:{theirs}:regional/rulegroup/tollgate-{other}-guard-secret/1"
                ),
            ),
            ImplicitDeny,
            "#6 the other's static-mode rule group",
        ),
    ]
}

/// A stack role of `env` at its worst (policy `*`) under its boundary.
fn boundary_rows(env: &str, other: &str) -> Vec<Row> {
    use Decision::{Allow, ExplicitDeny, ImplicitDeny};
    let (acct, theirs) = (account_of(env), account_of(other));
    let secret =
        |a: &str, name: &str| format!("arn:aws:secretsmanager:ap-northeast-1:{a}:secret:{name}");
    let rule_group = |a: &str, e: &str| {
        format!("arn:aws:wafv2:ap-northeast-1:{a}:regional/rulegroup/tollgate-{e}-guard-secret/1")
    };
    vec![
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &secret(acct, &format!("tollgate/{env}/registration-AbCdEf")),
            ),
            Allow,
            "read its environment's secret",
        ),
        (
            Request::new("wafv2:UpdateRuleGroup", &rule_group(acct, env)),
            Allow,
            "update its static-mode rule group",
        ),
        (
            Request::new(
                "wafv2:UpdateRuleGroup",
                &format!("arn:aws:wafv2:ap-northeast-1:{acct}:regional/rulegroup/someone-elses/1"),
            ),
            ImplicitDeny,
            "#6 another rule group in its account",
        ),
        (
            Request::new("iam:AttachRolePolicy", &role(env, "api-task")),
            ExplicitDeny,
            "any IAM write",
        ),
        (
            Request::new("sts:AssumeRole", &role(env, "github-deploy")),
            ExplicitDeny,
            "assume the deploy role",
        ),
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &secret(theirs, &format!("tollgate/{other}/registration-AbCdEf")),
            )
            .in_account(theirs, None),
            ImplicitDeny,
            "read the other environment's secret",
        ),
        (
            Request::new(
                "secretsmanager:GetSecretValue",
                &secret(theirs, "rds!db-1234-AbCdEf"),
            )
            .in_account(theirs, None),
            ImplicitDeny,
            "#3 read the other's database master secret, tagged or not",
        ),
        (
            Request::new("ec2:RunInstances", "*"),
            ImplicitDeny,
            "start an instance",
        ),
    ]
}

fn check(who: &Identity, table: Vec<Row>, report: &mut String, wrong: &mut Vec<String>) {
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

/// Who may assume the deploy role of `env`: its trust policy, with the OIDC token's claims as
/// the request's context (`sub` as GitHub renders it with the repository's claim template).
fn trust_rows(
    all: &BTreeMap<String, Value>,
    env: &str,
    report: &mut String,
    wrong: &mut Vec<String>,
) {
    let trust = document(
        all["aws_iam_role.deploy"]["assume_role_policy"]
            .as_str()
            .expect("a trust policy"),
    );
    let workflow = |repo: &str, branch: &str, file: &str| {
        format!("{repo}/.github/workflows/{file}@refs/heads/{branch}")
    };
    let sub = |repo: &str, environment: &str, workflow: &str| {
        format!("repo:{repo}:environment:{environment}:job_workflow_ref:{workflow}")
    };
    let ours = workflow(GITHUB_REPOSITORY, "main", "deploy.yml");
    let rows = [
        (
            sub(GITHUB_REPOSITORY, env, &ours),
            true,
            "the deploy workflow on main, in its environment",
        ),
        (
            sub(
                GITHUB_REPOSITORY,
                if env == "staging" {
                    "production"
                } else {
                    "staging"
                },
                &ours,
            ),
            false,
            "the other environment",
        ),
        (
            sub(
                GITHUB_REPOSITORY,
                env,
                &workflow(GITHUB_REPOSITORY, "main", "ci.yml"),
            ),
            false,
            "another workflow of the repository",
        ),
        (
            sub(
                GITHUB_REPOSITORY,
                env,
                &workflow(GITHUB_REPOSITORY, "feature", "deploy.yml"),
            ),
            false,
            "the deploy workflow of another branch",
        ),
        (
            sub(
                "attacker/tollgate",
                env,
                &workflow("attacker/tollgate", "main", "deploy.yml"),
            ),
            false,
            "a fork's deploy workflow",
        ),
        (
            format!("repo:{GITHUB_REPOSITORY}:environment:{env}"),
            false,
            "the default subject (no workflow in it)",
        ),
        (
            format!("repo:{GITHUB_REPOSITORY}:pull_request"),
            false,
            "a pull request",
        ),
    ];
    for (subject, admitted, what) in rows {
        let request = Request::new("sts:AssumeRoleWithWebIdentity", &role(env, "github-deploy"))
            .with(
                "token.actions.githubusercontent.com:aud",
                "sts.amazonaws.com",
            )
            .with("token.actions.githubusercontent.com:sub", &subject);
        let got = testkit::iam::trust_admits(&trust, &request);
        let mark = if got == admitted { "✓" } else { "✗" };
        report.push_str(&format!(
            "{mark} {env} trust {:<9} {what}: {subject}\n",
            if got { "admits" } else { "refuses" }
        ));
        if got != admitted {
            wrong.push(format!("{env} trust: {what}: {subject}"));
        }
    }
}

/// The roles the stack's services assume, as this test expects the bootstrap to make them: the
/// one service each trusts, and whether the trust carries `aws:SourceAccount` (the services
/// that set it; Lambda sets none for its execution role).
const STACK_ROLES: &[(&str, &str, bool)] = &[
    ("api-execution", "ecs-tasks.amazonaws.com", true),
    ("api-task", "ecs-tasks.amazonaws.com", true),
    ("migrate", "ecs-tasks.amazonaws.com", true),
    ("post-confirm", "lambda.amazonaws.com", false),
    ("rotate-secret", "lambda.amazonaws.com", false),
    ("sweep-schedule", "scheduler.amazonaws.com", true),
    ("vpc-flow-logs", "vpc-flow-logs.amazonaws.com", true),
];

/// Why `trust` is more than "`service` may assume this role (from `account`)", if it is.
fn trusts_more_than(trust: &Value, service: &str, account: Option<&str>) -> Option<String> {
    let list = match &trust["Statement"] {
        Value::Array(list) => list.clone(),
        one => vec![one.clone()],
    };
    let [statement] = list.as_slice() else {
        return Some(format!("{} statements, not one", list.len()));
    };
    let one = |v: &Value| testkit::iam::strings(Some(v)).len() == 1;
    let expected_condition = account.map_or(
        Value::Null,
        |a| serde_json::json!({"StringEquals": {"aws:SourceAccount": a}}),
    );
    let condition = statement.get("Condition").cloned().unwrap_or(Value::Null);
    let principal = &statement["Principal"];
    let principal_kinds: Vec<&String> = principal
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    [
        (statement["Effect"] == "Allow", "not an Allow"),
        (
            one(&statement["Action"])
                && testkit::iam::strings(statement.get("Action")) == ["sts:AssumeRole"],
            "an action besides sts:AssumeRole",
        ),
        (
            principal_kinds == ["Service"]
                && one(&principal["Service"])
                && testkit::iam::strings(principal.get("Service")) == [service],
            "a principal besides the service",
        ),
        (statement.get("NotPrincipal").is_none(), "a NotPrincipal"),
        (
            testkit::iam::strings(condition.pointer("/StringEquals/aws:SourceAccount"))
                == testkit::iam::strings(
                    expected_condition.pointer("/StringEquals/aws:SourceAccount"),
                )
                && condition.as_object().map_or(0, |m| m.len())
                    == expected_condition.as_object().map_or(0, |m| m.len()),
            "a condition other than aws:SourceAccount = its account",
        ),
    ]
    .into_iter()
    .find(|(ok, _)| !ok)
    .map(|(_, why)| format!("{why}: {statement}"))
}

/// Every role the bootstrap makes for the stack is one of [`STACK_ROLES`] and trusts its one
/// service alone; the judge fails when it should (an outside account added, the source
/// account condition dropped).
fn stack_role_rows(
    all: &BTreeMap<String, Value>,
    env: &str,
    report: &mut String,
    wrong: &mut Vec<String>,
) {
    let made: BTreeMap<String, &Value> = all
        .iter()
        .filter(|(a, _)| a.starts_with("aws_iam_role.stack["))
        .map(|(_, r)| (r["name"].as_str().unwrap_or_default().to_owned(), r))
        .collect();
    let expected: Vec<String> = STACK_ROLES
        .iter()
        .map(|(n, _, _)| format!("tollgate-{env}-{n}"))
        .collect();
    if made.keys().cloned().collect::<Vec<_>>() != expected {
        wrong.push(format!(
            "{env}: the stack roles made are {:?}, expected {expected:?}",
            made.keys()
        ));
    }
    for (name, service, scoped) in STACK_ROLES {
        let Some(role) = made.get(&format!("tollgate-{env}-{name}")) else {
            continue;
        };
        let trust = document(role["assume_role_policy"].as_str().unwrap_or("{}"));
        let account = scoped.then(|| account_of(env));
        let verdict = trusts_more_than(&trust, service, account);
        let boundary = role["permissions_boundary"].as_str().unwrap_or_default();
        let bounded = boundary.ends_with(&format!(":policy/tollgate-{env}-boundary"));
        report.push_str(&format!(
            "{} {env} {name:<15} trusts {service} alone{}; boundary {}\n",
            if verdict.is_none() && bounded {
                "✓"
            } else {
                "✗"
            },
            if *scoped { " from its account" } else { "" },
            if bounded { "set" } else { "MISSING" }
        ));
        if let Some(why) = verdict {
            wrong.push(format!("{env} {name}'s trust: {why}"));
        }
        if !bounded {
            wrong.push(format!("{env} {name} lacks the boundary: {boundary:?}"));
        }
    }
    let good = serde_json::json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
        "Condition": {"StringEquals": {"aws:SourceAccount": account_of(env)}}}]});
    let mut outsider = good.clone();
    outsider["Statement"][0]["Principal"]["AWS"] = "arn:aws:iam::999999999999:root".into();
    let mut unscoped = good.clone();
    unscoped["Statement"][0]
        .as_object_mut()
        .expect("an object")
        .remove("Condition");
    let account = Some(account_of(env));
    if trusts_more_than(&good, "ecs-tasks.amazonaws.com", account).is_some()
        || trusts_more_than(&outsider, "ecs-tasks.amazonaws.com", account).is_none()
        || trusts_more_than(&unscoped, "ecs-tasks.amazonaws.com", account).is_none()
    {
        wrong.push("the trust judge does not tell a service-only trust from a wider one".into());
    }
}

#[test]
fn each_environment_is_fenced_by_its_account_and_no_deploy_role_can_escalate() {
    let work =
        std::env::temp_dir().join(format!("tollgate-least-privilege-{}", std::process::id()));
    let motos: Vec<Moto> = ACCOUNTS
        .iter()
        .map(|(env, account)| {
            Moto::start_in_account(&work.join(env), account).expect("moto starts")
        })
        .collect();
    let bootstraps: Vec<_> = ACCOUNTS
        .iter()
        .zip(&motos)
        .map(|((env, _), moto)| {
            apply_bootstrap(
                root(),
                &work.join(format!("{env}-bootstrap")),
                &moto.endpoint(),
                &supplied(env),
            )
        })
        .collect();
    let (mut report, mut wrong) = (String::new(), Vec::new());
    for (i, (env, _)) in ACCOUNTS.iter().enumerate() {
        let other = ACCOUNTS[1 - i].0;
        let all = resources(&bootstraps[i].state);
        let deploy = deploy_role(&all, env);
        check(&deploy, deploy_own_rows(env), &mut report, &mut wrong);
        check(
            &deploy,
            deploy_cross_rows(env, other),
            &mut report,
            &mut wrong,
        );
        check(
            &worst_stack_role(&all, env),
            boundary_rows(env, other),
            &mut report,
            &mut wrong,
        );
        trust_rows(&all, env, &mut report, &mut wrong);
        stack_role_rows(&all, env, &mut report, &mut wrong);
    }
    // One environment per account: production's bootstrap in staging's account is refused
    // before anything is made.
    let refused = try_apply_bootstrap(
        root(),
        &work.join("second"),
        &motos[0].endpoint(),
        &supplied("production"),
    );
    match refused {
        Ok(_) => wrong.push("production bootstrapped into staging's account".into()),
        Err(e) => {
            // Terraform wraps its messages: compare the words.
            let e = format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let named = e.contains(
                "already holds another Tollgate environment (tollgate-staging-github-deploy)",
            );
            report.push_str(&format!(
                "{} production's bootstrap in staging's account is refused, naming tollgate-staging-github-deploy\n",
                if named { "✓" } else { "✗" }
            ));
            if !named {
                wrong.push(format!(
                    "the refusal does not name the environment already there:\n{e}"
                ));
            }
        }
    }
    println!("{report}");
    assert!(wrong.is_empty(), "{}\n\n{report}", wrong.join("\n"));
    drop(bootstraps);
    drop(motos);
    std::fs::remove_dir_all(&work).ok();
}
