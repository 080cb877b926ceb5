//! The twin in Linux's terms: namespaces and veth pairs, routing tables and rules, iptables.
//! Each command is one line of `ip` or `iptables` as a person would type it.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::Result;

use super::{Host, IGW_PUBLIC, IGW_VPC, INTERNET, LOCAL_TABLE, ROUTER, Twin, firewall, ns_command};
use crate::cmd;
use stack_model::network::Target;

/// `ip <line>`.
pub(super) fn ip(line: &str) -> Result<()> {
    let ip = cmd::which("ip").unwrap_or_else(|| "/usr/sbin/ip".into());
    cmd::run(Command::new(ip).args(line.split_whitespace()))
}

/// `iptables -w <line>` in namespace `ns`.
fn iptables(ns: &str, line: &str) -> Result<()> {
    cmd::run(
        ns_command(ns, "iptables")
            .arg("-w")
            .args(line.split_whitespace()),
    )
}

/// `sysctl -w key=value` in namespace `ns`.
fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    cmd::run(ns_command(ns, "sysctl").args(["-qw", &format!("{key}={value}")]))
}

impl Twin {
    /// A new namespace named after `suffix`: loopback up, no reverse-path filter (routes are
    /// asymmetric across NAT), no redirects, and 127.0.0.0/8 routable (moto's Elastic IPs).
    pub(super) fn add_namespace(&mut self, suffix: &str) -> Result<String> {
        let ns = self.ns(suffix);
        ip(&format!("netns add {ns}"))?;
        self.namespaces.push(ns.clone());
        ip(&format!("-n {ns} link set lo up"))?;
        // moto's Elastic IPs are in 127.0.0.0/8: only 127.0.0.1 is this namespace's own, so a
        // packet from or to an Elastic IP is routed like any public address.
        ip(&format!(
            "-n {ns} route del local 127.0.0.0/8 dev lo table local"
        ))?;
        for (key, value) in [
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.conf.all.route_localnet", "1"),
            ("net.ipv4.conf.default.route_localnet", "1"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
            ("net.ipv4.conf.all.accept_redirects", "0"),
        ] {
            sysctl(&ns, key, value)?;
        }
        Ok(ns)
    }

    /// A veth pair from namespace `a` (end named `a_name` there) to `b` (`b_name`).
    fn veth(&self, (a, a_name): (&str, &str), (b, b_name): (&str, &str)) -> Result<()> {
        let (left, right) = (format!("{}x", self.prefix), format!("{}y", self.prefix));
        ip(&format!("link add {left} type veth peer name {right}"))?;
        for (end, ns, name) in [(&left, a, a_name), (&right, b, b_name)] {
            ip(&format!("link set {end} netns {ns}"))?;
            ip(&format!("-n {ns} link set {end} name {name}"))?;
            ip(&format!("-n {ns} link set {name} up"))?;
            sysctl(ns, &format!("net.ipv4.conf.{name}.rp_filter"), "0")?;
            sysctl(ns, &format!("net.ipv4.conf.{name}.route_localnet"), "1")?;
        }
        Ok(())
    }

    /// The router's link to the internet gateway, and the gateway's to the internet.
    pub(super) fn wire_gateway(&mut self) -> Result<()> {
        let (rt, igw, inet) = (self.ns("rt"), self.ns("igw"), self.ns("inet"));
        for ns in [&rt, &igw, &inet] {
            sysctl(ns, "net.ipv4.ip_forward", "1")?;
        }
        self.veth((&rt, "gw"), (&igw, "vpc"))?;
        ip(&format!("-n {rt} addr add {ROUTER}/32 dev gw"))?;
        ip(&format!("-n {igw} addr add {IGW_VPC}/32 dev vpc"))?;
        self.veth((&igw, "inet"), (&inet, "igw"))?;
        ip(&format!("-n {igw} addr add {IGW_PUBLIC}/24 dev inet"))?;
        ip(&format!("-n {inet} addr add {INTERNET}/24 dev igw"))?;
        // Each side's link-local address on the gateway link.
        ip(&format!("-n {rt} route add {IGW_VPC}/32 dev gw"))?;
        ip(&format!("-n {igw} route add {ROUTER}/32 dev vpc"))
    }

    /// One interface: its namespace, a veth to the router, its address and default route; the
    /// router's route to it (the VPC's local route) and the gateway's.
    pub(super) fn wire_host(&mut self, host: &Host) -> Result<()> {
        let ns = self.add_namespace(&host.name)?;
        let (rt, igw) = (self.ns("rt"), self.ns("igw"));
        let (address, veth) = (host.address, &host.veth);
        self.veth((&ns, "eth0"), (&rt, veth))?;
        ip(&format!("-n {ns} addr add {address}/32 dev eth0"))?;
        ip(&format!("-n {ns} route add {ROUTER}/32 dev eth0"))?;
        ip(&format!("-n {ns} route add default via {ROUTER} dev eth0"))?;
        ip(&format!("-n {rt} addr add {ROUTER}/32 dev {veth}"))?;
        ip(&format!(
            "-n {rt} route add {address}/32 dev {veth} table {LOCAL_TABLE}"
        ))?;
        ip(&format!(
            "-n {igw} route add {address}/32 via {ROUTER} dev vpc onlink"
        ))
    }

    /// Each route table as a Linux table; each interface's traffic through its subnet's, after
    /// the VPC's local route; from the internet gateway, the local route alone.
    pub(super) fn route_tables(&self) -> Result<()> {
        let rt = self.ns("rt");
        // The VPC's range holds the placed interfaces and nothing else.
        ip(&format!(
            "-n {rt} route add blackhole {} table {LOCAL_TABLE}",
            self.network.vpc_cidr
        ))?;
        let mut numbers = std::collections::BTreeMap::new();
        let tables = std::iter::once(&self.network.main_route_table)
            .chain(self.network.route_tables.values());
        for (i, table) in tables.enumerate() {
            let number = 1000 + i;
            numbers.insert(table.id.clone(), number);
            for route in &table.routes {
                let to = route.destination;
                let how = match &route.target {
                    Target::Local => continue,
                    Target::InternetGateway(id) if self.network.internet_gateways.contains(id) => {
                        format!("{to} via {IGW_VPC} dev gw onlink")
                    }
                    Target::NatGateway(id) => match self.nat_host(id) {
                        Some(nat) => format!("{to} via {} dev {} onlink", nat.address, nat.veth),
                        None => format!("unreachable {to}"),
                    },
                    _ => format!("unreachable {to}"),
                };
                ip(&format!("-n {rt} route add {how} table {number}"))?;
            }
        }
        for host in self.hosts.values() {
            let table = numbers[&self.network.route_table_of(&host.subnet).id];
            let veth = &host.veth;
            ip(&format!(
                "-n {rt} rule add iif {veth} pref 100 lookup {LOCAL_TABLE}"
            ))?;
            ip(&format!(
                "-n {rt} rule add iif {veth} pref 200 lookup {table}"
            ))?;
            ip(&format!("-n {rt} rule add iif {veth} pref 300 unreachable"))?;
        }
        ip(&format!(
            "-n {rt} rule add iif gw pref 100 lookup {LOCAL_TABLE}"
        ))?;
        ip(&format!("-n {rt} rule add iif gw pref 300 unreachable"))
    }

    pub(super) fn is_nat(&self, host: &Host) -> bool {
        (0..self.network.nat_gateways.len()).any(|i| host.name == format!("nat{i}"))
    }

    fn nat_host(&self, nat_id: &str) -> Option<&Host> {
        let index = self
            .network
            .nat_gateways
            .iter()
            .position(|n| n.id == nat_id)?;
        self.hosts.get(&format!("nat{index}"))
    }

    /// Each NAT gateway rewrites what it forwards to its own address, and forwards replies
    /// only (and new connections out of the VPC's range).
    pub(super) fn nat_gateways(&self) -> Result<()> {
        let vpc = self.network.vpc_cidr;
        for i in 0..self.network.nat_gateways.len() {
            let host = &self.hosts[&format!("nat{i}")];
            let (ns, own) = (&host.namespace, host.address);
            sysctl(ns, "net.ipv4.ip_forward", "1")?;
            iptables(
                ns,
                &format!("-t nat -A POSTROUTING -o eth0 ! -s {own} -j SNAT --to-source {own}"),
            )?;
            iptables(
                ns,
                "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            )?;
            iptables(
                ns,
                &format!("-A FORWARD -m conntrack --ctstate NEW ! -d {vpc} -j ACCEPT"),
            )?;
            iptables(ns, "-P FORWARD DROP")?;
        }
        Ok(())
    }

    /// The internet gateway: each private address with a public one, mapped both ways;
    /// nothing else crosses. A public address of the VPC's own, asked from inside the VPC,
    /// is reached out on the internet and back in, as in AWS.
    pub(super) fn internet_gateway(&self) -> Result<()> {
        let (igw, inet) = (self.ns("igw"), self.ns("inet"));
        for (private, public) in self.public_addresses() {
            iptables(
                &igw,
                &format!(
                    "-t nat -A PREROUTING -i inet -d {public} -j DNAT --to-destination {private}"
                ),
            )?;
            iptables(
                &igw,
                &format!("-t nat -A POSTROUTING -o inet -s {private} -j SNAT --to-source {public}"),
            )?;
            iptables(
                &igw,
                &format!("-A FORWARD -i vpc -o inet -s {private} -j ACCEPT"),
            )?;
            ip(&format!(
                "-n {inet} route add {public}/32 via {IGW_PUBLIC} dev igw"
            ))?;
            ip(&format!(
                "-n {igw} route add {public}/32 via {INTERNET} dev inet"
            ))?;
        }
        iptables(
            &igw,
            "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        )?;
        iptables(
            &igw,
            "-A FORWARD -i inet -o vpc -m conntrack --ctstate DNAT -j ACCEPT",
        )?;
        iptables(&igw, "-P FORWARD DROP")
    }

    /// (private, public) for every interface with a public address: the NAT gateways' Elastic
    /// IPs, the load balancer's.
    fn public_addresses(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        let nats = self.network.nat_gateways.iter().enumerate();
        nats.map(|(i, nat)| (self.hosts[&format!("nat{i}")].address, nat.public_ip))
            .chain(
                self.hosts
                    .values()
                    .filter_map(|h| Some((h.address, h.public?))),
            )
            .collect()
    }

    /// The interface's security groups, as a stateful firewall in its namespace.
    pub(super) fn security_groups(&self, host: &Host) -> Result<()> {
        // A NAT gateway has no security group (VPC User Guide, *NAT gateways*); every other
        // interface has its groups, and with none admits nothing.
        if self.is_nat(host) {
            return Ok(());
        }
        for rule in firewall(&self.network, host, self.hosts.values()) {
            cmd::run(ns_command(&host.namespace, "iptables").arg("-w").args(rule))?;
        }
        Ok(())
    }

    /// A route on the internet to `range` through the internet gateway: what someone next to
    /// the gateway could set to reach the VPC's private addresses (the gateway forwards none).
    pub fn route_from_internet(&self, range: &str) -> Result<()> {
        let inet = self.ns("inet");
        ip(&format!(
            "-n {inet} route replace {range} via {IGW_PUBLIC} dev igw"
        ))
    }

    /// Cuts `host` off from `to`: its connections there are refused at once (a fault: the
    /// address unreachable from there), until [`Twin::mend`].
    pub fn cut(&self, host: &str, to: Ipv4Addr) -> Result<()> {
        let ns = self.host(host)?.namespace.clone();
        iptables(
            &ns,
            &format!("-I OUTPUT 1 -d {to}/32 -p tcp -j REJECT --reject-with tcp-reset"),
        )
    }

    /// Undoes [`Twin::cut`].
    pub fn mend(&self, host: &str, to: Ipv4Addr) -> Result<()> {
        let ns = self.host(host)?.namespace.clone();
        iptables(
            &ns,
            &format!("-D OUTPUT -d {to}/32 -p tcp -j REJECT --reject-with tcp-reset"),
        )
    }
}

/// What a poor path does to the packets it carries ([`Twin::degrade`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poor {
    /// Packets dropped at random, in percent.
    pub loss_percent: u8,
    /// The path's rate, kbit/s: a full queue at this rate is the added latency.
    pub kbit: u32,
}

impl Twin {
    /// Drops what `host` sends to `to`, silently (a partition: a connection hangs until the
    /// caller's own timeout gives up), until [`Twin::heal`].
    pub fn blackhole(&self, host: &str, to: Ipv4Addr) -> Result<()> {
        let ns = self.host(host)?.namespace.clone();
        iptables(&ns, &format!("-I OUTPUT 1 -d {to}/32 -j DROP"))
    }

    /// Undoes [`Twin::blackhole`].
    pub fn heal(&self, host: &str, to: Ipv4Addr) -> Result<()> {
        let ns = self.host(host)?.namespace.clone();
        iptables(&ns, &format!("-D OUTPUT -d {to}/32 -j DROP"))
    }

    /// Makes the path through the forwarding `host` (a NAT gateway) to and from `peer` a poor
    /// one, both ways: `poor.loss_percent` of its packets dropped at random, the rest sent at
    /// `poor.kbit` (HTB: this kernel has no `netem`, so latency is a queue's). Until
    /// [`Twin::mend_path`].
    pub fn degrade(&self, host: &str, peer: Ipv4Addr, poor: Poor) -> Result<()> {
        let ns = self.host(host)?.namespace.clone();
        loss(&ns, "-I FORWARD 1", peer, poor)?;
        let tc = |line: &str| cmd::run(ns_command(&ns, "tc").args(line.split_whitespace()));
        tc("qdisc add dev eth0 root handle 1: htb default 10")?;
        tc("class add dev eth0 parent 1: classid 1:10 htb rate 10gbit")?;
        tc(&format!(
            "class add dev eth0 parent 1: classid 1:20 htb rate {k}kbit ceil {k}kbit burst 1600",
            k = poor.kbit.max(8)
        ))?;
        for side in ["dst", "src"] {
            tc(&format!(
                "filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip {side} {peer}/32 flowid 1:20"
            ))?;
        }
        Ok(())
    }

    /// Undoes [`Twin::degrade`].
    pub fn mend_path(&self, host: &str, peer: Ipv4Addr, poor: Poor) -> Result<()> {
        let ns = self.host(host)?.namespace.clone();
        loss(&ns, "-D FORWARD", peer, poor)?;
        cmd::run(ns_command(&ns, "tc").args(["qdisc", "del", "dev", "eth0", "root"]))
    }

    /// The NAT gateways' hosts (`nat0`, …).
    pub fn nat_hosts(&self) -> Vec<String> {
        (0..self.network.nat_gateways.len())
            .map(|i| format!("nat{i}"))
            .collect()
    }
}

/// `poor`'s random loss of what `ns` forwards to and from `peer`: the rules added
/// (`-I FORWARD 1`) or deleted (`-D FORWARD`).
fn loss(ns: &str, chain: &str, peer: Ipv4Addr, poor: Poor) -> Result<()> {
    let probability = f64::from(poor.loss_percent.min(100)) / 100.0;
    for side in ["-d", "-s"] {
        iptables(
            ns,
            &format!(
                "{chain} {side} {peer}/32 -m statistic --mode random --probability {probability} -j DROP"
            ),
        )?;
    }
    Ok(())
}
