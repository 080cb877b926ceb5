//! The heartbeat: a synthetic sign-up through the whole path, on a schedule (EventBridge
//! Scheduler invokes the function with `{"tollgate":"heartbeat","user_pool_id":…,
//! "client_id":…}`).
//!
//! It signs a user up in the real pool with an address in the reserved domain
//! ([`shared_auth::heartbeat`]), confirms it with `AdminConfirmSignUp` (so Cognito fires the
//! PostConfirmation trigger, which registers it through the NAT, the WAF and the ALB like any
//! sign-up), reads the row back through the guarded route's `DELETE` (which removes it and says
//! which way it came in), and deletes the user from the pool. One metric line says how it went:
//! `Heartbeat` by `{Service, Result}` (`ok` only when the trigger itself registered the user)
//! and `HeartbeatLatency`, from the sign-up until the row was read.
//!
//! It runs in this function, not one of its own: only this function's identity holds the
//! position the path needs (its subnets, so the NAT address the WAF allows, and the guard
//! secret), and a second function with both would be a second identity able to register users.

use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider::error::DisplayErrorContext;
use aws_sdk_cognitoidentityprovider::types::AttributeType;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::Value;
use shared_auth::heartbeat::{self, Via};

use crate::Deps;
use crate::lazy::LazyClient;

/// The metric of one heartbeat's result (dimension `Result`: `ok` or `failed`).
pub const METRIC: &str = "Heartbeat";
/// The metric of its latency, sign-up to row read, in milliseconds.
pub const LATENCY_METRIC: &str = "HeartbeatLatency";

/// Between two reads of a row not there yet.
const POLL: Duration = Duration::from_millis(250);
/// The longest a heartbeat waits for its row after the confirmation.
const WAIT: Duration = Duration::from_secs(15);
/// Kept for the clean-up after the wait.
const CLEAN_UP: Duration = Duration::from_secs(3);

/// Where a heartbeat signs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub user_pool_id: String,
    pub client_id: String,
}

/// The pool and client a heartbeat event names; `None` when `raw` is not a heartbeat event.
pub fn requested(raw: &Value) -> Option<Result<Request, String>> {
    if raw.get("tollgate").and_then(Value::as_str) != Some(heartbeat::EVENT_KIND) {
        return None;
    }
    let field = |name: &str| {
        raw.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("a heartbeat event names its {name}"))
    };
    Some(field("user_pool_id").and_then(|user_pool_id| {
        Ok(Request {
            user_pool_id,
            client_id: field("client_id")?,
        })
    }))
}

/// How one heartbeat went: what the function returns, and what its metric line says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `ok` when the trigger registered the user and the row was read back.
    pub result: &'static str,
    /// Which way the row came in, when it was read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_via: Option<Via>,
    /// From the sign-up until the row was read, in milliseconds (when it was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The step that failed, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the user is gone from the pool and the row from the database.
    pub cleaned_up: bool,
}

impl Report {
    fn failed(error: String) -> Self {
        Self {
            result: "failed",
            registered_via: None,
            latency_ms: None,
            error: Some(error),
            cleaned_up: true,
        }
    }
}

/// Runs one heartbeat, until `deadline` at the latest. Never an error: a failure is its report.
pub async fn run(deps: &Deps, request: &Request, deadline: Instant) -> Report {
    let report = beat(deps, request, deadline).await;
    emit(&report);
    match &report.error {
        None => tracing::info!(?report, "heartbeat"),
        Some(error) => tracing::error!(?report, error, "heartbeat failed"),
    }
    report
}

async fn beat(deps: &Deps, request: &Request, deadline: Instant) -> Report {
    let Some(cognito) = deps.cognito.as_ref().map(LazyClient::get) else {
        return Report::failed("no Cognito client".into());
    };
    let email = heartbeat::email(&format!(
        "{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    ));
    let password = match shared_auth::generate_password() {
        // Letters of both cases, a digit and a symbol, whatever the random part drew: any pool
        // policy Cognito allows.
        Ok(p) => format!("{}Aa1!", p.expose_secret()),
        Err(e) => return Report::failed(format!("cannot draw a password: {e}")),
    };
    let started = Instant::now();
    let signed_up = cognito
        .sign_up()
        .client_id(&request.client_id)
        .username(&email)
        .password(&password)
        .user_attributes(attribute("email", &email))
        .send();
    let sub = match tokio::time::timeout_at(deadline.into(), signed_up).await {
        Ok(Ok(out)) => out.user_sub().to_owned(),
        Ok(Err(e)) => return Report::failed(format!("sign-up: {}", DisplayErrorContext(&e))),
        Err(_) => return Report::failed("sign-up: no answer before the deadline".into()),
    };
    // Cognito runs the PostConfirmation trigger before it answers this call.
    let confirmed = cognito
        .admin_confirm_sign_up()
        .user_pool_id(&request.user_pool_id)
        .username(&email)
        .send();
    let confirm_error = match tokio::time::timeout_at(deadline.into(), confirmed).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("confirmation: {}", DisplayErrorContext(&e))),
        Err(_) => Some("confirmation: no answer before the deadline".into()),
    };
    let mut report = match confirm_error {
        Some(error) => Report::failed(error),
        None => {
            let wait_until = deadline
                .checked_sub(CLEAN_UP)
                .unwrap_or(deadline)
                .min(Instant::now() + WAIT);
            read_back(deps, &sub, started, wait_until).await
        }
    };
    // The user goes whatever happened, so no heartbeat user outlives its run. A row that was
    // not read back is removed by one more read when it arrived meanwhile.
    let mut cleaned = true;
    if report.registered_via.is_none()
        && let Err(e) = deps.registrar.forget(&sub, deadline).await
    {
        tracing::warn!(error = %e, "heartbeat: cannot remove a late row");
        cleaned = false;
    }
    let deleted = cognito
        .admin_delete_user()
        .user_pool_id(&request.user_pool_id)
        .username(&email)
        .send();
    match tokio::time::timeout_at(deadline.into(), deleted).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %DisplayErrorContext(&e), "heartbeat: cannot delete its user");
            cleaned = false;
        }
        Err(_) => cleaned = false,
    }
    report.cleaned_up = cleaned;
    report
}

/// Reads the row back (removing it) until it is there or `until` passes.
async fn read_back(deps: &Deps, sub: &str, started: Instant, until: Instant) -> Report {
    loop {
        let last = match deps.registrar.forget(sub, until).await {
            Ok(Some(via)) => {
                let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let by_trigger = via == Some(Via::Trigger);
                return Report {
                    result: if by_trigger { "ok" } else { "failed" },
                    registered_via: via,
                    latency_ms: Some(latency),
                    error: (!by_trigger).then(|| {
                        format!(
                            "registered through {}, not the trigger",
                            via.map_or("an unknown way", Via::as_str)
                        )
                    }),
                    cleaned_up: true,
                };
            }
            Ok(None) => "the row never appeared".to_owned(),
            Err(e) => e.to_string(),
        };
        if Instant::now() + POLL >= until {
            return Report::failed(format!("read-back: {last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn attribute(name: &str, value: &str) -> AttributeType {
    AttributeType::builder()
        .name(name)
        .value(value)
        .build()
        .unwrap_or_else(|_| unreachable!("the name is set"))
}

/// Prints the heartbeat's metric line.
fn emit(report: &Report) {
    println!("{}", line(report, shared_auth::unix::millis()));
}

fn line(report: &Report, timestamp_ms: u64) -> String {
    let mut metrics = vec![(METRIC, 1, "Count")];
    if let Some(latency) = report.latency_ms {
        metrics.push((LATENCY_METRIC, latency, "Milliseconds"));
    }
    shared_aws::emf::line_in_sets(
        "post-confirm",
        &[("Result", report.result)],
        &[&["Service", "Result"]],
        &metrics,
        timestamp_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_heartbeat_event_names_its_pool_and_client() {
        let asked =
            requested(&json!({"tollgate": "heartbeat", "user_pool_id": "p", "client_id": "c"}))
                .expect("a heartbeat")
                .expect("valid");
        assert_eq!(
            asked,
            Request {
                user_pool_id: "p".into(),
                client_id: "c".into()
            }
        );
        for incomplete in [
            json!({"tollgate": "heartbeat"}),
            json!({"tollgate": "heartbeat", "user_pool_id": "p"}),
            json!({"tollgate": "heartbeat", "client_id": "c"}),
            json!({"tollgate": "heartbeat", "user_pool_id": "", "client_id": "c"}),
        ] {
            assert!(
                requested(&incomplete).is_some_and(|r| r.is_err()),
                "{incomplete}"
            );
        }
        for other in [
            json!({"tollgate": "sweep", "user_pool_id": "p"}),
            json!({"tollgate": "probe"}),
            json!({"triggerSource": "PostConfirmation_ConfirmSignUp"}),
        ] {
            assert!(requested(&other).is_none(), "{other}");
        }
    }

    #[test]
    fn the_line_counts_the_result_and_times_only_a_read_row() {
        use shared_aws::emf::metrics_of;
        let ok = Report {
            result: "ok",
            registered_via: Some(Via::Trigger),
            latency_ms: Some(840),
            error: None,
            cleaned_up: true,
        };
        let metrics = metrics_of(&line(&ok, 1));
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [METRIC, LATENCY_METRIC]);
        assert!(
            metrics
                .iter()
                .all(|m| m.dimensions.get("Result").map(String::as_str) == Some("ok"))
        );
        let failed = metrics_of(&line(&Report::failed("x".into()), 1));
        let names: Vec<&str> = failed.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [METRIC]);
        assert_eq!(
            failed[0].dimensions.get("Result").map(String::as_str),
            Some("failed")
        );
    }
}
