//! The network a Terraform state (or a resolved plan) describes: the VPC, its subnets, route
//! tables and their associations (a subnet without one uses the VPC's main route table, which
//! holds only the local route unless the stack manages it), the internet gateway, the NAT
//! gateways with their Elastic IPs, and the security groups with every rule whichever
//! resource wrote it. Nothing here is drawn by hand: the twin builds exactly this, and
//! [`crate::flows`] decides on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use serde_json::Value;

use crate::resources::{Resource, resources};

/// Where a route sends what it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The VPC itself (the implicit `local` route).
    Local,
    InternetGateway(String),
    NatGateway(String),
    /// A target the twin does not model (a peering, an endpoint, …): named, never routed.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Net,
    pub target: Target,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    pub id: String,
    /// The Terraform address, for messages (`the VPC's main route table` when unmanaged).
    pub address: String,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct Subnet {
    pub id: String,
    pub address: String,
    pub cidr: Ipv4Net,
    pub zone: String,
}

#[derive(Debug, Clone)]
pub struct NatGateway {
    pub id: String,
    pub address: String,
    pub subnet: String,
    /// Its address in its subnet, when the state has one.
    pub private_ip: Option<Ipv4Addr>,
    /// Its Elastic IP: where everything it forwards leaves from.
    pub public_ip: Ipv4Addr,
}

/// Which packets a rule speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
    Number(u8),
}

impl Protocol {
    fn parse(text: &str) -> Result<Self> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "-1" | "all" => Protocol::All,
            "tcp" | "6" => Protocol::Tcp,
            "udp" | "17" => Protocol::Udp,
            "icmp" | "1" => Protocol::Icmp,
            other => Protocol::Number(
                other
                    .parse()
                    .with_context(|| format!("`{other}` is not a protocol"))?,
            ),
        })
    }

    /// iptables' name for it.
    pub fn iptables(self) -> String {
        match self {
            Protocol::All => "all".into(),
            Protocol::Tcp => "tcp".into(),
            Protocol::Udp => "udp".into(),
            Protocol::Icmp => "icmp".into(),
            Protocol::Number(n) => n.to_string(),
        }
    }
}

/// The other end a security group rule names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    Cidr(Ipv4Net),
    /// Every network interface in that group.
    Group(String),
}

/// One security group rule: in or out, protocol, ports (inclusive; `None`: all), the peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
    pub peer: Peer,
    /// The resource that wrote it, for messages.
    pub from: String,
}

impl Rule {
    /// Whether the rule admits a TCP connection to `port` (the twin's flows are TCP).
    pub fn admits_tcp(&self, port: u16) -> bool {
        matches!(self.protocol, Protocol::All | Protocol::Tcp)
            && self.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port))
    }
}

#[derive(Debug, Clone, Default)]
pub struct SecurityGroup {
    pub id: String,
    pub address: String,
    pub name: String,
    pub ingress: BTreeSet<Rule>,
    pub egress: BTreeSet<Rule>,
}

/// The whole network of one state.
#[derive(Debug, Clone)]
pub struct Network {
    pub vpc_id: String,
    pub vpc_cidr: Ipv4Net,
    pub subnets: BTreeMap<String, Subnet>,
    pub route_tables: BTreeMap<String, RouteTable>,
    /// Subnet id → route table id, explicit associations only.
    pub associations: BTreeMap<String, String>,
    /// The route table subnets without an association use.
    pub main_route_table: RouteTable,
    pub internet_gateways: BTreeSet<String>,
    pub nat_gateways: Vec<NatGateway>,
    pub security_groups: BTreeMap<String, SecurityGroup>,
}

fn text<'a>(values: &'a Value, key: &str) -> Option<&'a str> {
    values[key].as_str().filter(|s| !s.is_empty())
}

fn strings(values: &Value, key: &str) -> Vec<String> {
    values[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Network resources that change which packets pass but that neither the twin nor the flow
/// check evaluates. The stack declares none today (every subnet keeps the VPC's default
/// network ACL, which allows all traffic both ways, and AWS's endpoints are reached through
/// the NAT gateway); a stack that adds one must teach the model first, or the checks would
/// pass on a network that is not the one deployed.
const UNMODELLED: &[&str] = &[
    "aws_network_acl",
    "aws_default_network_acl",
    "aws_vpc_endpoint",
    "aws_vpc_peering_connection",
    "aws_ec2_transit_gateway_vpc_attachment",
    "aws_egress_only_internet_gateway",
    "aws_vpn_gateway",
];

fn refuse_unmodelled(all: &[Resource]) -> Result<()> {
    let found: Vec<&str> = all
        .iter()
        .filter(|r| {
            UNMODELLED
                .iter()
                .any(|t| r.kind == *t || r.kind.starts_with(&format!("{t}_")))
        })
        .map(|r| r.address.as_str())
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    bail!(
        "the stack declares network resources the model does not evaluate ({}): teach \
         stack-model their rules before trusting the flow check or the twin",
        found.join(", ")
    )
}

impl Network {
    /// The network of the one VPC in `doc` (`terraform show -json`).
    pub fn from_state(doc: &Value) -> Result<Self> {
        Self::from_resources(&resources(doc))
    }

    pub fn from_resources(all: &[Resource]) -> Result<Self> {
        refuse_unmodelled(all)?;
        let vpcs: Vec<&Resource> = of(all, "aws_vpc").collect();
        let [vpc] = vpcs.as_slice() else {
            bail!("the state holds {} VPCs; the twin models one", vpcs.len());
        };
        let vpc_id = text(&vpc.values, "id")
            .context("the VPC has no id")?
            .to_owned();
        let vpc_cidr: Ipv4Net = text(&vpc.values, "cidr_block")
            .context("the VPC has no CIDR")?
            .parse()?;
        let local = Route {
            destination: vpc_cidr,
            target: Target::Local,
        };
        let route_tables = route_tables(all, &local)?;
        let main_id = text(&vpc.values, "main_route_table_id")
            .unwrap_or("main")
            .to_owned();
        let main_route_table = route_tables.get(&main_id).cloned().unwrap_or(RouteTable {
            id: main_id,
            address: "the VPC's main route table (local route only)".into(),
            routes: vec![local],
        });
        Ok(Network {
            vpc_id,
            vpc_cidr,
            subnets: subnets(all)?,
            route_tables,
            associations: of(all, "aws_route_table_association")
                .filter_map(|r| {
                    Some((
                        text(&r.values, "subnet_id")?.to_owned(),
                        text(&r.values, "route_table_id")?.to_owned(),
                    ))
                })
                .collect(),
            main_route_table,
            internet_gateways: of(all, "aws_internet_gateway")
                .filter_map(|r| text(&r.values, "id").map(str::to_owned))
                .collect(),
            nat_gateways: nat_gateways(all)?,
            security_groups: security_groups(all)?,
        })
    }

    /// The route table `subnet` uses: its association's, else the VPC's main one.
    pub fn route_table_of(&self, subnet: &str) -> &RouteTable {
        self.associations
            .get(subnet)
            .and_then(|id| self.route_tables.get(id))
            .unwrap_or(&self.main_route_table)
    }

    /// The route `table` takes for `destination`: the longest prefix that matches.
    pub fn route_for(table: &RouteTable, destination: Ipv4Addr) -> Option<&Route> {
        table
            .routes
            .iter()
            .filter(|r| r.destination.contains(&destination))
            .max_by_key(|r| r.destination.prefix_len())
    }
}

fn of<'a>(all: &'a [Resource], kind: &'static str) -> impl Iterator<Item = &'a Resource> {
    all.iter().filter(move |r| r.kind == kind)
}

fn subnets(all: &[Resource]) -> Result<BTreeMap<String, Subnet>> {
    of(all, "aws_subnet")
        .map(|r| {
            let id = text(&r.values, "id").context("a subnet without id")?;
            Ok((
                id.to_owned(),
                Subnet {
                    id: id.to_owned(),
                    address: r.address.clone(),
                    cidr: text(&r.values, "cidr_block")
                        .context("a subnet without CIDR")?
                        .parse()?,
                    zone: text(&r.values, "availability_zone")
                        .unwrap_or_default()
                        .to_owned(),
                },
            ))
        })
        .collect()
}

/// Every route table with its routes: the local route, its own `route` entries and the
/// `aws_route` resources that name it.
fn route_tables(all: &[Resource], local: &Route) -> Result<BTreeMap<String, RouteTable>> {
    let mut tables = BTreeMap::new();
    for r in of(all, "aws_route_table") {
        let id = text(&r.values, "id").context("a route table without id")?;
        let mut routes = vec![local.clone()];
        for route in r.values["route"].as_array().into_iter().flatten() {
            routes.extend(route_of(route, "cidr_block")?);
        }
        tables.insert(
            id.to_owned(),
            RouteTable {
                id: id.to_owned(),
                address: r.address.clone(),
                routes,
            },
        );
    }
    for r in of(all, "aws_route") {
        let table = text(&r.values, "route_table_id").context("a route without table")?;
        let route = route_of(&r.values, "destination_cidr_block")?;
        if let Some(t) = tables.get_mut(table) {
            t.routes.extend(route);
        }
    }
    Ok(tables)
}

/// Each NAT gateway in its subnet, with its Elastic IP (its own `public_ip`, or its
/// allocation's).
fn nat_gateways(all: &[Resource]) -> Result<Vec<NatGateway>> {
    let eips: BTreeMap<String, Ipv4Addr> = of(all, "aws_eip")
        .filter_map(|r| {
            let ip = text(&r.values, "public_ip")?.parse().ok()?;
            let id = text(&r.values, "allocation_id").or(text(&r.values, "id"))?;
            Some((id.to_owned(), ip))
        })
        .collect();
    of(all, "aws_nat_gateway")
        .map(|r| {
            let id = text(&r.values, "id").context("a NAT gateway without id")?;
            let public_ip = text(&r.values, "public_ip")
                .and_then(|ip| ip.parse().ok())
                .or_else(|| eips.get(text(&r.values, "allocation_id")?).copied())
                .with_context(|| format!("{} has no Elastic IP", r.address))?;
            Ok(NatGateway {
                id: id.to_owned(),
                address: r.address.clone(),
                subnet: text(&r.values, "subnet_id")
                    .with_context(|| format!("{} has no subnet", r.address))?
                    .to_owned(),
                private_ip: text(&r.values, "private_ip").and_then(|ip| ip.parse().ok()),
                public_ip,
            })
        })
        .collect()
}

/// A route of `aws_route_table.route` or `aws_route`; `None` for an IPv6 or prefix-list
/// destination (the twin is IPv4).
fn route_of(values: &Value, cidr_key: &str) -> Result<Option<Route>> {
    let Some(cidr) = text(values, cidr_key) else {
        return Ok(None);
    };
    let target = if let Some(id) = text(values, "nat_gateway_id") {
        Target::NatGateway(id.to_owned())
    } else if let Some(id) = text(values, "gateway_id") {
        if id == "local" {
            Target::Local
        } else if id.starts_with("igw-") || id.starts_with("aws_internet_gateway.") {
            // An internet gateway's id, or its address in a resolved plan.
            Target::InternetGateway(id.to_owned())
        } else {
            Target::Other(id.to_owned())
        }
    } else {
        let other = [
            "vpc_endpoint_id",
            "transit_gateway_id",
            "vpc_peering_connection_id",
            "network_interface_id",
            "egress_only_gateway_id",
            "carrier_gateway_id",
            "local_gateway_id",
            "core_network_arn",
        ]
        .iter()
        .find_map(|k| text(values, k))
        .unwrap_or("an unknown target");
        Target::Other(other.to_owned())
    };
    Ok(Some(Route {
        destination: cidr.parse()?,
        target,
    }))
}

/// Every security group with every rule, whichever resource wrote it: the group's own
/// `ingress`/`egress` (inline, or read back from AWS), `aws_security_group_rule`, and
/// `aws_vpc_security_group_{ingress,egress}_rule`. A rule written by two resources (the
/// group's read-back list and the rule's own resource) is kept under each: either admits.
fn security_groups(all: &[Resource]) -> Result<BTreeMap<String, SecurityGroup>> {
    let mut groups: BTreeMap<String, SecurityGroup> = BTreeMap::new();
    for r in all
        .iter()
        .filter(|r| r.kind == "aws_security_group" || r.kind == "aws_default_security_group")
    {
        let id = text(&r.values, "id").context("a security group without id")?;
        let mut group = SecurityGroup {
            id: id.to_owned(),
            address: r.address.clone(),
            name: text(&r.values, "name").unwrap_or(id).to_owned(),
            ..SecurityGroup::default()
        };
        for (key, into) in [
            ("ingress", &mut group.ingress),
            ("egress", &mut group.egress),
        ] {
            for rule in r.values[key].as_array().into_iter().flatten() {
                into.extend(classic_rules(rule, Some(id), &r.address)?);
            }
        }
        groups.insert(id.to_owned(), group);
    }
    for r in all {
        let (group, ingress, rules) = match r.kind.as_str() {
            "aws_security_group_rule" => (
                text(&r.values, "security_group_id"),
                text(&r.values, "type") == Some("ingress"),
                classic_rules(&r.values, text(&r.values, "security_group_id"), &r.address)?,
            ),
            "aws_vpc_security_group_ingress_rule" | "aws_vpc_security_group_egress_rule" => (
                text(&r.values, "security_group_id"),
                r.kind.ends_with("ingress_rule"),
                vpc_rule(&r.values, &r.address)?,
            ),
            _ => continue,
        };
        let group = group.with_context(|| format!("{} names no group", r.address))?;
        let entry = groups
            .entry(group.to_owned())
            .or_insert_with(|| SecurityGroup {
                id: group.to_owned(),
                address: group.to_owned(),
                name: group.to_owned(),
                ..SecurityGroup::default()
            });
        if ingress {
            entry.ingress.extend(rules);
        } else {
            entry.egress.extend(rules);
        }
    }
    Ok(groups)
}

fn ports(values: &Value, protocol: Protocol) -> Option<(u16, u16)> {
    if !matches!(protocol, Protocol::Tcp | Protocol::Udp) {
        return None;
    }
    let port = |k: &str| values[k].as_i64().and_then(|p| u16::try_from(p).ok());
    match (port("from_port"), port("to_port")) {
        (Some(lo), Some(hi)) if !(lo == 0 && hi == 0) => Some((lo, hi)),
        _ => None,
    }
}

/// The rules of one `aws_security_group` entry or `aws_security_group_rule`: one per CIDR and
/// per referenced group (`self` is the group itself). IPv6 CIDRs are left out (the twin is
/// IPv4).
fn classic_rules(values: &Value, own: Option<&str>, from: &str) -> Result<Vec<Rule>> {
    let protocol = Protocol::parse(text(values, "protocol").unwrap_or("-1"))?;
    let ports = ports(values, protocol);
    let mut peers: Vec<Peer> = strings(values, "cidr_blocks")
        .iter()
        .map(|c| c.parse().map(Peer::Cidr))
        .collect::<Result<_, _>>()?;
    peers.extend(
        strings(values, "security_groups")
            .into_iter()
            .map(Peer::Group),
    );
    if let Some(group) = text(values, "source_security_group_id") {
        peers.push(Peer::Group(group.to_owned()));
    }
    if values["self"].as_bool() == Some(true)
        && let Some(own) = own
    {
        peers.push(Peer::Group(own.to_owned()));
    }
    Ok(peers
        .into_iter()
        .map(|peer| Rule {
            protocol,
            ports,
            peer,
            from: from.to_owned(),
        })
        .collect())
}

/// The rule of an `aws_vpc_security_group_{ingress,egress}_rule` (one peer each).
fn vpc_rule(values: &Value, from: &str) -> Result<Vec<Rule>> {
    let protocol = Protocol::parse(text(values, "ip_protocol").unwrap_or("-1"))?;
    let ports = ports(values, protocol);
    let peer = if let Some(cidr) = text(values, "cidr_ipv4") {
        Peer::Cidr(cidr.parse()?)
    } else if let Some(group) = text(values, "referenced_security_group_id") {
        // moto reports a referenced group as `account/sg-…` (infra/README.md).
        Peer::Group(group.rsplit('/').next().unwrap_or(group).to_owned())
    } else {
        return Ok(Vec::new());
    };
    Ok(vec![Rule {
        protocol,
        ports,
        peer,
        from: from.to_owned(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(resources: Value) -> Value {
        json!({ "values": { "root_module": { "resources": resources } } })
    }

    fn managed(address: &str, kind: &str, values: Value) -> Value {
        json!({ "address": address, "mode": "managed", "type": kind, "values": values })
    }

    /// The VPC, subnets, gateways and route tables of the example.
    fn routing() -> Vec<Value> {
        vec![
            managed(
                "aws_vpc.this",
                "aws_vpc",
                json!({"id": "vpc-1", "cidr_block": "10.20.0.0/16", "main_route_table_id": "rtb-main"}),
            ),
            managed(
                "aws_subnet.public[0]",
                "aws_subnet",
                json!({"id": "subnet-pub", "cidr_block": "10.20.0.0/20", "availability_zone": "a"}),
            ),
            managed(
                "aws_subnet.private[0]",
                "aws_subnet",
                json!({"id": "subnet-priv", "cidr_block": "10.20.128.0/20", "availability_zone": "a"}),
            ),
            managed(
                "aws_internet_gateway.this",
                "aws_internet_gateway",
                json!({"id": "igw-1"}),
            ),
            managed(
                "aws_eip.nat[0]",
                "aws_eip",
                json!({"id": "eipalloc-1", "allocation_id": "eipalloc-1", "public_ip": "127.1.2.3"}),
            ),
            managed(
                "aws_nat_gateway.this[0]",
                "aws_nat_gateway",
                json!({"id": "nat-1", "subnet_id": "subnet-pub", "allocation_id": "eipalloc-1", "private_ip": "10.20.0.9", "public_ip": ""}),
            ),
            managed(
                "aws_route_table.public",
                "aws_route_table",
                json!({"id": "rtb-pub", "route": [{"cidr_block": "0.0.0.0/0", "gateway_id": "igw-1", "nat_gateway_id": ""}]}),
            ),
            managed(
                "aws_route_table.private[0]",
                "aws_route_table",
                json!({"id": "rtb-priv", "route": [{"cidr_block": "0.0.0.0/0", "gateway_id": "", "nat_gateway_id": "nat-1"}, {"ipv6_cidr_block": "::/0", "gateway_id": "igw-1"}]}),
            ),
            managed(
                "aws_route_table_association.private[0]",
                "aws_route_table_association",
                json!({"subnet_id": "subnet-priv", "route_table_id": "rtb-priv"}),
            ),
        ]
    }

    /// The example's security groups and rules, written in each of the stack's styles.
    fn groups() -> Vec<Value> {
        vec![
            managed(
                "aws_security_group.api",
                "aws_security_group",
                json!({"id": "sg-api", "name": "api", "ingress": [], "egress": [
                    {"cidr_blocks": ["0.0.0.0/0"], "ipv6_cidr_blocks": [], "security_groups": [], "self": false, "from_port": 443, "to_port": 443, "protocol": "tcp"}
                ]}),
            ),
            managed(
                "aws_security_group_rule.api_from_alb",
                "aws_security_group_rule",
                json!({"type": "ingress", "security_group_id": "sg-api", "source_security_group_id": "sg-alb", "from_port": 8080, "to_port": 8080, "protocol": "tcp", "cidr_blocks": []}),
            ),
            // The same egress rule as its own resource too (the group's list is read back).
            managed(
                "aws_security_group_rule.api_https_out",
                "aws_security_group_rule",
                json!({"type": "egress", "security_group_id": "sg-api", "cidr_blocks": ["0.0.0.0/0"], "from_port": 443, "to_port": 443, "protocol": "tcp"}),
            ),
            managed(
                "aws_vpc_security_group_egress_rule.fn",
                "aws_vpc_security_group_egress_rule",
                json!({"security_group_id": "sg-fn", "cidr_ipv4": "0.0.0.0/0", "from_port": 443, "to_port": 443, "ip_protocol": "tcp"}),
            ),
            json!({"address": "data.aws_partition.this", "mode": "data", "type": "aws_partition", "values": {}}),
        ]
    }

    /// A VPC as infra/network.tf makes it: public subnets through the internet gateway,
    /// private ones through the NAT gateway; `associate_public` says whether the public
    /// subnet's association exists.
    fn network(associate_public: bool) -> Network {
        let mut all = routing();
        all.extend(groups());
        if associate_public {
            all.push(managed(
                "aws_route_table_association.public[0]",
                "aws_route_table_association",
                json!({"subnet_id": "subnet-pub", "route_table_id": "rtb-pub"}),
            ));
        }
        Network::from_state(&state(Value::Array(all))).expect("the network parses")
    }

    #[test]
    fn subnets_route_by_their_association_or_the_main_table() {
        let net = network(true);
        let out = "203.0.113.9".parse().expect("ip");
        let private = net.route_table_of("subnet-priv");
        assert_eq!(
            Network::route_for(private, out).map(|r| &r.target),
            Some(&Target::NatGateway("nat-1".into()))
        );
        // Inside the VPC the local route wins over the default route.
        assert_eq!(
            Network::route_for(private, "10.20.0.9".parse().expect("ip")).map(|r| &r.target),
            Some(&Target::Local)
        );
        assert_eq!(
            Network::route_for(net.route_table_of("subnet-pub"), out).map(|r| &r.target),
            Some(&Target::InternetGateway("igw-1".into()))
        );
        // Without its association the public subnet falls back to the main route table,
        // which holds the local route alone: the NAT gateway has no way out.
        let unassociated = network(false);
        let table = unassociated.route_table_of("subnet-pub");
        assert!(table.address.contains("main route table"));
        assert_eq!(Network::route_for(table, out), None);
    }

    #[test]
    fn nat_gateways_take_their_elastic_ip_and_groups_gather_every_rule() {
        let net = network(true);
        assert_eq!(net.nat_gateways.len(), 1);
        let nat = &net.nat_gateways[0];
        assert_eq!(nat.public_ip, "127.1.2.3".parse::<Ipv4Addr>().expect("ip"));
        assert_eq!(nat.private_ip, Some("10.20.0.9".parse().expect("ip")));
        let api = &net.security_groups["sg-api"];
        assert_eq!(api.egress.len(), 2, "{:?}", api.egress);
        assert!(
            api.egress
                .iter()
                .all(|r| r.admits_tcp(443) && !r.admits_tcp(80))
        );
        assert!(
            api.ingress
                .iter()
                .any(|r| r.peer == Peer::Group("sg-alb".into()) && r.admits_tcp(8080))
        );
        let function = &net.security_groups["sg-fn"];
        assert_eq!(function.egress.len(), 1);
        assert!(function.ingress.is_empty());
    }

    #[test]
    fn a_state_with_no_or_two_vpcs_is_refused() {
        assert!(Network::from_state(&state(json!([]))).is_err());
    }

    #[test]
    fn a_state_with_a_network_acl_or_an_endpoint_is_refused_by_name() {
        for kind in UNMODELLED.iter().chain(&["aws_network_acl_rule"]) {
            let mut resources = routing();
            resources.push(managed(&format!("{kind}.x"), kind, json!({"id": "x-1"})));
            let doc = state(Value::Array(resources));
            let error = Network::from_state(&doc).unwrap_err().to_string();
            assert!(error.contains(&format!("{kind}.x")), "{kind}: {error}");
        }
    }
}
