//! The retry queue and its dead-letter queue in moto, and Lambda's SQS poller played here:
//! moto keeps queues but never invokes a function from one, so the tests (and `cargo xtask
//! up`) receive a batch, hand it to the function as Lambda's event source mapping would, and
//! delete the messages the function did not report as failed.

use anyhow::{Context, Result};
use aws_sdk_sqs::Client as Sqs;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Value, json};

use crate::aws::AwsContext;

/// A retry queue whose redrive policy sends a message to its dead-letter queue after
/// `max_receives` receives.
#[derive(Debug, Clone)]
pub struct Queues {
    pub sqs: Sqs,
    pub retry: String,
    pub dead: String,
    retry_arn: String,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub receipt: String,
    pub body: String,
    pub receives: u32,
}

impl Queues {
    /// Creates both queues, named `tollgate-<label>-…` with a unique part.
    pub async fn create(
        sdk: &aws_config::SdkConfig,
        label: &str,
        max_receives: u32,
    ) -> Result<Self> {
        let sqs = Sqs::new(sdk);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = |kind: &str| format!("tollgate-{label}-{kind}-{}", &unique[..8]);
        let dead = sqs
            .create_queue()
            .queue_name(name("dead"))
            .send()
            .await
            .aws("create the dead-letter queue")?
            .queue_url
            .context("no queue url")?;
        let dead_arn = arn(&sqs, &dead).await?;
        let retry = sqs
            .create_queue()
            .queue_name(name("retry"))
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dead_arn, "maxReceiveCount": max_receives})
                    .to_string(),
            )
            .send()
            .await
            .aws("create the retry queue")?
            .queue_url
            .context("no queue url")?;
        let retry_arn = arn(&sqs, &retry).await?;
        Ok(Self {
            sqs,
            retry,
            dead,
            retry_arn,
        })
    }

    /// Queues that exist already (a deployed stack's), by URL.
    pub async fn existing(sdk: &aws_config::SdkConfig, retry: &str, dead: &str) -> Result<Self> {
        let sqs = Sqs::new(sdk);
        let retry_arn = arn(&sqs, retry).await?;
        Ok(Self {
            sqs,
            retry: retry.to_owned(),
            dead: dead.to_owned(),
            retry_arn,
        })
    }

    /// The function's settings for these queues, as `TOLLGATE__LAMBDA__…` variables.
    pub fn lambda_env(&self) -> Vec<(String, String)> {
        vec![
            ("TOLLGATE__LAMBDA__RETRY_QUEUE".into(), self.retry.clone()),
            (
                "TOLLGATE__LAMBDA__DEAD_LETTER_QUEUE".into(),
                self.dead.clone(),
            ),
        ]
    }

    /// Up to ten messages of `url` now visible, hidden for `visibility_s` after this receive.
    pub async fn receive(&self, url: &str, visibility_s: i32) -> Result<Vec<Received>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility_s)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .aws("receive")?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Received {
                id: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receives: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    /// Makes a message received from the retry queue visible again at once: its backoff
    /// elapsed, as a test lets time pass.
    pub async fn show_again(&self, receipt: &str) -> Result<()> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.retry)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .aws("make the message visible again")?;
        Ok(())
    }

    /// How many messages `url` holds, visible or in flight (without receiving any).
    pub async fn count(&self, url: &str) -> Result<usize> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .aws("count the queue's messages")?;
        let attributes = out.attributes().cloned().unwrap_or_default();
        let number = |a: A| {
            attributes
                .get(&a)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        };
        Ok(number(A::ApproximateNumberOfMessages)
            + number(A::ApproximateNumberOfMessagesNotVisible))
    }

    /// Every message body of `url` now, each hidden for a minute and counted as received (a
    /// look at a queue nothing else reads, such as the dead-letter queue).
    pub async fn peek_all(&self, url: &str) -> Result<Vec<String>> {
        let mut bodies = Vec::new();
        for _ in 0..100 {
            let batch = self.receive(url, 60).await?;
            if batch.is_empty() {
                break;
            }
            bodies.extend(batch.into_iter().map(|m| m.body));
        }
        Ok(bodies)
    }

    /// The event Lambda's SQS poller sends for `messages` of the retry queue.
    pub fn batch_event(&self, messages: &[Received]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.id,
                    "receiptHandle": m.receipt,
                    "body": m.body,
                    "attributes": {"ApproximateReceiveCount": m.receives.to_string()},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.retry_arn,
                    "awsRegion": "ap-northeast-1",
                })
            })
            .collect();
        json!({ "Records": records })
    }

    /// One round of Lambda's poller on the retry queue: receive a batch, `invoke` the function
    /// with it, delete what it did not report failed. Returns (handed over, failed).
    pub async fn poll_once<F>(
        &self,
        visibility_s: i32,
        invoke: impl FnOnce(Value) -> F,
    ) -> Result<(usize, usize)>
    where
        F: std::future::Future<Output = Result<Value>>,
    {
        let batch = self.receive(&self.retry, visibility_s).await?;
        self.hand_over(batch, invoke).await
    }

    /// Hands `batch` (received from the retry queue) to the function as Lambda's poller does,
    /// and deletes what it did not report failed. Returns (handed over, failed).
    pub async fn hand_over<F>(
        &self,
        batch: Vec<Received>,
        invoke: impl FnOnce(Value) -> F,
    ) -> Result<(usize, usize)>
    where
        F: std::future::Future<Output = Result<Value>>,
    {
        if batch.is_empty() {
            return Ok((0, 0));
        }
        let answer = invoke(self.batch_event(&batch)).await?;
        let failed: Vec<&str> = answer["batchItemFailures"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|i| i["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let done: Vec<&Received> = batch
            .iter()
            .filter(|m| !failed.contains(&m.id.as_str()))
            .collect();
        if !done.is_empty() {
            let entries = done
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .build()
                        .context("a delete entry")
                })
                .collect::<Result<Vec<_>>>()?;
            self.sqs
                .delete_message_batch()
                .queue_url(&self.retry)
                .set_entries(Some(entries))
                .send()
                .await
                .aws("delete the handled messages")?;
        }
        Ok((batch.len(), failed.len()))
    }
}

async fn arn(sqs: &Sqs, url: &str) -> Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .aws("read the queue's ARN")?
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .context("the queue has no ARN")
}
