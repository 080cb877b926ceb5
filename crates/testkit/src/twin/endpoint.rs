//! AWS's public endpoints on the twin's internet: moto, behind a small proxy that hands its
//! answers on in the shapes AWS's API documents where moto's differ and the SDKs refuse them,
//! and refuses what AWS refuses and moto takes. Each correction is listed in [`CORRECTIONS`],
//! each refusal in [`MODELLED`] (both in infra/README.md); every other byte is moto's.

use std::net::{SocketAddr, TcpListener};

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;

/// What the proxy corrects, and why.
pub const CORRECTIONS: &[(&str, &str)] = &[(
    "ECS RunTask / DescribeTasks / StopTask: a container's `cpu` and `memory`",
    "moto answers numbers where the ECS API's `Container` has strings; the Rust SDK refuses to parse the answer (the rotation function lists the api's tasks with DescribeTasks)",
)];

/// What AWS refuses that moto takes, refused here before moto sees it.
pub const MODELLED: &[(&str, &str)] = &[(
    "Signature Version 4's time window",
    "a signed request whose `x-amz-date` is more than 5 minutes from the endpoint's clock is refused (400, InvalidSignatureException: `Signature expired` or `Signature not yet current`); moto checks no request's time (IAM User Guide, *AWS Signature Version 4 for API requests*: a request must reach AWS within five minutes of the time stamp in the request)",
)];

/// How far a signed request's time may be from AWS's clock.
pub const SIGV4_WINDOW_S: u64 = 5 * 60;

/// Why AWS would refuse a request signed at `x_amz_date` (SigV4's `YYYYMMDD'T'HHMMSS'Z'`) when
/// its clock reads `now` (unix seconds), in AWS's words; `None` when it is inside the window or
/// unsigned (no date: Cognito's `SignUp` is such a call).
pub fn outside_sigv4_window(x_amz_date: Option<&str>, now: u64) -> Option<String> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let date = x_amz_date?;
    let b = date.as_bytes();
    let shaped = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    let at = shaped
        .then(|| {
            let rfc3339 = format!(
                "{}-{}-{}T{}:{}:{}Z",
                &date[0..4],
                &date[4..6],
                &date[6..8],
                &date[9..11],
                &date[11..13],
                &date[13..15]
            );
            DateTime::from_str(&rfc3339, Format::DateTime).ok()
        })
        .flatten()
        .and_then(|t| u64::try_from(t.secs()).ok());
    let Some(at) = at else {
        return Some(format!("Date must be in ISO-8601 'basic format': {date}"));
    };
    let stamp = |secs: u64| {
        let t = DateTime::from_secs(i64::try_from(secs).unwrap_or(i64::MAX));
        t.fmt(Format::DateTime)
            .unwrap_or_default()
            .replace(['-', ':'], "")
    };
    if at + SIGV4_WINDOW_S < now {
        Some(format!(
            "Signature expired: {date} is now earlier than {} ({} - 5 min.)",
            stamp(now - SIGV4_WINDOW_S),
            stamp(now)
        ))
    } else if at > now + SIGV4_WINDOW_S {
        Some(format!(
            "Signature not yet current: {date} is still later than {} ({} + 5 min.)",
            stamp(now + SIGV4_WINDOW_S),
            stamp(now)
        ))
    } else {
        None
    }
}

/// AWS's refusal of a request signed outside the window, as its JSON protocols answer it.
fn refused_signature(message: &str) -> axum::response::Response {
    let body = serde_json::json!({"__type": "InvalidSignatureException", "message": message});
    (
        StatusCode::BAD_REQUEST,
        [
            ("x-amzn-errortype", "InvalidSignatureException"),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Serves `listener` (in the twin's internet) on a thread of its own, each request forwarded to
/// `upstream` (moto on this machine's loopback) from this thread's namespace.
pub fn serve(listener: TcpListener, upstream: SocketAddr) -> Result<()> {
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let http = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default();
            let base = format!("http://{upstream}");
            let app = axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    forward(http.clone(), base.clone(), method, uri, headers, body)
                },
            );
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(())
}

async fn forward(
    http: reqwest::Client,
    base: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let signed_at = headers.get("x-amz-date").and_then(|v| v.to_str().ok());
    if let Some(why) = outside_sigv4_window(signed_at, shared_auth::unix::seconds()) {
        return refused_signature(&why);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = http.request(method, format!("{base}{path}")).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let Ok(answer) = request.send().await else {
        return (StatusCode::BAD_GATEWAY, "moto does not answer").into_response();
    };
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            out_headers.append(name, value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let bytes = if target.starts_with("AmazonEC2ContainerServiceV20141113.") {
        correct_ecs(&bytes).map_or(bytes, Bytes::from)
    } else {
        bytes
    };
    let mut response = axum::response::Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

/// moto's ECS answer with each task's containers' `cpu` and `memory` as strings, as the ECS
/// API's `Container` has them; `None` when nothing needed correcting.
pub fn correct_ecs(body: &[u8]) -> Option<Vec<u8>> {
    let mut json: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    if let Some(tasks) = json.get_mut("tasks").and_then(Value::as_array_mut) {
        for task in tasks {
            changed |= correct_task(task);
        }
    }
    // StopTask answers one task.
    if let Some(task) = json.get_mut("task") {
        changed |= correct_task(task);
    }
    changed.then(|| serde_json::to_vec(&json).unwrap_or_default())
}

fn correct_task(task: &mut Value) -> bool {
    let mut changed = false;
    for container in task
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for key in ["cpu", "memory", "memoryReservation"] {
            if let Some(n) = container.get(key).filter(|v| v.is_number()).cloned() {
                container[key] = Value::String(n.to_string());
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_the_ecs_api_has_as_strings_become_strings() {
        let moto = br#"{"tasks": [{"containers": [{"name": "api", "cpu": 0, "memory": 512, "exitCode": 0}]}], "failures": []}"#;
        let corrected: Value =
            serde_json::from_slice(&correct_ecs(moto).expect("corrected")).expect("json");
        let container = &corrected["tasks"][0]["containers"][0];
        assert_eq!(container["cpu"], "0");
        assert_eq!(container["memory"], "512");
        assert_eq!(
            container["exitCode"], 0,
            "what the API has as a number stays one"
        );
        assert_eq!(correct_ecs(br#"{"taskArns": []}"#), None);
    }

    #[test]
    fn a_request_signed_more_than_five_minutes_off_is_refused_as_aws_refuses_it() {
        // 2026-12-08T02:45:00Z
        let now = 1_796_697_900;
        let at = "20261208T024500Z";
        assert_eq!(outside_sigv4_window(Some(at), now), None);
        assert_eq!(outside_sigv4_window(None, now), None, "unsigned");
        for inside in [now - SIGV4_WINDOW_S, now + SIGV4_WINDOW_S] {
            assert_eq!(outside_sigv4_window(Some(at), inside), None, "{inside}");
        }
        let late = outside_sigv4_window(Some(at), now + SIGV4_WINDOW_S + 1).expect("refused");
        assert_eq!(
            late,
            "Signature expired: 20261208T024500Z is now earlier than 20261208T024501Z (20261208T025001Z - 5 min.)"
        );
        let early = outside_sigv4_window(Some(at), now - SIGV4_WINDOW_S - 1).expect("refused");
        assert!(
            early.starts_with("Signature not yet current: 20261208T024500Z is still later than"),
            "{early}"
        );
        for bad in [
            "",
            "2026-12-08T02:45:00Z",
            "20261208T024500",
            "20261308T024500Z",
        ] {
            assert!(outside_sigv4_window(Some(bad), now).is_some(), "{bad:?}");
        }
    }
}
