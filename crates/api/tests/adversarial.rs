//! The adversarial suite: forged registrations over real HTTP, table-driven, by family —
//! credential headers, signatures, timestamps, paths, methods, framing, X-Forwarded-For — in
//! both signing modes. Each case asserts its status and that `users` is byte-for-byte what it
//! was. A correctly signed control request passes first, so the refusals are not vacuous.

use crate::common::*;
use secrecy::SecretString;

/// Everything in `users`, as one string: a case that writes or changes anything shows here.
async fn snapshot(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT coalesce(string_agg(u::text, '|' ORDER BY id), '') FROM users u")
        .fetch_one(&app.db)
        .await
        .expect("snapshot")
}

/// One forged request: a name, the raw HTTP/1.1 text, and the statuses that count as refused.
struct Case {
    family: &'static str,
    name: String,
    request: String,
    refused: &'static [u16],
}

const FORBIDDEN: &[u16] = &[403];
/// Never reaches the handler: no route, another method, or a framing error.
const NOT_ROUTED: &[u16] = &[400, 403, 404, 405, 411, 413, 415, 501];
/// A registration's body sent to the heartbeat's `DELETE` on the route.
const NOT_A_FORGET_BODY: &[u16] = &[422];

fn request(method: &str, target: &str, headers: &[String], body: &str) -> String {
    let mut text = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

fn lines(pairs: &[(String, String)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect()
}

/// Runs every case against `app`, asserting refusal and an unchanged table; returns the count.
async fn run(app: &TestApp, cases: Vec<Case>) -> usize {
    let mut failures = Vec::new();
    let before = snapshot(app).await;
    let total = cases.len();
    for case in cases {
        let (status, body) = app.raw(&case.request).await;
        if !case.refused.contains(&status) {
            failures.push(format!(
                "[{}] {}: answered {status} ({body})",
                case.family, case.name
            ));
        }
        if snapshot(app).await != before {
            failures.push(format!("[{}] {}: changed `users`", case.family, case.name));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases got through:\n{}",
        failures.len(),
        failures.join("\n")
    );
    total
}

/// The body every hmac case signs: a new user, so a pass would insert a row.
fn victim_body() -> String {
    body_for(&uuid::Uuid::new_v4().to_string(), "mallory@example.com")
}

fn hmac_cases(app: &TestApp) -> Vec<Case> {
    let contract = &app.settings.guard;
    let (ts_h, sig_h) = (
        contract.timestamp_header.clone(),
        contract.signature_header.clone(),
    );
    let body = victim_body();
    let t = now();
    let id_h = contract.id_header.clone();
    // The id every case carries unless it is what the case is about: the victim body's.
    let id = body_id(body.as_bytes());
    let good = |body: &str, ts: u64, secret: &str| app.credentials(secret, body.as_bytes(), ts);
    let sig_of = |ts: u64, secret: &str, body: &str| {
        good(body, ts, secret)
            .into_iter()
            .find(|(k, _)| *k == sig_h)
            .map(|(_, v)| v)
            .expect("signature")
    };
    let sig = sig_of(t, CURRENT, &body);
    let mut cases = Vec::new();
    let mut add = |family: &'static str,
                   name: String,
                   headers: Vec<String>,
                   target: &str,
                   method: &str,
                   body: &str,
                   refused: &'static [u16]| {
        let mut headers = headers;
        let prefix = format!("{id_h}:");
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with(&prefix))
        {
            headers.insert(0, format!("{id_h}: {id}"));
        }
        cases.push(Case {
            family,
            name,
            request: request(method, target, &headers, body),
            refused,
        });
    };

    // Signature family.
    let wrong_secrets = [
        "".to_owned(),
        "x".to_owned(),
        CURRENT[..CURRENT.len() - 1].to_owned(),
        format!("{CURRENT}x"),
        CURRENT.to_uppercase(),
        "another-secret-of-the-same-length-0123456".to_owned(),
        "a".repeat(4096),
    ];
    for (i, secret) in wrong_secrets.iter().enumerate() {
        let forged = sign_raw(secret, t, &body);
        add(
            "signature",
            format!("wrong secret #{i} (len {})", secret.len()),
            vec![format!("{ts_h}: {t}"), format!("{sig_h}: {forged}")],
            "/user",
            "POST",
            &body,
            FORBIDDEN,
        );
    }
    let mangled = [
        String::new(),
        " ".into(),
        "v1,".into(),
        "v1".into(),
        sig.replacen("v1,", "v0,", 1),
        sig.replacen("v1,", "V1,", 1),
        sig.replacen("v1,", "v2,", 1),
        sig.replacen("v1,", "v1a,", 1),
        sig.replacen("v1,", "v1 ,", 1),
        // The format before Standard Webhooks.
        sig.replacen("v1,", "v1=", 1),
        sig[..sig.len() - 4].to_owned(),
        format!("{sig}AAAA"),
        sig.replace('+', "-").replace('/', "_"),
        sig.trim_end_matches('=').to_owned() + "==",
        "v1,AAAA v1,AAAA".to_owned(),
        vec!["v1,AAAA"; 20].join(" "),
        format!("v1,{}", "A".repeat(10_000)),
        "v1,%%%%".into(),
        format!("v1, {}", sig.trim_start_matches("v1,")),
        sig.trim_start_matches("v1,").to_owned(),
        "v1,\u{00e9}".into(),
        sig.to_lowercase(),
        format!("v1,{}", hex_of(&sig)),
    ];
    // A mangling that happens to leave the signature as it was is no forgery.
    for (i, value) in mangled.iter().filter(|v| **v != sig).enumerate() {
        add(
            "signature",
            format!("malformed signature #{i}"),
            vec![format!("{ts_h}: {t}"), format!("{sig_h}: {value}")],
            "/user",
            "POST",
            &body,
            &[400, 403, 431],
        );
    }
    // Signed for other content than is sent.
    let other_body = victim_body();
    add(
        "signature",
        "signed another body".into(),
        vec![
            format!("{ts_h}: {t}"),
            format!("{sig_h}: {}", sig_of(t, CURRENT, &other_body)),
        ],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "signature",
        "body with a trailing space".into(),
        vec![format!("{ts_h}: {t}"), format!("{sig_h}: {sig}")],
        "/user",
        "POST",
        &format!("{body} "),
        FORBIDDEN,
    );
    // The id family: the id is signed, and of the one shape that cannot be re-split.
    let other_id = body_id(other_body.as_bytes());
    let long_id = "a".repeat(129);
    for (name, value) in [
        ("another registration's id", other_id.as_str()),
        ("no id", ""),
        ("id holding the separator", "reg_1.2"),
        ("id with a space", "reg_1 2"),
        ("id of 129 characters", long_id.as_str()),
    ] {
        let mut headers = vec![format!("{ts_h}: {t}"), format!("{sig_h}: {sig}")];
        headers.insert(0, format!("{id_h}: {value}"));
        add(
            "id",
            name.into(),
            headers,
            "/user",
            "POST",
            &body,
            FORBIDDEN,
        );
    }
    add(
        "id",
        "id sent twice".into(),
        vec![
            format!("{id_h}: {id}"),
            format!("{id_h}: {id}"),
            format!("{ts_h}: {t}"),
            format!("{sig_h}: {sig}"),
        ],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "signature",
        "signature for t, timestamp t+1".into(),
        vec![format!("{ts_h}: {}", t + 1), format!("{sig_h}: {sig}")],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );

    // Header family: missing, duplicated, renamed, odd case of values.
    add(
        "header",
        "no credential at all".into(),
        vec![],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "header",
        "signature only".into(),
        vec![format!("{sig_h}: {sig}")],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "header",
        "timestamp only".into(),
        vec![format!("{ts_h}: {t}")],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "header",
        "signature twice (same)".into(),
        vec![
            format!("{ts_h}: {t}"),
            format!("{sig_h}: {sig}"),
            format!("{sig_h}: {sig}"),
        ],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "header",
        "timestamp twice".into(),
        vec![
            format!("{ts_h}: {t}"),
            format!("{ts_h}: {t}"),
            format!("{sig_h}: {sig}"),
        ],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "header",
        "forged then genuine signature lines".into(),
        vec![
            format!("{ts_h}: {t}"),
            format!("{sig_h}: v1,AAAA"),
            format!("{sig_h}: {sig}"),
        ],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    for renamed in [
        "webhook-signatures",
        "webhook_signature",
        "svix-signature",
        "webhook-signature ",
        // The header of the format before Standard Webhooks.
        "x-tollgate-signature",
        "authorization",
    ] {
        add(
            "header",
            format!("signature under `{renamed}`"),
            vec![format!("{ts_h}: {t}"), format!("{renamed}: {sig}")],
            "/user",
            "POST",
            &body,
            &[400, 403],
        );
    }
    add(
        "header",
        "static header in hmac mode".into(),
        vec![format!("{}: {CURRENT}", contract.static_header)],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "header",
        "credential in a query".into(),
        vec![],
        &format!("/user?{sig_h}={}", urlencode(&sig)),
        "POST",
        &body,
        FORBIDDEN,
    );
    add(
        "header",
        "credential in a cookie".into(),
        vec![format!("Cookie: {sig_h}={sig}; {ts_h}={t}")],
        "/user",
        "POST",
        &body,
        FORBIDDEN,
    );

    // Timestamp family.
    let skew = contract.max_skew_s;
    for (name, value) in [
        ("too old", (t - skew - 5).to_string()),
        ("too new", (t + skew + 5).to_string()),
        ("zero", "0".into()),
        ("negative", format!("-{t}")),
        ("float", format!("{t}.0")),
        ("leading plus", format!("+{t}")),
        ("leading zeros", format!("000{t}")),
        ("hex", format!("0x{t:x}")),
        ("empty", String::new()),
        (
            "spaces inside",
            format!("{} {}", &t.to_string()[..3], &t.to_string()[3..]),
        ),
        ("u64 overflow", "99999999999999999999999".into()),
        ("milliseconds", (t * 1000).to_string()),
        ("ISO date", "2026-11-25T00:00:00Z".into()),
    ] {
        let signed = sign_raw(CURRENT, value.parse().unwrap_or(t), &body);
        add(
            "timestamp",
            format!("timestamp {name}"),
            vec![format!("{ts_h}: {value}"), format!("{sig_h}: {signed}")],
            "/user",
            "POST",
            &body,
            &[400, 403],
        );
    }

    // Path family: every spelling but the route itself never reaches the handler.
    for target in [
        "/user/",
        "//user",
        "/USER",
        "/User",
        "/%75ser",
        "/user%2F",
        "/user/.",
        "/./user",
        "/x/../user",
        "/user;x=1",
        "/user/..",
        "/user%3F",
        "/user%23",
        "/%55SER",
        "/user.json",
        "/user/%2e",
        "/api/user",
        "/user//",
        "/%2e/user",
        "/user%09",
        "/user%00",
        "/user%20",
        "/users",
        "/user/me",
        "/%2Fuser",
        "/user?",
        "/user?sub=x",
        "http://127.0.0.1/user/",
    ] {
        let signed = good(&body, t, CURRENT);
        add(
            "path",
            format!("path `{target}` (validly signed)"),
            lines(&signed),
            target,
            "POST",
            &body,
            NOT_ROUTED,
        );
    }

    // Method family.
    for method in [
        "GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "post", "Post", "TRACE", "CONNECT",
        "PROPFIND",
    ] {
        let signed = lines(&good(&body, t, CURRENT));
        // DELETE is routed: the heartbeat's read-and-delete, behind the same guard. A signed
        // registration body is not its body (`{"sub"}` alone): 422, and nothing is deleted.
        let refused = if method == "DELETE" {
            NOT_A_FORGET_BODY
        } else {
            NOT_ROUTED
        };
        add(
            "method",
            format!("method {method} (validly signed)"),
            signed,
            "/user",
            method,
            &body,
            refused,
        );
    }

    // Framing family: what a proxy and the server might disagree on.
    let signed = lines(&good(&body, t, CURRENT));
    let framings: Vec<(&str, String)> = vec![
        // Whichever framing the server believes, the body it reads is not the signed one.
        (
            "content-length and chunked",
            format!(
                "POST /user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n{}\r\n\r\n{:x}\r\n{other_body}\r\n0\r\n\r\n",
                body.len(),
                signed.join("\r\n"),
                other_body.len()
            ),
        ),
        (
            "two content-lengths",
            format!(
                "POST /user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\nContent-Length: 2\r\n{}\r\n\r\n{body}",
                body.len(),
                signed.join("\r\n")
            ),
        ),
        (
            "content-length too short",
            format!(
                "POST /user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n\r\n{body}",
                body.len() - 5,
                signed.join("\r\n")
            ),
        ),
        (
            "bad chunk size",
            format!(
                "POST /user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{}\r\n\r\nzz\r\n{body}\r\n0\r\n\r\n",
                signed.join("\r\n")
            ),
        ),
        (
            "signature folded over two lines",
            format!(
                "POST /user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{ts_h}: {t}\r\n{sig_h}: v1,AAAA\r\n {sig}\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "oversized body",
            request(
                "POST",
                "/user",
                &lines(&good(&"x".repeat(20_000), t, CURRENT)),
                &"x".repeat(20_000),
            ),
        ),
        (
            "body not JSON (signed)",
            request(
                "POST",
                "/user",
                &lines(&good("not json", t, CURRENT)),
                "not json",
            ),
        ),
        (
            "space before colon",
            request(
                "POST",
                "/user",
                &signed
                    .iter()
                    .map(|h| h.replacen(':', " :", 1))
                    .collect::<Vec<_>>(),
                &body,
            ),
        ),
        (
            "null byte in a header",
            request(
                "POST",
                "/user",
                &[signed.clone(), vec!["X-Evil: a\0b".into()]].concat(),
                &body,
            ),
        ),
    ];
    for (name, text) in framings {
        cases.push(Case {
            family: "framing",
            name: name.into(),
            request: text,
            refused: &[400, 403, 413, 422, 431],
        });
    }
    cases
}

/// X-Forwarded-For: the app trusts loopback as a proxy and allows 127.0.0.1 only.
fn forwarded_cases(app: &TestApp) -> Vec<Case> {
    let body = victim_body();
    let signed = lines(&app.credentials(CURRENT, body.as_bytes(), now()));
    let mut cases = Vec::new();
    for (name, values) in [
        ("spoofed left-most", vec!["127.0.0.1, 198.51.100.7"]),
        ("outside address only", vec!["198.51.100.7"]),
        ("garbage entry", vec!["not-an-ip"]),
        ("garbage then allowed", vec!["127.0.0.1, bogus"]),
        ("port suffix", vec!["198.51.100.7:443"]),
        ("IPv6 outside", vec!["2001:db8::1"]),
        ("IPv4-mapped outside", vec!["::ffff:198.51.100.7"]),
        ("bracketed IPv6", vec!["[2001:db8::1]"]),
        ("empty entry last", vec!["198.51.100.7, "]),
        (
            "two lines, allowed first",
            vec!["127.0.0.1", "198.51.100.7"],
        ),
        ("two lines, allowed last", vec!["198.51.100.7", "127.0.0.1"]),
        ("odd-cased name, two lines", vec!["127.0.0.1"]),
        (
            "long chain ending outside",
            vec!["127.0.0.1, 10.0.0.1, 10.0.0.2, 203.0.113.9"],
        ),
        ("unknown word", vec!["unknown"]),
        ("obfuscated identifier", vec!["_hidden"]),
    ] {
        let mut headers = signed.clone();
        if name == "odd-cased name, two lines" {
            headers.push("x-FORWARDED-for: 198.51.100.7".into());
            headers.push(format!("X-Forwarded-For: {}", values[0]));
        } else {
            headers.extend(values.iter().map(|v| format!("X-Forwarded-For: {v}")));
        }
        cases.push(Case {
            family: "x-forwarded-for",
            name: name.into(),
            request: request("POST", "/user", &headers, &body),
            refused: FORBIDDEN,
        });
    }
    cases
}

fn static_cases(app: &TestApp) -> Vec<Case> {
    let header = app.settings.guard.static_header.clone();
    let body = victim_body();
    let mut cases = Vec::new();
    let values = [
        String::new(),
        " ".into(),
        CURRENT[..CURRENT.len() - 1].to_owned(),
        format!("{CURRENT}x"),
        format!(" {CURRENT}x"),
        CURRENT.to_uppercase(),
        format!("Bearer {CURRENT}"),
        "a".repeat(CURRENT.len()),
        "a".repeat(8_000),
        "\u{00e9}".repeat(10),
        format!("{CURRENT},{CURRENT}"),
        "null".into(),
    ];
    for (i, value) in values.iter().enumerate() {
        cases.push(Case {
            family: "static",
            name: format!("wrong value #{i} (len {})", value.len()),
            request: request("POST", "/user", &[format!("{header}: {value}")], &body),
            refused: &[400, 403, 431],
        });
    }
    for (name, headers) in [
        ("missing", vec![]),
        (
            "twice, both right",
            vec![
                format!("{header}: {CURRENT}"),
                format!("{header}: {CURRENT}"),
            ],
        ),
        (
            "twice, wrong then right",
            vec![format!("{header}: nope"), format!("{header}: {CURRENT}")],
        ),
        (
            "under another name",
            vec![format!("x-custom-auths: {CURRENT}")],
        ),
        (
            "in Authorization",
            vec![format!("Authorization: {CURRENT}")],
        ),
        (
            "odd-cased name, twice",
            vec![
                format!("X-CUSTOM-AUTH: nope"),
                format!("{header}: {CURRENT}"),
            ],
        ),
    ] {
        cases.push(Case {
            family: "static",
            name: format!("header {name}"),
            request: request("POST", "/user", &headers, &body),
            refused: FORBIDDEN,
        });
    }
    for target in ["/user/", "/USER", "/%75ser", "//user"] {
        cases.push(Case {
            family: "static",
            name: format!("path {target}"),
            request: request("POST", target, &[format!("{header}: {CURRENT}")], &body),
            refused: NOT_ROUTED,
        });
    }
    cases
}

/// The source-check oracle: without a usable credential, an allowed and a denied source get
/// the same 403 before the body is read or limited — never 413 for its size, never a wait for
/// a body that does not come. `credentials` are header sets with no credential or one of the
/// wrong shape.
fn oracle_cases(credentials: Vec<(&'static str, Vec<String>)>) -> Vec<Case> {
    let bodies = [
        ("10 MB announced, none sent", "Content-Length: 10485760", ""),
        (
            "100 bytes announced, 10 sent",
            "Content-Length: 100",
            "{\"sub\": 1",
        ),
        (
            "chunked, never finished",
            "Transfer-Encoding: chunked",
            "10000\r\n{\"sub\":",
        ),
        (
            "10 MB announced behind Expect",
            "Content-Length: 10485760\r\nExpect: 100-continue",
            "",
        ),
    ];
    let sources = [
        ("allowed source", None),
        ("denied source", Some("203.0.113.9")),
    ];
    let mut cases = Vec::new();
    for (credential, headers) in &credentials {
        for (framing, length, body) in bodies {
            for (source, forwarded) in sources {
                let mut text = format!(
                    "POST /user HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{length}\r\n"
                );
                for h in headers
                    .iter()
                    .cloned()
                    .chain(forwarded.map(|ip| format!("X-Forwarded-For: {ip}")))
                {
                    text.push_str(&h);
                    text.push_str("\r\n");
                }
                text.push_str("\r\n");
                text.push_str(body);
                cases.push(Case {
                    family: "oracle",
                    name: format!("{credential}, {framing}, {source}"),
                    request: text,
                    refused: FORBIDDEN,
                });
            }
        }
    }
    cases
}

/// `v1,` signature of `body` with the id it carries ([`body_id`]), as a sender with `secret`
/// would compute it.
fn sign_raw(secret: &str, ts: u64, body: &str) -> String {
    shared_auth::sign(
        &SecretString::from(secret),
        &body_id(body.as_bytes()),
        ts,
        body.as_bytes(),
    )
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A correctly signed registration passes: the harness can register, so refusals mean something.
async fn control(app: &TestApp, headers: Vec<(String, String)>, body: &str) {
    let response = app.post_user(body.as_bytes(), &headers).await;
    assert_eq!(response.status(), 201, "the control request must pass");
}

#[tokio::test]
async fn forged_registrations_in_hmac_mode_are_refused_and_store_nothing() {
    let app =
        spawn_with(Options::default().var("TOLLGATE__GUARD__TRUSTED_PROXIES", "127.0.0.0/8")).await;
    let body = victim_body();
    control(
        &app,
        app.credentials(CURRENT, body.as_bytes(), now()),
        &body,
    )
    .await;
    let mut cases = hmac_cases(&app);
    cases.extend(forwarded_cases(&app));
    let (id_h, ts_h, sig_h) = (
        app.settings.guard.id_header.clone(),
        app.settings.guard.timestamp_header.clone(),
        app.settings.guard.signature_header.clone(),
    );
    cases.extend(oracle_cases(vec![
        ("no credential", vec![]),
        (
            "signature of the wrong shape",
            vec![
                format!("{id_h}: reg_oracle"),
                format!("{ts_h}: {}", now()),
                format!("{sig_h}: v1,zz"),
            ],
        ),
        (
            "timestamp not a number",
            vec![
                format!("{id_h}: reg_oracle"),
                format!("{ts_h}: soon"),
                format!("{sig_h}: v1,{}", "0".repeat(64)),
            ],
        ),
        (
            "id of the wrong shape",
            vec![
                format!("{id_h}: reg.oracle"),
                format!("{ts_h}: {}", now()),
                format!("{sig_h}: v1,{}", "A".repeat(43) + "="),
            ],
        ),
    ]));
    let total = run(&app, cases).await;
    println!("hmac mode: {total} forged requests refused, `users` unchanged");
    assert!(total >= 144, "only {total} cases");
}

#[tokio::test]
async fn forged_registrations_in_static_mode_are_refused_and_store_nothing() {
    let app = spawn_with(
        Options::default()
            .var("TOLLGATE__GUARD__MODE", "static")
            .var("TOLLGATE__GUARD__TRUSTED_PROXIES", "127.0.0.0/8"),
    )
    .await;
    let body = victim_body();
    let header = app.settings.guard.static_header.clone();
    control(&app, vec![(header.clone(), CURRENT.to_owned())], &body).await;
    let mut cases = static_cases(&app);
    cases.extend(forwarded_cases(&app));
    cases.extend(oracle_cases(vec![
        ("no credential", vec![]),
        ("an empty value", vec![format!("{header}: ")]),
        (
            "a value too long to be one",
            vec![format!("{header}: {}", "a".repeat(600))],
        ),
    ]));
    let total = run(&app, cases).await;
    println!("static mode: {total} forged requests refused, `users` unchanged");
    assert!(total >= 59, "only {total} cases");
}
