//! The PostConfirmation trigger. Cognito has confirmed the user before it runs, and an error
//! here would only show the person an error for an account that works (and never run again),
//! so the trigger never fails a confirmed sign-up: it tries the api for
//! `lambda.trigger_budget_ms`, well inside Cognito's 5 s, and hands what it could not finish
//! to the retry queue. Only when even the queue cannot be written is a registration `lost`
//! (a metric the alarms count); the sweep then finds the user.

use std::time::{Duration, Instant};

use crate::Deps;
use crate::event::Registration;
use crate::outcome::{self, Outcome, Path};

/// Registers `registration`, or queues it; returns how it ended. Never an error.
pub async fn on_sign_up(deps: &Deps, registration: &Registration, deadline: Instant) -> Outcome {
    let budget = Duration::from_millis(deps.settings.lambda.trigger_budget_ms);
    let tries_until = deadline.min(Instant::now() + budget);
    let error = match deps
        .registrar
        .deliver(registration, Path::Trigger.via(), tries_until)
        .await
    {
        Ok(delivered) => {
            tracing::info!(sub = %registration.sub, status = delivered.status, attempts = delivered.attempts, "user registered");
            let outcome = Outcome::of(&delivered);
            outcome::emit(registration, Path::Trigger, outcome, delivered.attempts);
            return outcome;
        }
        Err(e) => e,
    };
    let reason = error.to_string();
    let handed_off = match &deps.queue {
        Some(queue) => {
            let send = queue.hand_off(registration, &reason);
            match tokio::time::timeout_at(deadline.into(), send).await {
                Ok(sent) => sent.map_err(|e| e.to_string()),
                Err(_) => Err("no time left to queue it".to_owned()),
            }
        }
        None => Err("no retry queue (lambda.retry_queue)".to_owned()),
    };
    let outcome = match handed_off {
        Ok(()) => {
            tracing::warn!(sub = %registration.sub, cause = %reason, "not registered in time; queued for retry");
            Outcome::Queued
        }
        Err(queue_error) => {
            tracing::error!(sub = %registration.sub, cause = %reason, queue_error, "not registered and not queued: the sweep must find this user");
            Outcome::Lost
        }
    };
    outcome::emit(registration, Path::Trigger, outcome, error.attempts());
    outcome
}
