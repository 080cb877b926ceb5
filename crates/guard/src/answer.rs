//! What the layer answers instead of the route: RFC 9457 `application/problem+json` bodies,
//! one fixed `403` for every refusal, and the hook that counts refusals.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use shared_auth::DenyReason;

/// Told of every refusal, with why and the client when it is known: count it, log it
/// (boundedly: a forged flood is one call per request). The default logs at `debug`.
pub trait OnRefusal: Send + Sync + 'static {
    /// One refusal of `reason`, from `client` when known.
    fn refused(&self, reason: DenyReason, client: Option<IpAddr>);
}

/// Logs each refusal at `debug`, with its reason and client.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogAtDebug;

impl OnRefusal for LogAtDebug {
    fn refused(&self, reason: DenyReason, client: Option<IpAddr>) {
        tracing::debug!(reason = reason.code(), client = ?client, "guarded route refused");
    }
}

/// Marks a response as a refusal the layer made, so an access log can leave it out (the
/// [`OnRefusal`] hook already saw it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

#[derive(serde::Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Seconds a caller should wait before retrying a `503`.
const RETRY_AFTER_S: u32 = 2;

/// A problem+json answer with `status` and, when given, `detail`.
pub(crate) fn problem(status: StatusCode, detail: Option<String>) -> Response<Body> {
    let body = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| unreachable!("plain fields"));
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    }
    response
}

/// The one refusal: `403` with no detail, marked [`Refused`].
pub(crate) fn forbidden() -> Response<Body> {
    let mut response = problem(StatusCode::FORBIDDEN, None);
    response.extensions_mut().insert(Refused);
    response
}

/// The body was larger than `limit` bytes.
pub(crate) fn too_large(limit: usize) -> Response<Body> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        Some(format!("the body exceeds {limit} bytes")),
    )
}

/// No key is loaded yet: the caller should retry.
pub(crate) fn no_keys() -> Response<Body> {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        Some("the registration secret is not loaded; retry shortly".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: Response<Body>) -> String {
        let bytes = futures_body(response);
        String::from_utf8(bytes).expect("utf-8")
    }

    fn futures_body(response: Response<Body>) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime
            .block_on(axum::body::to_bytes(response.into_body(), 4096))
            .expect("body")
            .to_vec()
    }

    #[test]
    fn refusals_are_one_fixed_problem_and_marked() {
        let response = forbidden();
        assert_eq!(response.status(), 403);
        assert!(response.extensions().get::<Refused>().is_some());
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(
            body(response),
            r#"{"type":"about:blank","title":"Forbidden","status":403}"#
        );
    }

    #[test]
    fn unavailable_says_when_to_retry_and_too_large_names_the_limit() {
        let response = no_keys();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = too_large(16_384);
        assert_eq!(response.status(), 413);
        assert!(body(response).contains("16384 bytes"));
    }
}
