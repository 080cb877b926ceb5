//! # stack-model: the stack as Terraform describes it
//!
//! Pure data, read once and decided on without running anything: what a Terraform state or
//! plan holds ([`resources`]), the network it makes ([`network`]: subnets, route tables, NAT
//! and internet gateways, security groups), and the flows the product needs and must never
//! allow ([`flows`]), decided on that network. Two readers: the tests' network twin
//! (`testkit::twin`), which builds the network in namespaces and sends real packets through
//! it, and `cargo xtask deploy --plan`, which refuses a plan whose network lacks a needed
//! flow or opens a forbidden one before anything is applied.

pub mod flows;
pub mod network;
pub mod resources;

pub use network::Network;
pub use resources::{Resource, resolve_plan, resources};
