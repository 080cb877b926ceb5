//! The id, signature and timestamp headers as a sender controls them: any bytes, several lines.
//! Verification must not panic, and random bytes must never verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_auth::{SecretSet, SignedRequest, verify_signature};

fuzz_target!(|data: &[u8]| {
    let secrets = SecretSet::new(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned().into(),
        Some(
            "fuzzing-previous-0123456789abcdefghijklmnopqr"
                .to_owned()
                .into(),
        ),
    )
    .expect("valid secrets");
    let mut parts = data.splitn(4, |b| *b == 0);
    let id = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let signatures: Vec<&[u8]> = signature.split(|b| *b == b'\n').collect();
    let timestamps = [timestamp];
    let ids = [id];
    let request = SignedRequest {
        body,
        id: &ids,
        timestamp: &timestamps,
        signature: &signatures,
    };
    let verdict = verify_signature(&secrets, &request, 1_795_089_600, 300);
    assert!(verdict.is_err(), "random bytes verified");
});
