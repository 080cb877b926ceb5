//! The shared secret as the receiver holds it, and the `static` mode check.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::verdict::{DenyReason, SecretVersion, Verdict};

/// Shortest accepted secret, in bytes. `xtask` writes 43 (32 random bytes, base64url).
pub const MIN_SECRET_LEN: usize = 32;

/// Why a secret value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the {0} secret is shorter than {MIN_SECRET_LEN} bytes")]
    TooShort(&'static str),
}

/// Length of a secret [`generate`] makes: 32 random bytes as base64url without padding.
pub const GENERATED_SECRET_LEN: usize = 43;

/// A new shared secret: 32 bytes from the operating system's CSPRNG, base64url (43
/// characters, alphabet `A-Z a-z 0-9 - _`), so it fits a header and a WAF byte match as is.
/// Every writer of the secret (the rotation function, `cargo xtask`) makes it here.
pub fn generate() -> Result<SecretString, getrandom::Error> {
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
    /// Builds the set; an empty `previous` counts as absent, a short secret is refused.
    pub fn new(current: SecretString, previous: Option<SecretString>) -> Result<Self, SecretError> {
        if current.expose_secret().len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort("current"));
        }
        let previous = previous.filter(|p| !p.expose_secret().is_empty());
        if previous
            .as_ref()
            .is_some_and(|p| p.expose_secret().len() < MIN_SECRET_LEN)
        {
            return Err(SecretError::TooShort("previous"));
        }
        Ok(Self {
            current,
            previous,
            pending: None,
        })
    }

    /// Adds the version a rotation is introducing (`AWSPENDING`); an empty one counts as
    /// absent, a short one is refused.
    pub fn with_pending(mut self, pending: Option<SecretString>) -> Result<Self, SecretError> {
        let pending = pending.filter(|p| !p.expose_secret().is_empty());
        if pending
            .as_ref()
            .is_some_and(|p| p.expose_secret().len() < MIN_SECRET_LEN)
        {
            return Err(SecretError::TooShort("pending"));
        }
        self.pending = pending;
        Ok(self)
    }

    /// Whether `value` can be a secret here (long enough).
    pub fn usable(value: &SecretString) -> bool {
        value.expose_secret().len() >= MIN_SECRET_LEN
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
    fn generated_secrets_have_the_contract_shape_and_differ() {
        let a = generate().expect("random source");
        let b = generate().expect("random source");
        for s in [&a, &b] {
            let v = s.expose_secret();
            assert_eq!(v.len(), GENERATED_SECRET_LEN);
            assert!(v.len() >= MIN_SECRET_LEN);
            assert!(
                v.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{v}"
            );
        }
        assert_ne!(a.expose_secret(), b.expose_secret());
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
