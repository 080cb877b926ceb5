//! Durable delivery: the retry queue is drained by the sign-up function itself, one failure at
//! a time (`ReportBatchItemFailures`).

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use opskit::aws::AwsContext;

use super::Outputs;
use crate::support::terraform::output_str;

/// The function's event source mapping on the retry queue: enabled, reporting failures per
/// message.
pub(super) async fn queue_drained_by_the_function(
    sdk: &SdkConfig,
    outputs: &Outputs,
) -> Result<String> {
    let function = output_str(outputs, "lambda_function_name")?;
    let queue_arn = output_str(outputs, "retry_queue_arn")?;
    let queue_name = queue_arn.rsplit(':').next().unwrap_or_default().to_owned();
    // Filtered by the queue and matched on the function's ARN: a local AWS stores the
    // function's name in another form than the one the `FunctionName` filter compares with.
    let mappings = aws_sdk_lambda::Client::new(sdk)
        .list_event_source_mappings()
        .event_source_arn(&queue_arn)
        .send()
        .await
        .aws("Lambda")?;
    let mapping = mappings
        .event_source_mappings()
        .iter()
        .find(|m| {
            m.function_arn().is_some_and(|arn| {
                arn.ends_with(&format!(":function:{function}"))
                    || arn.contains(&format!(":function:{function}:"))
            })
        })
        .with_context(|| format!("no event source mapping from {queue_name} to {function}"))?;
    let state = mapping.state().unwrap_or("?");
    let per_message = mapping
        .function_response_types()
        .iter()
        .any(|t| t.as_str() == "ReportBatchItemFailures");
    if !matches!(state, "Enabled" | "Enabling" | "Creating" | "Updating") || !per_message {
        bail!(
            "the mapping from {queue_name} is {state}, reporting failures per message: {per_message}"
        );
    }
    Ok(format!(
        "{queue_name} → {function} ({state}, failures per message)"
    ))
}
