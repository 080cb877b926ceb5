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
//! * [`signing`]: the `hmac` mode's Standard Webhooks signature, [`sign`] and
//!   [`verify_signature`].
//! * [`verdict`]: why a request was refused, safe to log.
//! * [`rotation`]: the secret's rotation steps and how long one may wait.
//! * [`unix`]: the clock, read in one place.
//!
//! It has no async runtime, web framework or AWS SDK, and no features: how a component reaches
//! AWS by this contract (the SDK configuration, the secret's versions, EMF, the WAF rule group)
//! is `shared-aws`.
//!
//! ## The `hmac` wire format: Standard Webhooks
//!
//! The signed mode speaks the [Standard Webhooks] specification, so any of its libraries can
//! produce and check Tollgate's requests:
//!
//! * Headers: `webhook-id` (the message id), `webhook-timestamp` (unix seconds) and
//!   `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` entries, one per key the
//!   sender holds (the current key, and the pending one during a rotation). Any one valid `v1`
//!   entry under any key the receiver accepts passes; other versions are ignored; at most
//!   [`signing::MAX_SIGNATURES`] entries are read.
//! * Signed bytes: `{id}.{timestamp}.{body}`, the body exactly as sent.
//! * Keys: `whsec_` followed by the standard base64 of 24 to 64 random bytes (Tollgate makes 32);
//!   the HMAC key is the decoded bytes.
//! * Freshness: refused when `|now − timestamp| > max_skew_s` (default 300 s, the reference
//!   libraries' tolerance).
//! * The id of a registration is [`signing::registration_id`]: the same for the trigger, a
//!   queue redelivery and the sweep, so it can key idempotency.
//!
//! Where Tollgate is stricter than the spec, and why:
//!
//! * The id must be 1 to 128 of `[A-Za-z0-9_-]`: it can never hold the `.` that separates the
//!   signed fields, so no request's fields can be re-split into another's.
//! * Method and path are not signed (the spec signs id, timestamp and body). A key guards one
//!   route: the guard is bound to that route's handler alone, which the router reaches by one
//!   method only, and a query is refused. A signature can therefore be replayed only to the
//!   route it was made for, with the same body, inside the skew window, where the registration
//!   is idempotent.
//! * A key without the `whsec_` prefix (the format before this one) is still accepted, as its
//!   UTF-8 bytes, until a rotation replaces it; no writer makes or stores one
//!   ([`secret::require_standard`]).
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
//!
//! ```
//! use shared_auth::signing::{sign, signed_content};
//! // The reference libraries' own test case.
//! let key = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into();
//! let body = br#"{"email":"test@example.com","username":"test_user"}"#;
//! let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
//! assert!(signed_content(id, 1_649_367_553, body).starts_with(b"msg_27UH4WbU6Z5A5EzD8u03UvzRbpk.1649367553.{"));
//! assert_eq!(
//!     sign(&key, id, 1_649_367_553, body),
//!     "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
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
pub mod heartbeat;
pub mod rotation;
pub mod secret;
pub mod settings;
pub mod signing;
pub mod unix;
pub mod verdict;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

pub use client_ip::{client_ip, is_allowed};
pub use secret::{
    KeyFormat, SecretError, SecretSet, generate as generate_secret, generate_password,
    verify_static,
};
pub use settings::{
    ApiSettings, AwsSettings, Component, ConfigError, DbSslMode, DeploySettings, GuardContract,
    LambdaSettings, SecretSource, Settings, SigningMode, Unfilled, load, load_for,
};
pub use signing::{SignedRequest, registration_id, sign, sign_all, verify_signature};
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
    /// The sender's side: the credential headers for one request to the guarded route, with
    /// message id `id`, signed at `now` (unix seconds) with every key of `keys` (the current
    /// key first; the pending one after it during a rotation), in the contract's mode. The
    /// `static` mode sends the first key alone.
    pub fn credentials(
        &self,
        keys: &[SecretString],
        id: &str,
        body: &[u8],
        now: u64,
    ) -> CredentialHeaders {
        let Some(first) = keys.first() else {
            return CredentialHeaders(Vec::new());
        };
        CredentialHeaders(match self.mode {
            SigningMode::Static => vec![(self.static_header.clone(), first.clone())],
            SigningMode::Hmac => vec![
                (self.id_header.clone(), id.to_owned().into()),
                (self.timestamp_header.clone(), now.to_string().into()),
                (
                    self.signature_header.clone(),
                    sign_all(keys, id, now, body).into(),
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
                &header(&self.id_header),
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
    /// `header` returns every line of the named header; `body` is the body as received.
    pub fn verify<'a>(
        &self,
        secrets: &SecretSet,
        body: &[u8],
        header: impl Fn(&str) -> Vec<&'a [u8]>,
        now: u64,
    ) -> Verdict {
        match self.mode {
            SigningMode::Static => verify_static(secrets, &header(&self.static_header)),
            SigningMode::Hmac => verify_signature(
                secrets,
                &SignedRequest {
                    body,
                    id: &header(&self.id_header),
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
                    "webhook-signature",
                    "x-origin-verify"
                ],
                "{mode}"
            );
        }
    }
}
