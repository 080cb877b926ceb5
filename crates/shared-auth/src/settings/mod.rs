//! The settings every deployable loads: the shared [`GuardContract`] plus the sections that
//! only one side reads ([`ApiSettings`], [`LambdaSettings`], [`AwsSettings`]).
//!
//! Loading order (later wins):
//! 1. `deploy/<env>.toml`, where `<env>` is `TOLLGATE_ENV` (default `local`). The binaries carry
//!    a copy of every file in `deploy/`; `TOLLGATE_CONFIG_DIR` makes them read `<dir>/<env>.toml`
//!    from disk instead.
//! 2. Environment variables `TOLLGATE__SECTION__KEY` (double underscores; lists are
//!    comma-separated, e.g. `TOLLGATE__GUARD__ALLOWED_CIDRS=203.0.113.7/32,2001:db8::/64`).
//! 3. `DATABASE_URL`, when set, replaces `api.database_url`.
//!
//! Unknown keys are errors, and every validation error names the key it is about.

//!
//! Three parts: [`schema`] (the types and their defaults), [`load`] (files, overrides and error
//! messages) and [`validate`] (what the types alone cannot say). Each deployable validates only
//! the sections it reads ([`Component`]): a wrong `deploy.*` key must not stop the api.

pub mod capacity;
mod load;
mod schema;
mod supplied;
mod validate;

pub use load::{ConfigError, is_environment_name, load, load_for};
pub use schema::*;
pub use supplied::Unfilled;
pub use validate::KEEP_ALIVE_MARGIN_S;

/// The environment used when `TOLLGATE_ENV` is unset.
pub const DEFAULT_ENV: &str = "local";
/// Prefix of the environment overrides (`TOLLGATE__GUARD__PATH=/user`).
pub const ENV_PREFIX: &str = "TOLLGATE";
/// Separator between prefix, section and key in environment overrides.
pub const ENV_SEPARATOR: &str = "__";

/// Who loads the settings, and so which sections are validated. Every component parses the
/// whole file (unknown keys are errors everywhere) and validates the contract and `aws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The api service: `api.*`.
    Api,
    /// The post-confirm Lambda: `lambda.*`, its retry queue included.
    Lambda,
    /// The guard secret's rotation function: `lambda.*` to reach the api as the sign-up
    /// function does (HTTPS outside local), without the sign-up function's queue.
    Rotation,
    /// xtask, which renders every deployable's environment: every section.
    Deploy,
}
