//! The AWS SDK's HTTP client, on the functions' own rustls configuration.
//!
//! The SDK's default client loads the system trust store (every file under `/etc/ssl/certs`,
//! each certificate parsed) on its first request: on a cold start that is the largest cost
//! left after the two calls the function must make (BENCHMARKS.md). This client sends the
//! SDK's requests through a `reqwest` client built on [`crate::http::tls_config`]: Mozilla's
//! roots compiled in, already parsed. AWS's service endpoints chain to Amazon Trust Services
//! roots, which that set holds.
//!
//! Every request the functions make to AWS is a small JSON document and every answer too, so
//! bodies are sent and read whole; a streaming body is refused with a clear error rather than
//! buffered. Redirects are not followed (AWS's APIs do not send them).

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use shared_auth::LambdaSettings;

use crate::http::{ClientError, tls_config};

/// The SDK's HTTP client for a function: plain HTTP allowed (a local AWS endpoint), the
/// contract's connect timeout, the compiled-in roots and the contract's private CA.
pub fn sdk_http_client(settings: &LambdaSettings) -> Result<SharedHttpClient, ClientError> {
    Ok(SharedHttpClient::new(ReqwestClient {
        client: client(settings)?,
    }))
}

fn client(settings: &LambdaSettings) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(settings.private_ca_pem.as_deref())?)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .pool_idle_timeout(Duration::from_secs(50))
        .build()?)
}

/// The SDK's [`HttpClient`] over one `reqwest` client (its pool shared by every connector).
#[derive(Debug, Clone)]
struct ReqwestClient {
    client: reqwest::Client,
}

impl HttpClient for ReqwestClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            client: self.client.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

/// One connector: the client and the SDK's read timeout for each request (the connect timeout
/// is the client's).
#[derive(Debug)]
struct Connector {
    client: reqwest::Client,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(request, read_timeout)?;
            let response = client.execute(request).await.map_err(classify)?;
            from_reqwest(response).await
        })
    }
}

/// The SDK's request as `reqwest`'s, its body whole.
fn to_reqwest(
    request: HttpRequest,
    read_timeout: Option<Duration>,
) -> Result<reqwest::Request, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    let bytes = body
        .bytes()
        .ok_or_else(|| {
            ConnectorError::user("a streaming request body; this client sends whole bodies".into())
        })?
        .to_vec();
    let mut request = reqwest::Request::try_from(http::Request::from_parts(parts, bytes))
        .map_err(|e| ConnectorError::user(e.into()))?;
    *request.timeout_mut() = read_timeout;
    Ok(request)
}

/// `reqwest`'s answer as the SDK's, read whole.
async fn from_reqwest(response: reqwest::Response) -> Result<HttpResponse, ConnectorError> {
    let mut builder = http::Response::builder().status(response.status());
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers().clone();
    }
    let body = response.bytes().await.map_err(classify)?;
    let response = builder
        .body(SdkBody::from(body))
        .map_err(|e| ConnectorError::other(e.into(), None))?;
    HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
}

/// A transport error as the SDK's retry rules read it: timeouts and connection failures are
/// transient, the rest is not retried as a transport fault.
fn classify(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-shot HTTP server: answers `answer` to the first request and returns what it read.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body its Content-Length names.
            loop {
                let n = stream.read(&mut buf).expect("read");
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length || n == 0 {
                        break;
                    }
                }
            }
            stream.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&seen).to_string()
        });
        (url, server)
    }

    /// The connector the SDK would get, on the local contract's settings.
    fn connector() -> Connector {
        let settings = shared_auth::load_for(
            shared_auth::Component::Lambda,
            &[("TOLLGATE_ENV".to_owned(), "local".to_owned())]
                .into_iter()
                .collect(),
        )
        .expect("the local contract")
        .lambda;
        Connector {
            client: client(&settings).expect("client"),
            read_timeout: None,
        }
    }

    #[tokio::test]
    async fn a_request_goes_out_whole_and_its_answer_comes_back_whole() {
        let (url, server) = serve_once(
            "HTTP/1.1 400 Bad Request\r\nx-amzn-requestid: r-1\r\ncontent-length: 17\r\n\r\n{\"__type\":\"Nope\"}",
        );
        let request = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("x-amz-target", "secretsmanager.GetSecretValue")
            .body(SdkBody::from(r#"{"SecretId":"s"}"#))
            .expect("request");
        let request = HttpRequest::try_from(request).expect("an SDK request");
        let response = connector().call(request).await.expect("an answer");
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(response.headers().get("x-amzn-requestid"), Some("r-1"));
        assert_eq!(response.body().bytes(), Some(&br#"{"__type":"Nope"}"#[..]));
        let seen = server.join().expect("the server");
        assert!(seen.starts_with("POST / HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_ascii_lowercase()
                .contains("x-amz-target: secretsmanager.getsecretvalue"),
            "{seen}"
        );
        assert!(seen.ends_with(r#"{"SecretId":"s"}"#), "{seen}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error_the_sdk_retries() {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let request = http::Request::builder()
            .uri(format!("http://127.0.0.1:{port}/"))
            .body(SdkBody::empty())
            .expect("request");
        let error = connector()
            .call(HttpRequest::try_from(request).expect("an SDK request"))
            .await
            .expect_err("nothing listens");
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn a_streaming_body_is_refused_not_buffered() {
        // A body whose bytes are not in memory (here one already taken; a stream reads the same).
        let body = SdkBody::taken();
        let request = http::Request::builder()
            .uri("http://127.0.0.1:9/")
            .body(body)
            .expect("request");
        let error = connector()
            .call(HttpRequest::try_from(request).expect("an SDK request"))
            .await
            .expect_err("streaming");
        assert!(error.is_user(), "{error:?}");
    }
}
