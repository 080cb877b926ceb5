//! The tasks, one module each: `cargo xtask <task>` runs `flags::<Task>::run`, which reads as
//! the list of named steps it takes. What several tasks use lives in [`crate::support`].

pub mod bench;
pub mod deploy;
pub mod destroy;
pub mod fuzz;
pub mod migrate;
pub mod moto;
pub mod package;
pub mod reconcile;
pub mod redrive;
pub mod registry;
pub mod rotate_secret;
pub mod setup;
pub mod sqlx_prepare;
pub mod test;
pub mod timing;
pub mod up;
pub mod verify;
