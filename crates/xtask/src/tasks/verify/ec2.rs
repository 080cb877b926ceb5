//! The two EC2 questions `verify` asks (a subnet's default route; a NAT gateway's addresses),
//! over EC2's Query API: a form-encoded POST, signed by the SDK's own SigV4 signer
//! (`aws-sigv4`) with the credentials and region of the `SdkConfig`, answered in XML read by the
//! SDK's own reader (`aws-smithy-xml`).
//!
//! Why not `aws-sdk-ec2`: it is one crate for all of EC2's several hundred operations. Built for
//! the tests and checked by clippy it took 834 MiB of `target/` (the largest crate by far) and
//! minutes of a cold build on the deploy test's path, for two read-only calls. The
//! signing, credentials chain, endpoint override and XML reading stay the SDK's; what is written
//! here is the request's form and the walk down the answer.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_xml::decode::{Document, ScopedDecoder, try_data};

/// The EC2 API version the requests and answers are written in (the SDK's too).
const VERSION: &str = "2016-11-15";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// Attempts per call: a throttled or failed call is tried again after 1 s, then 2 s.
const ATTEMPTS: u32 = 3;

/// A client for the two calls.
pub(super) struct Ec2 {
    http: reqwest::Client,
    /// `https://ec2.<region>.amazonaws.com/`, or the SDK's endpoint override (the local AWS).
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl Ec2 {
    pub(super) fn new(sdk: &SdkConfig) -> Result<Self> {
        let region = sdk
            .region()
            .context("EC2: no AWS region (set AWS_REGION or the profile's region)")?
            .to_string();
        let credentials = sdk
            .credentials_provider()
            .context("EC2: no AWS credentials provider")?;
        let endpoint = match sdk.endpoint_url() {
            Some(url) => format!("{}/", url.trim_end_matches('/')),
            None => default_endpoint(&region),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("EC2: HTTP client")?;
        Ok(Ec2 {
            http,
            endpoint,
            region,
            credentials,
        })
    }

    /// The NAT gateway `subnet`'s default route (0.0.0.0/0) goes through, if it does.
    pub(super) async fn default_route_nat(&self, subnet: &str) -> Result<Option<String>> {
        let answer = self
            .call(
                "DescribeRouteTables",
                &[
                    ("Filter.1.Name", "association.subnet-id"),
                    ("Filter.1.Value.1", subnet),
                ],
            )
            .await?;
        nat_of_default_route(&answer)
    }

    /// The public addresses of NAT gateway `id`.
    pub(super) async fn nat_public_ips(&self, id: &str) -> Result<Vec<String>> {
        let answer = self
            .call("DescribeNatGateways", &[("NatGatewayId.1", id)])
            .await?;
        let addresses = items(
            &answer,
            &["natGatewaySet", "item", "natGatewayAddressSet", "item"],
        )?;
        Ok(addresses
            .into_iter()
            .filter_map(|mut fields| fields.remove("publicIp"))
            .collect())
    }

    /// Sends `action` with `params`, signed; the answer's XML, or an error naming EC2's code and
    /// message. Throttling, server errors and failed connections are tried again.
    async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<String> {
        let body = form(action, params);
        let mut attempt = 1;
        loop {
            let credentials = self
                .credentials
                .provide_credentials()
                .await
                .map_err(|e| anyhow!("EC2 {action}: no AWS credentials: {e}"))?;
            let request = self.signed(&body, &credentials, SystemTime::now())?;
            let outcome = match self.http.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(text);
                    }
                    let (code, message) = error_of(&text);
                    let again = status.is_server_error()
                        || matches!(code.as_str(), "RequestLimitExceeded" | "Throttling");
                    (again, anyhow!("EC2 {action}: {status}: {code}: {message}"))
                }
                Err(e) => (true, anyhow!("EC2 {action}: {e}")),
            };
            match outcome {
                (true, _) if attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    attempt += 1;
                }
                (_, error) => return Err(error),
            }
        }
    }

    /// The POST of `body`, with SigV4's headers for `credentials` at `time`.
    fn signed(
        &self,
        body: &str,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<reqwest::Request> {
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .context("EC2: signing parameters")?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            [("content-type", FORM)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .context("EC2: the request to sign")?;
        let (instructions, _) = sign(signable, &params)
            .context("EC2: signing")?
            .into_parts();
        let mut request = self
            .http
            .post(&self.endpoint)
            .header("content-type", FORM)
            .body(body.to_owned());
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        request.build().context("EC2: the request")
    }
}

/// EC2's regional endpoint (the China regions' domain differs).
fn default_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://ec2.{region}.{domain}/")
}

/// The request's form body: the action, the API version, then `params`.
fn form(action: &str, params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", action)
        .append_pair("Version", VERSION)
        .extend_pairs(params)
        .finish()
}

/// The NAT gateway of the first route to 0.0.0.0/0 in a DescribeRouteTables answer.
fn nat_of_default_route(answer: &str) -> Result<Option<String>> {
    let routes = items(answer, &["routeTableSet", "item", "routeSet", "item"])?;
    Ok(routes
        .into_iter()
        .find(|route| route.get("destinationCidrBlock").map(String::as_str) == Some("0.0.0.0/0"))
        .and_then(|mut route| route.remove("natGatewayId")))
}

/// EC2's error code and message from an error answer (`Response/Errors/Error`); the answer's
/// first line when it is not one.
fn error_of(answer: &str) -> (String, String) {
    match items(answer, &["Errors", "Error"])
        .ok()
        .and_then(|e| e.into_iter().next())
    {
        Some(mut error) => (
            error.remove("Code").unwrap_or_default(),
            error.remove("Message").unwrap_or_default(),
        ),
        None => (
            "unreadable answer".to_owned(),
            answer
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        ),
    }
}

/// The elements at `path` below the answer's root (each step a child's name), each as its
/// text-only children by name: `items(xml, &["natGatewaySet", "item"])`.
fn items(answer: &str, path: &[&str]) -> Result<Vec<BTreeMap<String, String>>> {
    let mut doc = Document::new(answer);
    let mut root = doc
        .root_element()
        .map_err(|e| anyhow!("EC2's answer is not XML: {e}"))?;
    let mut found = Vec::new();
    walk(&mut root, path, &mut found)?;
    Ok(found)
}

fn walk(
    element: &mut ScopedDecoder<'_, '_>,
    path: &[&str],
    found: &mut Vec<BTreeMap<String, String>>,
) -> Result<()> {
    let Some((step, rest)) = path.split_first() else {
        let mut fields = BTreeMap::new();
        while let Some(mut child) = element.next_tag() {
            let name = child.start_el().local().to_owned();
            // A child with children of its own is not a field: skipped.
            if let Ok(text) = try_data(&mut child) {
                fields.insert(name, text.into_owned());
            }
        }
        found.push(fields);
        return Ok(());
    };
    while let Some(mut child) = element.next_tag() {
        if child.start_el().local() == *step {
            walk(&mut child, rest, found)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
