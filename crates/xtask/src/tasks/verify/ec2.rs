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
mod tests {
    use super::*;

    /// An answer of the shape EC2 documents: a subnet's table, a local route and a default
    /// route through a NAT gateway, with fields the walk must pass over.
    const ROUTE_TABLES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeRouteTablesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>6f570b0b-9c18-4b07-bdec-73740dcf861a</requestId>
    <routeTableSet>
        <item>
            <routeTableId>rtb-0f1e2d3c</routeTableId>
            <vpcId>vpc-1a2b3c4d</vpcId>
            <routeSet>
                <item>
                    <destinationCidrBlock>10.0.0.0/16</destinationCidrBlock>
                    <gatewayId>local</gatewayId>
                    <state>active</state>
                </item>
                <item>
                    <destinationCidrBlock>0.0.0.0/0</destinationCidrBlock>
                    <natGatewayId>nat-0a1b2c3d4e5f</natGatewayId>
                    <state>active</state>
                    <origin>CreateRoute</origin>
                </item>
            </routeSet>
            <associationSet>
                <item>
                    <routeTableAssociationId>rtbassoc-1</routeTableAssociationId>
                    <subnetId>subnet-0a1b</subnetId>
                    <main>false</main>
                </item>
            </associationSet>
            <tagSet/>
        </item>
    </routeTableSet>
</DescribeRouteTablesResponse>"#;

    #[test]
    fn the_default_routes_nat_gateway_is_read_past_other_routes_and_fields() {
        assert_eq!(
            nat_of_default_route(ROUTE_TABLES).unwrap().as_deref(),
            Some("nat-0a1b2c3d4e5f")
        );
        let through_internet_gateway = ROUTE_TABLES.replace(
            "<natGatewayId>nat-0a1b2c3d4e5f</natGatewayId>",
            "<gatewayId>igw-9f8e</gatewayId>",
        );
        assert_eq!(
            nat_of_default_route(&through_internet_gateway).unwrap(),
            None
        );
        let no_default = ROUTE_TABLES.replace("0.0.0.0/0", "192.168.0.0/16");
        assert_eq!(nat_of_default_route(&no_default).unwrap(), None);
        let no_table =
            r#"<DescribeRouteTablesResponse><routeTableSet/></DescribeRouteTablesResponse>"#;
        assert_eq!(nat_of_default_route(no_table).unwrap(), None);
    }

    #[test]
    fn every_address_of_the_nat_gateway_is_read() {
        let answer = r#"<DescribeNatGatewaysResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>1</requestId>
  <natGatewaySet>
    <item>
      <natGatewayId>nat-0a1b2c3d4e5f</natGatewayId>
      <natGatewayAddressSet>
        <item><allocationId>eipalloc-1</allocationId><privateIp>10.0.1.5</privateIp><publicIp>203.0.113.7</publicIp><isPrimary>true</isPrimary></item>
        <item><allocationId>eipalloc-2</allocationId><privateIp>10.0.1.6</privateIp><publicIp>198.51.100.9</publicIp></item>
      </natGatewayAddressSet>
      <state>available</state>
    </item>
  </natGatewaySet>
</DescribeNatGatewaysResponse>"#;
        assert_eq!(
            items(
                answer,
                &["natGatewaySet", "item", "natGatewayAddressSet", "item"]
            )
            .unwrap()
            .into_iter()
            .filter_map(|mut f| f.remove("publicIp"))
            .collect::<Vec<_>>(),
            ["203.0.113.7", "198.51.100.9"]
        );
    }

    #[test]
    fn an_error_answer_gives_its_code_and_message_and_anything_else_its_first_line() {
        let answer = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>b3f0</RequestID></Response>"#;
        assert_eq!(
            error_of(answer),
            (
                "UnauthorizedOperation".to_owned(),
                "You are not authorized to perform this operation.".to_owned()
            )
        );
        assert_eq!(
            error_of("Bad Gateway\n<html>"),
            ("unreadable answer".to_owned(), "Bad Gateway".to_owned())
        );
        assert!(
            items("not xml at all", &["Errors"])
                .unwrap_or_default()
                .is_empty()
        );
    }

    #[test]
    fn the_form_names_the_action_and_version_and_encodes_values() {
        assert_eq!(
            form(
                "DescribeRouteTables",
                &[
                    ("Filter.1.Name", "association.subnet-id"),
                    ("Filter.1.Value.1", "subnet-0a b&c")
                ]
            ),
            "Action=DescribeRouteTables&Version=2016-11-15&Filter.1.Name=association.subnet-id&Filter.1.Value.1=subnet-0a+b%26c"
        );
    }

    fn client(endpoint: Option<&str>) -> Ec2 {
        let mut sdk = SdkConfig::builder()
            .region(aws_config::Region::new("ap-northeast-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "not-a-real-secret",
                None,
                None,
                "test",
            )))
            .behavior_version(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            sdk = sdk.endpoint_url(url);
        }
        Ec2::new(&sdk.build()).unwrap()
    }

    #[test]
    fn the_endpoint_is_the_regions_unless_the_config_overrides_it() {
        assert_eq!(
            client(None).endpoint,
            "https://ec2.ap-northeast-1.amazonaws.com/"
        );
        assert_eq!(
            client(Some("http://127.0.0.1:4566")).endpoint,
            "http://127.0.0.1:4566/"
        );
        assert_eq!(
            default_endpoint("cn-north-1"),
            "https://ec2.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn the_request_is_signed_for_ec2_in_the_region_over_host_date_type_and_body() {
        let ec2 = client(None);
        let with_session = Credentials::new(
            "AKIDEXAMPLE",
            "not-a-real-secret",
            Some("session-token".into()),
            None,
            "test",
        );
        // 2026-11-29T07:30:00Z
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_937_400);
        let body = form("DescribeNatGateways", &[("NatGatewayId.1", "nat-1")]);
        let request = ec2.signed(&body, &with_session, time).unwrap();
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(request.method(), "POST");
        assert_eq!(
            request.url().as_str(),
            "https://ec2.ap-northeast-1.amazonaws.com/"
        );
        assert_eq!(header("content-type"), FORM);
        assert_eq!(header("x-amz-date"), "20261129T073000Z");
        assert_eq!(header("x-amz-security-token"), "session-token");
        let authorization = header("authorization");
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/ap-northeast-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
            ),
            "{authorization}"
        );
        assert!(!authorization.contains("not-a-real-secret"));
        assert_eq!(
            request.body().and_then(|b| b.as_bytes()),
            Some(body.as_bytes())
        );
        // The body is signed: another body, another signature.
        let other = ec2
            .signed(
                &form("DescribeNatGateways", &[("NatGatewayId.1", "nat-2")]),
                &with_session,
                time,
            )
            .unwrap();
        assert_ne!(
            other.headers().get("authorization").unwrap(),
            request.headers().get("authorization").unwrap()
        );
    }

    /// The one id `action` answers with: the text of the first `field` at `path`.
    async fn create(
        ec2: &Ec2,
        action: &str,
        params: &[(&str, &str)],
        path: &[&str],
        field: &str,
    ) -> String {
        let answer = ec2.call(action, params).await.unwrap();
        items(&answer, path)
            .unwrap()
            .into_iter()
            .find_map(|mut fields| fields.remove(field))
            .unwrap_or_else(|| panic!("{action} answered without {field}: {answer}"))
    }

    /// A network as infra/network.tf builds it, in the local AWS: a private subnet whose own
    /// table sends 0.0.0.0/0 to a NAT gateway with an Elastic IP, and a subnet of the same VPC
    /// on the main table (no way out). `(private, closed, NAT gateway, its address)`.
    async fn network(ec2: &Ec2) -> (String, String, String, String) {
        let vpc = create(
            ec2,
            "CreateVpc",
            &[("CidrBlock", "10.42.0.0/16")],
            &["vpc"],
            "vpcId",
        )
        .await;
        let mut subnets = Vec::new();
        for cidr in ["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"] {
            let params = [("VpcId", vpc.as_str()), ("CidrBlock", cidr)];
            subnets.push(create(ec2, "CreateSubnet", &params, &["subnet"], "subnetId").await);
        }
        let [public, private, closed] = <[String; 3]>::try_from(subnets).unwrap();
        let answer = ec2
            .call("AllocateAddress", &[("Domain", "vpc")])
            .await
            .unwrap();
        let mut eip = items(&answer, &[]).unwrap().remove(0);
        let (allocation, address) = (
            eip.remove("allocationId").unwrap(),
            eip.remove("publicIp").unwrap(),
        );
        let params = [("SubnetId", public.as_str()), ("AllocationId", &allocation)];
        let nat = create(
            ec2,
            "CreateNatGateway",
            &params,
            &["natGateway"],
            "natGatewayId",
        )
        .await;
        let table = create(
            ec2,
            "CreateRouteTable",
            &[("VpcId", &vpc)],
            &["routeTable"],
            "routeTableId",
        )
        .await;
        let route = [
            ("RouteTableId", table.as_str()),
            ("DestinationCidrBlock", "0.0.0.0/0"),
            ("NatGatewayId", &nat),
        ];
        ec2.call("CreateRoute", &route).await.unwrap();
        let association = [("RouteTableId", table.as_str()), ("SubnetId", &private)];
        ec2.call("AssociateRouteTable", &association).await.unwrap();
        (private, closed, nat, address)
    }

    /// The two calls against the local AWS, on [`network`].
    #[tokio::test]
    async fn the_local_aws_answers_both_questions_as_read() {
        let sdk = testkit::sdk_config(&testkit::local_aws()).await;
        let ec2 = Ec2::new(&sdk).unwrap();
        let (private, closed, nat, address) = network(&ec2).await;
        assert_eq!(
            ec2.default_route_nat(&private).await.unwrap(),
            Some(nat.clone())
        );
        assert_eq!(ec2.default_route_nat(&closed).await.unwrap(), None);
        assert_eq!(ec2.nat_public_ips(&nat).await.unwrap(), [address]);
        // An unknown gateway: no addresses, or EC2's own error by name.
        match ec2.nat_public_ips("nat-00000000000000000").await {
            Ok(ips) => assert!(ips.is_empty(), "{ips:?}"),
            Err(e) => assert!(format!("{e:#}").contains("NatGatewayNotFound"), "{e:#}"),
        }
    }
}
