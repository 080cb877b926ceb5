//! `hmac` mode: Standard Webhooks signatures. The sender signs each request; the receiver
//! verifies it. One implementation, used by both ends. The wire format is specified in the
//! crate docs.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::secret::{KEY_PREFIX, SecretSet};
use crate::verdict::{DenyReason, Verdict};

/// Default name of the header carrying the message id (the spec's `webhook-id`).
pub const ID_HEADER: &str = "webhook-id";
/// Default name of the header carrying the signing time, unix seconds (`webhook-timestamp`).
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Default name of the header carrying the `v1,` signatures (`webhook-signature`).
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Default largest accepted clock difference, in seconds (the reference libraries' 5 minutes).
pub const DEFAULT_MAX_SKEW_S: u64 = 300;
/// Most signature entries one header may carry (one per key during a rotation, with room).
pub const MAX_SIGNATURES: usize = 4;
/// Longest accepted message id. Tollgate's own are 36 characters ([`registration_id`]).
pub const MAX_ID_LEN: usize = 128;

const VERSION: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// The id of one user's registration: `reg_` and 32 lower-case hex digits of a SHA-256 over
/// the user pool, the user's `sub` and the trigger. The trigger, a queue redelivery and the
/// sweep all send the same id for the same user, so a receiver may key idempotency on it.
pub fn registration_id(user_pool_id: &str, sub: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"tollgate/registration/PostConfirmation\0")
        .chain_update(user_pool_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(sub.as_bytes())
        .finalize();
    format!("reg_{}", hex::encode(&digest[..16]))
}

/// The HMAC key a secret stands for: a `whsec_` key's decoded bytes; a key from before the
/// Standard Webhooks format (no prefix) is its own UTF-8 bytes, so an environment that still
/// holds one keeps signing and verifying until a rotation replaces it.
pub(crate) fn hmac_key(secret: &SecretString) -> Cow<'_, [u8]> {
    let value = secret.expose_secret();
    match value.strip_prefix(KEY_PREFIX) {
        Some(encoded) => Cow::Owned(BASE64.decode(encoded).unwrap_or_default()),
        None => Cow::Borrowed(value.as_bytes()),
    }
}

fn keyed(secret: &SecretString, id: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&hmac_key(secret))
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The exact bytes that are signed: `{id}.{timestamp}.{body}`.
pub fn signed_content(id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// One signature entry, `v1,<base64 of HMAC-SHA256(key, signed_content)>`.
pub fn sign(secret: &SecretString, id: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = keyed(secret, id, timestamp, body).finalize();
    format!("{VERSION},{}", BASE64.encode(tag.into_bytes()))
}

/// The signature header's value for every key in `keys` (current first, then pending during a
/// rotation): their entries, space-separated.
pub fn sign_all(keys: &[SecretString], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .take(MAX_SIGNATURES)
        .map(|key| sign(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the receiver saw of a signed request: every line of each of its three headers, and
/// the body as received.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub body: &'a [u8],
    pub id: &'a [&'a [u8]],
    pub timestamp: &'a [&'a [u8]],
    pub signature: &'a [&'a [u8]],
}

/// What can be checked of a signed request from its headers alone, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape<'a> {
    pub id: &'a str,
    pub timestamp: u64,
    /// The decoded `v1` tags.
    pub tags: Vec<Vec<u8>>,
}

/// Verifies a signed request against every accepted key, at time `now` (unix seconds).
///
/// Passes when the headers have their shape ([`check_shape`]) and any one `v1` entry is the
/// signature of `{id}.{timestamp}.{body}` under any accepted key. Entries of other versions
/// (the spec's `v1a`, say) are ignored.
pub fn verify_signature(
    secrets: &SecretSet,
    req: &SignedRequest<'_>,
    now: u64,
    max_skew_s: u64,
) -> Verdict {
    let shape = check_shape(req.id, req.timestamp, req.signature, now, max_skew_s)?;
    for (version, secret) in secrets.accepted() {
        let mac = keyed(secret, shape.id, shape.timestamp, req.body);
        if shape
            .tags
            .iter()
            .any(|tag| mac.clone().verify_slice(tag).is_ok())
        {
            return Ok(version);
        }
    }
    Err(DenyReason::SignatureMismatch)
}

/// What can be checked of a signed request from its headers alone: one id of
/// `[A-Za-z0-9_-]{1,128}`, one timestamp within `max_skew_s` of `now`, one signature header
/// holding well-formed `v1,` entries.
pub fn check_shape<'a>(
    id: &[&'a [u8]],
    timestamp: &[&[u8]],
    signature: &[&[u8]],
    now: u64,
    max_skew_s: u64,
) -> Result<Shape<'a>, DenyReason> {
    let id = match id {
        [] => return Err(DenyReason::IdMissing),
        [one] => parse_id(one)?,
        _ => return Err(DenyReason::CredentialDuplicated),
    };
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
    let tags = parse_signatures(header)?;
    if now.abs_diff(timestamp) > max_skew_s {
        return Err(DenyReason::TimestampOutOfWindow);
    }
    Ok(Shape {
        id,
        timestamp,
        tags,
    })
}

/// A message id: letters, digits, `_` and `-` only, so no id can contain the `.` that
/// separates the signed fields.
fn parse_id(raw: &[u8]) -> Result<&str, DenyReason> {
    let fits = (1..=MAX_ID_LEN).contains(&raw.len())
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if !fits {
        return Err(DenyReason::IdMalformed);
    }
    std::str::from_utf8(raw).map_err(|_| DenyReason::IdMalformed)
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

/// The decoded `v1,` tags of a signature header (space-separated entries).
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
        .filter_map(|e| e.strip_prefix("v1,"))
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

    const CURRENT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    /// A key from before the Standard Webhooks format: used as its UTF-8 bytes.
    const LEGACY: &str = "tollgate-old-secret-0123456789abcdefg";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const T: u64 = 1_649_367_553;

    fn secrets(previous: Option<&str>) -> SecretSet {
        SecretSet::new(CURRENT.into(), previous.map(Into::into)).expect("valid test secrets")
    }

    fn check(set: &SecretSet, id: &str, ts: &str, sig: &str, body: &[u8], now: u64) -> Verdict {
        let req = SignedRequest {
            body,
            id: &[id.as_bytes()],
            timestamp: &[ts.as_bytes()],
            signature: &[sig.as_bytes()],
        };
        verify_signature(set, &req, now, DEFAULT_MAX_SKEW_S)
    }

    fn signed(secret: &str) -> String {
        sign(&secret.into(), ID, T, BODY)
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
    fn signatures_match_the_reference_librarys_test_vector() {
        // The Standard Webhooks reference libraries' own test case (key, id, time, payload,
        // signature), not computed here.
        assert_eq!(
            signed(CURRENT),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        assert_eq!(
            signed_content(ID, T, b"{}"),
            b"msg_27UH4WbU6Z5A5EzD8u03UvzRbpk.1649367553.{}"
        );
    }

    #[test]
    fn registration_ids_are_stable_distinct_and_have_the_id_shape() {
        let a = registration_id(
            "ap-northeast-1_AAAA",
            "7d8ca528-4931-4254-9273-ea5ee853f271",
        );
        assert_eq!(
            a,
            registration_id(
                "ap-northeast-1_AAAA",
                "7d8ca528-4931-4254-9273-ea5ee853f271"
            )
        );
        assert_eq!(a.len(), 36);
        assert!(parse_id(a.as_bytes()).is_ok(), "{a}");
        for other in [
            registration_id(
                "ap-northeast-1_BBBB",
                "7d8ca528-4931-4254-9273-ea5ee853f271",
            ),
            registration_id(
                "ap-northeast-1_AAAA",
                "7d8ca528-4931-4254-9273-ea5ee853f272",
            ),
            // The separator keeps (pool, sub) pairs apart that concatenate alike.
            registration_id(
                "ap-northeast-1_AAAA7",
                "d8ca528-4931-4254-9273-ea5ee853f271",
            ),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn a_correct_signature_passes_with_any_accepted_key_of_either_format() {
        let set = secrets(Some(LEGACY));
        assert_eq!(
            check(&set, ID, "1649367553", &signed(CURRENT), BODY, T),
            Ok(SecretVersion::Current)
        );
        assert_eq!(
            check(&set, ID, "1649367553", &signed(LEGACY), BODY, T),
            Ok(SecretVersion::Previous)
        );
        assert_eq!(
            check(&secrets(None), ID, "1649367553", &signed(LEGACY), BODY, T),
            Err(DenyReason::SignatureMismatch)
        );
    }

    #[test]
    fn a_whsec_key_signs_with_its_decoded_bytes_not_its_text() {
        let as_text = format!("legacy-{CURRENT}");
        assert_ne!(signed(CURRENT), signed(&as_text));
        let raw = SecretString::from(CURRENT.to_owned());
        assert_eq!(hmac_key(&raw).len(), 24);
    }

    #[test]
    fn several_entries_pass_when_any_one_is_valid() {
        let keys = [SecretString::from(LEGACY), SecretString::from(CURRENT)];
        let header = format!("v1a,AAAA {}", sign_all(&keys, ID, T, BODY));
        assert_eq!(header.split(' ').count(), 3);
        assert_eq!(
            check(&secrets(None), ID, "1649367553", &header, BODY, T),
            Ok(SecretVersion::Current)
        );
    }

    #[test]
    fn anything_changed_after_signing_fails() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        let cases: [(&str, &str, &[u8]); 5] = [
            (ID, "1649367554", BODY),
            ("msg_27UH4WbU6Z5A5EzD8u03UvzRbpK", "1649367553", BODY),
            (
                ID,
                "1649367553",
                br#"{"email":"test@example.com","username":"test_usef"}"#,
            ),
            (ID, "1649367553", b""),
            // The fields cannot be re-split: the id cannot hold the separator.
            ("msg", "1649367553", BODY),
        ];
        for (id, ts, body) in cases {
            assert_eq!(
                check(&set, id, ts, &sig, body, T),
                Err(DenyReason::SignatureMismatch),
                "{id} {ts}"
            );
        }
    }

    #[test]
    fn skew_window_is_inclusive_at_its_edges() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        for now in [T - 300, T, T + 300] {
            assert!(
                check(&set, ID, "1649367553", &sig, BODY, now).is_ok(),
                "now={now}"
            );
        }
        for now in [T - 301, T + 301, 0, u64::MAX] {
            assert_eq!(
                check(&set, ID, "1649367553", &sig, BODY, now),
                Err(DenyReason::TimestampOutOfWindow),
                "now={now}"
            );
        }
    }

    #[test]
    fn malformed_missing_and_repeated_ids_are_refused() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        let long = "a".repeat(MAX_ID_LEN + 1);
        for id in ["", "msg.1", "msg 1", "msg/1", "msg\u{e9}", long.as_str()] {
            assert_eq!(
                check(&set, id, "1649367553", &sig, BODY, T),
                Err(DenyReason::IdMalformed),
                "{id:?}"
            );
        }
        let base = SignedRequest {
            body: BODY,
            id: &[],
            timestamp: &[b"1649367553"],
            signature: &[sig.as_bytes()],
        };
        assert_eq!(
            verify_signature(&set, &base, T, 300),
            Err(DenyReason::IdMissing)
        );
        let twice = [ID.as_bytes(), ID.as_bytes()];
        let req = SignedRequest { id: &twice, ..base };
        assert_eq!(
            verify_signature(&set, &req, T, 300),
            Err(DenyReason::CredentialDuplicated)
        );
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        let set = secrets(None);
        let sig = signed(CURRENT);
        for ts in [
            "",
            "-1649367553",
            "+1649367553",
            " 1649367553",
            "1649367553.0",
            "1.6e9",
            "16493675530000000000000",
            "0x6553f100",
        ] {
            assert_eq!(
                check(&set, ID, ts, &sig, BODY, T),
                Err(DenyReason::TimestampMalformed),
                "{ts:?}"
            );
        }
        let req = SignedRequest {
            body: BODY,
            id: &[ID.as_bytes()],
            timestamp: &[],
            signature: &[sig.as_bytes()],
        };
        assert_eq!(
            verify_signature(&set, &req, T, 300),
            Err(DenyReason::TimestampMissing)
        );
        let dup = [b"1649367553".as_slice(), b"1649367553".as_slice()];
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
        let short = format!("v1,{}", BASE64.encode([0u8; 31]));
        let long = format!("v1,{}", BASE64.encode([0u8; 33]));
        // The format before Standard Webhooks (`v1=`) is not an entry of this one.
        let old_style = sig.replacen("v1,", "v1=", 1);
        for bad in [
            "v1,",
            "v1,!!!!",
            "V1,AAAA",
            "sha256=abcd",
            truncated,
            &short,
            &long,
            &old_style,
        ] {
            assert_eq!(
                check(&set, ID, "1649367553", bad, BODY, T),
                Err(DenyReason::SignatureMalformed),
                "{bad:?}"
            );
        }
        for empty in ["", "   "] {
            assert_eq!(
                check(&set, ID, "1649367553", empty, BODY, T),
                Err(DenyReason::CredentialEmpty)
            );
        }
        let many = [sig.as_str(); MAX_SIGNATURES + 1].join(" ");
        assert_eq!(
            check(&set, ID, "1649367553", &many, BODY, T),
            Err(DenyReason::SignatureMalformed)
        );
        let lines = [sig.as_bytes(), sig.as_bytes()];
        let req = SignedRequest {
            body: BODY,
            id: &[ID.as_bytes()],
            timestamp: &[b"1649367553"],
            signature: &lines,
        };
        assert_eq!(
            verify_signature(&set, &req, T, 300),
            Err(DenyReason::CredentialDuplicated)
        );
    }

    #[test]
    fn the_wrong_key_of_any_length_or_format_fails() {
        let flipped = CURRENT.replacen('C', "D", 1);
        for wrong in [
            "",
            "x",
            "whsec_",
            &flipped,
            &CURRENT[..CURRENT.len() - 4],
            &CURRENT["whsec_".len()..],
        ] {
            assert_eq!(
                check(&secrets(None), ID, "1649367553", &signed(wrong), BODY, T),
                Err(DenyReason::SignatureMismatch),
                "{wrong:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(body in proptest::collection::vec(any::<u8>(), 0..256), skew in 0u64..=300, ahead in any::<bool>()) {
            let sig = sign(&CURRENT.into(), ID, T, &body);
            let now = if ahead { T + skew } else { T - skew };
            prop_assert_eq!(check(&secrets(None), ID, "1649367553", &sig, &body, now), Ok(SecretVersion::Current));
        }

        #[test]
        fn a_flipped_body_bit_fails(body in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<usize>()) {
            let sig = sign(&CURRENT.into(), ID, T, &body);
            let mut tampered = body.clone();
            let i = bit % (tampered.len() * 8);
            tampered[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(check(&secrets(None), ID, "1649367553", &sig, &tampered, T), Err(DenyReason::SignatureMismatch));
        }

        #[test]
        fn arbitrary_signature_headers_never_pass(header in "[ -~]{0,120}") {
            prop_assert!(check(&secrets(None), ID, "1649367553", &header, BODY, T).is_err());
        }
    }
}
