//! Giving AWS SDK errors their context.

use aws_sdk_secretsmanager::error::DisplayErrorContext;

/// Why an AWS call failed, with the SDK's whole cause chain (its top-level message alone is
/// often just "service error").
pub fn explain<E: std::error::Error>(e: &E) -> String {
    DisplayErrorContext(e).to_string()
}

/// `.aws("what was attempted")` on any AWS SDK result: an `anyhow` error naming the attempt and
/// the SDK's full cause chain.
pub trait AwsContext<T> {
    fn aws(self, what: &str) -> anyhow::Result<T>;
}

impl<T, E: std::error::Error> AwsContext<T> for Result<T, E> {
    fn aws(self, what: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{what}: {}", explain(&e)))
    }
}
