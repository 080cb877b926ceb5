//! The flows the product needs, and the ones it must never allow, between the parts of the
//! stack ([`Role`]): one table ([`FLOWS`]) for the twin, which tries each with a real
//! connection, and for [`decide`], which reads routes and security groups the way AWS's
//! Reachability Analyzer reasons about a path, without sending a packet.
//!
//! What [`decide`] reads: the route the source's subnet takes to the destination (the VPC's
//! local route, a NAT gateway whose own subnet routes to the internet gateway, the internet
//! gateway for an interface with a public address), the source's egress rules and the
//! destination's ingress rules (a group peer matches an interface of that group, a CIDR peer
//! the subnet the other end lies in, or the internet for 0.0.0.0/0), and that nothing from the
//! internet reaches an interface without a public address. Weaker than Reachability Analyzer:
//! no network ACLs (the stack has none: the VPC's default allows all), no prefix lists,
//! endpoints or peering, and addresses only as precise as a subnet's range.

use std::collections::BTreeMap;

use crate::network::{Network, Peer, Rule, Target};

/// A part of the stack a flow starts or ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The post-confirm function's interface.
    SignUpFunction,
    /// The rotation function's interface.
    RotationFunction,
    /// An api task (and the migration task, in the same group).
    Api,
    Database,
    /// The load balancer's interface (its public address on the internet side).
    LoadBalancer,
    /// Anyone on the internet, and AWS's public endpoints there.
    Internet,
}

/// The port a flow uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Fixed(u16),
    /// The api's container port.
    Api,
}

/// One flow of the table.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub from: Role,
    pub to: Role,
    pub port: Port,
    /// Needed (must open) or forbidden (must not).
    pub required: bool,
    pub why: &'static str,
}

const fn flow(from: Role, to: Role, port: Port, required: bool, why: &'static str) -> Flow {
    Flow {
        from,
        to,
        port,
        required,
        why,
    }
}

use Port::{Api as ApiPort, Fixed};
use Role::*;

/// The product's flows.
pub const FLOWS: &[Flow] = &[
    flow(
        SignUpFunction,
        Internet,
        Fixed(443),
        true,
        "the sign-up function to AWS's endpoints, through the NAT gateway",
    ),
    flow(
        SignUpFunction,
        LoadBalancer,
        Fixed(443),
        true,
        "the sign-up function to the load balancer's public address",
    ),
    flow(
        RotationFunction,
        LoadBalancer,
        Fixed(443),
        true,
        "the rotation function's dry runs through the load balancer",
    ),
    flow(
        RotationFunction,
        Api,
        ApiPort,
        true,
        "the rotation function asks each task",
    ),
    flow(
        Internet,
        LoadBalancer,
        Fixed(443),
        true,
        "anyone to the HTTPS listener",
    ),
    flow(
        Internet,
        LoadBalancer,
        Fixed(80),
        true,
        "anyone to the HTTP listener (a redirect)",
    ),
    flow(
        LoadBalancer,
        Api,
        ApiPort,
        true,
        "the load balancer to a task's port",
    ),
    flow(
        Api,
        Database,
        Fixed(5432),
        true,
        "a task (and the migration) to the database",
    ),
    flow(
        Api,
        Internet,
        Fixed(443),
        true,
        "a task to AWS's endpoints, through the NAT gateway",
    ),
    flow(Internet, Api, ApiPort, false, "the internet to a task"),
    flow(
        Internet,
        Database,
        Fixed(5432),
        false,
        "the internet to the database",
    ),
    flow(
        Internet,
        SignUpFunction,
        Fixed(443),
        false,
        "the internet to a function's interface",
    ),
    flow(
        SignUpFunction,
        Database,
        Fixed(5432),
        false,
        "the sign-up function to the database",
    ),
    flow(
        SignUpFunction,
        Api,
        ApiPort,
        false,
        "the sign-up function to a task, around the load balancer",
    ),
    flow(
        LoadBalancer,
        Database,
        Fixed(5432),
        false,
        "the load balancer to the database",
    ),
    flow(
        Api,
        Internet,
        Fixed(80),
        false,
        "a task out on a port its group does not open",
    ),
];

/// Where a role's interface is: its subnet and groups, and whether it has a public address.
#[derive(Debug, Clone)]
pub struct Place {
    pub subnet: String,
    pub groups: Vec<String>,
    pub public: bool,
}

/// The network and where each role is in it.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    pub network: &'a Network,
    pub places: BTreeMap<Role, Place>,
    pub api_port: u16,
}

impl Layout<'_> {
    fn port(&self, port: Port) -> u16 {
        match port {
            Fixed(p) => p,
            ApiPort => self.api_port,
        }
    }

    fn place(&self, role: Role) -> Result<&Place, String> {
        self.places
            .get(&role)
            .ok_or_else(|| format!("the stack places no {role:?}"))
    }
}

/// Whether `flow` opens in `layout`: `Ok` with the path, or `Err` with where it stops.
pub fn decide(layout: &Layout<'_>, flow: &Flow) -> Result<String, String> {
    let port = layout.port(flow.port);
    let net = layout.network;
    match (flow.from, flow.to) {
        (Internet, to) => {
            let to_place = layout.place(to)?;
            if !to_place.public {
                return Err(format!(
                    "{to:?} has no public address: nothing routes to it from the internet"
                ));
            }
            leaves_to_internet(net, &to_place.subnet, true)?;
            admits(net, &to_place.groups, Direction::In, &Other::Internet, port)?;
            Ok(format!("internet → the internet gateway → {to:?}"))
        }
        (from, Internet) => {
            let from_place = layout.place(from)?;
            let way = leaves_to_internet(net, &from_place.subnet, from_place.public)?;
            admits(
                net,
                &from_place.groups,
                Direction::Out,
                &Other::Internet,
                port,
            )?;
            Ok(format!("{from:?} → {way}"))
        }
        (from, LoadBalancer) if layout.place(LoadBalancer)?.public => {
            // To the load balancer's public address: out to the internet and back in.
            let from_place = layout.place(from)?;
            let alb = layout.place(LoadBalancer)?;
            let way = leaves_to_internet(net, &from_place.subnet, from_place.public)?;
            admits(
                net,
                &from_place.groups,
                Direction::Out,
                &Other::Internet,
                port,
            )?;
            admits(net, &alb.groups, Direction::In, &Other::Internet, port)?;
            Ok(format!(
                "{from:?} → {way} → the load balancer's public address"
            ))
        }
        (from, to) => {
            let (a, b) = (layout.place(from)?, layout.place(to)?);
            admits(net, &a.groups, Direction::Out, &Other::Place(b), port)?;
            admits(net, &b.groups, Direction::In, &Other::Place(a), port)?;
            Ok(format!("{from:?} → {to:?} (the VPC's local route)"))
        }
    }
}

/// How traffic from `subnet` reaches the internet: through the internet gateway (only for an
/// interface with a public address), or a NAT gateway whose own subnet routes there.
fn leaves_to_internet(net: &Network, subnet: &str, public: bool) -> Result<String, String> {
    let internet = "203.0.113.1".parse().expect("an address");
    let table = net.route_table_of(subnet);
    match Network::route_for(table, internet).map(|r| &r.target) {
        Some(Target::InternetGateway(id)) if public => Ok(format!("the internet gateway {id}")),
        Some(Target::InternetGateway(_)) => Err(format!(
            "{} routes to the internet gateway, but the interface has no public address",
            table.address
        )),
        Some(Target::NatGateway(id)) => {
            let nat = net
                .nat_gateways
                .iter()
                .find(|n| &n.id == id)
                .ok_or_else(|| {
                    format!(
                        "{} names NAT gateway {id}, which the stack lacks",
                        table.address
                    )
                })?;
            let nat_table = net.route_table_of(&nat.subnet);
            match Network::route_for(nat_table, internet).map(|r| &r.target) {
                Some(Target::InternetGateway(igw)) => {
                    Ok(format!("{} → the internet gateway {igw}", nat.address))
                }
                _ => Err(format!(
                    "{} sits in a subnet whose route table ({}) has no route to an internet gateway",
                    nat.address, nat_table.address
                )),
            }
        }
        _ => Err(format!("{} has no route to the internet", table.address)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

/// The other end of a connection, as a security group rule sees it.
enum Other<'a> {
    Internet,
    Place(&'a Place),
}

/// Whether one of `groups`' rules in `direction` admits TCP `port` to or from `other`.
fn admits(
    net: &Network,
    groups: &[String],
    direction: Direction,
    other: &Other<'_>,
    port: u16,
) -> Result<(), String> {
    let rules: Vec<&Rule> = groups
        .iter()
        .filter_map(|g| net.security_groups.get(g))
        .flat_map(|g| match direction {
            Direction::In => g.ingress.iter(),
            Direction::Out => g.egress.iter(),
        })
        .collect();
    let hit = rules.iter().any(|r| {
        r.admits_tcp(port)
            && match (&r.peer, other) {
                (Peer::Cidr(cidr), Other::Internet) => cidr.prefix_len() == 0,
                (Peer::Cidr(cidr), Other::Place(p)) => net
                    .subnets
                    .get(&p.subnet)
                    .is_some_and(|s| cidr.contains(&s.cidr)),
                (Peer::Group(g), Other::Place(p)) => p.groups.contains(g),
                (Peer::Group(_), Other::Internet) => false,
            }
    });
    if hit {
        Ok(())
    } else {
        Err(format!(
            "no {} rule of {} admits TCP {port} {} {}",
            if direction == Direction::In {
                "ingress"
            } else {
                "egress"
            },
            groups.join(", "),
            if direction == Direction::In {
                "from"
            } else {
                "to"
            },
            match other {
                Other::Internet => "the internet".to_owned(),
                Other::Place(p) => format!("{} ({})", p.groups.join(", "), p.subnet),
            }
        ))
    }
}

/// Every flow of the table decided on `layout`: the ones that do not hold (a needed flow that
/// does not open, a forbidden one that does), each with why.
pub fn violations(layout: &Layout<'_>) -> Vec<String> {
    FLOWS
        .iter()
        .filter_map(|flow| match (decide(layout, flow), flow.required) {
            (Ok(_), true) | (Err(_), false) => None,
            (Err(why), true) => Some(format!("needed, does not open: {} ({})", flow.why, why)),
            (Ok(path), false) => Some(format!("forbidden, opens: {} ({path})", flow.why)),
        })
        .collect()
}

/// Where the stack puts each role, by the Terraform address of what carries it: the two
/// functions' VPC configuration, the api service's network configuration (the migration
/// runs in the same), the database's subnet group and groups, the load balancer's subnets
/// and groups (internet-facing unless `internal`).
pub fn layout<'a>(
    network: &'a Network,
    resources: &[crate::Resource],
) -> Result<Layout<'a>, String> {
    let by = |address: &str| {
        resources
            .iter()
            .find(|r| r.address == address)
            .map(|r| &r.values)
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let first = |list: Vec<String>, what: &str| {
        list.into_iter()
            .next()
            .ok_or_else(|| format!("{what} names no subnet"))
    };
    let mut places = BTreeMap::new();
    for (address, role) in [
        ("aws_lambda_function.post_confirm", SignUpFunction),
        ("aws_lambda_function.rotation", RotationFunction),
    ] {
        if let Some(f) = by(address) {
            let vpc = &f["vpc_config"][0];
            places.insert(
                role,
                Place {
                    subnet: first(strings(&vpc["subnet_ids"]), address)?,
                    groups: strings(&vpc["security_group_ids"]),
                    public: false,
                },
            );
        }
    }
    if let Some(service) = by("aws_ecs_service.api") {
        let config = &service["network_configuration"][0];
        places.insert(
            Api,
            Place {
                subnet: first(strings(&config["subnets"]), "aws_ecs_service.api")?,
                groups: strings(&config["security_groups"]),
                public: config["assign_public_ip"].as_bool() == Some(true),
            },
        );
    }
    if let (Some(db), Some(group)) = (by("aws_db_instance.this"), by("aws_db_subnet_group.this")) {
        places.insert(
            Database,
            Place {
                subnet: first(strings(&group["subnet_ids"]), "aws_db_subnet_group.this")?,
                groups: strings(&db["vpc_security_group_ids"]),
                public: db["publicly_accessible"].as_bool() == Some(true),
            },
        );
    }
    if let Some(lb) = by("aws_lb.this") {
        places.insert(
            LoadBalancer,
            Place {
                subnet: first(strings(&lb["subnets"]), "aws_lb.this")?,
                groups: strings(&lb["security_groups"]),
                public: lb["internal"].as_bool() != Some(true),
            },
        );
    }
    let api_port = by("aws_lb_target_group.api")
        .and_then(|tg| tg["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(8080);
    Ok(Layout {
        network,
        places,
        api_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn plan() -> Value {
        serde_json::from_str(include_str!("../fixtures/production-plan.json")).expect("the fixture")
    }

    fn without(mut plan: Value, prefix: &str) -> Value {
        let list = plan["planned_values"]["root_module"]["resources"]
            .as_array_mut()
            .expect("resources");
        let before = list.len();
        list.retain(|r| !r["address"].as_str().is_some_and(|a| a.starts_with(prefix)));
        assert!(list.len() < before, "the plan has no {prefix}");
        plan
    }

    fn violations_of(plan: &Value) -> Vec<String> {
        let resources = crate::resolve_plan(plan);
        let network = Network::from_resources(&resources).expect("the network");
        violations(&layout(&network, &resources).expect("the layout"))
    }

    #[test]
    fn the_shipped_plan_opens_every_needed_flow_and_no_forbidden_one() {
        let plan = plan();
        assert_eq!(violations_of(&plan), Vec::<String>::new());
        let resources = crate::resolve_plan(&plan);
        let network = Network::from_resources(&resources).expect("network");
        let layout = layout(&network, &resources).expect("layout");
        let out = decide(&layout, &FLOWS[0]).expect("the function reaches AWS");
        assert!(
            out.contains("aws_nat_gateway.this[0]") && out.contains("aws_internet_gateway.this"),
            "{out}"
        );
    }

    #[test]
    fn a_plan_without_the_public_association_is_refused_naming_the_nat_gateway() {
        let found = violations_of(&without(plan(), "aws_route_table_association.public"));
        assert!(!found.is_empty());
        assert!(
            found.iter().any(|v| v.contains("AWS's endpoints")
                && v.contains("aws_nat_gateway.this[0]")
                && v.contains("main route table")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|v| v.contains("HTTPS listener")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_plan_without_the_api_ingress_rule_is_refused_naming_the_groups() {
        let found = violations_of(&without(plan(), "aws_security_group_rule.api_from_alb"));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains("load balancer to a task's port")
                && found[0].contains("aws_security_group.api"),
            "{found:#?}"
        );
    }

    #[test]
    fn a_plan_opening_a_forbidden_flow_is_refused() {
        let mut plan = plan();
        let rule = |kind: &str, address: &str, group: &str, source: &str| {
            json!({"address": address, "mode": "managed", "type": "aws_security_group_rule",
                "values": {"type": kind, "from_port": 5432, "to_port": 5432, "protocol": "tcp",
                    "security_group_id": group, "source_security_group_id": source, "cidr_blocks": null}})
        };
        let list = plan["planned_values"]["root_module"]["resources"]
            .as_array_mut()
            .expect("resources");
        list.push(rule(
            "egress",
            "aws_security_group_rule.fn_to_db",
            "aws_security_group.post_confirm",
            "aws_security_group.db",
        ));
        list.push(rule(
            "ingress",
            "aws_security_group_rule.db_from_fn",
            "aws_security_group.db",
            "aws_security_group.post_confirm",
        ));
        let found = violations_of(&plan);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("forbidden, opens: the sign-up function to the database"),
            "{found:#?}"
        );
    }

    #[test]
    fn what_only_apply_knows_is_read_from_the_configuration() {
        let resources = crate::resolve_plan(&plan());
        let by = |a: &str| &resources.iter().find(|r| r.address == a).expect(a).values;
        assert_eq!(by("aws_subnet.private[1]")["id"], "aws_subnet.private[1]");
        // count.index picks the instance; past the last, the last: `min(count.index, …)`.
        assert_eq!(
            by("aws_route_table_association.public[1]")["subnet_id"],
            "aws_subnet.public[1]"
        );
        assert_eq!(
            by("aws_route_table.private[1]")["route"][0]["nat_gateway_id"],
            "aws_nat_gateway.this[0]"
        );
        assert_eq!(
            by("aws_ecs_service.api")["network_configuration"][0]["subnets"],
            json!(["aws_subnet.private[0]", "aws_subnet.private[1]"])
        );
    }
}
