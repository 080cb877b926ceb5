//! Test harness: the real service on a loopback port, against its own fresh PostgreSQL
//! database, talked to over real HTTP.
#![allow(dead_code)] // each test file uses part of the harness

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use api::secrets::{SecretProvider, SecretStore};
use api::{Application, Clock};
use secrecy::SecretString;
use shared_auth::{SecretSet, Settings};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// A Standard Webhooks key, as every key written now is.
pub const CURRENT: &str = "whsec_dGVzdC1jdXJyZW50LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
/// A key of the format before it (no `whsec_`), still accepted until a rotation replaces it.
pub const PREVIOUS: &str = "test-previous-secret-0123456789abcdefghijk";

/// The message id a test request carries: made from its body, like a registration's from its
/// user.
pub fn body_id(body: &[u8]) -> String {
    shared_auth::registration_id("api-tests", &String::from_utf8_lossy(body))
}
pub const SUB: &str = "7d8ca528-4931-4254-9273-ea5ee853f271";

#[allow(unused_imports)] // the database tests use it
pub use testkit::database_url;

/// A new, empty database on the test server; returns its URL.
pub async fn fresh_database() -> String {
    testkit::fresh_database("test").await
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// How to build one test app.
pub struct Options {
    /// Extra settings, as `TOLLGATE__…` variables.
    pub vars: Vec<(String, String)>,
    pub clock: Clock,
    /// The secret source; `None` means current + previous test secrets.
    pub provider: Option<SecretProvider>,
    /// Database URL; `None` means a fresh database.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            vars: Vec::new(),
            clock: Clock::system(),
            provider: None,
            database_url: None,
        }
    }
}

impl Options {
    pub fn var(mut self, key: &str, value: &str) -> Self {
        self.vars.push((key.to_owned(), value.to_owned()));
        self
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub db: PgPool,
    pub db_url: String,
    pub settings: Settings,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(opts: Options) -> TestApp {
    let db_url = match opts.database_url {
        Some(url) => url,
        None => fresh_database().await,
    };
    let mut vars: HashMap<String, String> = HashMap::from([
        ("TOLLGATE_ENV".into(), "local".into()),
        ("TOLLGATE__API__LISTEN".into(), "127.0.0.1:0".into()),
        ("DATABASE_URL".into(), db_url.clone()),
    ]);
    vars.extend(opts.vars);
    let settings =
        shared_auth::load_for(shared_auth::Component::Api, &vars).expect("test settings load");
    let provider = opts.provider.unwrap_or_else(|| {
        SecretProvider::Fixed(
            SecretSet::new(CURRENT.into(), Some(PREVIOUS.into())).expect("valid test secrets"),
        )
    });
    let secrets = SecretStore::start_at(
        provider,
        std::time::Duration::from_secs(settings.api.secret_refresh_s),
        opts.clock,
    )
    .await;
    let app = Application::build(settings.clone(), secrets, opts.clock)
        .await
        .expect("app builds");
    let addr = app.local_addr().expect("bound");
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    // The test's own pool is the superuser's, whoever the app connects as.
    let admin_url = match db_url.split_once('@') {
        Some((_, rest)) => format!("postgres://postgres@{rest}"),
        None => db_url.clone(),
    };
    let db = PgPool::connect(&admin_url).await.expect("test pool");
    TestApp {
        addr,
        base: format!("http://{addr}"),
        db,
        db_url,
        settings,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    /// Asks the server to stop, as SIGTERM would; requests in flight are finished.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// The credential headers the Lambda would send for `body` at `ts`, its message id made
    /// from the body (so one body always has one id).
    pub fn credentials(&self, secret: &str, body: &[u8], ts: u64) -> Vec<(String, String)> {
        self.settings
            .guard
            .credentials(&[SecretString::from(secret)], &body_id(body), body, ts)
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// `POST /user` with a JSON body and the given headers.
    pub async fn post_user(&self, body: &[u8], headers: &[(String, String)]) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/user", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await.expect("request sent")
    }

    /// A correctly signed registration, as the Lambda sends it: through the Lambdas' own
    /// builder of a signed request.
    pub async fn register(&self, body: &str) -> reqwest::Response {
        let route = lambda_support::route::GuardedRoute::new(
            self.http.clone(),
            self.settings.guard.clone(),
            &self.base,
        );
        route
            .signed(
                &[SecretString::from(CURRENT)],
                &body_id(body.as_bytes()),
                body.as_bytes(),
            )
            .send()
            .await
            .expect("request sent")
    }

    pub async fn user_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.db)
            .await
            .expect("count users")
    }

    /// Sends raw bytes as one HTTP/1.1 request and returns (status, body). For what a client
    /// library would tidy up: duplicate or odd-cased headers, unusual paths.
    pub async fn raw(&self, request: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

/// Serves `router` on a free loopback port (a stand-in for a dependency: a JWKS, say).
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// A registration body for `sub`.
pub fn body_for(sub: &str, email: &str) -> String {
    format!(r#"{{"sub":"{sub}","email":"{email}","email_verified":true,"username":"ada"}}"#)
}

/// A raw request with `Connection: close`, a body and extra header lines.
pub fn raw_post(path: &str, extra_headers: &[String], body: &str) -> String {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra_headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}
