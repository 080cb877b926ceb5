//! Builds the service from settings: something tests can run on port 0 and `main` can serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use axum::routing::{MethodFilter, get, on};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use shared_auth::Settings;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, OnResponse, TraceLayer};
use tracing::Level;

use crate::budget::Budget;
use crate::clock::Clock;
use crate::database::Database;
use crate::jwt::JwtVerifier;
use crate::refusals::Refusals;
use crate::secrets::SecretStore;
use crate::state::{AppState, Inner};
use crate::{connection, guard, routes};

/// A built service, bound to its address but not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    limits: connection::Limits,
    refusals: Arc<Refusals>,
    access: Arc<Budget<u16>>,
    /// Connections served at once (`api.max_connections`).
    max_connections: usize,
    /// hyper's read buffer limit: the largest request head (`api.max_header_bytes`).
    max_header_bytes: usize,
}

impl Application {
    pub async fn build(
        settings: Settings,
        secrets: SecretStore,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let listen = settings.api.listen;
        let max_connections = settings.api.max_connections as usize;
        let max_header_bytes = settings.api.max_header_bytes;
        let limits = connection::Limits {
            header_read: Duration::from_millis(settings.api.header_read_timeout_ms),
            keep_alive_idle: Duration::from_secs(settings.api.keep_alive_idle_s),
        };
        let state = build_state(settings, secrets, clock).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (api.listen)"))?;
        Ok(Self {
            refusals: state.refusals.clone(),
            access: state.access.clone(),
            max_connections,
            max_header_bytes,
            router: router(state)?,
            listener,
            limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves HTTP/1.1 until `shutdown` completes, then finishes the requests in flight.
    ///
    /// Each request's headers must arrive within `api.header_read_timeout_ms` of its first
    /// byte, and an idle keep-alive connection is closed after `api.keep_alive_idle_s`, longer
    /// than the ALB's idle timeout ([`connection`]): slow or silent clients cannot hold
    /// connections open, and the ALB never reuses a connection the api is closing. HTTP/1
    /// only, as the ALB speaks to targets: an HTTP/2 preface is refused.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        // Refusal counts leave as metrics once a window, and once more on the way out; the
        // access log's unlogged counts are summarised as often.
        let (refusals, access) = (self.refusals.clone(), self.access.clone());
        let metrics = tokio::spawn(async move {
            let mut every = tokio::time::interval(Refusals::WINDOW);
            every.tick().await;
            loop {
                every.tick().await;
                refusals.flush_to_stdout();
                for (status, not_logged) in access.take_not_logged() {
                    tracing::info!(
                        status,
                        not_logged,
                        "responses counted but not logged (log bound)"
                    );
                }
            }
        });
        let mut http = http1::Builder::new();
        // hyper's own header timeout also runs while a kept-alive connection is idle: off, and
        // `connection::Timed` keeps both limits instead. Its read buffer is capped, so a head
        // larger than `api.max_header_bytes` is answered 431 and the connection closed.
        http.timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true)
            .max_buf_size(self.max_header_bytes);
        // At most `api.max_connections` at once: the next waits in the listen backlog.
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let router = self.router.clone();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), request)
            });
            let io = connection::Timed::new(TokioIo::new(stream), self.limits);
            let connection = graceful.watch(http.serve_connection(io, service));
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, client = %peer, "connection ended with an error");
                }
            });
        }
        graceful.shutdown().await;
        metrics.abort();
        self.refusals.flush_to_stdout();
        Ok(())
    }
}

/// The state every handler reaches: the database pool (migrated when `api.migrate_on_start`),
/// the secret store, and the JWT verifier when `/users/me` is configured.
pub async fn build_state(
    settings: Settings,
    secrets: SecretStore,
    clock: Clock,
) -> anyhow::Result<AppState> {
    let db = Database::start(&settings).await?;
    if settings.api.migrate_on_start {
        db.migrate()
            .await
            .context("cannot apply the database migrations")?;
    }
    db.watch_credentials(Duration::from_secs(settings.api.secret_refresh_s))
        .await;
    let api = &settings.api;
    let jwt = match (&api.jwt_issuer, &api.jwt_client_id, api.jwks_url()) {
        (Some(issuer), Some(client_id), Some(jwks)) => {
            Some(JwtVerifier::new(issuer.clone(), client_id.clone(), jwks)?)
        }
        (None, None, _) => {
            tracing::info!("api.jwt_issuer is not set: GET /users/me answers 404");
            None
        }
        _ => bail!(
            "invalid setting `api.jwt_issuer`: api.jwt_issuer and api.jwt_client_id must be set together"
        ),
    };
    let directory = match &jwt {
        Some(_) => crate::identity::UserDirectory::from_settings(&settings).await,
        None => None,
    };
    Ok(AppState::new(Inner {
        settings,
        db,
        secrets,
        jwt,
        directory,
        clock,
        refusals: Arc::new(Refusals::default()),
        access: Arc::new(Budget::new(AccessLog::WINDOW)),
    }))
}

/// The whole service as a `Router`, with no socket: `Application` serves it, and tests can
/// drive it with `tower::ServiceExt::oneshot` (give it `MockConnectInfo` for the peer address).
pub fn router(state: AppState) -> anyhow::Result<Router> {
    let contract = &state.settings.guard;
    let method = Method::from_bytes(contract.method.as_bytes()).context("guard.method")?;
    let filter = MethodFilter::try_from(method).context("guard.method is not a routable method")?;
    // The guard is a layer on this one handler: whatever path spelling reaches the handler
    // has passed the guard, and nothing else can reach it.
    // The heartbeat's read-and-delete shares the path and the guard (and so the WAF rule, which
    // matches the path whatever the method).
    let registration = on(filter, routes::register::register)
        .delete(routes::heartbeat::forget)
        .route_layer(guard::layer(&state));
    let timeout = Duration::from_millis(state.settings.api.request_timeout_ms);
    Ok(Router::new()
        .route(&contract.path, registration)
        .route("/users/me", get(routes::me::me))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .map_request(drop_unusable_request_id)
                .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(AccessLog(state.access.clone())),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout,
                )),
        )
        .with_state(state))
}

/// The access log: one INFO line per response within its status's share of each window
/// ([`crate::budget`]), so a flood of any status (404s, 405s, 200s from a health-check storm)
/// logs a few lines per minute and a count. Refusals of the guarded route are left to
/// [`crate::refusals`], which counts every one in a metric.
#[derive(Debug, Clone)]
struct AccessLog(Arc<Budget<u16>>);

impl AccessLog {
    const WINDOW: Duration = Duration::from_secs(60);

    /// Lines per status per window: successes generously (10 a second), errors like refusals.
    fn share(status: StatusCode) -> u32 {
        if status.is_client_error() || status.is_server_error() {
            20
        } else {
            600
        }
    }
}

impl<B> OnResponse<B> for AccessLog {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &tracing::Span) {
        if response
            .extensions()
            .get::<tollgate_guard::Refused>()
            .is_some()
        {
            return;
        }
        let status = response.status();
        let admit = self.0.admit(status.as_u16(), Self::share(status));
        if let Some(not_logged) = admit.not_logged_before {
            tracing::info!(
                status = status.as_u16(),
                not_logged,
                "responses counted but not logged (log bound)"
            );
        }
        if admit.log {
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Millis)
                .on_response(response, latency, span);
        }
    }
}

/// A request's method as logged: one of HTTP's own, else `OTHER` (the caller chooses an
/// extension method's bytes, and would choose a long one).
fn logged_method(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("OTHER")
}

/// A request id for each request without a usable one: a random (version 4) UUID from the
/// thread's fast generator. An id names a request in the logs and is no secret, so it needs no
/// system call per request (tower-http's `MakeRequestUuid` reads the kernel's generator each
/// time: a `getrandom` per request, BENCHMARKS.md).
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
            .ok()
            .map(RequestId::new)
    }
}

/// The longest caller-supplied `x-request-id` kept (a UUID is 36).
const MAX_REQUEST_ID_LEN: usize = 64;

/// A caller's `x-request-id` is kept only when it is one short token of letters, digits and
/// `-_.:`; otherwise (too long, odd bytes, sent twice) it is dropped and a UUID replaces it,
/// so logs and responses never echo what an attacker chose.
fn drop_unusable_request_id<B>(mut request: Request<B>) -> Request<B> {
    let ids = request.headers().get_all("x-request-id");
    let mut values = ids.iter();
    let usable = match (values.next(), values.next()) {
        (Some(id), None) => {
            let id = id.as_bytes();
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LEN
                && id
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        }
        _ => false,
    };
    if !usable {
        request.headers_mut().remove("x-request-id");
    }
    request
}

fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("(unmatched)");
    tracing::info_span!(
        "request",
        request_id,
        method = logged_method(request.method()),
        route
    )
}

/// Completes on SIGTERM (ECS stopping the task) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids_and_do_not_repeat_across_threads() {
        let ids = |n| {
            std::thread::spawn(move || {
                let request = Request::new(());
                (0..n)
                    .map(|_| {
                        let id = RandomRequestId.make_request_id(&request).expect("an id");
                        let text = id.header_value().to_str().expect("ascii").to_owned();
                        let uuid = uuid::Uuid::try_parse(&text).expect("a UUID");
                        assert_eq!(uuid.get_version_num(), 4, "{text}");
                        text
                    })
                    .collect::<Vec<_>>()
            })
        };
        let (a, b) = (ids(5_000), ids(5_000));
        let mut all: Vec<String> = a.join().expect("a").into_iter().collect();
        all.extend(b.join().expect("b"));
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a request id repeated");
    }
}
