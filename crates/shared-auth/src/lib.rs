//! # shared-auth: the contract both ends of Tollgate agree on
//!
//! The post-confirm Lambda (sender) and the API (receiver) both depend on this crate, so the
//! rules that must match on both sides exist exactly once:
//!
//! * [`settings`]: the config schema and loader (`deploy/<env>.toml` + `TOLLGATE__…`), with the
//!   shared [`GuardContract`] at its centre.
//! * [`client_ip`]: which address a request comes from, read from `X-Forwarded-For` the only
//!   safe way (from the right, through trusted proxies only).
//! * [`secret`]: the accepted secrets ([`SecretSet`]) and the constant-time `static` check.
//! * [`signing`]: the `hmac` signature, [`sign`] and [`verify_signature`].
//! * [`verdict`]: why a request was refused, safe to log.
//! * [`rotation`]: the secret's rotation steps and how long one may wait.
//! * [`unix`]: the clock, read in one place.
//!
//! It has no async runtime, web framework or AWS SDK, and no features: how a component reaches
//! AWS by this contract (the SDK configuration, the secret's versions, EMF, the WAF rule group)
//! is `shared-aws`.
//!
//! ## The `hmac` wire format (version 1)
//!
//! Other implementations sign against this, so it is exact:
//!
//! * Headers: `x-tollgate-timestamp: <unix seconds>` and
//!   `x-tollgate-signature: v1=<base64, standard alphabet, padded>` (names configurable in the
//!   contract). The signature header may carry several space-separated entries, one per secret
//!   during a rotation; any one valid `v1=` entry passes, entries of other versions are ignored,
//!   at most [`signing::MAX_SIGNATURES`] entries are read.
//! * Signed bytes, UTF-8, `\n` separated, no trailing newline:
//!
//!   ```text
//!   v1
//!   {timestamp}
//!   {METHOD}
//!   {path}
//!   {lowercase hex SHA-256 of the raw body}
//!   ```
//!
//!   `path` is the request path exactly as sent and received (no decoding, no normalising),
//!   without the query string.
//! * MAC: HMAC-SHA256 keyed with the secret's UTF-8 bytes, checked with the MAC's
//!   constant-time verification.
//! * Freshness: refused when `|now − timestamp| > max_skew_s` (default 300 s).
//!
//! ```
//! use shared_auth::{sign, string_to_sign};
//! let secret = "tollgate-test-secret-0123456789abcdef".into();
//! let body = br#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271"}"#;
//! assert_eq!(
//!     string_to_sign(1_700_000_000, "POST", "/user", body),
//!     "v1\n1700000000\nPOST\n/user\n1bdf4a197bf648b88b80e0f1a5d5555d981c9c1f98d89e3f4e61f51cec414a66",
//! );
//! assert_eq!(
//!     sign(&secret, 1_700_000_000, "POST", "/user", body),
//!     "v1=4hnGX0uh3RLys5dOC97BVHQahwi3r3Hf9ltvrvZTi+g=",
//! );
//! ```
//!
//! ## The `static` mode
//!
//! The secret itself in one `x-custom-auth` line (name configurable). Both the presented value
//! and each accepted secret are hashed with SHA-256 and the digests compared with `subtle`, so
//! the comparison takes the same time whatever the lengths. Missing, empty or repeated headers
//! never pass.

/// The message the registration Lambda fails with when the backend cannot register a user:
/// what Cognito, and so the signing-up user's app, sees. Safe to show: it names no address,
/// secret or cause (those go to the Lambda's log).
pub const REGISTRATION_FAILED: &str = "registration backend unavailable";

/// A request to the guarded route carrying this header (any value) is a dry run: the guard
/// checks it completely (source, then credential) and, only if it passes, answers `204` with
/// [`VERIFIED_WITH_HEADER`] instead of running the handler. A rotation's `testSecret` step
/// proves the pending secret with it. It cannot open anything: without a valid credential it
/// is refused like any request, and with one it does less than the request would have.
pub const DRY_RUN_HEADER: &str = "x-tollgate-dry-run";

/// On a dry run's `204`: which accepted version the credential matched (`current`,
/// `previous` or `pending`).
pub const VERIFIED_WITH_HEADER: &str = "x-tollgate-verified-with";

/// The event that asks the sign-up function for a probe: a dry run through the path every
/// registration takes, signed with the current secret (`cargo xtask verify` sends it).
pub const PROBE_EVENT: &str = r#"{"tollgate":"probe"}"#;

pub mod client_ip;
pub mod rotation;
pub mod secret;
pub mod settings;
pub mod signing;
pub mod unix;
pub mod verdict;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

pub use client_ip::{client_ip, is_allowed};
pub use secret::{SecretError, SecretSet, generate as generate_secret, verify_static};
pub use settings::{
    ApiSettings, AwsSettings, Component, ConfigError, DbSslMode, DeploySettings, GuardContract,
    LambdaSettings, SecretSource, Settings, SigningMode, Unfilled, load, load_for,
};
pub use signing::{SignedRequest, sign, string_to_sign, verify_signature};
pub use verdict::{DenyReason, SecretVersion, Verdict};

/// The headers a sender adds to prove it knows the secret. `Debug` hides their values.
pub struct CredentialHeaders(Vec<(String, SecretString)>);

impl CredentialHeaders {
    /// Header name and value pairs, to be set on the outgoing request.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.expose_secret()))
    }
}

impl fmt::Debug for CredentialHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| (n, "[redacted]")))
            .finish()
    }
}

impl GuardContract {
    /// The sender's side: the credential headers for one request to the guarded route, signed
    /// at `now` (unix seconds) with `secret`, in the contract's mode.
    pub fn credentials(
        &self,
        secret: &SecretString,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> CredentialHeaders {
        CredentialHeaders(match self.mode {
            SigningMode::Static => vec![(self.static_header.clone(), secret.clone())],
            SigningMode::Hmac => vec![
                (self.timestamp_header.clone(), now.to_string().into()),
                (
                    self.signature_header.clone(),
                    sign(secret, now, &self.method, path, body).into(),
                ),
            ],
        })
    }

    /// The headers a request may carry a credential in, lower case and sorted: both modes'
    /// headers (whichever is active, so a switch of mode never starts logging a secret) and an
    /// app's bearer token and cookies. The WAF's log redacts exactly these.
    pub fn credential_headers(&self) -> Vec<String> {
        let mut headers: Vec<String> = [
            self.static_header.as_str(),
            self.signature_header.as_str(),
            "authorization",
            "cookie",
        ]
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
        headers.sort();
        headers.dedup();
        headers
    }

    /// The receiver's first look, from the headers alone and before the body is read or
    /// limited: is a credential there, once, in a shape that could pass? Without one, every
    /// source gets the same refusal at the same point, so the body limit and timeout reveal
    /// nothing about the source check.
    pub fn precheck<'a>(
        &self,
        header: impl Fn(&str) -> Vec<&'a [u8]>,
        now: u64,
    ) -> Result<(), DenyReason> {
        match self.mode {
            SigningMode::Static => secret::check_static_shape(&header(&self.static_header)),
            SigningMode::Hmac => signing::check_shape(
                &header(&self.timestamp_header),
                &header(&self.signature_header),
                now,
                self.max_skew_s,
            )
            .map(|_| ()),
        }
    }

    /// The receiver's side: checks the credential of a request in the contract's mode.
    ///
    /// `header` returns every line of the named header; `path` is the path as received,
    /// without the query.
    pub fn verify<'a>(
        &self,
        secrets: &SecretSet,
        method: &str,
        path: &str,
        body: &[u8],
        header: impl Fn(&str) -> Vec<&'a [u8]>,
        now: u64,
    ) -> Verdict {
        match self.mode {
            SigningMode::Static => verify_static(secrets, &header(&self.static_header)),
            SigningMode::Hmac => verify_signature(
                secrets,
                &SignedRequest {
                    method,
                    path,
                    body,
                    timestamp: &header(&self.timestamp_header),
                    signature: &header(&self.signature_header),
                },
                now,
                self.max_skew_s,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_credential_headers_are_named_whichever_mode_is_active() {
        for mode in ["hmac", "static"] {
            let vars = std::collections::HashMap::from([
                ("TOLLGATE_ENV".to_owned(), "local".to_owned()),
                ("TOLLGATE__GUARD__MODE".to_owned(), mode.to_owned()),
                (
                    "TOLLGATE__GUARD__STATIC_HEADER".to_owned(),
                    "x-origin-verify".to_owned(),
                ),
            ]);
            let contract = load_for(Component::Lambda, &vars)
                .expect("local contract")
                .guard;
            assert_eq!(
                contract.credential_headers(),
                [
                    "authorization",
                    "cookie",
                    "x-origin-verify",
                    "x-tollgate-signature"
                ],
                "{mode}"
            );
        }
    }
}
