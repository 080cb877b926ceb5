//! The retry queue: what the trigger could not register in time waits here, and the same
//! function drains it (an SQS event source mapping on the queue invokes it, in the same
//! subnets, so through the same NAT address the allowlist names).
//!
//! A batch is answered with the failed message ids only (`ReportBatchItemFailures`): one
//! message's trouble never retries the others. A failure that may pass waits out a backoff
//! (the message's visibility, doubling per receive); one the api meant (a refusal other than
//! 408/429, a redirect), a message that cannot be read, or a failure on the last receive the
//! queue allows goes to the dead-letter queue at once, with its reason. The queue's own
//! redrive policy is the backstop should the function itself fail.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::Client as Sqs;
use aws_sdk_sqs::error::DisplayErrorContext;
use serde::{Deserialize, Serialize};

use crate::Deps;
use crate::event::Registration;
use crate::outcome::{self, Outcome};
use crate::sweep::Cursor;

/// What a queue message holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// A registration not finished yet, and why (never a secret).
    Registration {
        registration: Registration,
        reason: String,
        /// When it was first queued (unix seconds).
        queued_at: u64,
    },
    /// Where a sweep stopped, for the next invocation to continue.
    Sweep(Cursor),
}

/// A message the api refused for good, or that failed too often, with why: what the
/// dead-letter queue holds, for an operator and for `cargo xtask redrive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    /// The message as it was queued (kept as text: it may not have been readable).
    pub message: String,
}

/// Why the queue could not be written.
#[derive(Debug, thiserror::Error)]
#[error("SQS: {0}")]
pub struct QueueError(String);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The retry queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct RetryQueue {
    pub sqs: Sqs,
    pub url: String,
    pub dead_letters: Option<String>,
}

impl RetryQueue {
    /// Queues `message`.
    pub async fn send(&self, message: &Message) -> Result<(), QueueError> {
        self.send_to(
            &self.url,
            &serde_json::to_string(message).unwrap_or_default(),
        )
        .await
    }

    /// Queues `registration`, not registered because of `reason`.
    pub async fn hand_off(
        &self,
        registration: &Registration,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.send(&Message::Registration {
            registration: registration.clone(),
            reason: reason.chars().take(500).collect(),
            queued_at: unix_now(),
        })
        .await
    }

    /// Sends `body` to the dead-letter queue with `reason`.
    pub async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        let Some(url) = &self.dead_letters else {
            return Err(QueueError(
                "no dead-letter queue (lambda.dead_letter_queue)".into(),
            ));
        };
        let letter = DeadLetter {
            reason: reason.chars().take(500).collect(),
            message: body.to_owned(),
        };
        self.send_to(url, &serde_json::to_string(&letter).unwrap_or_default())
            .await
    }

    async fn send_to(&self, url: &str, body: &str) -> Result<(), QueueError> {
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))
    }

    /// Hides the message from the queue for `delay`, so its next receive comes after it.
    async fn back_off(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(900))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))
    }
}

/// How long a queued registration waits before its next receive, after `receives`.
pub fn backoff(first: Duration, receives: u32) -> Duration {
    let doubled = first.saturating_mul(1 << receives.saturating_sub(1).min(10));
    doubled.min(Duration::from_secs(15 * 60))
}

/// Handles a batch from the retry queue; returns the ids of the messages to receive again.
pub async fn drain(deps: &Deps, batch: SqsEvent, deadline: Instant) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        // A message whose registration could not be tried (no time left) is received again.
        let handled = deadline.saturating_duration_since(Instant::now()) > PER_MESSAGE
            && handle(deps, &message, deadline).await;
        if !handled {
            response.add_failure(id);
        }
    }
    response
}

/// What one message may take at most.
const PER_MESSAGE: Duration = Duration::from_secs(6);

/// Handles one message; `true` when it is done with (registered, or dead-lettered).
async fn handle(deps: &Deps, message: &SqsMessage, deadline: Instant) -> bool {
    let Some(queue) = &deps.queue else {
        tracing::error!("a queue message arrived, but lambda.retry_queue is not set");
        return false;
    };
    let body = message.body.clone().unwrap_or_default();
    let receives: u32 = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    // A dead letter moved back as it was (`StartMessageMoveTask`) carries the message inside.
    let body = match serde_json::from_str::<DeadLetter>(&body) {
        Ok(letter) => letter.message,
        Err(_) => body,
    };
    match serde_json::from_str::<Message>(&body) {
        Err(e) => {
            let reason = format!("unreadable message: {e}");
            tracing::error!(reason, "dead-lettering a message nobody can act on");
            queue.dead_letter(&body, &reason).await.is_ok()
        }
        Ok(Message::Sweep(cursor)) => {
            let counts = crate::sweep::run(deps, cursor, deadline).await;
            tracing::info!(?counts, "sweep continued from the queue");
            true
        }
        Ok(Message::Registration { registration, .. }) => {
            let budget = (Instant::now() + PER_MESSAGE).min(deadline);
            let receipt = message.receipt_handle.as_deref().unwrap_or_default();
            retry(deps, queue, &registration, &body, receipt, receives, budget).await
        }
    }
}

/// One more attempt at a queued registration.
async fn retry(
    deps: &Deps,
    queue: &RetryQueue,
    registration: &Registration,
    body: &str,
    receipt: &str,
    receives: u32,
    deadline: Instant,
) -> bool {
    let last = receives >= deps.settings.deploy.retry_max_receives;
    match deps.registrar.deliver(registration, deadline).await {
        Ok(delivered) => {
            outcome::emit(Outcome::of(&delivered), delivered.attempts);
            tracing::info!(sub = %registration.sub, status = delivered.status, receives, "user registered from the queue");
            true
        }
        Err(e) if outcome::is_final(&e) || last => {
            outcome::emit(Outcome::GaveUp, e.attempts());
            tracing::error!(sub = %registration.sub, receives, cause = %e, "dead-lettering the registration");
            queue.dead_letter(body, &e.to_string()).await.is_ok()
        }
        Err(e) => {
            outcome::emit(Outcome::Retry, e.attempts());
            let delay = backoff(
                Duration::from_secs(deps.settings.lambda.retry_backoff_s),
                receives,
            );
            tracing::warn!(sub = %registration.sub, receives, cause = %e, retry_in_s = delay.as_secs(), "registration failed again");
            if let Err(e) = queue.back_off(receipt, delay).await {
                tracing::warn!(error = %e, "cannot delay the retry; the queue's visibility timeout applies");
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_per_receive_up_to_fifteen_minutes() {
        let first = Duration::from_secs(30);
        assert_eq!(backoff(first, 1), Duration::from_secs(30));
        assert_eq!(backoff(first, 2), Duration::from_secs(60));
        assert_eq!(backoff(first, 4), Duration::from_secs(240));
        assert_eq!(backoff(first, 9), Duration::from_secs(900));
        assert_eq!(backoff(first, 40), Duration::from_secs(900));
    }

    #[test]
    fn messages_read_back_as_written_and_never_hold_a_secret_field() {
        let message = Message::Registration {
            registration: Registration {
                sub: "7d8ca528-4931-4254-9273-ea5ee853f271".into(),
                email: Some("ada@example.com".into()),
                email_verified: true,
                username: "ada".into(),
            },
            reason: "gave up after 4 attempt(s): 503 Service Unavailable".into(),
            queued_at: 1_700_000_000,
        };
        let text = serde_json::to_string(&message).expect("json");
        assert_eq!(
            serde_json::from_str::<Message>(&text).expect("back"),
            message
        );
        let fields: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(fields["kind"], "registration");
        assert!(fields["registration"].get("secret").is_none());
    }
}
