//! The layer and its service.
//!
//! Order matters: the source address and the credential's presence and shape are checked
//! from the headers alone, before the body is read (an outsider cannot make the service buffer
//! anything, and without a credential every source is refused at the same point, so the body
//! limit reveals nothing about the source check); then the body is read under a limit; then
//! the signature is verified over the exact bytes received, which are what the route reads.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Request, Response, StatusCode, header, request::Parts};
use shared_auth::{DenyReason, GuardContract, SecretVersion, SigningMode, client_ip, is_allowed};
use tower::{Layer, Service};

use crate::answer::{self, LogAtDebug, OnRefusal};
use crate::keys::KeySource;

/// Default largest body, in bytes.
const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

/// On a request the layer let through: which key it matched, who sent it and when it was
/// signed (`hmac`: the signed timestamp; `static`: its arrival). The route reads it with
/// `Extension<Verified>`; apply registrations in `signed_at` order and a late replay never
/// overwrites newer data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub version: SecretVersion,
    pub client: IpAddr,
    pub signed_at: u64,
}

/// Guards the routes it wraps by a [`GuardContract`] and the keys of a [`KeySource`].
#[derive(Clone)]
pub struct GuardLayer<K> {
    contract: GuardContract,
    keys: K,
    body_limit: usize,
    on_refusal: Arc<dyn OnRefusal>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl<K: KeySource> GuardLayer<K> {
    /// A layer admitting what `contract` allows, signed with a key `keys` holds. Bodies up to
    /// 16 KiB, refusals logged at `debug`, time from the system clock.
    pub fn new(contract: GuardContract, keys: K) -> Self {
        Self {
            contract,
            keys,
            body_limit: DEFAULT_BODY_LIMIT,
            on_refusal: Arc::new(LogAtDebug),
            clock: Arc::new(shared_auth::unix::seconds),
        }
    }

    /// The largest body read, in bytes; a larger one is answered `413`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Who is told of every refusal (to count and log it).
    pub fn on_refusal(mut self, hook: impl OnRefusal) -> Self {
        self.on_refusal = Arc::new(hook);
        self
    }

    /// The clock the timestamps are judged by, in unix seconds.
    pub fn clock(mut self, now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(now);
        self
    }
}

impl<K> std::fmt::Debug for GuardLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contract names no secret; the keys are never shown.
        f.debug_struct("GuardLayer")
            .field("contract", &self.contract)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl<S, K> std::fmt::Debug for Guarded<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<S, K: KeySource> Layer<S> for GuardLayer<K> {
    type Service = Guarded<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            guard: Arc::new(self.clone()),
        }
    }
}

/// A service behind the guard: what [`GuardLayer`] makes of the route it wraps.
#[derive(Clone)]
pub struct Guarded<S, K> {
    inner: S,
    guard: Arc<GuardLayer<K>>,
}

impl<S, K> Service<Request<Body>> for Guarded<S, K>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    K: KeySource,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone is the one polled ready; this instance keeps a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.admit(request).await {
                Ok(request) => inner.call(request).await,
                Err(answer) => Ok(answer),
            }
        })
    }
}

/// Every line of header `name`.
fn lines<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    headers.get_all(name).iter().map(|v| v.as_bytes()).collect()
}

impl<K: KeySource> GuardLayer<K> {
    /// The request to pass on (its body the verified bytes, [`Verified`] in its extensions),
    /// or the answer that ends it.
    async fn admit(&self, request: Request<Body>) -> Result<Request<Body>, Response<Body>> {
        let client = self
            .source(&request)
            .map_err(|(reason, client)| self.refuse(reason, client))?;
        self.contract
            .precheck(|name| lines(request.headers(), name), (self.clock)())
            .map_err(|reason| self.refuse(reason, Some(client)))?;
        let (mut parts, body) = request.into_parts();
        let bytes = self.read_body(&parts, body).await?;
        let Some(keys) = self.keys.keys() else {
            tracing::warn!("guarded route answered 503: no key loaded");
            return Err(answer::no_keys());
        };
        let now = (self.clock)();
        let version = self
            .contract
            .verify(
                keys.as_ref(),
                &bytes,
                |name| lines(&parts.headers, name),
                now,
            )
            .map_err(|reason| self.refuse(reason, Some(client)))?;
        if parts.headers.contains_key(shared_auth::DRY_RUN_HEADER) {
            // Verified, and asked not to act: the route never runs.
            tracing::info!(client = %client, secret = version.as_str(), "dry run verified");
            let mut answer = Response::new(Body::empty());
            *answer.status_mut() = StatusCode::NO_CONTENT;
            answer.headers_mut().insert(
                shared_auth::VERIFIED_WITH_HEADER,
                header::HeaderValue::from_static(version.as_str()),
            );
            return Err(answer);
        }
        parts.extensions.insert(Verified {
            version,
            client,
            signed_at: self.signed_at(&parts.headers, now),
        });
        // The route reads exactly the bytes that were verified, once.
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }

    /// The request's client, when it is an allowed source and the request carries nothing the
    /// signature cannot vouch for; otherwise why not (and the client, when known).
    fn source(&self, request: &Request<Body>) -> Result<IpAddr, (DenyReason, Option<IpAddr>)> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| {
                request
                    .extensions()
                    .get::<MockConnectInfo<SocketAddr>>()
                    .map(|c| c.0)
            })
            .ok_or((DenyReason::SourceUnknown, None))?;
        let forwarded = request.headers().get_all("x-forwarded-for");
        if forwarded.iter().nth(1).is_some() {
            // Only safe if every proxy appends to the last line; which one was appended to
            // cannot be told, so neither can the client. A load balancer sends one line.
            return Err((DenyReason::ForwardedForRepeated, None));
        }
        let client = client_ip(
            peer.ip(),
            forwarded.iter().map(|v| v.as_bytes()),
            &self.contract.trusted_proxies,
        )
        .ok_or((DenyReason::SourceUnknown, None))?;
        if !is_allowed(client, &self.contract.allowed_cidrs) {
            return Err((DenyReason::SourceNotAllowed, Some(client)));
        }
        if request.uri().query().is_some() {
            // The key vouches for this route's body only, not a query.
            return Err((DenyReason::QueryNotSigned, Some(client)));
        }
        Ok(client)
    }

    /// The body, read under the limit.
    async fn read_body(&self, parts: &Parts, body: Body) -> Result<Bytes, Response<Body>> {
        let limit = self.body_limit;
        let declared_too_large = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > limit as u64);
        if declared_too_large {
            return Err(answer::too_large(limit));
        }
        axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| answer::too_large(limit))
    }

    /// When the sender signed it (`hmac`), else when it arrived (`static`).
    fn signed_at(&self, headers: &HeaderMap, now: u64) -> u64 {
        headers
            .get(self.contract.timestamp_header.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| self.contract.mode == SigningMode::Hmac)
            .unwrap_or(now)
    }

    fn refuse(&self, reason: DenyReason, client: Option<IpAddr>) -> Response<Body> {
        self.on_refusal.refused(reason, client);
        answer::forbidden()
    }
}
