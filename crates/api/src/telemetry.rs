//! Logging: JSON lines in the cloud (CloudWatch), readable lines locally; `RUST_LOG` filters.
//!
//! The functions install theirs in `lambda_support::telemetry`, and the two differ on purpose:
//! the api stamps each line and prints readable lines on a terminal, with `EnvFilter`'s span
//! directives; a function's lines are stamped by Lambda, always JSON, and filtered by `Targets`
//! so no regex engine rides in the zip. One init would make one side carry the other's weight.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. JSON unless `env` is `local` (or `TOLLGATE_LOG_FORMAT=json`).
pub fn init(env: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env != shared_auth::settings::DEFAULT_ENV
        || std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // Already installed (tests build several apps in one process): keep the first.
    let _ = result;
}
