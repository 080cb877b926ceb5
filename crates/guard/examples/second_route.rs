//! A minimal axum app with one public route and one guarded route: `POST /hooks/billing`
//! admits only Standard Webhooks requests signed with `BILLING_KEY` (a `whsec_` key; during a
//! rotation `BILLING_KEY_PREVIOUS` too) from `BILLING_SENDER` (a CIDR, default loopback).
//!
//! ```sh
//! BILLING_KEY=whsec_... cargo run -p tollgate-guard --example second_route
//! ```
//!
//! It prints `listening on <address>` (`LISTEN`, default `127.0.0.1:3000`) and serves until
//! stopped.

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Extension, Router};
use tollgate_guard::{GuardContract, GuardLayer, KeysFromEnv, Verified};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sender = std::env::var("BILLING_SENDER").unwrap_or_else(|_| "127.0.0.1/32".into());
    let contract = GuardContract::for_route("/hooks/billing", vec![sender.parse()?]);
    let keys = KeysFromEnv {
        current: "BILLING_KEY",
        previous: "BILLING_KEY_PREVIOUS",
    }
    .load()?;

    let app = Router::new()
        .route("/", get(|| async { "anyone may read this" }))
        .route(
            "/hooks/billing",
            post(billing).route_layer(GuardLayer::new(contract, keys)),
        );

    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}

/// Runs only for a verified request; the body is exactly the bytes that were signed.
async fn billing(Extension(verified): Extension<Verified>, body: String) -> String {
    format!(
        "accepted {} bytes signed at {}",
        body.len(),
        verified.signed_at
    )
}
