//! The tasks, one module each: `cargo xtask <task>` runs `flags::<Task>::run`, which reads as
//! the list of named steps it takes. What several tasks use lives in [`crate::support`].

#[cfg(feature = "local")]
pub mod bench;
pub mod cost;
#[cfg(feature = "cloud")]
pub mod deploy;
#[cfg(feature = "cloud")]
pub mod destroy;
pub mod fuzz;
pub mod migrate;
#[cfg(feature = "local")]
pub mod moto;
#[cfg(feature = "cloud")]
pub mod package;
#[cfg(feature = "cloud")]
pub mod reconcile;
#[cfg(feature = "cloud")]
pub mod redrive;
#[cfg(feature = "local")]
pub mod registry;
#[cfg(feature = "cloud")]
pub mod rotate_secret;
pub mod setup;
#[cfg(feature = "local")]
pub mod soak;
#[cfg(feature = "local")]
pub mod sqlx_prepare;
#[cfg(feature = "local")]
pub mod test;
pub mod tidy;
pub mod timing;
#[cfg(feature = "local")]
pub mod up;
#[cfg(feature = "cloud")]
pub mod verify;
