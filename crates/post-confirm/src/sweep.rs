//! The sweep: the backstop under the trigger and the queue. EventBridge Scheduler invokes the
//! function every `deploy.sweep_every_minutes` with a sweep event; it lists the user pool's
//! confirmed, enabled users created within `lambda.sweep_window_s` and registers each
//! (idempotent: a registered user answers 200). `cargo xtask reconcile` sends the same event
//! without a window, for every user.
//!
//! One invocation works for `lambda.sweep_budget_ms` at most; if the pool has more pages, it
//! queues its cursor and the next invocation (from the queue) goes on. Pages are read at most
//! ten a second: ListUsers shares a 30-per-second quota with the app's own user operations.
//! A user the api cannot register now is queued like a trigger's registration.

use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider::error::DisplayErrorContext;
use aws_sdk_cognitoidentityprovider::types::{UserStatusType, UserType};
use serde::Serialize;
use serde_json::Value;

use crate::Deps;
use crate::event::Registration;
use crate::lazy::LazyClient;
use crate::outcome::{self, Outcome, Path};
use crate::queue::{Cursor, Message};

/// What one sweep invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Users on the pages read.
    pub listed: u32,
    /// Confirmed, enabled and inside the window: the ones registered.
    pub candidates: u32,
    /// The heartbeat's synthetic users ([`shared_auth::heartbeat`]): passed by, never
    /// registered, never counted as drift.
    pub heartbeat: u32,
    pub registered: u32,
    pub already: u32,
    pub disabled: u32,
    /// Not registered now: handed to the retry queue.
    pub queued: u32,
    /// Neither registered nor queued.
    pub failed: u32,
    /// More pages remain: the cursor is queued for the next invocation.
    pub continued: bool,
    /// Why the listing stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The cursor a sweep event asks for: `{"tollgate":"sweep","user_pool_id":…,"window_s":…}`
/// (no `window_s`: every user). `None` when `raw` is not a sweep event.
pub fn requested(raw: &Value, default_window_s: u64) -> Option<Result<Cursor, String>> {
    if raw.get("tollgate").and_then(Value::as_str) != Some("sweep") {
        return None;
    }
    let Some(pool) = raw.get("user_pool_id").and_then(Value::as_str) else {
        return Some(Err("a sweep event names its user_pool_id".into()));
    };
    let window = match raw.get("window_s") {
        None => Some(default_window_s),
        Some(Value::Null) => None,
        Some(w) => match w.as_u64() {
            Some(w) => Some(w),
            None => return Some(Err(format!("window_s is not a number of seconds: {w}"))),
        },
    };
    let now = i64::try_from(shared_auth::unix::seconds()).unwrap_or(i64::MAX);
    Some(Ok(Cursor {
        user_pool_id: pool.to_owned(),
        since: window.map(|w| now.saturating_sub(i64::try_from(w).unwrap_or(i64::MAX))),
        token: None,
    }))
}

/// The least time a page needs: a listing and up to 60 registrations.
const PAGE_BUDGET: Duration = Duration::from_secs(8);
/// Pause between pages: at most ten ListUsers calls a second.
const PAGE_PAUSE: Duration = Duration::from_millis(100);
/// One user's registration may take this long before it is queued instead.
const PER_USER: Duration = Duration::from_secs(3);

/// Sweeps from `cursor` until the pages end or the budget does (then the cursor is queued).
pub async fn run(deps: &Deps, mut cursor: Cursor, deadline: Instant) -> Counts {
    let budget = Duration::from_millis(deps.settings.lambda.sweep_budget_ms);
    let deadline = deadline.min(Instant::now() + budget);
    let mut counts = Counts::default();
    let Some(cognito) = deps.cognito.as_ref().map(LazyClient::get) else {
        counts.error = Some("no Cognito client".into());
        return counts;
    };
    loop {
        let page = cognito
            .list_users()
            .user_pool_id(&cursor.user_pool_id)
            .limit(60)
            .set_pagination_token(cursor.token.clone())
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                counts.error = Some(DisplayErrorContext(&e).to_string());
                return counts;
            }
        };
        for user in page.users() {
            register(deps, user, &cursor, deadline, &mut counts).await;
        }
        cursor.token = page
            .pagination_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if cursor.token.is_none() {
            return counts;
        }
        if deadline.saturating_duration_since(Instant::now()) < PAGE_BUDGET {
            continue_later(deps, cursor, &mut counts).await;
            return counts;
        }
        tokio::time::sleep(PAGE_PAUSE).await;
    }
}

/// Queues the cursor for the next invocation.
async fn continue_later(deps: &Deps, cursor: Cursor, counts: &mut Counts) {
    match &deps.queue {
        Some(queue) => match queue.send(&Message::Sweep(cursor)).await {
            Ok(()) => counts.continued = true,
            Err(e) => counts.error = Some(format!("cannot queue the sweep's cursor: {e}")),
        },
        None => counts.error = Some("more pages, but no queue to continue through".into()),
    }
}

/// Registers `user` when it is a confirmed, enabled user created since `since`.
async fn register(
    deps: &Deps,
    user: &UserType,
    cursor: &Cursor,
    deadline: Instant,
    counts: &mut Counts,
) {
    let since = cursor.since;
    counts.listed += 1;
    if user.user_status() != Some(&UserStatusType::Confirmed) {
        return;
    }
    if !user.enabled() {
        // Disabled in Cognito: no registration for someone who cannot sign in.
        counts.disabled += 1;
        return;
    }
    let created = user.user_create_date().map(|d| d.secs());
    if since.is_some_and(|since| created.is_none_or(|c| c < since)) {
        return;
    }
    let attributes = user.attributes();
    let registration = Registration::from_attributes(user.username().unwrap_or_default(), |name| {
        attributes
            .iter()
            .find(|a| a.name() == name)
            .and_then(|a| a.value())
    });
    let Ok(registration) = registration.map(|r| r.in_pool(&cursor.user_pool_id)) else {
        counts.failed += 1;
        return;
    };
    if registration.is_heartbeat() {
        counts.heartbeat += 1;
        return;
    }
    counts.candidates += 1;
    let one = (Instant::now() + PER_USER).min(deadline);
    match deps
        .registrar
        .deliver(&registration, Path::Sweep.via(), one)
        .await
    {
        Ok(delivered) if delivered.status == 201 => {
            outcome::emit(
                &registration,
                Path::Sweep,
                Outcome::Registered,
                delivered.attempts,
            );
            tracing::info!(sub = %registration.sub, "sweep registered a missing user");
            counts.registered += 1;
        }
        Ok(_) => counts.already += 1,
        Err(e) => {
            let queued = match &deps.queue {
                Some(queue) => queue.hand_off(&registration, &e.to_string()).await.is_ok(),
                None => false,
            };
            if queued {
                outcome::emit(&registration, Path::Sweep, Outcome::Queued, e.attempts());
                counts.queued += 1;
            } else {
                outcome::emit(&registration, Path::Sweep, Outcome::Lost, e.attempts());
                counts.failed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sweep_event_names_its_pool_and_window() {
        let cursor = requested(&json!({"tollgate": "sweep", "user_pool_id": "p"}), 7200)
            .expect("a sweep")
            .expect("valid");
        let since = cursor.since.expect("a window");
        let now = i64::try_from(shared_auth::unix::seconds()).expect("now");
        assert!((now - 7200 - since).abs() <= 2, "{since}");
        let all = requested(
            &json!({"tollgate": "sweep", "user_pool_id": "p", "window_s": null}),
            7200,
        )
        .expect("a sweep")
        .expect("valid");
        assert_eq!(all.since, None, "no window: every user");
        assert!(requested(&json!({"tollgate": "sweep"}), 7200).is_some_and(|r| r.is_err()));
        assert!(requested(&json!({"tollgate": "probe"}), 7200).is_none());
        assert!(requested(&json!({"triggerSource": "x"}), 7200).is_none());
    }
}
