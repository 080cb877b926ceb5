//! The log both functions write: JSON lines on stderr, which Lambda sends to CloudWatch, each
//! inside the runtime's span carrying the request id.

/// The log filter from `RUST_LOG` in `target=level` form (e.g. `info` or
/// `warn,post_confirm=debug`); `info` when unset or unreadable. `Targets` rather than
/// `EnvFilter`: the same directives without span filters, and without a regex engine in the zip.
pub fn log_filter(directives: Option<&str>) -> tracing_subscriber::filter::Targets {
    directives.and_then(|d| d.parse().ok()).unwrap_or_else(|| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    })
}

/// Installs the JSON log subscriber (CloudWatch); the runtime's span carries the request id.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .without_time()
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_filter_reads_rust_log_and_falls_back_to_info() {
        use tracing::Level;
        use tracing_subscriber::filter::Targets;
        let enabled = |f: &Targets, target: &str, level| f.would_enable(target, &level);

        let default = log_filter(None);
        assert!(enabled(&default, "post_confirm", Level::INFO));
        assert!(!enabled(&default, "post_confirm", Level::DEBUG));

        let custom = log_filter(Some("warn,post_confirm=debug"));
        assert!(enabled(&custom, "post_confirm::client", Level::DEBUG));
        assert!(!enabled(&custom, "hyper", Level::INFO));
        assert!(enabled(&custom, "hyper", Level::WARN));

        // Unreadable directives do not silence the function: the default applies.
        let unreadable = log_filter(Some("post_confirm=loud"));
        assert!(enabled(&unreadable, "post_confirm", Level::INFO));
        assert!(!enabled(&unreadable, "post_confirm", Level::DEBUG));
    }
}
