//! `cargo bench -p shared-auth`: what the guard costs per request. Prints figures; asserts
//! nothing (speed is measured here, not tested).

use std::hint::black_box;
use std::time::{Duration, Instant};

use shared_auth::{SecretSet, SignedRequest, client_ip, sign, verify_signature, verify_static};

/// Runs `f` for about `budget` (bounded by `max_iterations`) and prints ns per call.
fn measure(name: &str, budget: Duration, max_iterations: u64, mut f: impl FnMut()) {
    for _ in 0..1_000 {
        f();
    }
    let start = Instant::now();
    let mut n = 0;
    while n < max_iterations && start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    let per_call = start.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "{name:<48} {per_call:>9.0} ns/call  ({:>10.0} calls/s, n={n})",
        1e9 / per_call
    );
}

const ID: &str = "reg_0123456789abcdef0123456789abcdef";

fn main() {
    let current = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oDYmVuY2gtY3VycmVudA==";
    let previous = "bench-previous-secret-0123456789abcdefghij";
    let secrets = SecretSet::new(current.into(), Some(previous.into())).expect("valid secrets");
    let body = br#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271","email":"ada@example.com","email_verified":true,"username":"ada"}"#;
    let now = 1_700_000_000;
    let budget = Duration::from_millis(500);
    let cap = 5_000_000;

    let sig_current = sign(&current.into(), ID, now, body);
    let sig_previous = sign(&previous.into(), ID, now, body);
    let ts = now.to_string();
    let check = |sig: &str| {
        let timestamp = [ts.as_bytes()];
        let signature = [sig.as_bytes()];
        let id = [ID.as_bytes()];
        let req = SignedRequest {
            body,
            id: &id,
            timestamp: &timestamp,
            signature: &signature,
        };
        black_box(verify_signature(&secrets, &req, now, 300)).ok();
    };
    measure("hmac sign (current secret)", budget, cap, || {
        black_box(sign(&current.into(), ID, now, body));
    });
    measure("hmac verify, current secret matches", budget, cap, || {
        check(&sig_current)
    });
    measure("hmac verify, previous secret matches", budget, cap, || {
        check(&sig_previous)
    });
    measure(
        "hmac verify, no match (both secrets tried)",
        budget,
        cap,
        || check("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    );
    measure("static verify, match", budget, cap, || {
        black_box(verify_static(&secrets, &[current.as_bytes()])).ok();
    });
    let trusted = ["10.0.0.0/16".parse().expect("cidr")];
    let xff = b"198.51.100.1, 203.0.113.7, 10.0.1.5";
    measure("client_ip, 3-entry X-Forwarded-For", budget, cap, || {
        black_box(client_ip(
            "10.0.2.9".parse().expect("ip"),
            [&xff[..]],
            &trusted,
        ));
    });
}
