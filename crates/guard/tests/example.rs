//! `examples/second_route.rs`, run as built: its guarded route refuses an unsigned request and
//! one signed with a wrong key, and accepts what the Standard Webhooks reference libraries sign
//! (Python's `standardwebhooks` and the Rust crate); its public route stays public.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const KEY: &str = "whsec_ZXhhbXBsZS1iaWxsaW5nLWtleS0wMTIzNDU2Nzg5YWI=";
const WRONG: &str = "whsec_d3Jvbmcta2V5LTAxMjM0NTY3ODlhYmNkZWZnaA==";

/// The example server, and where it listens; stopped when dropped.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(key: &str) -> Server {
    // `cargo test` builds the examples beside the tests: target/<profile>/examples/.
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("profile dir");
    let binary = dir.join("examples").join("second_route");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo test -p tollgate-guard` (cargo test builds examples)",
        binary.display()
    );
    let mut child = Command::new(&binary)
        .env("BILLING_KEY", key)
        .env("LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its first line");
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server(child, format!("http://{address}"))
}

fn now() -> u64 {
    shared_auth::unix::seconds()
}

async fn post(server: &Server, headers: &[(String, String)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/hooks/billing", server.1))
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn signed(signature: String, id: &str, ts: u64) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

#[tokio::test]
async fn the_examples_route_refuses_the_unsigned_and_accepts_the_reference_libraries() {
    let server = start(KEY);
    let body = r#"{"invoice":"in_1","amount":4200}"#;

    let (status, answer) = post(&server, &[], body).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        answer,
        r#"{"type":"about:blank","title":"Forbidden","status":403}"#
    );

    let ts = now();
    let python = testkit::reference::sign(KEY, "msg_python", ts, body.as_bytes());
    let (status, answer) = post(&server, &signed(python, "msg_python", ts), body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        format!("accepted {} bytes signed at {ts}", body.len())
    );

    let rust = standardwebhooks::Webhook::new(KEY)
        .expect("key")
        .sign("msg_rust", ts as i64, body.as_bytes())
        .expect("utf-8");
    assert_eq!(
        post(&server, &signed(rust, "msg_rust", ts), body).await.0,
        200
    );

    let wrong = testkit::reference::sign(WRONG, "msg_wrong", ts, body.as_bytes());
    assert_eq!(
        post(&server, &signed(wrong, "msg_wrong", ts), body).await.0,
        403
    );

    let public = reqwest::get(format!("{}/", server.1)).await.expect("sent");
    assert_eq!(public.status(), 200, "the other route is not guarded");
}
