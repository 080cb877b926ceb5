//! The tasks, one module each: `cargo xtask <task>` runs `flags::<Task>::run`, which reads as
//! the list of named steps it takes. What several tasks use lives in [`crate::support`].

pub mod bench;
#[cfg(feature = "cloud")]
pub mod deploy;
#[cfg(feature = "cloud")]
pub mod destroy;
pub mod fuzz;
pub mod migrate;
pub mod moto;
#[cfg(feature = "cloud")]
pub mod package;
#[cfg(feature = "cloud")]
pub mod reconcile;
#[cfg(feature = "cloud")]
pub mod redrive;
pub mod registry;
#[cfg(feature = "cloud")]
pub mod rotate_secret;
pub mod setup;
pub mod soak;
pub mod sqlx_prepare;
pub mod test;
pub mod timing;
pub mod up;
#[cfg(feature = "cloud")]
pub mod verify;
