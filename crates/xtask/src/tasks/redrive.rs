//! `cargo xtask redrive --env E`: the dead-letter queue back into the retry queue, where the
//! sign-up function takes each registration again. Run it once what sent them there is fixed
//! (each dead letter holds its reason; `aws sqs receive-message` shows them).
//!
//! In AWS it asks SQS to move them (`StartMessageMoveTask`, the console's redrive) and follows
//! the task to its end. A local AWS (moto) does not implement that call, so there xtask moves
//! them itself: receive, send to the retry queue, delete, until the queue is empty. The output
//! says which way it went. A dead letter the function wrote itself carries the message inside
//! it with its reason; the manual move unwraps it, and the function unwraps it either way.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::Client as Sqs;
use opskit::aws::AwsContext;

use crate::flags;
use crate::support::context::{block_on, check_local_aws, settings_for};
use crate::support::terraform;

impl flags::Redrive {
    pub fn run(self) -> Result<()> {
        let settings = settings_for(&self.env)?;
        check_local_aws(&settings)?;
        let outputs = || terraform::outputs(&self.env);
        let from = match self.from {
            Some(url) => url,
            None => terraform::output_str(&outputs()?, "dead_letter_queue_url")?,
        };
        let to = match self.to {
            Some(url) => url,
            None => terraform::output_str(&outputs()?, "retry_queue_url")?,
        };
        block_on(async {
            let sqs = Sqs::new(&shared_aws::sdk_config(&settings.aws).await);
            let moved = if settings.aws.endpoint_url.is_some() {
                let moved = move_by_hand(&sqs, &from, &to).await?;
                println!(
                    "moved {moved} message(s) by receive, send and delete (this local AWS has no StartMessageMoveTask)"
                );
                moved
            } else {
                let moved = move_task(&sqs, &from, &to).await?;
                println!("moved {moved} message(s) with SQS's message move task");
                moved
            };
            if moved == 0 {
                println!("the dead-letter queue was empty");
            }
            Ok(())
        })
    }
}

async fn queue_arn(sqs: &Sqs, url: &str) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .aws(&format!("cannot read {url}"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .with_context(|| format!("{url} has no ARN"))
}

/// SQS moves them (`StartMessageMoveTask`), followed until it completes.
async fn move_task(sqs: &Sqs, from: &str, to: &str) -> Result<u64> {
    let (source, destination) = (queue_arn(sqs, from).await?, queue_arn(sqs, to).await?);
    sqs.start_message_move_task()
        .source_arn(&source)
        .destination_arn(&destination)
        .send()
        .await
        .aws("StartMessageMoveTask")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15 * 60) {
        let tasks = sqs
            .list_message_move_tasks()
            .source_arn(&source)
            .max_results(1)
            .send()
            .await
            .aws("ListMessageMoveTasks")?;
        if let Some(task) = tasks.results().first() {
            match task.status() {
                Some("COMPLETED") => {
                    return Ok(
                        u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0)
                    );
                }
                Some("FAILED" | "CANCELLED") => bail!(
                    "the move task ended {}: {}",
                    task.status().unwrap_or("?"),
                    task.failure_reason().unwrap_or("no reason given")
                ),
                _ => eprintln!(
                    "  moved {} of {} so far",
                    task.approximate_number_of_messages_moved(),
                    task.approximate_number_of_messages_to_move().unwrap_or(0)
                ),
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    bail!("the move task did not complete in 15 minutes; ListMessageMoveTasks shows where it is")
}

/// Receive, send to the retry queue (a dead letter's inner message), delete, until empty.
async fn move_by_hand(sqs: &Sqs, from: &str, to: &str) -> Result<u64> {
    let mut moved = 0;
    loop {
        let batch = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .aws("receive from the dead-letter queue")?;
        if batch.messages().is_empty() {
            return Ok(moved);
        }
        for message in batch.messages() {
            let body = message.body().unwrap_or_default();
            let inner = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.to_owned());
            sqs.send_message()
                .queue_url(to)
                .message_body(inner)
                .send()
                .await
                .aws("send to the retry queue")?;
            sqs.delete_message()
                .queue_url(from)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .aws("delete from the dead-letter queue")?;
            moved += 1;
        }
    }
}
