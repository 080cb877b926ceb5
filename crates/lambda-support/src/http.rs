//! The HTTP client both functions call the api with.

use std::time::Duration;

use shared_auth::LambdaSettings;

/// TLS for the api's HTTPS: Mozilla's root set compiled in (`webpki-roots`), already parsed.
/// The system store costs a read and a parse of every certificate at each cold start (on
/// Debian 150 files, 3 ms; BENCHMARKS.md), and the ALB's certificate, from ACM or another
/// public CA, chains to a root in this set. A private CA on the ALB would need its root added
/// here. The set is as new as the last `cargo update`.
pub fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|_| unreachable!("aws-lc-rs implements TLS 1.2 and 1.3"))
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// The client: connection pool kept across invocations, rustls with the compiled-in public
/// roots ([`tls_config`]); never follows a redirect (it would carry the credential wherever
/// `Location` points), and speaks only HTTPS unless `https_only` is off (local runs).
/// `user_agent` names the function.
pub fn client(
    settings: &LambdaSettings,
    https_only: bool,
    user_agent: &str,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .redirect(reqwest::redirect::Policy::none())
        .https_only(https_only)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(user_agent)
        .build()
}
