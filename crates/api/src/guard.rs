//! The registration guard: a layer bound to the `POST /user` handler, so no spelling of the
//! path (`/user/`, `//user`, `/USER`, `/%75ser`) can reach the handler without it.
//!
//! Order matters: the source address and the credential's presence and shape are checked
//! from the headers alone, before the body is read (an outsider cannot make the service
//! buffer anything, and without a credential every source is refused at the same point, so
//! the body limit and timeout reveal nothing about the source check); then the body is read
//! under a limit, then the secret is verified over the exact bytes received. Every refusal gets the same `403` body; the reason
//! is counted and, boundedly, logged ([`crate::refusals`]). A request that passes and carries
//! [`shared_auth::DRY_RUN_HEADER`] is answered `204` here and never reaches the handler.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared_auth::{DenyReason, client_ip, is_allowed};

use crate::error::ApiError;
use crate::state::AppState;

/// When a verified registration was made, in unix seconds: its signed timestamp (hmac mode)
/// or its arrival (static mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedAt(pub u64);

pub async fn registration_guard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let client = match allowed_source(&state, peer, &request) {
        Ok(client) => client,
        Err((reason, client)) => return deny(&state, reason, client),
    };
    let lines = |name: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    };
    if let Err(reason) = state.settings.guard.precheck(lines, state.clock.now()) {
        return deny(&state, reason, Some(client));
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_body(&state, &parts, body).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let Some(loaded) = state.secrets.get() else {
        tracing::warn!("registration refused: no secret loaded");
        return ApiError::Unavailable("the registration secret is not loaded").into_response();
    };
    let now = state.clock.now();
    let verdict = state.settings.guard.verify(
        &loaded.set,
        &bytes,
        |name| {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes())
                .collect()
        },
        now,
    );
    match verdict {
        Ok(version) if parts.headers.contains_key(shared_auth::DRY_RUN_HEADER) => {
            // Verified, and asked not to act: the handler never runs, nothing is written.
            tracing::info!(client = %client, secret = version.as_str(), "dry run verified");
            (
                StatusCode::NO_CONTENT,
                [(shared_auth::VERIFIED_WITH_HEADER, version.as_str())],
            )
                .into_response()
        }
        Ok(version) => {
            tracing::debug!(client = %client, secret = version.as_str(), "registration caller verified");
            let signed_at = signed_at(&state, &parts.headers, now);
            let mut parts = parts;
            parts.extensions.insert(SignedAt(signed_at));
            // The handler reads exactly the bytes that were verified, once.
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(reason) => deny(&state, reason, Some(client)),
    }
}

/// The request's client, when it is an allowed source and the request carries nothing the
/// signature cannot vouch for; otherwise why not (and the client, when known).
fn allowed_source(
    state: &AppState,
    peer: SocketAddr,
    request: &Request,
) -> Result<IpAddr, (DenyReason, Option<IpAddr>)> {
    let contract = &state.settings.guard;
    let forwarded = request.headers().get_all("x-forwarded-for");
    if forwarded.iter().nth(1).is_some() {
        // Only safe if every proxy appends to the last line; which one was appended to
        // cannot be told, so neither can the client. The ALB sends one line.
        return Err((DenyReason::ForwardedForRepeated, None));
    }
    let client = client_ip(
        peer.ip(),
        forwarded.iter().map(|v| v.as_bytes()),
        &contract.trusted_proxies,
    );
    let client = match client {
        None => return Err((DenyReason::SourceUnknown, None)),
        Some(ip) if !is_allowed(ip, &contract.allowed_cidrs) => {
            return Err((DenyReason::SourceNotAllowed, Some(ip)));
        }
        Some(ip) => ip,
    };
    if request.uri().query().is_some() {
        // The guard's key vouches for this route's body only, not a query: refuse what it
        // cannot vouch for.
        return Err((DenyReason::QueryNotSigned, Some(client)));
    }
    Ok(client)
}

/// The body, read under the limit.
async fn read_body(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<axum::body::Bytes, ApiError> {
    let limit = state.settings.api.body_limit_bytes;
    let declared_too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64);
    if declared_too_large {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))
}

/// When the sender signed it (hmac), else when it arrived (static): registrations apply in
/// this order, so a replay never overwrites newer data.
fn signed_at(state: &AppState, headers: &axum::http::HeaderMap, now: u64) -> u64 {
    let contract = &state.settings.guard;
    headers
        .get(contract.timestamp_header.as_str())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| contract.mode == shared_auth::SigningMode::Hmac)
        .unwrap_or(now)
}

/// Marks a response as a counted refusal: the access log leaves it out, so a forged flood
/// logs only what [`crate::refusals`] allows.
#[derive(Debug, Clone, Copy)]
pub struct Refused;

fn deny(state: &AppState, reason: DenyReason, client: Option<IpAddr>) -> Response {
    state.refusals.record(reason, client);
    let mut response = ApiError::Forbidden.into_response();
    response.extensions_mut().insert(Refused);
    response
}
