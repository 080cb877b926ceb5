//! What the tasks share, and nothing that is a task: where the workspace is and its settings
//! ([`context`]), children that stop with xtask ([`children`]), Terraform's working folder ([`terraform`]) and what it is given
//! ([`render`]), where the api's name leads ([`dns`]), the deployable artifacts ([`artifacts`], [`image`]), the ✓/✗ table
//! ([`report`]), and a Lambda function run here ([`local_lambda`], [`lambda_log`]).

pub mod artifacts;
pub mod children;
pub mod context;
#[cfg(feature = "cloud")]
pub mod dns;
#[cfg(feature = "cloud")]
pub mod image;
#[cfg(feature = "local")]
pub mod lambda_log;
#[cfg(feature = "cloud")]
pub mod local_lambda;
#[cfg(feature = "cloud")]
pub mod render;
pub mod report;
#[cfg(feature = "cloud")]
pub mod terraform;
pub mod toolchain;
