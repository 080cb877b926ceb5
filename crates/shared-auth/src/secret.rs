//! The shared secret as the receiver holds it, and the `static` mode check.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::verdict::{DenyReason, SecretVersion, Verdict};

/// Shortest accepted secret, in bytes, of a key from before the Standard Webhooks format
/// (no `whsec_` prefix), still accepted so an environment holding one rotates out of it.
pub const MIN_SECRET_LEN: usize = 32;

/// The Standard Webhooks key prefix: a key is `whsec_` followed by the standard base64 of
/// its bytes.
pub const KEY_PREFIX: &str = "whsec_";
/// Fewest key bytes the spec allows.
pub const MIN_KEY_BYTES: usize = 24;
/// Most key bytes the spec allows.
pub const MAX_KEY_BYTES: usize = 64;
/// Bytes of a key [`generate`] makes.
pub const GENERATED_KEY_BYTES: usize = 32;
/// Length of a secret [`generate`] makes: `whsec_` and 44 base64 characters.
pub const GENERATED_SECRET_LEN: usize = KEY_PREFIX.len() + GENERATED_KEY_BYTES.div_ceil(3) * 4;

/// Why a secret value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the {0} secret is shorter than {MIN_SECRET_LEN} bytes")]
    TooShort(&'static str),
    #[error(
        "the {0} secret starts with `whsec_` but is not the standard base64 of \
         {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
    )]
    MalformedKey(&'static str),
    #[error(
        "the {0} secret is not a Standard Webhooks key (`whsec_` and the standard base64 of \
         {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes); a key of the format before it is \
         accepted only until a rotation replaces it, never written"
    )]
    NotStandard(&'static str),
}

/// Which format a secret value is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `whsec_` + base64 of 24 to 64 bytes: the HMAC key is the decoded bytes.
    StandardWebhooks,
    /// A key written before the Standard Webhooks format: the HMAC key is its UTF-8 bytes.
    Legacy,
}

/// The format of `value`, named `which` in the error when it can be neither.
pub fn key_format(value: &SecretString, which: &'static str) -> Result<KeyFormat, SecretError> {
    use base64::Engine as _;
    let value = value.expose_secret();
    match value.strip_prefix(KEY_PREFIX) {
        Some(encoded) => match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(bytes) if (MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) => {
                Ok(KeyFormat::StandardWebhooks)
            }
            _ => Err(SecretError::MalformedKey(which)),
        },
        None if value.len() < MIN_SECRET_LEN => Err(SecretError::TooShort(which)),
        None => Ok(KeyFormat::Legacy),
    }
}

/// What every writer of the guard secret requires of a new value: a Standard Webhooks key.
pub fn require_standard(value: &SecretString, which: &'static str) -> Result<(), SecretError> {
    match key_format(value, which)? {
        KeyFormat::StandardWebhooks => Ok(()),
        KeyFormat::Legacy => Err(SecretError::NotStandard(which)),
    }
}

/// A new guard key: 32 bytes from the operating system's CSPRNG as a Standard Webhooks key,
/// `whsec_` + standard base64 (50 characters; fits a header and a WAF byte match as is). Every
/// writer of the guard secret (the rotation function, `cargo xtask`) makes it here.
pub fn generate() -> Result<SecretString, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(SecretString::from(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )))
}

/// A new password (the database login's): 32 bytes from the CSPRNG as base64url without
/// padding (43 characters of `A-Z a-z 0-9 - _`), safe in a connection URL as is.
pub fn generate_password() -> Result<SecretString, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

/// The secrets the receiver accepts: the current version; the one before it, while senders
/// catch up after a rotation; and the pending one, while a rotation proves every receiver
/// knows it before any sender uses it. Never printed: `Debug` shows only which are present.
#[derive(Clone)]
pub struct SecretSet {
    current: SecretString,
    previous: Option<SecretString>,
    pending: Option<SecretString>,
}

impl SecretSet {
    /// Builds the set; an empty `previous` counts as absent, a value that is no key
    /// ([`key_format`]) is refused.
    pub fn new(current: SecretString, previous: Option<SecretString>) -> Result<Self, SecretError> {
        key_format(&current, "current")?;
        let previous = previous.filter(|p| !p.expose_secret().is_empty());
        if let Some(p) = &previous {
            key_format(p, "previous")?;
        }
        Ok(Self {
            current,
            previous,
            pending: None,
        })
    }

    /// Adds the version a rotation is introducing (`AWSPENDING`); an empty one counts as
    /// absent, one that is no key is refused.
    pub fn with_pending(mut self, pending: Option<SecretString>) -> Result<Self, SecretError> {
        let pending = pending.filter(|p| !p.expose_secret().is_empty());
        if let Some(p) = &pending {
            key_format(p, "pending")?;
        }
        self.pending = pending;
        Ok(self)
    }

    /// Whether `value` can be a key here, in either format.
    pub fn usable(value: &SecretString) -> bool {
        key_format(value, "").is_ok()
    }

    pub fn current(&self) -> &SecretString {
        &self.current
    }

    pub fn previous(&self) -> Option<&SecretString> {
        self.previous.as_ref()
    }

    pub fn pending(&self) -> Option<&SecretString> {
        self.pending.as_ref()
    }

    /// Every accepted secret, current first.
    pub fn accepted(&self) -> impl Iterator<Item = (SecretVersion, &SecretString)> {
        std::iter::once((SecretVersion::Current, &self.current))
            .chain(self.previous.iter().map(|p| (SecretVersion::Previous, p)))
            .chain(self.pending.iter().map(|p| (SecretVersion::Pending, p)))
    }

    /// Whether both sets hold the same values (used to log rotations, not to authenticate).
    pub fn same_as(&self, other: &SecretSet) -> bool {
        let eq = |a: &SecretString, b: &SecretString| {
            bool::from(
                a.expose_secret()
                    .as_bytes()
                    .ct_eq(b.expose_secret().as_bytes()),
            )
        };
        let same = |a: &Option<SecretString>, b: &Option<SecretString>| match (a, b) {
            (Some(a), Some(b)) => eq(a, b),
            (None, None) => true,
            _ => false,
        };
        eq(&self.current, &other.current)
            && same(&self.previous, &other.previous)
            && same(&self.pending, &other.pending)
    }
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("current", &"[redacted]")
            .field("previous", &self.previous.as_ref().map(|_| "[redacted]"))
            .field("pending", &self.pending.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Longest static credential a request may present: more than any generated secret, far less
/// than a header limit.
pub const MAX_STATIC_LEN: usize = 512;

/// What can be checked of a static credential before the body is read: exactly one non-empty
/// line, of a length a secret can have.
pub fn check_static_shape(presented: &[&[u8]]) -> Result<(), DenyReason> {
    match presented {
        [] => Err(DenyReason::CredentialMissing),
        [[]] => Err(DenyReason::CredentialEmpty),
        [one] if !(MIN_SECRET_LEN..=MAX_STATIC_LEN).contains(&one.len()) => {
            Err(DenyReason::CredentialMismatch)
        }
        [_] => Ok(()),
        _ => Err(DenyReason::CredentialDuplicated),
    }
}

/// `static` mode: the request carries the secret itself in one header line.
///
/// `presented` is every line of the configured header. Exactly one non-empty line must match an
/// accepted secret. Both sides are hashed before the constant-time comparison, so neither the
/// secret's length nor how much of it matched shows in the timing.
pub fn verify_static(secrets: &SecretSet, presented: &[&[u8]]) -> Verdict {
    let value = match presented {
        [] => return Err(DenyReason::CredentialMissing),
        [one] => *one,
        _ => return Err(DenyReason::CredentialDuplicated),
    };
    if value.is_empty() {
        return Err(DenyReason::CredentialEmpty);
    }
    let presented = Sha256::digest(value);
    let mut matched = None;
    // Every accepted secret is compared, whether or not an earlier one matched.
    for (version, secret) in secrets.accepted() {
        let expected = Sha256::digest(secret.expose_secret().as_bytes());
        if bool::from(presented.ct_eq(&expected)) && matched.is_none() {
            matched = Some(version);
        }
    }
    matched.ok_or(DenyReason::CredentialMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CURRENT: &str = "current-secret-0123456789abcdefghijklmnop";
    const PREVIOUS: &str = "previous-secret-0123456789abcdefghijklmno";

    fn set(previous: Option<&str>) -> SecretSet {
        SecretSet::new(CURRENT.into(), previous.map(Into::into)).expect("valid test secrets")
    }

    #[test]
    fn current_and_previous_are_accepted() {
        let s = set(Some(PREVIOUS));
        assert_eq!(
            verify_static(&s, &[CURRENT.as_bytes()]),
            Ok(SecretVersion::Current)
        );
        assert_eq!(
            verify_static(&s, &[PREVIOUS.as_bytes()]),
            Ok(SecretVersion::Previous)
        );
        assert_eq!(
            verify_static(&set(None), &[PREVIOUS.as_bytes()]),
            Err(DenyReason::CredentialMismatch)
        );
    }

    #[test]
    fn a_pending_version_is_accepted_only_once_added() {
        const PENDING: &str = "pending-secret-0123456789abcdefghijklmnopq";
        assert_eq!(
            verify_static(&set(Some(PREVIOUS)), &[PENDING.as_bytes()]),
            Err(DenyReason::CredentialMismatch)
        );
        let s = set(Some(PREVIOUS))
            .with_pending(Some(PENDING.into()))
            .expect("valid pending");
        assert_eq!(
            verify_static(&s, &[PENDING.as_bytes()]),
            Ok(SecretVersion::Pending)
        );
        assert_eq!(
            verify_static(&s, &[CURRENT.as_bytes()]),
            Ok(SecretVersion::Current)
        );
        assert!(!s.same_as(&set(Some(PREVIOUS))));
        assert_eq!(
            set(None).with_pending(Some("short".into())).err(),
            Some(SecretError::TooShort("pending"))
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains(PENDING), "{shown}");
    }

    #[test]
    fn generated_keys_are_standard_webhooks_keys_and_differ() {
        use base64::Engine as _;
        let a = generate().expect("random source");
        let b = generate().expect("random source");
        for s in [&a, &b] {
            let v = s.expose_secret();
            assert_eq!(v.len(), GENERATED_SECRET_LEN);
            assert_eq!(v.len(), 50);
            let encoded = v.strip_prefix("whsec_").expect("prefixed");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("standard base64");
            assert_eq!(bytes.len(), 32);
            assert_eq!(require_standard(s, "new"), Ok(()));
        }
        assert_ne!(a.expose_secret(), b.expose_secret());
        let p = generate_password().expect("random source");
        assert!(
            p.expose_secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                && p.expose_secret().len() == 43
        );
    }

    #[test]
    fn key_formats_are_told_apart_and_malformed_keys_refused() {
        use base64::Engine as _;
        let key = |n: usize| {
            SecretString::from(format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
            ))
        };
        for n in [24, 32, 64] {
            assert_eq!(
                key_format(&key(n), "k"),
                Ok(KeyFormat::StandardWebhooks),
                "{n}"
            );
        }
        for n in [0, 23, 65] {
            assert_eq!(
                key_format(&key(n), "k"),
                Err(SecretError::MalformedKey("k")),
                "{n}"
            );
        }
        for bad in [
            "whsec_not base64!!",
            "whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD",
        ] {
            assert_eq!(
                key_format(&bad.into(), "k"),
                Err(SecretError::MalformedKey("k")),
                "{bad}"
            );
        }
        assert_eq!(key_format(&CURRENT.into(), "k"), Ok(KeyFormat::Legacy));
        assert_eq!(
            require_standard(&CURRENT.into(), "pending"),
            Err(SecretError::NotStandard("pending"))
        );
        assert_eq!(
            SecretSet::new(key(32).clone(), Some(key(10))).err(),
            Some(SecretError::MalformedKey("previous"))
        );
        let shown = SecretError::NotStandard("pending").to_string();
        assert!(shown.contains("whsec_"), "{shown}");
    }

    #[test]
    fn missing_empty_and_duplicated_values_never_pass() {
        let s = set(Some(PREVIOUS));
        assert_eq!(verify_static(&s, &[]), Err(DenyReason::CredentialMissing));
        assert_eq!(verify_static(&s, &[b""]), Err(DenyReason::CredentialEmpty));
        assert_eq!(
            verify_static(&s, &[CURRENT.as_bytes(), CURRENT.as_bytes()]),
            Err(DenyReason::CredentialDuplicated)
        );
    }

    #[test]
    fn prefixes_extensions_and_case_changes_are_refused() {
        let s = set(None);
        let wrong = [
            &CURRENT[..CURRENT.len() - 1],
            &CURRENT[..1],
            &format!("{CURRENT}x"),
            &format!(" {CURRENT}"),
            &CURRENT.to_ascii_uppercase(),
        ]
        .map(|w| w.to_owned());
        for w in wrong {
            assert_eq!(
                verify_static(&s, &[w.as_bytes()]),
                Err(DenyReason::CredentialMismatch),
                "{w:?}"
            );
        }
    }

    #[test]
    fn short_or_empty_secrets_are_refused_and_empty_previous_is_absent() {
        assert_eq!(
            SecretSet::new("".into(), None).err(),
            Some(SecretError::TooShort("current"))
        );
        assert_eq!(
            SecretSet::new("short".into(), None).err(),
            Some(SecretError::TooShort("current"))
        );
        assert_eq!(
            SecretSet::new(CURRENT.into(), Some("short".into())).err(),
            Some(SecretError::TooShort("previous"))
        );
        let s = SecretSet::new(CURRENT.into(), Some("".into())).expect("empty previous is absent");
        assert!(s.previous().is_none());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let shown = format!("{:?}", set(Some(PREVIOUS)));
        assert!(
            !shown.contains(CURRENT) && !shown.contains(PREVIOUS),
            "{shown}"
        );
        assert!(shown.contains("redacted"));
    }

    proptest! {
        #[test]
        fn only_the_exact_secret_passes(guess in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assume!(guess != CURRENT.as_bytes());
            prop_assert!(verify_static(&set(None), &[guess.as_slice()]).is_err());
        }
    }
}
