//! The `hmac` mode against the Standard Webhooks reference library (the `standardwebhooks`
//! crate, which nobody here wrote): what it signs, the contract verifies; what the contract
//! signs, it verifies; and what it signs wrongly, the contract refuses for the right reason.

use secrecy::SecretString;
use shared_auth::{Component, DenyReason, GuardContract, SecretSet, SecretVersion, load_for};
use standardwebhooks::Webhook;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PENDING: &str = "whsec_cGVuZGluZy1rZXktMDEyMzQ1Njc4OWFiY2RlZg==";
const BODY: &[u8] =
    br#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271","email_verified":true,"username":"ada"}"#;

fn contract() -> GuardContract {
    load_for(Component::Lambda, &Default::default())
        .expect("local contract")
        .guard
}

fn now() -> u64 {
    shared_auth::unix::seconds()
}

fn set(keys: &[&str]) -> SecretSet {
    SecretSet::new(keys[0].into(), keys.get(1).map(|k| (*k).into())).expect("valid keys")
}

/// The reference library's headers for `body`, signed with `key` at `ts`.
fn reference_headers(key: &str, id: &str, ts: u64, body: &[u8]) -> Vec<(String, String)> {
    let signature = Webhook::new(key)
        .expect("key")
        .sign(id, ts as i64, body)
        .expect("utf-8 body");
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

fn verify(set: &SecretSet, headers: &[(String, String)], body: &[u8]) -> shared_auth::Verdict {
    contract().verify(
        set,
        body,
        |name| {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_bytes())
                .collect()
        },
        now(),
    )
}

#[test]
fn the_contract_accepts_what_the_reference_library_signs() {
    let ts = now();
    let headers = reference_headers(KEY, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", ts, BODY);
    assert_eq!(
        verify(&set(&[KEY]), &headers, BODY),
        Ok(SecretVersion::Current)
    );
    // As the previous key too, during a rotation's grace.
    assert_eq!(
        verify(&set(&[PENDING, KEY]), &headers, BODY),
        Ok(SecretVersion::Previous)
    );
}

#[test]
fn the_reference_library_accepts_what_the_contract_signs_with_every_key() {
    let ts = now();
    let keys = [SecretString::from(KEY), SecretString::from(PENDING)];
    let id = shared_auth::registration_id("ap-northeast-1_Example", "7d8ca528");
    let signed = contract().credentials(&keys, &id, BODY, ts);
    let mut headers = http::HeaderMap::new();
    for (name, value) in signed.iter() {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    assert_eq!(headers.len(), 3, "id, timestamp and signature");
    assert_eq!(
        headers["webhook-signature"]
            .to_str()
            .expect("ascii")
            .split(' ')
            .count(),
        2,
        "one entry per key"
    );
    // Either key alone verifies it: a receiver that knows only one of them accepts.
    for key in [KEY, PENDING] {
        Webhook::new(key)
            .expect("key")
            .verify(BODY, &headers)
            .unwrap_or_else(|e| panic!("the reference library refused it under {key}: {e}"));
    }
    let other = "whsec_b3RoZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=";
    assert!(
        Webhook::new(other)
            .expect("key")
            .verify(BODY, &headers)
            .is_err()
    );
}

#[test]
fn what_the_reference_library_signs_wrongly_is_refused_for_its_reason() {
    let ts = now();
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let wrong_key = reference_headers(PENDING, id, ts, BODY);
    assert_eq!(
        verify(&set(&[KEY]), &wrong_key, BODY),
        Err(DenyReason::SignatureMismatch)
    );
    let stale = reference_headers(KEY, id, ts - 301, BODY);
    assert_eq!(
        verify(&set(&[KEY]), &stale, BODY),
        Err(DenyReason::TimestampOutOfWindow)
    );
    let ahead = reference_headers(KEY, id, ts + 301, BODY);
    assert_eq!(
        verify(&set(&[KEY]), &ahead, BODY),
        Err(DenyReason::TimestampOutOfWindow)
    );
    let good = reference_headers(KEY, id, ts, BODY);
    let altered =
        br#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271","email_verified":true,"username":"eve"}"#;
    assert_eq!(
        verify(&set(&[KEY]), &good, altered),
        Err(DenyReason::SignatureMismatch)
    );
    // The reference library signs any id; the contract refuses one that holds the separator.
    let dotted = reference_headers(KEY, "msg.1", ts, BODY);
    assert_eq!(
        verify(&set(&[KEY]), &dotted, BODY),
        Err(DenyReason::IdMalformed)
    );
}
