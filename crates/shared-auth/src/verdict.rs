//! The outcome of a guard check, safe to log: it names a reason, never secret material.

use std::fmt;

/// Which accepted secret a request proved knowledge of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretVersion {
    Current,
    /// The version before the last rotation, still accepted while senders catch up.
    Previous,
    /// The version a rotation is introducing (`AWSPENDING`): accepted before any sender uses
    /// it, so promoting it refuses no one.
    Pending,
}

impl SecretVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretVersion::Current => "current",
            SecretVersion::Previous => "previous",
            SecretVersion::Pending => "pending",
        }
    }
}

/// Why the guard refused a request. Logged as a structured field; callers answer every reason
/// with the same response so the reason cannot be probed from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// `X-Forwarded-For` held an entry that is not an address, so the source is unknown.
    SourceUnknown,
    /// `X-Forwarded-For` came as more than one header line: which one the proxy appended to is
    /// not knowable, so the client address is not either.
    ForwardedForRepeated,
    /// The guarded request carried a query string, which the signature does not cover.
    QueryNotSigned,
    /// The source address is not in `allowed_cidrs`.
    SourceNotAllowed,
    /// The credential header is absent.
    CredentialMissing,
    /// The credential header was sent more than once.
    CredentialDuplicated,
    /// The credential header is present but empty.
    CredentialEmpty,
    /// The static secret does not match any accepted secret.
    CredentialMismatch,
    /// The message id header (`webhook-id`) is absent.
    IdMissing,
    /// The message id is not 1 to 128 of `[A-Za-z0-9_-]`.
    IdMalformed,
    /// The timestamp header is absent.
    TimestampMissing,
    /// The timestamp header is not a plain count of unix seconds.
    TimestampMalformed,
    /// The timestamp is further from the receiver's clock than `max_skew_s`.
    TimestampOutOfWindow,
    /// The signature header holds no well-formed `v1,` entry, or too many entries.
    SignatureMalformed,
    /// No `v1,` entry matches any accepted key.
    SignatureMismatch,
}

impl DenyReason {
    /// A stable, machine-readable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::SourceUnknown => "source_unknown",
            DenyReason::ForwardedForRepeated => "forwarded_for_repeated",
            DenyReason::QueryNotSigned => "query_not_signed",
            DenyReason::SourceNotAllowed => "source_not_allowed",
            DenyReason::CredentialMissing => "credential_missing",
            DenyReason::CredentialDuplicated => "credential_duplicated",
            DenyReason::CredentialEmpty => "credential_empty",
            DenyReason::CredentialMismatch => "credential_mismatch",
            DenyReason::IdMissing => "id_missing",
            DenyReason::IdMalformed => "id_malformed",
            DenyReason::TimestampMissing => "timestamp_missing",
            DenyReason::TimestampMalformed => "timestamp_malformed",
            DenyReason::TimestampOutOfWindow => "timestamp_out_of_window",
            DenyReason::SignatureMalformed => "signature_malformed",
            DenyReason::SignatureMismatch => "signature_mismatch",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for DenyReason {}

/// The result of checking one request's credential.
pub type Verdict = Result<SecretVersion, DenyReason>;
