//! The layer in process, on a route of a minimal router driven with `oneshot`: who it admits,
//! what the route then sees, and what every refusal tells the hook.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::{Extension, Router};
use secrecy::SecretString;
use tollgate_guard::{
    DenyReason, GuardContract, GuardLayer, KeySource, OnRefusal, Refused, SecretSet, SecretVersion,
    Verified,
};
use tower::ServiceExt as _;

const KEY: &str = "whsec_bGF5ZXItdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZg==";
const OLD: &str = "whsec_b2xkLWxheWVyLWtleS0wMTIzNDU2Nzg5YWJjZGVm";
const SENDER: &str = "198.51.100.7";
const PROXY: &str = "10.0.1.20";

/// One refusal as the hook hears it.
type Heard = (DenyReason, Option<IpAddr>);

/// Every refusal the hook was told of.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Heard>>>);

impl OnRefusal for Seen {
    fn refused(&self, reason: DenyReason, client: Option<IpAddr>) {
        self.0.lock().expect("seen").push((reason, client));
    }
}

impl Seen {
    fn take(&self) -> Vec<Heard> {
        std::mem::take(&mut self.0.lock().expect("seen"))
    }
}

/// Keys that are never loaded.
#[derive(Clone)]
struct NotLoaded;

impl KeySource for NotLoaded {
    type Keys = Arc<SecretSet>;
    fn keys(&self) -> Option<Arc<SecretSet>> {
        None
    }
}

fn contract() -> GuardContract {
    let mut contract =
        GuardContract::for_route("/hook", vec![format!("{SENDER}/32").parse().expect("cidr")]);
    contract.trusted_proxies = vec!["10.0.1.0/24".parse().expect("cidr")];
    contract
}

fn keys() -> Arc<SecretSet> {
    Arc::new(SecretSet::new(KEY.into(), Some(OLD.into())).expect("keys"))
}

/// The route answers what the layer told it: the verified version, client and time.
fn app<K: KeySource>(layer: GuardLayer<K>, peer: &str) -> Router {
    Router::new()
        .route(
            "/hook",
            post(
                |Extension(v): Extension<Verified>, body: String| async move {
                    format!("{}|{}|{}|{body}", v.version.as_str(), v.client, v.signed_at)
                },
            )
            .route_layer(layer),
        )
        .layer(MockConnectInfo(SocketAddr::new(
            peer.parse().expect("ip"),
            40_000,
        )))
}

fn request(key: &str, ts: u64, body: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let headers =
        contract().credentials(&[SecretString::from(key)], "msg_layer", body.as_bytes(), ts);
    let mut builder = Request::post("/hook");
    for (name, value) in headers.iter() {
        builder = builder.header(name, value);
    }
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).expect("request")
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String, bool) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let refused = response.extensions().get::<Refused>().is_some();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned(), refused)
}

const T: u64 = 1_800_000_000;

fn layer(seen: &Seen) -> GuardLayer<Arc<SecretSet>> {
    GuardLayer::new(contract(), keys())
        .on_refusal(seen.clone())
        .clock(|| T)
}

#[tokio::test]
async fn a_signed_request_from_the_sender_reaches_the_route_with_what_was_verified() {
    let seen = Seen::default();
    let app = app(layer(&seen), SENDER);
    let (status, body, refused) = send(&app, request(KEY, T, "{\"n\":1}", &[])).await;
    assert_eq!((status, refused), (StatusCode::OK, false));
    assert_eq!(body, format!("current|{SENDER}|{T}|{{\"n\":1}}"));
    let (_, body, _) = send(&app, request(OLD, T - 10, "{}", &[])).await;
    assert_eq!(body, format!("previous|{SENDER}|{}|{{}}", T - 10));
    assert!(seen.take().is_empty());
}

#[tokio::test]
async fn through_a_trusted_proxy_the_client_is_read_from_the_right() {
    let seen = Seen::default();
    let app = app(layer(&seen), PROXY);
    // The sender behind the proxy, a forged entry before it: the forgery counts for nothing.
    let forwarded = format!("203.0.113.9, {SENDER}");
    let (status, body, _) = send(
        &app,
        request(KEY, T, "{}", &[("x-forwarded-for", forwarded.as_str())]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Someone else behind the proxy claiming to be the sender (left-most) is refused.
    let spoofed = format!("{SENDER}, 203.0.113.9");
    let (status, _, refused) = send(
        &app,
        request(KEY, T, "{}", &[("x-forwarded-for", spoofed.as_str())]),
    )
    .await;
    assert_eq!((status, refused), (StatusCode::FORBIDDEN, true));
    assert_eq!(
        seen.take(),
        [(
            DenyReason::SourceNotAllowed,
            Some("203.0.113.9".parse().expect("ip"))
        )]
    );
}

#[tokio::test]
async fn every_refusal_is_one_answer_and_the_hook_hears_why() {
    let seen = Seen::default();
    let sender = || Some(SENDER.parse::<IpAddr>().expect("ip"));
    let cases: Vec<(&str, Router, Request<Body>, Heard)> = vec![
        (
            "from another address",
            app(layer(&seen), "203.0.113.9"),
            request(KEY, T, "{}", &[]),
            (
                DenyReason::SourceNotAllowed,
                Some("203.0.113.9".parse().expect("ip")),
            ),
        ),
        (
            "unsigned",
            app(layer(&seen), SENDER),
            Request::post("/hook")
                .body(Body::from("{}"))
                .expect("request"),
            (DenyReason::IdMissing, sender()),
        ),
        (
            "a wrong key",
            app(layer(&seen), SENDER),
            request(
                "whsec_d3Jvbmcta2V5LTAxMjM0NTY3ODlhYmNkZWZnaA==",
                T,
                "{}",
                &[],
            ),
            (DenyReason::SignatureMismatch, sender()),
        ),
        (
            "signed too long ago",
            app(layer(&seen), SENDER),
            request(KEY, T - 301, "{}", &[]),
            (DenyReason::TimestampOutOfWindow, sender()),
        ),
        (
            "with a query",
            app(layer(&seen), SENDER),
            {
                let mut r = request(KEY, T, "{}", &[]);
                *r.uri_mut() = "/hook?x=1".parse().expect("uri");
                r
            },
            (DenyReason::QueryNotSigned, sender()),
        ),
        (
            "X-Forwarded-For twice",
            app(layer(&seen), PROXY),
            request(
                KEY,
                T,
                "{}",
                &[("x-forwarded-for", SENDER), ("x-forwarded-for", SENDER)],
            ),
            (DenyReason::ForwardedForRepeated, None),
        ),
    ];
    for (what, app, request, heard) in cases {
        let (status, body, refused) = send(&app, request).await;
        assert_eq!((status, refused), (StatusCode::FORBIDDEN, true), "{what}");
        assert_eq!(
            body, r#"{"type":"about:blank","title":"Forbidden","status":403}"#,
            "{what}"
        );
        assert_eq!(seen.take(), [heard], "{what}");
    }
}

#[tokio::test]
async fn without_a_peer_address_nothing_is_admitted() {
    let seen = Seen::default();
    let app = Router::new().route(
        "/hook",
        post(|| async { "reached" }).route_layer(layer(&seen)),
    );
    let (status, _, _) = send(&app, request(KEY, T, "{}", &[])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(seen.take(), [(DenyReason::SourceUnknown, None)]);
}

#[tokio::test]
async fn a_dry_run_is_answered_by_the_layer_and_never_reaches_the_route() {
    let seen = Seen::default();
    let app = app(layer(&seen), SENDER);
    let dry = [(shared_auth::DRY_RUN_HEADER, "1")];
    let response = app
        .clone()
        .oneshot(request(OLD, T, "{}", &dry))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        response.headers()[shared_auth::VERIFIED_WITH_HEADER],
        SecretVersion::Previous.as_str()
    );
    let (status, _, _) = send(
        &app,
        request(
            "whsec_d3Jvbmcta2V5LTAxMjM0NTY3ODlhYmNkZWZnaA==",
            T,
            "{}",
            &dry,
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a dry run proves nothing without a key"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_and_no_keys_is_503_with_retry_after() {
    let seen = Seen::default();
    let small = app(layer(&seen).body_limit(8), SENDER);
    let (status, body, _) = send(&small, request(KEY, T, "{\"too\":\"long\"}", &[])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let unloaded = app(GuardLayer::new(contract(), NotLoaded).clock(|| T), SENDER);
    let response = unloaded
        .clone()
        .oneshot(request(KEY, T, "{}", &[]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2");
}
