//! Does verifying a credential take the same time however close a forgery comes? Welch's
//! t-test on the verification time of credentials that differ from the accepted one in the
//! first byte versus the last byte, in both modes, built optimized as it runs in production.
//! Run it with `cargo xtask timing` (or `cargo bench -p shared-auth --bench timing --
//! --samples N`). A tool, not a test: the figure depends on the machine, so it is printed,
//! never asserted. |t| below 4.5 at 10⁶ samples is the usual bar (dudect's) for "no
//! detectable difference".

use std::hint::black_box;
use std::time::Instant;

use secrecy::SecretString;
use shared_auth::{GuardContract, SecretSet, SigningMode};

/// The bar below which no timing difference is detectable.
const T_THRESHOLD: f64 = 4.5;

/// `--samples N` from the command line (cargo bench adds its own `--bench`), else 10⁶.
fn samples_from_args() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == "--samples")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1_000_000)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples = samples_from_args();
    {
        let settings = shared_auth::load_for(shared_auth::Component::Deploy, &Default::default())?;
        let secret = "whsec_dGltaW5nLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmZ2hpams=";
        let secrets = SecretSet::new(SecretString::from(secret), None)?;
        let body = br#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271","username":"ada"}"#;
        println!(
            "{:<8} {:>10} {:>14} {:>14} {:>8}  verdict",
            "mode", "samples", "first byte ns", "last byte ns", "|t|"
        );
        for mode in [SigningMode::Static, SigningMode::Hmac] {
            let mut contract = settings.guard.clone();
            contract.mode = mode;
            let now = 1_795_089_600;
            let genuine = credential(&contract, secret, body, now);
            let (first, last) = (flip(&genuine, 0), flip(&genuine, genuine.len() - 1));
            eprintln!("· {mode}: {} samples of each, interleaved…", samples);
            let (a, b) = measure(samples, |which| {
                let value = if which { &first } else { &last };
                let header_name = match mode {
                    SigningMode::Static => contract.static_header.as_str(),
                    SigningMode::Hmac => contract.signature_header.as_str(),
                };
                let ts = now.to_string();
                black_box(contract.verify(
                    &secrets,
                    body,
                    |name| match name {
                        n if n == header_name => vec![value.as_bytes()],
                        n if n == contract.timestamp_header => vec![ts.as_bytes()],
                        n if n == contract.id_header => vec![b"msg_timing".as_slice()],
                        _ => vec![],
                    },
                    now,
                ))
                .is_err()
            });
            let t = welch_t(&a, &b);
            println!(
                "{:<8} {:>10} {:>14.1} {:>14.1} {:>8.2}  {}",
                mode.to_string(),
                samples,
                mean(&a),
                mean(&b),
                t.abs(),
                if t.abs() < T_THRESHOLD {
                    "✓ no detectable difference"
                } else {
                    "✗ differs (rerun on a quiet machine before concluding)"
                }
            );
        }
        Ok(())
    }
}

/// The credential header value a sender with `secret` would present.
fn credential(contract: &GuardContract, secret: &str, body: &[u8], now: u64) -> String {
    let secret = SecretString::from(secret);
    match contract.mode {
        SigningMode::Static => secrecy::ExposeSecret::expose_secret(&secret).to_owned(),
        SigningMode::Hmac => shared_auth::sign(&secret, "msg_timing", now, body),
    }
}

/// `value` with the character at `index` replaced by another of the same kind, so the
/// forgery keeps its length and format (base64 stays base64).
fn flip(value: &str, index: usize) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let index = if value.starts_with("v1,") {
        index.max(3)
    } else {
        index
    };
    let index = if value.ends_with('=') && index == bytes.len() - 1 {
        bytes.iter().rposition(|b| *b != b'=').unwrap_or(index)
    } else {
        index
    };
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap_or_else(|_| value.to_owned())
}

/// `samples` timings (ns) of `f(true)` and of `f(false)`, interleaved so drift hits both.
fn measure(samples: usize, mut f: impl FnMut(bool) -> bool) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..samples * 2 {
        // Alternate, with the order swapped every other pair.
        let which = (i % 2 == 0) ^ ((i / 2) % 2 == 0);
        let start = Instant::now();
        let refused = f(which);
        let ns = start.elapsed().as_nanos() as f64;
        debug_assert!(refused, "a forgery was accepted");
        if which { a.push(ns) } else { b.push(ns) }
    }
    (trim(a), trim(b))
}

/// Drops the slowest 1 % (preemptions, page faults): they measure the machine, not the code.
fn trim(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    let keep = v.len() - v.len() / 100;
    v.truncate(keep);
    v
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn variance(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64
}

/// Welch's t statistic of two samples with possibly different variances.
fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let se = (variance(a) / a.len() as f64 + variance(b) / b.len() as f64).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (mean(a) - mean(b)) / se
    }
}
