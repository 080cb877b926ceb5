//! The edge as the stack renders it, with real requests through the twin's load balancer and
//! the web ACL as read back from moto: a valid signature passes from the NAT gateway's address
//! and from nowhere else (WAF refuses it, and says so apart from the api), every
//! `X-Forwarded-For` forgery and a third address are refused, the signature headers must have
//! their shape, and the rate rule counts the NAT's requests everywhere but on the guarded path.

use std::time::Duration;

use crate::twin;
use anyhow::{Context, Result, bail};
use secrecy::SecretString;
use shared_auth::GuardContract;

use super::world::{Answer, Call, From, RATE_SCALE, Row, World};

/// A third public address, allowed by no one.
const STRANGER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 12);

/// The contract as the sign-up function has it, and the guard secret's current value.
async fn signer(world: &World) -> Result<(GuardContract, SecretString)> {
    let function = super::function_config(&world.deployed, "post-confirm").await?;
    let vars = function.environment.iter().cloned().collect();
    let contract = shared_auth::load_for(shared_auth::Component::Lambda, &vars)?.guard;
    let sm = aws_sdk_secretsmanager::Client::new(&world.deployed.sdk().await);
    let secret = shared_aws::versions::current(&sm, &world.guard_secret_arn()?).await?;
    Ok((contract, secret.value))
}

/// A registration of a new user, signed now with the current secret, plus `extra` headers.
fn signed(
    contract: &GuardContract,
    secret: &SecretString,
    extra: &[(&str, String)],
) -> Result<(Call, String)> {
    let sub = uuid::Uuid::new_v4().to_string();
    let body = format!(
        r#"{{"sub":"{sub}","email":"{sub}@example.com","email_verified":true,"username":"{sub}"}}"#
    );
    let now = shared_auth::unix::seconds();
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(
        contract
            .credentials(
                std::slice::from_ref(secret),
                &shared_auth::registration_id("edge-check", &sub),
                body.as_bytes(),
                now,
            )
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Ok((Call::post(&contract.path, headers, body), sub))
}

fn refused_by(answer: &Answer) -> String {
    match &answer.waf_rule {
        Some(rule) => format!("{} by WAF ({rule})", answer.status),
        None => format!("{} by the api", answer.status),
    }
}

pub async fn run(world: &World) -> Vec<Row> {
    match rows(world).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::check("the edge", false, format!("{e:#}"))],
    }
}

async fn rows(world: &World) -> Result<Vec<Row>> {
    let (contract, secret) = signer(world).await?;
    let nat = world.twin.nat_addresses()[0];
    let mut rows = Vec::new();
    // Signed from the NAT gateway's address: WAF lets it through, the api registers it.
    let (call, sub) = signed(&contract, &secret, &[])?;
    let answer = world
        .calls(From::Host("fn-signup".into()), vec![call])
        .await?
        .remove(0);
    let stored = world.rows_for(&sub).await?;
    rows.push(Row::check(
        "WAF: signed, from the NAT",
        answer.status == 201 && answer.waf_rule.is_none() && stored == 1,
        format!("through {nat}: {} ({} row)", answer.status, stored),
    ));
    // The same from the internet, with every X-Forwarded-For forgery, and from a third
    // address: WAF refuses each (its own 403), nothing is stored.
    let forgeries: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("X-Forwarded-For", nat.to_string())],
        vec![("X-Forwarded-For", format!("{nat}, 10.20.0.5"))],
        vec![
            ("x-forwarded-for", nat.to_string()),
            ("X-Forwarded-For", nat.to_string()),
        ],
        vec![("X-Forwarded-For", format!("  {nat}  ,{nat} "))],
        vec![("X-Forwarded-For", format!("::ffff:{nat}"))],
        vec![("X-Forwarded-For", format!("[::ffff:{nat}]:443"))],
        vec![("X-Forwarded-For", format!("{nat}:443"))],
        vec![
            ("Forwarded", format!("for={nat}")),
            ("X-Real-IP", nat.to_string()),
        ],
        vec![("X_Forwarded_For", nat.to_string())],
        vec![("X-Forwarded-For", "10.20.0.5".to_owned())],
    ];
    for (from, extra) in forgeries
        .iter()
        .map(|f| (twin::ATTACKER, f))
        .chain(std::iter::once((STRANGER, &forgeries[0])))
    {
        let (call, sub) = signed(&contract, &secret, extra)?;
        let answer = world
            .calls(From::Internet(from), vec![call])
            .await?
            .remove(0);
        let stored = world.rows_for(&sub).await?;
        let what: Vec<String> = extra.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        rows.push(Row::check(
            "WAF: signed, from the internet",
            answer.status == 403
                && answer
                    .waf_rule
                    .as_deref()
                    .is_some_and(|r| r.ends_with("-registration-route/from-allowed-sources"))
                && stored == 0,
            format!(
                "{from}{}: {}, {stored} row",
                if what.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", what.join("; "))
                },
                refused_by(&answer)
            ),
        ));
    }
    rows.push(shape(world, &contract).await?);
    rows.push(rate(world, &contract, &secret).await?);
    Ok(rows)
}

/// From the NAT gateway's address, a registration without the timestamp header: WAF's shape
/// rule refuses it before the api sees it.
async fn shape(world: &World, contract: &GuardContract) -> Result<Row> {
    let call = Call::post(
        &contract.path,
        vec![(
            contract.signature_header.clone(),
            format!("v1,{}=", "A".repeat(43)),
        )],
        "{}".into(),
    );
    let answer = world
        .calls(From::Host("fn-signup".into()), vec![call])
        .await?
        .remove(0);
    Ok(Row::check(
        "WAF: credential's shape",
        answer
            .waf_rule
            .as_deref()
            .is_some_and(|r| r.ends_with("-registration-route/signature-shape")),
        format!(
            "from the NAT without `{}`: {}",
            contract.timestamp_header,
            refused_by(&answer)
        ),
    ))
}

/// The rate rule, its window and limit scaled by `RATE_SCALE`: from the NAT gateway's
/// address, twice the limit of registrations are never counted; the limit of other requests
/// is, and the next is blocked; a registration right after still passes WAF.
async fn rate(world: &World, contract: &GuardContract, secret: &SecretString) -> Result<Row> {
    let limit = world
        .deployed
        .resources
        .get("aws_wafv2_web_acl.this")
        .and_then(|acl| {
            acl["rule"]
                .as_array()?
                .iter()
                .find_map(|r| r["statement"][0]["rate_based_statement"][0]["limit"].as_u64())
        })
        .context("the web ACL has no rate rule")?;
    let scaled = limit.div_ceil(u64::from(RATE_SCALE)) as usize;
    // Registrations of the right shape (the api refuses their signature, quickly): WAF lets
    // each through and counts none.
    let now = shared_auth::unix::seconds().to_string();
    let shaped = || {
        Call::post(
            &contract.path,
            vec![
                (contract.timestamp_header.clone(), now.clone()),
                (
                    contract.signature_header.clone(),
                    format!("v1,{}=", "A".repeat(43)),
                ),
            ],
            "{}".into(),
        )
    };
    let mut calls: Vec<Call> = (0..2 * scaled).map(|_| shaped()).collect();
    calls.extend((0..=scaled).map(|_| Call::get("/healthz")));
    calls.push(signed(contract, secret, &[])?.0);
    let started = std::time::Instant::now();
    let answers = world.calls(From::Host("fn-signup".into()), calls).await?;
    let took = started.elapsed();
    let registrations = &answers[..2 * scaled];
    let others = &answers[2 * scaled..answers.len() - 1];
    let after = &answers[answers.len() - 1];
    let counted_registration = registrations
        .iter()
        .filter(|a| a.waf_rule.is_some())
        .count();
    let blocked = others
        .iter()
        .filter(|a| a.waf_rule.as_deref() == Some("app-rate-limit"))
        .count();
    let window = Duration::from_secs(300) / RATE_SCALE;
    if took > window {
        bail!(
            "the requests took {} ms, longer than the scaled window: the count proves nothing",
            took.as_millis()
        );
    }
    Ok(Row::check(
        "WAF: rate rule",
        counted_registration == 0
            && blocked == 1
            && others[..scaled].iter().all(|a| a.waf_rule.is_none())
            && after.waf_rule.is_none(),
        format!(
            "limit {limit} per 5 min (scaled 1/{RATE_SCALE}: {scaled}): {} registrations from the NAT never blocked, {} other requests passed then {blocked} blocked, a registration after: {}",
            registrations.len(),
            others.len() - blocked,
            if after.waf_rule.is_none() {
                "passed WAF"
            } else {
                "blocked"
            }
        ),
    ))
}
