//! # tollgate-guard: admit only the one caller to a route
//!
//! A [`tower::Layer`] for an axum route that only one machine may call (a webhook, a sign-up
//! trigger, a job runner) on a server everyone else can reach. A request passes only if it
//! comes from an allowed address and carries a valid [Standard Webhooks] signature made with
//! a key the route accepts now; everything else gets one `403` body, whatever the reason, so
//! the reason cannot be probed. It is the guard of Tollgate's `POST /user`, usable on any route.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::post};
//! use tollgate_guard::{GuardContract, GuardLayer, SecretSet};
//!
//! # fn app() -> Result<Router, Box<dyn std::error::Error>> {
//! let contract = GuardContract::for_route("/hooks/billing", vec!["203.0.113.7/32".parse()?]);
//! let keys = Arc::new(SecretSet::new(std::env::var("BILLING_KEY")?.into(), None)?);
//! let app = Router::new().route(
//!     "/hooks/billing",
//!     post(|| async { "ok" }).route_layer(GuardLayer::new(contract, keys)),
//! );
//! # Ok(app) }
//! ```
//!
//! Serve the router with `into_make_service_with_connect_info::<SocketAddr>()`: the source
//! check needs the TCP peer, and a request without one is refused. `examples/second_route.rs`
//! is a whole server.
//!
//! ## Threat model
//!
//! The route is on the internet. An attacker can send anything, from anywhere, as often as
//! they like, can read the route's code and docs, and may have captured earlier requests
//! (a proxy's log, say). They do not hold a key, and cannot send from an allowed address
//! except by compromising the caller. What each layer of a deployment like Tollgate's stops:
//!
//! | layer | stops | where |
//! |---|---|---|
//! | WAF IP set | every request to the route from anywhere but the caller's fixed egress address; and cheaply, before the server | the edge (the Terraform module `infra/modules/guarded-route`, which also makes the key's secret and wires its rotation) |
//! | source allowlist | the same, re-checked here, in case the edge is misconfigured or bypassed; the client is read from `X-Forwarded-For` from the right, through [`trusted_proxies`](GuardContract::trusted_proxies) only, so a forged left-most entry counts for nothing | this layer |
//! | signature | any request not made by a key holder: a forged or altered body, id or time, a request to this route signed for another body | this layer |
//! | replay window | a captured request replayed later than [`max_skew_s`](GuardContract::max_skew_s) after it was signed | this layer |
//! | idempotency | a captured request replayed inside the window, or a sender's own retry: `webhook-id` names the message; the handler must treat one id (or one body) once | the handler |
//!
//! What it does not stop: a compromised caller (it has the key and the address), and a replay
//! within the window to a handler that is not idempotent. Refusals are answered before the
//! body is read when the headers alone condemn the request, and the body is read under
//! [`GuardLayer::body_limit`], so an outsider cannot make the server buffer much.
//!
//! ## Keys and rotation
//!
//! Keys come from a [`KeySource`], asked on every request: a fixed [`SecretSet`] in an `Arc`,
//! or anything that refreshes one (Tollgate's api reads Secrets Manager's `AWSCURRENT`,
//! `AWSPREVIOUS` within a grace window and `AWSPENDING` during a rotation). Any accepted key
//! passes; the version it matched is in [`Verified`]. Senders sign with every key they hold, as
//! the spec describes, so a rotation refuses no one.
//!
//! ## Semver
//!
//! The public API is [`GuardLayer`], [`Guarded`], [`KeySource`], [`OnRefusal`], [`Verified`],
//! [`Refused`] and the contract types re-exported from `shared-auth`. Refusal reasons
//! ([`DenyReason`]) may gain variants in a minor release.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

mod answer;
mod keys;
mod layer;

pub use answer::{OnRefusal, Refused};
pub use keys::{KeySource, KeysFromEnv};
pub use layer::{GuardLayer, Guarded, Verified};
pub use shared_auth::{DenyReason, GuardContract, SecretSet, SecretVersion, SigningMode};
