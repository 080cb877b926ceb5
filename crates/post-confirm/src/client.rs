//! Delivering a registration to the API inside Cognito's time budget.
//!
//! Cognito waits 5 s for the trigger (and retries it itself up to 3 times), so every attempt,
//! backoff and secret refetch is bounded by the invocation's deadline minus a margin.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use shared_auth::{GuardContract, LambdaSettings};

use crate::event::Registration;
use crate::secret::{SecretCache, SecretError};

/// An attempt with less time than this left is not started.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_millis(1_000);

/// A registration the API accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// 201 (created) or 200 (already registered).
    pub status: u16,
    pub attempts: u32,
}

/// Why a registration could not be delivered. Never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the API refused the registration with {status} (not retried)")]
    Rejected { status: u16, attempts: u32 },
    /// A redirect is never followed: it would carry the credential and the user to wherever
    /// `Location` points. A misconfigured `lambda.api_base_url` or a hijacked route.
    #[error(
        "the API answered {status} redirecting to `{location}`; not followed (check lambda.api_base_url)"
    )]
    Redirected {
        status: u16,
        location: String,
        attempts: u32,
    },
    #[error("no time left before the deadline to read the shared secret")]
    SecretTimedOut,
    #[error("gave up after {attempts} attempt(s): {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("cannot read the shared secret: {0}")]
    Secret(#[from] SecretError),
}

impl DeliveryError {
    pub fn attempts(&self) -> u32 {
        match self {
            DeliveryError::Rejected { attempts, .. }
            | DeliveryError::Redirected { attempts, .. }
            | DeliveryError::Exhausted { attempts, .. } => *attempts,
            DeliveryError::Secret(_) | DeliveryError::SecretTimedOut => 0,
        }
    }
}

/// Sends registrations to the API's guarded route.
#[derive(Debug)]
pub struct Registrar {
    pub http: reqwest::Client,
    pub contract: GuardContract,
    pub settings: LambdaSettings,
    pub secrets: SecretCache,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a status is worth another attempt.
fn transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

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

impl Registrar {
    /// The HTTP client the Lambda uses: connection pool kept across invocations, rustls with
    /// the compiled-in public roots ([`tls_config`]); never follows a redirect, and speaks only
    /// HTTPS unless `https_only` is off (local runs).
    pub fn http_client(
        settings: &LambdaSettings,
        https_only: bool,
    ) -> reqwest::Result<reqwest::Client> {
        let tls = tls_config();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(https_only)
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("tollgate-post-confirm/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// The guarded route's URL.
    fn url(&self) -> String {
        format!(
            "{}{}",
            self.settings.api_base_url.trim_end_matches('/'),
            self.contract.path
        )
    }

    /// A request to the guarded route carrying `body`, signed with `secret` now.
    fn signed(&self, secret: &secrecy::SecretString, body: &[u8]) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(self.contract.method.as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let mut request = self
            .http
            .request(method, self.url())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in self
            .contract
            .credentials(secret, &self.contract.path, body, unix_now())
            .iter()
        {
            request = request.header(name, value);
        }
        request
    }

    /// A dry run of the guarded route signed with the current secret, as every registration
    /// travels (in AWS: NAT gateway, WAF, ALB): the api checks the whole guard and answers
    /// `204` with the version it matched, writing nothing. Returns the status and that version.
    pub async fn dry_run(&self, deadline: Instant) -> Result<(u16, String), DeliveryError> {
        let secret = tokio::time::timeout_at(deadline.into(), self.secrets.get())
            .await
            .map_err(|_| DeliveryError::SecretTimedOut)??;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let response = self
            .signed(&secret, b"{}")
            .header(shared_auth::DRY_RUN_HEADER, "1")
            .timeout(remaining)
            .send()
            .await
            .map_err(|e| DeliveryError::Exhausted {
                attempts: 1,
                last: describe(&e),
            })?;
        let verified = response
            .headers()
            .get(shared_auth::VERIFIED_WITH_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(20)
            .collect();
        Ok((response.status().as_u16(), verified))
    }

    /// Delivers `registration`, retrying transient failures until `deadline`.
    pub async fn deliver(
        &self,
        registration: &Registration,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let body = serde_json::to_vec(registration)
            .unwrap_or_else(|_| unreachable!("plain strings serialise"));
        let attempt_timeout = Duration::from_millis(self.settings.attempt_timeout_ms);
        let mut secret = tokio::time::timeout_at(deadline.into(), self.secrets.get())
            .await
            .map_err(|_| DeliveryError::SecretTimedOut)??;
        let mut refetched = false;
        let mut last = String::from("no attempt fitted before the deadline");
        let mut attempts = 0;

        while attempts < self.settings.max_attempts {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < MIN_ATTEMPT {
                break;
            }
            attempts += 1;
            let request = self
                .signed(&secret, &body)
                .timeout(attempt_timeout.min(remaining));
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    return Ok(Delivered {
                        status: response.status().as_u16(),
                        attempts,
                    });
                }
                Ok(response) if response.status() == StatusCode::FORBIDDEN && !refetched => {
                    // Most likely a rotation the cache has not seen: refetch once, re-sign, retry now.
                    tracing::warn!(
                        attempt = attempts,
                        "API answered 403; refetching the secret once"
                    );
                    refetched = true;
                    secret = tokio::time::timeout_at(deadline.into(), self.secrets.refresh())
                        .await
                        .map_err(|_| DeliveryError::SecretTimedOut)??;
                    last = "403 Forbidden".into();
                    continue;
                }
                Ok(response) if response.status().is_redirection() => {
                    let location = response
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(none)")
                        .chars()
                        .take(200)
                        .collect();
                    return Err(DeliveryError::Redirected {
                        status: response.status().as_u16(),
                        location,
                        attempts,
                    });
                }
                Ok(response) if transient(response.status()) => {
                    last = response.status().to_string()
                }
                Ok(response) => {
                    return Err(DeliveryError::Rejected {
                        status: response.status().as_u16(),
                        attempts,
                    });
                }
                Err(e) => last = describe(&e),
            }
            tracing::warn!(attempt = attempts, cause = %last, "registration attempt failed");
            if attempts < self.settings.max_attempts {
                let backoff = backoff(attempts);
                let remaining = deadline.saturating_duration_since(Instant::now());
                if backoff + MIN_ATTEMPT > remaining {
                    break;
                }
                tokio::time::sleep(backoff).await;
            }
        }
        Err(DeliveryError::Exhausted { attempts, last })
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base·2^(n−1))].
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// An error's cause chain as one line (reqwest's top-level message alone says little).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "request error"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        for attempt in 1..20 {
            let b = backoff(attempt);
            let ceiling = BACKOFF_BASE * 2u32.pow((attempt - 1).min(10));
            assert!(b <= ceiling.min(BACKOFF_CAP), "attempt {attempt}: {b:?}");
        }
    }

    #[test]
    fn only_timeouts_throttling_and_server_errors_are_transient() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 415, 422] {
            assert!(!transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
