//! The Standard Webhooks reference library for Python (`standardwebhooks` on PyPI, in the
//! project's `interop` environment that `cargo xtask setup` fills): code nobody here wrote,
//! signing what Tollgate must accept and verifying what Tollgate sends.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Signs (`sign KEY ID TS`, body on stdin, prints the signature header) or verifies
/// (`verify KEY HEADERS_JSON`, body on stdin, exits 0 when it verifies, else prints why).
const SCRIPT: &str = r#"
import json, sys
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
body = sys.stdin.buffer.read()
if sys.argv[1] == "sign":
    _, _, key, msg_id, ts = sys.argv
    stamp = datetime.fromtimestamp(int(ts), tz=timezone.utc)
    print(Webhook(key).sign(msg_id, stamp, body))
else:
    _, _, key, headers = sys.argv
    try:
        Webhook(key).verify(body, json.loads(headers), json_parse=False)
    except WebhookVerificationError as e:
        print(e)
        sys.exit(1)
"#;

/// The interop environment's Python; panics with how to get it when it is missing.
pub fn python() -> PathBuf {
    crate::cmd::tool_in("interop", "python").unwrap_or_else(|| {
        panic!(
            "the Standard Webhooks reference library is not installed: run `cargo xtask setup` \
             (it fills the project environment `interop` from crates/xtask/tools/interop.txt)"
        )
    })
}

fn run(args: &[&str], body: &[u8]) -> (bool, String) {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the interop environment's python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("body written");
    let out = child.wait_with_output().expect("python finished");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || out.status.code() == Some(1) && stderr.is_empty(),
        "the reference library failed: {stderr}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// The reference library's `webhook-signature` for `body` as message `id` at `ts`.
pub fn sign(key: &str, id: &str, ts: u64, body: &[u8]) -> String {
    let (ok, out) = run(&["sign", key, id, &ts.to_string()], body);
    assert!(ok, "signing failed: {out}");
    out
}

/// Whether the reference library verifies `body` with `headers` under `key` (now, by its own
/// clock and tolerance); the error it gave when not.
pub fn verify(key: &str, headers: &[(String, String)], body: &[u8]) -> Result<(), String> {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let (ok, out) = run(
        &["verify", key, &serde_json::Value::Object(map).to_string()],
        body,
    );
    if ok { Ok(()) } else { Err(out) }
}
