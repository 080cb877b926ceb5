//! The retry queue: what the trigger could not register in time waits here (a registration,
//! or where a sweep stopped), and the same function drains it ([`crate::drain`]). This module
//! is the queue's side alone: its messages, the writes (hand off, back off, dead-letter) and
//! the backoff; it reads neither the trigger nor the sweep.

use std::time::Duration;

use aws_sdk_sqs::Client as Sqs;
use aws_sdk_sqs::error::DisplayErrorContext;
use serde::{Deserialize, Serialize};

use crate::event::Registration;
use crate::lazy::LazyClient;

/// What a queue message holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// A registration not finished yet, and why (never a secret).
    Registration {
        registration: Registration,
        /// The user's pool (the registration's id is made from it); empty in a message queued
        /// before it was kept.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        user_pool_id: String,
        reason: String,
        /// When it was first queued (unix seconds).
        queued_at: u64,
    },
    /// Where a sweep stopped, for the next invocation to continue.
    Sweep(Cursor),
}

/// Where a sweep is: the pool, the oldest creation time it covers, the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub user_pool_id: String,
    /// Users created at or after this (unix seconds); `None`: every user.
    pub since: Option<i64>,
    /// ListUsers' pagination token; `None`: the first page.
    pub token: Option<String>,
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

/// The retry queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct RetryQueue {
    /// Built on the first hand-off or drain, never on a direct registration.
    pub sqs: LazyClient<Sqs>,
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
            user_pool_id: registration.user_pool_id.clone(),
            reason: reason.chars().take(500).collect(),
            queued_at: shared_auth::unix::seconds(),
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
            .get()
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))
    }

    /// Hides the message from the queue for `delay`, so its next receive comes after it.
    pub async fn back_off(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.sqs
            .get()
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
                user_pool_id: String::new(),
            },
            user_pool_id: "ap-northeast-1_Example".into(),
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
        assert_eq!(fields["user_pool_id"], "ap-northeast-1_Example");
        assert!(fields["registration"].get("secret").is_none());
    }
}
