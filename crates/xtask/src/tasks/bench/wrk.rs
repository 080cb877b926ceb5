//! What wrk is given and what it prints: signed registration bodies, the Lua scripts that send
//! them, and the totals read back from its summary. The bench and the soak both drive wrk.

use std::fmt::Write as _;

use secrecy::SecretString;
use shared_auth::GuardContract;

/// Signed registration bodies for a contract and secret.
pub struct Bodies<'a> {
    contract: &'a GuardContract,
    secret: &'a SecretString,
    now: u64,
}

impl<'a> Bodies<'a> {
    pub fn new(contract: &'a GuardContract, secret: &'a SecretString) -> Self {
        let now = shared_auth::unix::seconds();
        Self {
            contract,
            secret,
            now,
        }
    }

    /// The credential headers and body registering user number `n`.
    pub fn signed(&self, n: usize) -> (Vec<(String, String)>, String) {
        let sub = format!("00000000-0000-4000-8000-{n:012}");
        let body = format!(
            r#"{{"sub":"{sub}","email":"user{n}@example.com","email_verified":true,"username":"user{n}"}}"#
        );
        let headers = self
            .contract
            .credentials(
                std::slice::from_ref(self.secret),
                &shared_auth::registration_id("bench", &sub),
                body.as_bytes(),
                self.now,
            )
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (headers, body)
    }
}

/// `headers` with a JSON body's content type and the `X-Forwarded-For` the ALB would add for
/// `client`.
pub fn with_client(headers: &[(String, String)], client: &str) -> Vec<(String, String)> {
    let mut all = headers.to_vec();
    all.push(("Content-Type".into(), "application/json".into()));
    all.push(("X-Forwarded-For".into(), client.into()));
    all
}

/// A string as a Lua literal.
pub fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

/// A wrk script sending `GET path` with `headers`.
pub fn script_get(path: &str, headers: &[(String, String)]) -> String {
    let mut lua = format!("wrk.method = \"GET\"\nwrk.path = {}\n", lua_string(path));
    for (k, v) in headers {
        let _ = writeln!(lua, "wrk.headers[{}] = {}", lua_string(k), lua_string(v));
    }
    lua
}

/// A wrk script sending `POST /user` with `headers` and `body`.
pub fn script_post(headers: &[(String, String)], body: &str) -> String {
    script_post_to("/user", headers, body)
}

/// A wrk script sending `POST path` with `headers` and `body`.
pub fn script_post_to(path: &str, headers: &[(String, String)], body: &str) -> String {
    let mut lua = format!(
        "wrk.method = \"POST\"\nwrk.path = {}\nwrk.body = {}\n",
        lua_string(path),
        lua_string(body)
    );
    for (k, v) in headers {
        let _ = writeln!(lua, "wrk.headers[{}] = {}", lua_string(k), lua_string(v));
    }
    lua
}

/// Each request registers a new user: `group` (one per run) plus the thread number, and a
/// counter, make its `sub`.
pub fn script_new_users(header: &str, secret: &str, group: usize) -> String {
    format!(
        r#"local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  n = 0
  headers = {{ ["Content-Type"] = "application/json", ["X-Forwarded-For"] = "127.0.0.1", [{header}] = {secret} }}
end
function request()
  n = n + 1
  local sub = string.format("00000000-0000-4000-%04x-%012x", {group} + tid, n)
  local body = string.format('{{"sub":"%s","email":"u%d@example.com","email_verified":true,"username":"u%d"}}', sub, n, n)
  return wrk.format("POST", "/user", headers, body)
end
"#,
        header = lua_string(header),
        secret = lua_string(secret),
        group = group,
    )
}

/// The request count and the run's length in seconds from wrk's summary line
/// (`12345 requests in 4.10s, 1.2MB read`); zeros if there is none.
pub fn totals(out: &str) -> (f64, f64) {
    let summary = out
        .lines()
        .find(|l| l.contains("requests in"))
        .unwrap_or("");
    let mut words = summary.split_whitespace();
    let requests = words.next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
    let elapsed_s = words
        .nth(2)
        .and_then(|d| d.trim_end_matches(',').strip_suffix('s'))
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (requests, elapsed_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totals_come_from_wrks_summary_line() {
        let out = "Running 4s test @ http://127.0.0.1:1\n  2 threads and 8 connections\n  \
                   12345 requests in 4.10s, 1.20MB read\nRequests/sec:   3011.00\n";
        assert_eq!(totals(out), (12345.0, 4.10));
        assert_eq!(totals("no summary"), (0.0, 0.0));
    }

    #[test]
    fn lua_strings_escape_quotes_and_newlines() {
        assert_eq!(lua_string(r#"{"a":"b"}"#), r#""{\"a\":\"b\"}""#);
        assert_eq!(lua_string("a\nb"), r#""a\nb""#);
    }
}
