//! AWS's public endpoints on the twin's internet: moto, behind a small proxy that hands its
//! answers on in the shapes AWS's API documents where moto's differ and the SDKs refuse them.
//! Each correction is listed in [`CORRECTIONS`] (and in infra/README.md); every other byte is
//! moto's.

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
}
