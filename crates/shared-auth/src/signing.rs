//! `hmac` mode: the sender signs each request; the receiver verifies it. One implementation,
//! used by both ends. The wire format is specified in the crate docs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::secret::SecretSet;
use crate::verdict::{DenyReason, Verdict};

/// Default name of the header carrying the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-tollgate-timestamp";
/// Default name of the header carrying the `v1=` signatures.
pub const SIGNATURE_HEADER: &str = "x-tollgate-signature";
/// Default largest accepted clock difference, in seconds.
pub const DEFAULT_MAX_SKEW_S: u64 = 300;
/// Most signature entries one header may carry (one per secret during a rotation, with room).
pub const MAX_SIGNATURES: usize = 4;

const VERSION: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// The exact bytes that are signed:
/// `v1\n{timestamp}\n{METHOD}\n{path}\n{lowercase hex SHA-256 of the body}`.
pub fn string_to_sign(timestamp: u64, method: &str, path: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{VERSION}\n{timestamp}\n{method}\n{path}\n{body_hash}")
}

fn keyed(secret: &SecretString, message: &str) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message.as_bytes());
    mac
}

/// One signature entry, `v1=<base64 of HMAC-SHA256(secret, string_to_sign)>`.
///
/// `path` is the request path exactly as sent, without the query.
pub fn sign(
    secret: &SecretString,
    timestamp: u64,
    method: &str,
    path: &str,
    body: &[u8],
) -> String {
    let tag = keyed(secret, &string_to_sign(timestamp, method, path, body)).finalize();
    format!("{VERSION}={}", BASE64.encode(tag.into_bytes()))
}

/// What the receiver saw of a signed request.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The request path as received (still percent-encoded), without the query.
    pub path: &'a str,
    pub body: &'a [u8],
    /// Every line of the timestamp header.
    pub timestamp: &'a [&'a [u8]],
    /// Every line of the signature header.
    pub signature: &'a [&'a [u8]],
}

/// Verifies a signed request against every accepted secret, at time `now` (unix seconds).
///
/// Passes when the timestamp is within `max_skew_s` of `now` (inclusive) and any one `v1=`
/// entry is a valid signature under any accepted secret. Entries of other versions are ignored
/// so a sender may add them ahead of a format change.
pub fn verify_signature(
    secrets: &SecretSet,
    req: &SignedRequest<'_>,
    now: u64,
    max_skew_s: u64,
) -> Verdict {
    let (timestamp, entries) = check_shape(req.timestamp, req.signature, now, max_skew_s)?;
    let message = string_to_sign(timestamp, req.method, req.path, req.body);
    for (version, secret) in secrets.accepted() {
        let mac = keyed(secret, &message);
        if entries
            .iter()
            .any(|tag| mac.clone().verify_slice(tag).is_ok())
        {
            return Ok(version);
        }
    }
    Err(DenyReason::SignatureMismatch)
}

/// What can be checked of a signed request from its headers alone, before its body is read:
/// one timestamp, within `max_skew_s` of `now`, and one signature header holding well-formed
/// `v1=` entries. Returns the timestamp and the decoded tags.
pub fn check_shape(
    timestamp: &[&[u8]],
    signature: &[&[u8]],
    now: u64,
    max_skew_s: u64,
) -> Result<(u64, Vec<Vec<u8>>), DenyReason> {
    let timestamp = match timestamp {
        [] => return Err(DenyReason::TimestampMissing),
        [one] => parse_timestamp(one)?,
        _ => return Err(DenyReason::CredentialDuplicated),
    };
    let header = match signature {
        [] => return Err(DenyReason::CredentialMissing),
        [[]] => return Err(DenyReason::CredentialEmpty),
        [one] => std::str::from_utf8(one).map_err(|_| DenyReason::SignatureMalformed)?,
        _ => return Err(DenyReason::CredentialDuplicated),
    };
    let entries = parse_signatures(header)?;
    if now.abs_diff(timestamp) > max_skew_s {
        return Err(DenyReason::TimestampOutOfWindow);
    }
    Ok((timestamp, entries))
}

/// Unix seconds as plain ASCII digits: no sign, no spaces, no fraction.
fn parse_timestamp(raw: &[u8]) -> Result<u64, DenyReason> {
    if raw.is_empty() || raw.len() > 12 || !raw.iter().all(u8::is_ascii_digit) {
        return Err(DenyReason::TimestampMalformed);
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(DenyReason::TimestampMalformed)
}

/// The decoded `v1=` tags of a signature header (space-separated entries).
fn parse_signatures(header: &str) -> Result<Vec<Vec<u8>>, DenyReason> {
    let entries: Vec<&str> = header.split_ascii_whitespace().collect();
    if entries.is_empty() {
        return Err(DenyReason::CredentialEmpty);
    }
    if entries.len() > MAX_SIGNATURES {
        return Err(DenyReason::SignatureMalformed);
    }
    let tags: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|e| e.strip_prefix("v1="))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .filter(|tag| tag.len() == 32)
        .collect();
    if tags.is_empty() {
        return Err(DenyReason::SignatureMalformed);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::SecretVersion;
    use proptest::prelude::*;

    const CURRENT: &str = "tollgate-test-secret-0123456789abcdef";
    const PREVIOUS: &str = "tollgate-old-secret-0123456789abcdefg";
    const BODY: &[u8] = br#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271"}"#;
    const T: u64 = 1_700_000_000;

    fn secrets(previous: Option<&str>) -> SecretSet {
        SecretSet::new(CURRENT.into(), previous.map(Into::into)).expect("valid test secrets")
    }

    fn check(
        set: &SecretSet,
        ts: &str,
        sig: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Verdict {
        let req = SignedRequest {
            method,
            path,
            body,
            timestamp: &[ts.as_bytes()],
            signature: &[sig.as_bytes()],
        };
        verify_signature(set, &req, now, DEFAULT_MAX_SKEW_S)
    }

    fn signed(secret: &str) -> String {
        sign(&secret.into(), T, "POST", "/user", BODY)
    }

    #[test]
    fn hmac_primitive_matches_rfc_4231_case_2() {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn wire_format_matches_an_independent_implementation() {
        // Computed with Python's hmac/hashlib/base64 from the format in the crate docs.
        assert_eq!(
            string_to_sign(T, "POST", "/user", BODY),
            "v1\n1700000000\nPOST\n/user\n1bdf4a197bf648b88b80e0f1a5d5555d981c9c1f98d89e3f4e61f51cec414a66"
        );
        assert_eq!(
            signed(CURRENT),
            "v1=4hnGX0uh3RLys5dOC97BVHQahwi3r3Hf9ltvrvZTi+g="
        );
    }

    #[test]
    fn a_correct_signature_passes_with_either_secret() {
        let set = secrets(Some(PREVIOUS));
        assert_eq!(
            check(
                &set,
                "1700000000",
                &signed(CURRENT),
                "POST",
                "/user",
                BODY,
                T
            ),
            Ok(SecretVersion::Current)
        );
        assert_eq!(
            check(
                &set,
                "1700000000",
                &signed(PREVIOUS),
                "POST",
                "/user",
                BODY,
                T
            ),
            Ok(SecretVersion::Previous)
        );
        assert_eq!(
            check(
                &secrets(None),
                "1700000000",
                &signed(PREVIOUS),
                "POST",
                "/user",
                BODY,
                T
            ),
            Err(DenyReason::SignatureMismatch)
        );
    }

    #[test]
    fn several_entries_pass_when_any_one_is_valid() {
        let header = format!(
            "v1=AAAA {} v2=whatever {}",
            signed("some-other-secret-0123456789abcdefgh"),
            signed(CURRENT)
        );
        assert_eq!(
            check(
                &secrets(None),
                "1700000000",
                &header,
                "POST",
                "/user",
                BODY,
                T
            ),
            Ok(SecretVersion::Current)
        );
    }

    #[test]
    fn anything_changed_after_signing_fails() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        let cases: [(&str, &str, &str, &[u8]); 6] = [
            ("1700000001", "POST", "/user", BODY),
            ("1700000000", "PUT", "/user", BODY),
            ("1700000000", "POST", "/user/", BODY),
            ("1700000000", "POST", "/%75ser", BODY),
            (
                "1700000000",
                "POST",
                "/user",
                br#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f272"}"#,
            ),
            ("1700000000", "POST", "/user", b""),
        ];
        for (ts, method, path, body) in cases {
            assert_eq!(
                check(&set, ts, &sig, method, path, body, T),
                Err(DenyReason::SignatureMismatch),
                "{ts} {method} {path}"
            );
        }
    }

    #[test]
    fn skew_window_is_inclusive_at_its_edges() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        for now in [T - 300, T, T + 300] {
            assert!(
                check(&set, "1700000000", &sig, "POST", "/user", BODY, now).is_ok(),
                "now={now}"
            );
        }
        for now in [T - 301, T + 301, 0, u64::MAX] {
            assert_eq!(
                check(&set, "1700000000", &sig, "POST", "/user", BODY, now),
                Err(DenyReason::TimestampOutOfWindow),
                "now={now}"
            );
        }
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        for ts in [
            "",
            "-1700000000",
            "+1700000000",
            " 1700000000",
            "1700000000.0",
            "1.7e9",
            "17000000000000000000000",
            "0x6553f100",
        ] {
            assert_eq!(
                check(&set, ts, &sig, "POST", "/user", BODY, T),
                Err(DenyReason::TimestampMalformed),
                "{ts:?}"
            );
        }
        let req = SignedRequest {
            method: "POST",
            path: "/user",
            body: BODY,
            timestamp: &[],
            signature: &[sig.as_bytes()],
        };
        assert_eq!(
            verify_signature(&set, &req, T, 300),
            Err(DenyReason::TimestampMissing)
        );
        let dup = [b"1700000000".as_slice(), b"1700000000".as_slice()];
        let req = SignedRequest {
            timestamp: &dup,
            ..req
        };
        assert_eq!(
            verify_signature(&set, &req, T, 300),
            Err(DenyReason::CredentialDuplicated)
        );
    }

    #[test]
    fn malformed_and_wrong_length_signatures_are_refused() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        let truncated = &sig[..sig.len() - 4];
        let short = format!("v1={}", BASE64.encode([0u8; 31]));
        let long = format!("v1={}", BASE64.encode([0u8; 33]));
        for bad in [
            "v1=",
            "v1=!!!!",
            "V1=AAAA",
            "sha256=abcd",
            truncated,
            &short,
            &long,
        ] {
            assert_eq!(
                check(&set, "1700000000", bad, "POST", "/user", BODY, T),
                Err(DenyReason::SignatureMalformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(&set, "1700000000", "", "POST", "/user", BODY, T),
            Err(DenyReason::CredentialEmpty)
        );
        assert_eq!(
            check(&set, "1700000000", "   ", "POST", "/user", BODY, T),
            Err(DenyReason::CredentialEmpty)
        );
        let many = [sig.as_str(); MAX_SIGNATURES + 1].join(" ");
        assert_eq!(
            check(&set, "1700000000", &many, "POST", "/user", BODY, T),
            Err(DenyReason::SignatureMalformed)
        );
        let lines = [sig.as_bytes(), sig.as_bytes()];
        let req = SignedRequest {
            method: "POST",
            path: "/user",
            body: BODY,
            timestamp: &[b"1700000000"],
            signature: &lines,
        };
        assert_eq!(
            verify_signature(&set, &req, T, 300),
            Err(DenyReason::CredentialDuplicated)
        );
    }

    #[test]
    fn the_wrong_secret_of_any_length_fails() {
        for wrong in [
            "",
            "x",
            &CURRENT[..CURRENT.len() - 1],
            &format!("{CURRENT}x"),
        ] {
            assert_eq!(
                check(
                    &secrets(None),
                    "1700000000",
                    &signed(wrong),
                    "POST",
                    "/user",
                    BODY,
                    T
                ),
                Err(DenyReason::SignatureMismatch),
                "{wrong:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(body in proptest::collection::vec(any::<u8>(), 0..256), skew in 0u64..=300, ahead in any::<bool>()) {
            let sig = sign(&CURRENT.into(), T, "POST", "/user", &body);
            let now = if ahead { T + skew } else { T - skew };
            prop_assert_eq!(check(&secrets(None), "1700000000", &sig, "POST", "/user", &body, now), Ok(SecretVersion::Current));
        }

        #[test]
        fn a_flipped_body_bit_fails(body in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<usize>()) {
            let sig = sign(&CURRENT.into(), T, "POST", "/user", &body);
            let mut tampered = body.clone();
            let i = bit % (tampered.len() * 8);
            tampered[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(check(&secrets(None), "1700000000", &sig, "POST", "/user", &tampered, T), Err(DenyReason::SignatureMismatch));
        }

        #[test]
        fn arbitrary_signature_headers_never_pass(header in "[ -~]{0,120}") {
            prop_assert!(check(&secrets(None), "1700000000", &header, "POST", "/user", BODY, T).is_err());
        }
    }
}
