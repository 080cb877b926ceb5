//! Draining the retry queue: an SQS event source mapping on the queue invokes the function,
//! in the same subnets, so through the same NAT address the allowlist names.
//!
//! A batch is answered with the failed message ids only (`ReportBatchItemFailures`): one
//! message's trouble never retries the others. A failure that may pass waits out a backoff
//! (the message's visibility, doubling per receive); one the api meant (a refusal other than
//! 408/429, a redirect), a message that cannot be read, or a failure on the last receive the
//! queue allows goes to the dead-letter queue at once, with its reason. The queue's own
//! redrive policy is the backstop should the function itself fail. A sweep's cursor goes on
//! with the sweep.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

use crate::Deps;
use crate::event::Registration;
use crate::outcome::{self, Outcome, Path};
use crate::queue::{DeadLetter, Message, RetryQueue, backoff};

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
        Ok(Message::Registration {
            registration,
            user_pool_id,
            ..
        }) => {
            let registration = registration.in_pool(&user_pool_id);
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
    match deps
        .registrar
        .deliver(registration, Path::Queue.via(), deadline)
        .await
    {
        Ok(delivered) => {
            outcome::emit(
                registration,
                Path::Queue,
                Outcome::of(&delivered),
                delivered.attempts,
            );
            tracing::info!(sub = %registration.sub, status = delivered.status, receives, "user registered from the queue");
            true
        }
        Err(e) if outcome::is_final(&e) || last => {
            outcome::emit(registration, Path::Queue, Outcome::GaveUp, e.attempts());
            tracing::error!(sub = %registration.sub, receives, cause = %e, "dead-lettering the registration");
            queue.dead_letter(body, &e.to_string()).await.is_ok()
        }
        Err(e) => {
            outcome::emit(registration, Path::Queue, Outcome::Retry, e.attempts());
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
