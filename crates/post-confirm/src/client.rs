//! Delivering a registration to the API inside Cognito's time budget.
//!
//! Cognito waits 5 s for the trigger (and retries it itself up to 3 times), so every attempt,
//! backoff and secret refetch is bounded by the invocation's deadline minus a margin.

use std::time::{Duration, Instant};

use lambda_support::route::{self, GuardedRoute};
use lambda_support::secret::{Keys, SecretCache, SecretError};
use reqwest::StatusCode;
use shared_auth::LambdaSettings;

use crate::event::Registration;

/// The body of `POST /user`: the registration and the way it came in.
#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    registration: &'a Registration,
    via: shared_auth::heartbeat::Via,
}

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
    pub route: GuardedRoute,
    pub settings: LambdaSettings,
    pub secrets: SecretCache,
}

/// What one attempt's answer means for the delivery.
enum Judged {
    Done(Delivered),
    /// 403: most likely a rotation the cache has not seen; refetch the secret and try again
    /// (unless the answer's `Date` showed this host's clock off: then the clock was the cause).
    Refetch,
    /// Worth another attempt (timeout, throttling, a server error), with why.
    Retry(String),
    Failed(DeliveryError),
}

/// Whether a status is worth another attempt.
fn transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The meaning of attempt `attempts`'s outcome.
fn judge(outcome: reqwest::Result<reqwest::Response>, attempts: u32, refetched: bool) -> Judged {
    let response = match outcome {
        Ok(response) => response,
        Err(e) => return Judged::Retry(describe(&e)),
    };
    let status = response.status();
    if status.is_success() {
        return Judged::Done(Delivered {
            status: status.as_u16(),
            attempts,
        });
    }
    if status == StatusCode::FORBIDDEN && !refetched {
        return Judged::Refetch;
    }
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none)")
            .chars()
            .take(200)
            .collect();
        return Judged::Failed(DeliveryError::Redirected {
            status: status.as_u16(),
            location,
            attempts,
        });
    }
    if transient(status) {
        return Judged::Retry(status.to_string());
    }
    Judged::Failed(DeliveryError::Rejected {
        status: status.as_u16(),
        attempts,
    })
}

impl Registrar {
    /// The keys to sign with, or the error that ends the delivery when `deadline` comes first.
    async fn secret(&self, deadline: Instant, fresh: bool) -> Result<Keys, DeliveryError> {
        let read = async {
            if fresh {
                self.secrets.refresh().await
            } else {
                self.secrets.get().await
            }
        };
        tokio::time::timeout_at(deadline.into(), read)
            .await
            .map_err(|_| DeliveryError::SecretTimedOut)?
            .map_err(DeliveryError::from)
    }

    /// A dry run of the guarded route signed with the current secret, as every registration
    /// travels (in AWS: NAT gateway, WAF, ALB): the api checks the whole guard and answers
    /// `204` with the version it matched, writing nothing. Returns the status and that version.
    pub async fn dry_run(&self, deadline: Instant) -> Result<(u16, String), DeliveryError> {
        let secret = self.secret(deadline, false).await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let response = self
            .route
            .dry_run(&secret)
            .timeout(remaining)
            .send()
            .await
            .map_err(|e| DeliveryError::Exhausted {
                attempts: 1,
                last: describe(&e),
            })?;
        Ok((response.status().as_u16(), route::verified_with(&response)))
    }

    /// The heartbeat's read-and-delete of its user `sub`: `Some(way in)` when the row was there
    /// (and is gone now), `None` when it is not there (yet). One request, and one more with a
    /// refetched secret after a 403, as a registration does.
    pub async fn forget(
        &self,
        sub: &str,
        deadline: Instant,
    ) -> Result<Option<Option<shared_auth::heartbeat::Via>>, DeliveryError> {
        let mut secret = self.secret(deadline, false).await?;
        for attempt in 1..=2 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt_timeout = Duration::from_millis(self.settings.attempt_timeout_ms);
            let response = self
                .route
                .forget(&secret, sub)
                .timeout(attempt_timeout.min(remaining))
                .send()
                .await
                .map_err(|e| DeliveryError::Exhausted {
                    attempts: attempt,
                    last: describe(&e),
                })?;
            match response.status() {
                StatusCode::OK => {
                    let forgotten: shared_auth::heartbeat::Forgotten = response
                        .json()
                        .await
                        .map_err(|e| DeliveryError::Exhausted {
                            attempts: attempt,
                            last: describe(&e),
                        })?;
                    return Ok(Some(forgotten.registered_via));
                }
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::FORBIDDEN if attempt == 1 => {
                    if !self.learn_clock(&response) {
                        secret = self.secret(deadline, true).await?;
                    }
                }
                status => {
                    return Err(DeliveryError::Rejected {
                        status: status.as_u16(),
                        attempts: attempt,
                    });
                }
            }
        }
        Err(DeliveryError::Rejected {
            status: StatusCode::FORBIDDEN.as_u16(),
            attempts: 2,
        })
    }

    /// Delivers `registration`, which came in by `via` (the body says so), retrying transient
    /// failures until `deadline`.
    pub async fn deliver(
        &self,
        registration: &Registration,
        via: shared_auth::heartbeat::Via,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let body = serde_json::to_vec(&Body { registration, via })
            .unwrap_or_else(|_| unreachable!("plain strings serialise"));
        let id = registration.id();
        let attempt_timeout = Duration::from_millis(self.settings.attempt_timeout_ms);
        let mut secret = self.secret(deadline, false).await?;
        let mut refetched = false;
        let mut last = String::from("no attempt fitted before the deadline");
        let mut attempts = 0;
        while attempts < self.settings.max_attempts {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < MIN_ATTEMPT {
                break;
            }
            attempts += 1;
            let sent = self
                .route
                .signed(&secret, &id, &body)
                .timeout(attempt_timeout.min(remaining))
                .send()
                .await;
            let clock_was_off = matches!(&sent, Ok(response) if self.learn_clock(response));
            match judge(sent, attempts, refetched) {
                Judged::Done(delivered) => return Ok(delivered),
                Judged::Failed(e) => return Err(e),
                // The clock explains the refusal: the same keys, signed by the corrected clock.
                // (A refetch would ask Secrets Manager, which refuses a skewed host too.)
                Judged::Refetch if clock_was_off => {
                    last = "403 Forbidden (this host's clock was off)".into();
                    continue;
                }
                Judged::Refetch => {
                    tracing::warn!(
                        attempt = attempts,
                        "API answered 403; refetching the secret once"
                    );
                    refetched = true;
                    secret = self.secret(deadline, true).await?;
                    last = "403 Forbidden".into();
                    continue;
                }
                Judged::Retry(why) => last = why,
            }
            tracing::warn!(attempt = attempts, cause = %last, "registration attempt failed");
            if attempts < self.settings.max_attempts && !self.back_off(attempts, deadline).await {
                break;
            }
        }
        Err(DeliveryError::Exhausted { attempts, last })
    }

    /// After a refusal, corrects the clock requests are signed by from the answer's `Date`
    /// when it is off (this host's clock, not the secret, may be why the api refused: a
    /// timestamp further than `max_skew_s` from its clock is `stale`); whether it was. Later
    /// requests of this execution environment are signed by the corrected clock.
    fn learn_clock(&self, response: &reqwest::Response) -> bool {
        if response.status() != StatusCode::FORBIDDEN {
            return false;
        }
        let Some(offset_s) = self.route.clock.learn(response) else {
            return false;
        };
        tracing::warn!(
            offset_s,
            "the api's clock (its answer's Date) is {offset_s} s from this host's: signing by the api's clock"
        );
        true
    }

    /// Waits before attempt `attempts + 1`; `false` when the wait and an attempt no longer fit
    /// before `deadline`.
    async fn back_off(&self, attempts: u32, deadline: Instant) -> bool {
        let backoff = backoff(attempts);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if backoff + MIN_ATTEMPT > remaining {
            return false;
        }
        tokio::time::sleep(backoff).await;
        true
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
