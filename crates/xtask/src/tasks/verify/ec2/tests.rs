//! `verify`'s two EC2 questions over the Query API, tested: the request it signs and the
//! answers it reads.

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
    let no_table = r#"<DescribeRouteTablesResponse><routeTableSet/></DescribeRouteTablesResponse>"#;
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
    let sdk = shared_aws::sdk_config(&testkit::local_aws()).await;
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
