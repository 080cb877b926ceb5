//! The flows the product needs and the flows it must never allow, each tried with a real TCP
//! connection in the twin built from the state: required ones must open, forbidden ones must
//! not, though something listens at the other end. The table is the product's; the network
//! that decides is the stack's.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use crate::twin::{self, Placement, Twin};
use anyhow::{Context, Result};

use super::world::{Deployed, Row, World};

/// Where a connection starts: an interface of the twin, or the internet.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    Host(&'a str),
    Internet,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Host(h) => write!(f, "{h}"),
            At::Internet => write!(f, "internet"),
        }
    }
}

/// Whether a TCP connection from `from` to `to` opens (2 s at most).
fn connects(twin: &Twin, from: At<'_>, to: SocketAddr) -> Result<bool> {
    let host = match from {
        At::Host(h) => Some(h),
        At::Internet => None,
    };
    twin.inside(host, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_ok()
    })
}

/// Something listening at `to` in `host`'s namespace (or the internet's): a forbidden flow
/// must fail for the network, not for want of a listener. Kept open until the returned
/// listener is dropped.
fn listen(twin: &Twin, host: At<'_>, at: SocketAddrV4) -> Result<TcpListener> {
    if let At::Internet = host {
        twin.inet_address(*at.ip())?;
    }
    let h = match host {
        At::Host(h) => Some(h),
        At::Internet => None,
    };
    twin.inside(h, move || TcpListener::bind(at))?
        .with_context(|| format!("cannot listen on {at} in {host}"))
}

fn row(twin: &Twin, required: bool, why: &str, from: At<'_>, to: SocketAddr) -> Row {
    let opened = connects(twin, from, to);
    let what = if required {
        "flow needed"
    } else {
        "flow forbidden"
    };
    match opened {
        Ok(opened) => Row::check(
            what,
            opened == required,
            format!(
                "{from} → {to} ({why}): {}",
                if opened { "connected" } else { "no connection" }
            ),
        ),
        Err(e) => Row::check(what, false, format!("{from} → {to}: {e:#}")),
    }
}

fn address(twin: &Twin, host: &str) -> Result<Ipv4Addr> {
    Ok(twin.host(host)?.address)
}

/// The product's flows in the running world (its services listen where they serve).
pub fn run(world: &World) -> Vec<Row> {
    match rows(world) {
        Ok(rows) => rows,
        Err(e) => vec![Row::check("flows", false, format!("{e:#}"))],
    }
}

fn rows(world: &World) -> Result<Vec<Row>> {
    use stack_model::flows::{FLOWS, Port, Role};
    let twin = &world.twin;
    let alb = world.alb.as_ref().context("no load balancer")?.public;
    let api_port = world.deployed.api_port()?;
    // What the internet may try, whatever the VPC's routes say: a route to the private
    // ranges at the internet gateway, as someone next to it would set.
    twin.route_from_internet("10.0.0.0/8")?;
    let host = |role: Role| match role {
        Role::SignUpFunction => "fn-signup",
        Role::RotationFunction => "fn-rotate",
        Role::Api => "api-1",
        Role::Database => "db",
        Role::LoadBalancer => "alb",
        Role::Internet => "internet",
    };
    // Listeners where the table's ends have no service of their own.
    let _listeners = [
        listen(twin, At::Internet, SocketAddrV4::new(twin::AWS_PUBLIC, 80))?,
        listen(
            twin,
            At::Host("fn-signup"),
            SocketAddrV4::new(address(twin, "fn-signup")?, 443),
        )?,
    ];
    let mut rows = Vec::new();
    for flow in FLOWS {
        let port = match flow.port {
            Port::Fixed(p) => p,
            Port::Api => api_port,
        };
        let from = match flow.from {
            Role::Internet => At::Internet,
            role => At::Host(host(role)),
        };
        let to: SocketAddr = match flow.to {
            Role::Internet => (twin::AWS_PUBLIC, port).into(),
            Role::LoadBalancer => (alb, port).into(),
            role => (address(twin, host(role))?, port).into(),
        };
        rows.push(row(twin, flow.required, flow.why, from, to));
    }
    // Two more the table cannot name: the NAT gateway takes no connection, and nothing reaches
    // the load balancer's private side from outside.
    rows.push(row(
        twin,
        false,
        "the internet to the NAT gateway's Elastic IP",
        At::Internet,
        (twin.nat_addresses()[0], 443).into(),
    ));
    rows.push(row(
        twin,
        false,
        "the internet to the load balancer's private address",
        At::Internet,
        (address(twin, "alb")?, 443).into(),
    ));
    rows.push(decided_on_the_state(world)?);
    Ok(rows)
}

/// The same table decided on the state without a packet (`deploy --plan` decides it on the
/// plan): it must agree with the packets.
fn decided_on_the_state(world: &World) -> Result<Row> {
    let resources = stack_model::resources(&world.deployed.state);
    let network = stack_model::Network::from_resources(&resources)?;
    let layout = stack_model::flows::layout(&network, &resources).map_err(anyhow::Error::msg)?;
    let violations = stack_model::flows::violations(&layout);
    Ok(Row::check(
        "flows decided on the state",
        violations.is_empty(),
        if violations.is_empty() {
            format!(
                "the {} flows of the table hold without a packet too",
                stack_model::flows::FLOWS.len()
            )
        } else {
            violations.join("; ")
        },
    ))
}

/// The state less one security group rule (the api's ingress from the load balancer): in a
/// twin built from it, the load balancer no longer reaches a task's port. Run on a twin of its
/// own with listeners standing in for the services.
pub fn without_the_api_ingress(deployed: &Deployed) -> Result<Row> {
    let less = deployed.without("aws_security_group_rule.api_from_alb");
    let network = stack_model::Network::from_state(&less.state)?;
    let private = less.ids("aws_subnet.private[");
    let public = less.strings("aws_lb.this", "subnets");
    let placements = vec![
        Placement {
            name: "api".into(),
            subnet: private.first().context("no private subnet")?.clone(),
            address: None,
            groups: vec![less.attr("aws_security_group.api", "id")?],
            public: false,
        },
        Placement {
            name: "alb".into(),
            subnet: public.first().context("no public subnet")?.clone(),
            address: None,
            groups: less.strings("aws_lb.this", "security_groups"),
            public: true,
        },
    ];
    let twin = Twin::build(
        network,
        &placements,
        &less.work.join("mutation-api-ingress"),
    )?;
    let api = SocketAddrV4::new(address(&twin, "api")?, 8080);
    let _service = listen(&twin, At::Host("api"), api)?;
    let caught = !connects(&twin, At::Host("alb"), api.into())?;
    Ok(Row::check(
        "caught: no ingress rule from the load balancer",
        caught,
        format!(
            "the state less aws_security_group_rule.api_from_alb: alb → {api}: {}",
            if caught { "no connection" } else { "connected" }
        ),
    ))
}

/// Each private subnet leaves from the Elastic IP of the NAT gateway its route table names (one
/// per AZ with `nat_gateways = "per-az"`): a connection from an interface in each, to a
/// listener on the internet that records who called.
pub fn each_subnet_leaves_from_its_nat(deployed: &Deployed) -> Result<Vec<Row>> {
    let network = stack_model::Network::from_state(&deployed.state)?;
    let private = deployed.ids("aws_subnet.private[");
    let group = deployed.attr("aws_security_group.post_confirm", "id")?;
    let placements: Vec<Placement> = private
        .iter()
        .enumerate()
        .map(|(i, subnet)| Placement {
            name: format!("fn-{i}"),
            subnet: subnet.clone(),
            address: None,
            groups: vec![group.clone()],
            public: false,
        })
        .collect();
    let twin = Twin::build(
        network.clone(),
        &placements,
        &deployed.work.join("nat-per-subnet"),
    )?;
    let at = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 40), 443);
    let listener = listen(&twin, At::Internet, at)?;
    listener.set_nonblocking(false)?;
    let mut rows = Vec::new();
    for (i, subnet) in private.iter().enumerate() {
        let expected =
            match stack_model::Network::route_for(network.route_table_of(subnet), *at.ip())
                .map(|r| &r.target)
            {
                Some(stack_model::network::Target::NatGateway(id)) => network
                    .nat_gateways
                    .iter()
                    .find(|n| &n.id == id)
                    .map(|n| n.public_ip),
                _ => None,
            };
        let host = format!("fn-{i}");
        let opened = connects(&twin, At::Host(&host), at.into())?;
        let peer = if opened {
            listener.accept().ok().map(|(_, peer)| peer.ip())
        } else {
            None
        };
        rows.push(Row::check(
            "a subnet's way out",
            opened && expected.is_some() && peer == expected.map(std::net::IpAddr::V4),
            format!(
                "{subnet}: arrives from {} (its route table's NAT gateway: {})",
                peer.map_or("nowhere".to_owned(), |p| p.to_string()),
                expected.map_or("none".to_owned(), |e| e.to_string())
            ),
        ));
    }
    Ok(rows)
}
