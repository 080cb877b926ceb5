//! The network twin: the VPC a Terraform state describes, built in network namespaces so the
//! real binaries can run where the stack puts them and every packet takes the way AWS would
//! give it.
//!
//! ```text
//!   host (an ENI)      router (the VPC's implicit router)     igw                 internet
//!   X/32 ── eth0 ──── r<i> 169.254.0.1 ─┐  per-subnet route   1:1 NAT private ↔   AWS's endpoints,
//!   (its security    (one veth per ENI) │  tables (ip rule    public (EIPs, the   the attacker,
//!    groups as        NAT gateway: an   ├─ iif r<i>), the     ALB's address);     anyone
//!    iptables)        ENI that SNATs    │  VPC's local route  forwards nothing
//!                                       └─ gw ─────────────── vpc   inet ─────── igw 198.51.100.1
//! ```
//!
//! What comes from the state ([`stack_model::Network`]): the subnets, every route table with its
//! routes and which subnets use it (a subnet without an association uses the VPC's main
//! table), the internet gateway, each NAT gateway in its subnet with its Elastic IP, and each
//! security group's rules. What the caller places ([`Placement`]) is what AWS would put there
//! at run time: a task's or a function's network interface in its subnet with its groups, the
//! database's, the load balancer's. Addresses AWS picks are taken from the caller (an ECS
//! task's, as ECS reports it) or given out from the subnet's range; public addresses of
//! load-balancer nodes are given out deterministically.
//!
//! How AWS's parts become Linux's:
//! - **Routing**: one namespace plays the VPC router. Each interface has a veth to it; an
//!   `ip rule` per veth sends what that interface sends through its subnet's route table (a
//!   Linux table of the same routes: the internet gateway, a NAT gateway's address, or
//!   `unreachable`), after the VPC's local route (every interface's /32, and nothing else of
//!   the VPC's range). A destination no route names is unreachable, as in AWS.
//! - **NAT gateway**: a namespace in its subnet that rewrites what it forwards to its own
//!   address; the internet gateway maps that address to the Elastic IP. It forwards replies
//!   only: nothing from outside opens a connection through it.
//! - **Internet gateway**: maps each private address that has a public one (the NAT gateways'
//!   Elastic IPs, the load balancer's address) both ways, and forwards nothing else between
//!   the VPC and the internet.
//! - **Security groups**: iptables in the interface's namespace, stateful (conntrack): each
//!   rule of each group as an ACCEPT for its peers (a CIDR, or every placed interface of the
//!   referenced group), everything else dropped.
//!
//! moto's Elastic IPs are in 127.0.0.0/8: the namespaces that carry them accept such addresses
//! off the loopback interface (`route_localnet`), as AWS's addresses are plain public ones.
//!
//! Needs root, `ip` and `iptables`. Dropping the twin stops what runs in it and removes every
//! namespace.

pub mod alb;
pub mod endpoint;
mod linux;

pub use linux::Poor;
pub mod waf;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;

use crate::cmd;
use crate::process::Process;
use stack_model::network::{Network, Peer};

/// The router's address on every veth: each interface's gateway.
const ROUTER: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
/// The internet gateway's address toward the router.
const IGW_VPC: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 2);
/// The internet gateway's address on the internet.
pub const IGW_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// The internet's own address on its link to the gateway.
const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// AWS's public endpoints (moto), on the internet.
pub const AWS_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
/// Someone else on the internet.
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
/// Where public addresses AWS hands out (a load balancer's nodes) are taken from.
const PUBLIC_POOL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 0);
/// The VPC's local route in the router.
const LOCAL_TABLE: u32 = 100;

/// A network interface AWS would create at run time, placed in the twin.
#[derive(Debug, Clone)]
pub struct Placement {
    /// A short name (letters, digits, `-`): the namespace is named after it.
    pub name: String,
    pub subnet: String,
    /// Its private address, when AWS reported one (an ECS task's); else one is given out
    /// from the subnet's range.
    pub address: Option<Ipv4Addr>,
    pub groups: Vec<String>,
    /// Whether it has a public address too (an internet-facing load balancer's node).
    pub public: bool,
}

/// A placed interface.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub namespace: String,
    pub subnet: String,
    pub address: Ipv4Addr,
    pub public: Option<Ipv4Addr>,
    pub groups: Vec<String>,
    veth: String,
}

/// One twin, removed when dropped.
#[derive(Debug)]
pub struct Twin {
    prefix: String,
    dir: PathBuf,
    pub network: Network,
    hosts: BTreeMap<String, Host>,
    /// Processes living in the namespaces, by name, stopped before the namespaces go.
    services: Vec<(String, Process)>,
    namespaces: Vec<String>,
    /// `/etc/netns/<ns>` folders written for `ip netns exec`'s per-namespace files.
    etc: Vec<PathBuf>,
}

impl Twin {
    /// Builds `network` with the interfaces `placements` (NAT gateways are placed from the
    /// network itself); logs and configuration go under `dir`.
    pub fn build(network: Network, placements: &[Placement], dir: &Path) -> Result<Self> {
        preflight()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut twin = Twin {
            // Interface names are at most 15 bytes: "tw" + 5 + "-" + 6 fits.
            prefix: format!("tw{}", &id[..5]),
            dir: dir.to_owned(),
            network,
            hosts: BTreeMap::new(),
            services: Vec::new(),
            namespaces: Vec::new(),
            etc: Vec::new(),
        };
        twin.assign(placements)?;
        for ns in ["rt", "igw", "inet"] {
            twin.add_namespace(ns)?;
        }
        twin.wire_gateway()?;
        let hosts: Vec<Host> = twin.hosts.values().cloned().collect();
        for host in &hosts {
            twin.wire_host(host)?;
        }
        twin.route_tables()?;
        twin.nat_gateways()?;
        twin.internet_gateway()?;
        for host in &hosts {
            twin.security_groups(host)?;
        }
        Ok(twin)
    }

    /// Addresses for every interface: the NAT gateways', then the placements'.
    fn assign(&mut self, placements: &[Placement]) -> Result<()> {
        let mut taken: Vec<Ipv4Addr> = placements.iter().filter_map(|p| p.address).collect();
        taken.extend(
            self.network
                .nat_gateways
                .iter()
                .filter_map(|n| n.private_ip),
        );
        let mut all: Vec<Placement> = self
            .network
            .nat_gateways
            .iter()
            .enumerate()
            .map(|(i, nat)| Placement {
                name: format!("nat{i}"),
                subnet: nat.subnet.clone(),
                address: nat.private_ip,
                groups: Vec::new(),
                public: false,
            })
            .collect();
        all.extend(placements.iter().cloned());
        let mut public_next = 10u8;
        for placement in all {
            let subnet = self
                .network
                .subnets
                .get(&placement.subnet)
                .with_context(|| {
                    format!(
                        "{} is placed in {}, which the state lacks",
                        placement.name, placement.subnet
                    )
                })?;
            let address = match placement.address {
                Some(a) => a,
                None => {
                    let a = free_address(subnet.cidr, &taken).with_context(|| {
                        format!(
                            "no address left in {} for {}",
                            subnet.address, placement.name
                        )
                    })?;
                    taken.push(a);
                    a
                }
            };
            let public = placement.public.then(|| {
                public_next += 1;
                let o = PUBLIC_POOL.octets();
                Ipv4Addr::new(o[0], o[1], o[2], public_next)
            });
            if self.hosts.contains_key(&placement.name) {
                bail!("two interfaces are named {}", placement.name);
            }
            let index = self.hosts.len();
            self.hosts.insert(
                placement.name.clone(),
                Host {
                    namespace: format!("{}-{}", self.prefix, placement.name),
                    name: placement.name,
                    subnet: placement.subnet,
                    address,
                    public,
                    groups: placement.groups,
                    veth: format!("{}r{index}", self.prefix),
                },
            );
        }
        Ok(())
    }

    /// The interface named `name`.
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .get(name)
            .with_context(|| format!("no interface {name} in the twin"))
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    /// The Elastic IPs the NAT gateways leave from.
    pub fn nat_addresses(&self) -> Vec<Ipv4Addr> {
        self.network
            .nat_gateways
            .iter()
            .map(|n| n.public_ip)
            .collect()
    }

    /// `program` to run in the interface `host`'s namespace.
    pub fn command(&self, host: &str, program: impl AsRef<OsStr>) -> Result<Command> {
        Ok(ns_command(&self.host(host)?.namespace, program))
    }

    /// `program` to run on the internet.
    pub fn internet_command(&self, program: impl AsRef<OsStr>) -> Command {
        ns_command(&self.ns("inet"), program)
    }

    /// Starts `command` (from [`Twin::command`]) as the twin's service `name`, its output in
    /// `<name>.log` under the twin's folder; stopped when the twin is dropped.
    pub fn spawn(&mut self, name: &str, command: Command) -> Result<PathBuf> {
        if self.services.iter().any(|(n, _)| n == name) {
            bail!("a service {name} runs already");
        }
        let log = self.dir.join(format!("{name}.log"));
        self.services
            .push((name.to_owned(), Process::spawn(name, command, &log)?));
        Ok(log)
    }

    /// The service `name`, to wait for, stop or ask of.
    pub fn service(&mut self, name: &str) -> Result<&mut Process> {
        self.services
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .with_context(|| format!("no service {name} in the twin"))
    }

    /// Forgets the service `name` (stopping it first if it still runs).
    pub fn remove_service(&mut self, name: &str) {
        self.services.retain(|(n, _)| n != name);
    }

    /// Runs `f` on a thread inside `host`'s namespace (or the internet's, for `None`) and
    /// returns what it gives: a socket it opens stays there.
    pub fn inside<T: Send + 'static>(
        &self,
        host: Option<&str>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let ns = match host {
            Some(h) => self.host(h)?.namespace.clone(),
            None => self.ns("inet"),
        };
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || -> Result<T> {
            enter_namespace(&path)?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread inside {ns} panicked"))?
    }

    /// Serves `upstream` (on this machine's loopback) at `at` on the internet: a TCP relay.
    /// Call it from a thread in this machine's own namespace.
    pub fn serve_on_internet(&self, at: SocketAddrV4, upstream: SocketAddr) -> Result<()> {
        self.inet_address(*at.ip())?;
        let listener = self.inside(None, move || TcpListener::bind(at))??;
        relay(listener, upstream);
        Ok(())
    }

    /// Serves moto (on this machine's loopback) as AWS's endpoints at `at` on the internet,
    /// its answers corrected where the SDKs refuse moto's shapes ([`endpoint::CORRECTIONS`]).
    /// Call it from a thread in this machine's own namespace.
    pub fn serve_aws(&self, at: SocketAddrV4, moto: SocketAddr) -> Result<()> {
        self.inet_address(*at.ip())?;
        let listener = self.inside(None, move || TcpListener::bind(at))??;
        endpoint::serve(listener, moto)
    }

    /// Gives the internet one more address of its own (the attacker's, AWS's).
    pub fn inet_address(&self, address: Ipv4Addr) -> Result<()> {
        let inet = self.ns("inet");
        let exists = cmd::output(Command::new("ip").args(["-n", &inet, "-4", "addr"]))?;
        if exists.contains(&format!("inet {address}/")) {
            return Ok(());
        }
        linux::ip(&format!("-n {inet} addr add {address}/32 dev igw"))
    }

    /// Writes `/etc/hosts` as processes run with `ip netns exec` in `host`'s namespace see it
    /// (or the internet's, for `None`): the names AWS's DNS would answer, as given.
    pub fn set_hosts(&mut self, host: Option<&str>, entries: &[(String, Ipv4Addr)]) -> Result<()> {
        let ns = match host {
            Some(h) => self.host(h)?.namespace.clone(),
            None => self.ns("inet"),
        };
        let dir = PathBuf::from("/etc/netns").join(&ns);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, address) in entries {
            text.push_str(&format!("{address} {name}\n"));
        }
        std::fs::write(dir.join("hosts"), text)?;
        if !self.etc.contains(&dir) {
            self.etc.push(dir);
        }
        Ok(())
    }

    /// Where the twin keeps its logs and files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ns(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        // The processes first: a namespace lives on while a process is in it.
        self.services.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        for dir in self.etc.drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The iptables commands (arguments after `iptables`) of `host`'s security groups: stateful,
/// loopback free, each rule's peers accepted, the rest dropped. A group peer is every placed
/// interface of that group.
pub fn firewall<'a>(
    network: &Network,
    host: &Host,
    everyone: impl Iterator<Item = &'a Host> + Clone,
) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    for chain in ["INPUT", "OUTPUT"] {
        let lo = if chain == "INPUT" { "-i" } else { "-o" };
        out.push(s(&["-A", chain, lo, "lo", "-j", "ACCEPT"]));
        out.push(s(&[
            "-A",
            chain,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]));
    }
    for group in &host.groups {
        let Some(sg) = network.security_groups.get(group) else {
            continue;
        };
        for (chain, rules, side) in [("INPUT", &sg.ingress, "-s"), ("OUTPUT", &sg.egress, "-d")] {
            for rule in rules {
                let peers: Vec<String> = match &rule.peer {
                    Peer::Cidr(net) => vec![net.to_string()],
                    Peer::Group(g) => everyone
                        .clone()
                        .filter(|h| h.groups.contains(g))
                        .map(|h| format!("{}/32", h.address))
                        .collect(),
                };
                for peer in peers {
                    let mut args = s(&["-A", chain, side, &peer, "-p", &rule.protocol.iptables()]);
                    if let Some((lo, hi)) = rule.ports {
                        args.extend(s(&["--dport", &format!("{lo}:{hi}")]));
                    }
                    args.extend(s(&["-j", "ACCEPT"]));
                    out.push(args);
                }
            }
        }
    }
    for chain in ["INPUT", "OUTPUT"] {
        out.push(s(&["-P", chain, "DROP"]));
    }
    out
}

/// setns(2) for the calling thread into the network namespace at `path`.
fn enter_namespace(path: &str) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {path}"))
}

/// The first address of `cidr` that AWS would give out and nobody has: AWS keeps the first
/// four and the last (VPC User Guide, *Subnet CIDR blocks*).
fn free_address(cidr: Ipv4Net, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let first = u32::from(cidr.network()) + 4;
    let last = u32::from(cidr.broadcast()).checked_sub(1)?;
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|a| !taken.contains(a))
}

/// `ip netns exec <ns> <program>`, `ip` named by its path: the caller may clear the
/// environment (and with it `PATH`) for the program.
fn ns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let ip = cmd::which("ip").unwrap_or_else(|| PathBuf::from("/usr/sbin/ip"));
    let mut command = Command::new(ip);
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// Pipes every connection `listener` accepts to `upstream`, both ways, on threads of their
/// own; the connections to `upstream` are opened from this thread's namespace.
fn relay(listener: TcpListener, upstream: SocketAddr) {
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            let (mut client, mut server) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client, &mut server);
                let _ = server.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

/// Root and the tools, or one message naming everything missing and how to get it.
fn preflight() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    let missing: Vec<&str> = ["ip", "iptables", "sysctl"]
        .into_iter()
        .filter(|p| cmd::which(p).is_none())
        .collect();
    if euid != "0" || !missing.is_empty() {
        bail!(
            "the network twin needs root (network namespaces, veth pairs, iptables) and ip, \
             iptables and sysctl; effective uid {euid}, missing: {missing:?}. As root: apt-get \
             install -y iproute2 iptables procps (CI runs as root)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_what_aws_keeps_and_what_is_taken() {
        let net: Ipv4Net = "10.20.0.0/28".parse().expect("cidr");
        assert_eq!(free_address(net, &[]), Some(Ipv4Addr::new(10, 20, 0, 4)));
        let taken = [Ipv4Addr::new(10, 20, 0, 4), Ipv4Addr::new(10, 20, 0, 5)];
        assert_eq!(free_address(net, &taken), Some(Ipv4Addr::new(10, 20, 0, 6)));
        let full: Vec<Ipv4Addr> = (4..=14).map(|i| Ipv4Addr::new(10, 20, 0, i)).collect();
        assert_eq!(free_address(net, &full), None, "the last address is AWS's");
    }
}
