//! Builds the service from settings: something tests can run on port 0 and `main` can serve.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{MethodFilter, get, on};
use shared_auth::Settings;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::database::Database;
use crate::jwt::JwtVerifier;
use crate::secrets::SecretStore;
use crate::state::{AppState, Clock, Inner};
use crate::{guard, routes};

/// A built service, bound to its address but not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(
        settings: Settings,
        secrets: SecretStore,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let listen = settings.api.listen;
        let state = build_state(settings, secrets, clock).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (api.listen)"))?;
        Ok(Self {
            router: router(state)?,
            listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
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
        db.migrate(&settings)
            .await
            .context("cannot apply the database migrations")?;
    }
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
    Ok(AppState::new(Inner {
        settings,
        db,
        secrets,
        jwt,
        clock,
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
    let registration = on(filter, routes::register).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), guard::registration_guard),
    );
    let timeout = Duration::from_millis(state.settings.api.request_timeout_ms);
    Ok(Router::new()
        .route(&contract.path, registration)
        .route("/users/me", get(routes::me))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(
                            DefaultOnResponse::new()
                                .level(Level::INFO)
                                .latency_unit(tower_http::LatencyUnit::Millis),
                        ),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout,
                )),
        )
        .with_state(state))
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
    tracing::info_span!("request", request_id, method = %request.method(), route)
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
