//! A scripted stand-in for the API's `POST /user`, verifying every request with `shared-auth`
//! exactly as the API does, so a test sees whether the Lambda signs correctly.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use shared_auth::{GuardContract, SecretSet};

/// What the receiver does with the next verified request.
#[derive(Debug, Clone)]
pub enum Script {
    /// Answer this status.
    Status(u16),
    /// Never answer.
    Hang,
    /// Answer `307 Temporary Redirect` to this location.
    Redirect(String),
    /// Answer 201 with a body that never ends (8 KiB chunks, forever).
    EndlessBody,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub verified: bool,
    pub body: serde_json::Value,
    pub status: u16,
    /// Every header as received (names lower case), for checking with other code.
    pub headers: Vec<(String, String)>,
    /// The body's bytes exactly as received.
    pub raw: Bytes,
}

#[derive(Clone)]
struct Inner {
    contract: GuardContract,
    secrets: Arc<Mutex<SecretSet>>,
    script: Arc<Mutex<VecDeque<Script>>>,
    calls: Arc<Mutex<Vec<Call>>>,
    registered: Arc<Mutex<HashSet<String>>>,
    /// `sub`s answered with a fixed status, whatever the script says (a poison message).
    refused: Arc<Mutex<std::collections::HashMap<String, u16>>>,
    /// How far the receiver's clock is from this host's, in seconds.
    clock_offset_s: Arc<AtomicI64>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Inner,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Receiver {
    pub async fn start(contract: GuardContract, secrets: SecretSet) -> Receiver {
        let inner = Inner {
            contract: contract.clone(),
            secrets: Arc::new(Mutex::new(secrets)),
            script: Arc::default(),
            calls: Arc::default(),
            registered: Arc::default(),
            refused: Arc::default(),
            clock_offset_s: Arc::default(),
        };
        let app = axum::Router::new()
            .route(&contract.path, post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, inner }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers for the next verified requests, in order; afterwards it registers (201/200).
    pub fn script(&self, steps: &[Script]) {
        self.inner
            .script
            .lock()
            .expect("script")
            .extend(steps.iter().cloned());
    }

    /// Answers every verified registration of `sub` with `status` from now on.
    pub fn refuse(&self, sub: &str, status: u16) {
        self.inner
            .refused
            .lock()
            .expect("refused")
            .insert(sub.to_owned(), status);
    }

    /// Accept these secrets from now on (a rotation on the receiving side).
    pub fn accept(&self, secrets: SecretSet) {
        *self.inner.secrets.lock().expect("secrets") = secrets;
    }

    /// Runs the receiver's clock `offset_s` from this host's (negative: behind), as an api on a
    /// host whose clock differs: it checks timestamps by it and answers with it in `Date`.
    pub fn set_clock(&self, offset_s: i64) {
        self.inner.clock_offset_s.store(offset_s, Ordering::Relaxed);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().expect("calls").clone()
    }
}

async fn receive(
    State(inner): State<Inner>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let now = shared_auth::unix::seconds()
        .saturating_add_signed(inner.clock_offset_s.load(Ordering::Relaxed));
    let mut response = answer(&inner, &headers, body, now).await;
    let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(now));
    if let Ok(date) = axum::http::HeaderValue::from_str(&date) {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, date);
    }
    response
}

/// The answer to one request, verified at `now` by the receiver's clock.
async fn answer(
    inner: &Inner,
    headers: &HeaderMap,
    body: Bytes,
    now: u64,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let secrets = inner.secrets.lock().expect("secrets").clone();
    let verdict = inner.contract.verify(
        &secrets,
        &body,
        |name| headers.get_all(name).iter().map(|v| v.as_bytes()).collect(),
        now,
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let record = |status: u16, json: serde_json::Value| {
        inner.calls.lock().expect("calls").push(Call {
            verified: verdict.is_ok(),
            body: json,
            status,
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            raw: body.clone(),
        });
    };
    match verdict {
        Err(_) => {
            record(403, json);
            StatusCode::FORBIDDEN.into_response()
        }
        // As the api: a verified dry run is answered, never acted on.
        Ok(version) if headers.contains_key(shared_auth::DRY_RUN_HEADER) => {
            record(204, json);
            (
                StatusCode::NO_CONTENT,
                [(shared_auth::VERIFIED_WITH_HEADER, version.as_str())],
            )
                .into_response()
        }
        Ok(_) => {
            let sub = json["sub"].as_str().unwrap_or_default();
            let refused = inner.refused.lock().expect("refused").get(sub).copied();
            let step = match refused {
                Some(status) => Some(Script::Status(status)),
                None => inner.script.lock().expect("script").pop_front(),
            };
            let (status, response) = scripted(inner, step, &json).await;
            record(status, json);
            response
        }
    }
}

/// The answer to a verified registration: the next scripted step, or a registration (201 for
/// a new `sub`, 200 for one seen before).
async fn scripted(
    inner: &Inner,
    step: Option<Script>,
    json: &serde_json::Value,
) -> (u16, axum::response::Response) {
    use axum::response::IntoResponse;
    let status = |s: u16| StatusCode::from_u16(s).expect("status");
    match step {
        Some(Script::Hang) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            (504, status(504).into_response())
        }
        Some(Script::Status(s)) => (s, status(s).into_response()),
        Some(Script::EndlessBody) => {
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, std::convert::Infallible>(Bytes::from_static(&[b'x'; 8192]))
            });
            (
                201,
                (status(201), axum::body::Body::from_stream(chunks)).into_response(),
            )
        }
        Some(Script::Redirect(to)) => (
            307,
            (status(307), [(axum::http::header::LOCATION, to)]).into_response(),
        ),
        None => {
            let sub = json["sub"].as_str().unwrap_or_default().to_owned();
            let s = if inner.registered.lock().expect("registered").insert(sub) {
                201
            } else {
                200
            };
            (s, status(s).into_response())
        }
    }
}
