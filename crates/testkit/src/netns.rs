//! The network as deployed, on one machine: network namespaces joined by veth pairs.
//!
//! ```text
//!  lambda   10.20.1.2 ── 10.20.1.1 ┐ nat 198.51.100.10 (EIP a; MASQUERADE) ──┐
//!  lambda-b 10.20.4.2 ── 10.20.4.1 ┤     198.51.100.11 (EIP b, per-AZ only)  │ internet
//!  app's way out 10.20.3.10 ─ .3.1 ┘     (no connection opened from outside) │ 198.51.100.0/24
//!                                                                             │
//!  attacker 198.51.100.66 and AWS's endpoint 198.51.100.30 (moto) ───────────┤
//!                                                                             │
//!  app 10.20.2.10 ── 10.20.2.1 alb 198.51.100.20 (nginx, appending XFF) ──────┘
//! ```
//!
//! The private subnets (the sign-up function in two AZs, and the api's way out to AWS's
//! endpoints) reach the internet only through the NAT, so the api sees the function's requests
//! come from the NAT's public address, as behind the NAT gateway's Elastic IP; like a NAT
//! gateway, it forwards no connection opened from the internet. With [`Nats::PerAz`] the
//! second subnet leaves through a second address, as with a NAT gateway per AZ. The proxy
//! appends the peer to `X-Forwarded-For` as the ALB does in its default `append` mode, and the
//! app is reachable from the proxy only. moto plays AWS's public endpoints. The contract is
//! read from the topology ([`World::allowed_cidrs`], [`World::trusted_proxies`]), never
//! written by a test.
//!
//! Needs root (namespaces, veth pairs, iptables), `ip`, `iptables` and `nginx`; building fails
//! with what is missing. Everything is torn down on drop, after a panic too; names are unique
//! per world, so tests may build several at once.

pub mod claim;

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::process::Process;

/// The sign-up function, in its private subnet.
pub const LAMBDA: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 2);
/// The NAT's side of the private subnet: the function's default route.
pub const NAT_PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 1);
/// The NAT's public address, the Elastic IP the guard allows.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The load balancer's public address.
pub const ALB_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
/// Someone else on the internet.
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
/// The second AZ's sign-up subnet, and the NAT's side of it.
pub const LAMBDA_B: Ipv4Addr = Ipv4Addr::new(10, 20, 4, 2);
pub const NAT_PRIVATE_B: Ipv4Addr = Ipv4Addr::new(10, 20, 4, 1);
/// The second Elastic IP (a NAT gateway per AZ).
pub const NAT_PUBLIC_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
/// AWS's public endpoints (moto), on the internet.
pub const AWS_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
/// The api's way out (to AWS's endpoints, through the NAT), and the NAT's side of it.
pub const APP_EGRESS: Ipv4Addr = Ipv4Addr::new(10, 20, 3, 10);
pub const NAT_APP: Ipv4Addr = Ipv4Addr::new(10, 20, 3, 1);

/// One NAT address for every private subnet, or one per AZ (`deploy.nat_gateways`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nats {
    Single,
    PerAz,
}
/// The load balancer's address inside the VPC, the api's peer.
pub const ALB_VPC: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 1);
/// The api (and whatever else runs in the app subnet).
pub const APP: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 10);

/// Where a program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Lambda,
    LambdaB,
    Nat,
    Internet,
    Alb,
    App,
}

impl Place {
    const ALL: [Place; 6] = [
        Place::Lambda,
        Place::LambdaB,
        Place::Nat,
        Place::Internet,
        Place::Alb,
        Place::App,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Place::Lambda => "lambda",
            Place::LambdaB => "lambdb",
            Place::Nat => "nat",
            Place::Internet => "inet",
            Place::Alb => "alb",
            Place::App => "app",
        }
    }
}

/// One topology, removed when dropped.
#[derive(Debug)]
pub struct World {
    prefix: String,
    dir: PathBuf,
    nats: Nats,
    /// Processes living in the namespaces (proxy, moto, …), stopped before they are removed.
    services: Vec<Process>,
    built: Vec<Place>,
}

impl World {
    /// Builds the namespaces and their links; logs and configuration go under `dir`.
    pub fn build(dir: &Path) -> Result<Self> {
        Self::build_with(dir, Nats::Single)
    }

    /// [`World::build`] with one NAT address for both sign-up subnets, or one each.
    pub fn build_with(dir: &Path, nats: Nats) -> Result<Self> {
        preflight()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut world = World {
            // Interface names are at most 15 bytes: "tg" + 6 + "-xx" fits.
            prefix: format!("tg{}", &id[..6]),
            dir: dir.to_owned(),
            nats,
            services: Vec::new(),
            built: Vec::new(),
        };
        for place in Place::ALL {
            ip(&["netns", "add", &world.ns(place)])?;
            world.built.push(place);
            world.ip_in(place, &["link", "set", "lo", "up"])?;
        }
        world.wire()?;
        Ok(world)
    }

    /// The namespace's name.
    pub fn ns(&self, place: Place) -> String {
        format!("{}-{}", self.prefix, place.suffix())
    }

    /// `program` to run in `place` (add arguments and environment, then spawn or run it).
    pub fn command(&self, place: Place, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(place)])
            .arg(program);
        command
    }

    /// The guard's allowlist as `deploy` renders it: each NAT address, as a /32.
    pub fn allowed_cidrs(&self) -> String {
        match self.nats {
            Nats::Single => format!("{NAT_PUBLIC}/32"),
            Nats::PerAz => format!("{NAT_PUBLIC}/32,{NAT_PUBLIC_B}/32"),
        }
    }

    /// The AWS endpoint as the namespaces reach it (moto, started by [`World::start_aws`]).
    pub fn aws_endpoint(&self) -> String {
        format!("http://{AWS_PUBLIC}:4566")
    }

    /// Starts moto_server as AWS's public endpoints, on the internet; returns its endpoint.
    pub fn start_aws(&mut self) -> Result<String> {
        let moto = cmd::which("moto_server").context(
            "moto_server not found: `pip install 'moto[server]'` (or `cargo xtask setup`)",
        )?;
        let mut command = self.command(Place::Internet, moto);
        command
            .args(["-H", &AWS_PUBLIC.to_string(), "-p", "4566"])
            .envs(crate::services::MOTO_ENV.iter().map(|(k, v, _)| (k, v)));
        let log = self.dir.join("moto.log");
        self.services
            .push(Process::spawn("moto_server (AWS)", command, &log)?);
        self.wait_listening_for(Place::Internet, (AWS_PUBLIC, 4566).into(), 300)?;
        Ok(self.aws_endpoint())
    }

    /// Moves the calling thread into `place`: every socket it (and any thread it starts) opens
    /// from now on is there, as a program run there would be. For a test that speaks as the
    /// internet does, or a server that must listen inside a namespace.
    pub fn enter(&self, place: Place) -> Result<()> {
        enter_namespace(&format!("/var/run/netns/{}", self.ns(place)))
    }

    /// Runs `f` on a thread of its own inside `place` and returns what it gives: a listener it
    /// binds (and the threads it starts) stay there.
    pub fn inside<T: Send + 'static>(
        &self,
        place: Place,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.ns(place));
        let handle = std::thread::spawn(move || -> Result<T> {
            enter_namespace(&path)?;
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the thread inside the namespace panicked"))?
    }

    /// The proxies whose `X-Forwarded-For` entries the api believes: the load balancer's side
    /// of the app subnet.
    pub fn trusted_proxies(&self) -> String {
        format!("{ALB_VPC}/32")
    }

    /// Starts the load balancer: nginx on the public address, port 80, forwarding to
    /// `APP:upstream_port` and appending the peer to `X-Forwarded-For`. Returns its address.
    pub fn start_proxy(&mut self, upstream_port: u16) -> Result<SocketAddr> {
        let conf = self.dir.join("nginx.conf");
        let temp = self.dir.join("nginx");
        std::fs::create_dir_all(&temp)?;
        std::fs::write(&conf, nginx_conf(&temp, upstream_port))?;
        let mut command = self.command(Place::Alb, "nginx");
        command
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(temp.join("error.log"));
        self.services.push(Process::spawn(
            "the load balancer (nginx)",
            command,
            &self.dir.join("nginx.log"),
        )?);
        // The api's security group: its port from the load balancer only.
        let port = upstream_port.to_string();
        let alb = ALB_VPC.to_string();
        for rule in [
            [
                "-A", "INPUT", "-p", "tcp", "--dport", &port, "-s", &alb, "-j", "ACCEPT",
            ],
            [
                "-A", "INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP", "", "",
            ],
        ] {
            let args: Vec<&str> = rule.into_iter().filter(|a| !a.is_empty()).collect();
            cmd::run(self.command(Place::App, "iptables").args(args))?;
        }
        let listen = SocketAddr::from((ALB_PUBLIC, 80));
        self.wait_listening(Place::Alb, listen)?;
        Ok(listen)
    }

    /// Waits (5 s at most) until something listens on `addr` in `place`.
    pub fn wait_listening(&self, place: Place, addr: SocketAddr) -> Result<()> {
        self.wait_listening_for(place, addr, 50)
    }

    fn wait_listening_for(&self, place: Place, addr: SocketAddr, tenths: u32) -> Result<()> {
        for _ in 0..tenths {
            let listening = cmd::output(self.command(place, "ss").args(["-Hltn"]))?;
            if listening.lines().any(|l| l.contains(&addr.to_string())) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bail!(
            "nothing listens on {addr} in {} after {} s",
            self.ns(place),
            tenths / 10
        )
    }

    fn ip_in(&self, place: Place, args: &[&str]) -> Result<()> {
        let ns = self.ns(place);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A veth pair from `a` to `b`, named `<prefix>-<a_end>` and `<prefix>-<b_end>`.
    fn link(
        &self,
        (a, a_end): (Place, &str),
        (b, b_end): (Place, &str),
    ) -> Result<(String, String)> {
        let (left, right) = (
            format!("{}-{a_end}", self.prefix),
            format!("{}-{b_end}", self.prefix),
        );
        ip(&["link", "add", &left, "type", "veth", "peer", "name", &right])?;
        ip(&["link", "set", &left, "netns", &self.ns(a)])?;
        ip(&["link", "set", &right, "netns", &self.ns(b)])?;
        self.ip_in(a, &["link", "set", &left, "up"])?;
        self.ip_in(b, &["link", "set", &right, "up"])?;
        Ok((left, right))
    }

    fn wire(&self) -> Result<()> {
        use Place::*;
        // The internet: a bridge, on which the attacker is the namespace itself.
        self.ip_in(Internet, &["link", "add", "br0", "type", "bridge"])?;
        self.ip_in(Internet, &["link", "set", "br0", "up"])?;
        self.ip_in(
            Internet,
            &["addr", "add", &format!("{ATTACKER}/24"), "dev", "br0"],
        )?;
        // The private subnet and the NAT.
        let (l, n) = self.link((Lambda, "l0"), (Nat, "n0"))?;
        self.ip_in(Lambda, &["addr", "add", &format!("{LAMBDA}/24"), "dev", &l])?;
        self.ip_in(
            Lambda,
            &["route", "add", "default", "via", &NAT_PRIVATE.to_string()],
        )?;
        self.ip_in(
            Nat,
            &["addr", "add", &format!("{NAT_PRIVATE}/24"), "dev", &n],
        )?;
        let (public, port) = self.link((Nat, "n1"), (Internet, "i1"))?;
        self.ip_in(
            Nat,
            &["addr", "add", &format!("{NAT_PUBLIC}/24"), "dev", &public],
        )?;
        self.ip_in(Internet, &["link", "set", &port, "master", "br0"])?;
        self.ip_in(
            Internet,
            &["addr", "add", &format!("{AWS_PUBLIC}/24"), "dev", "br0"],
        )?;
        self.wire_second_az_and_app_egress(&public)?;
        self.wire_nat(&public)?;
        // The load balancer: public on the internet, private toward the app subnet.
        let (alb_public, port) = self.link((Alb, "a1"), (Internet, "i2"))?;
        self.ip_in(
            Alb,
            &[
                "addr",
                "add",
                &format!("{ALB_PUBLIC}/24"),
                "dev",
                &alb_public,
            ],
        )?;
        self.ip_in(Internet, &["link", "set", &port, "master", "br0"])?;
        let (alb_vpc, app) = self.link((Alb, "a2"), (App, "p0"))?;
        self.ip_in(
            Alb,
            &["addr", "add", &format!("{ALB_VPC}/24"), "dev", &alb_vpc],
        )?;
        self.ip_in(App, &["addr", "add", &format!("{APP}/24"), "dev", &app])?;
        Ok(())
    }

    /// The second AZ's sign-up subnet and the api's way out, both behind the NAT.
    fn wire_second_az_and_app_egress(&self, public: &str) -> Result<()> {
        use Place::*;
        for (place, (ends, inner, nat_side)) in [
            (LambdaB, (("b0", "n2"), LAMBDA_B, NAT_PRIVATE_B)),
            (App, (("p1", "n3"), APP_EGRESS, NAT_APP)),
        ] {
            let (inside, nat) = self.link((place, ends.0), (Nat, ends.1))?;
            self.ip_in(
                place,
                &["addr", "add", &format!("{inner}/24"), "dev", &inside],
            )?;
            self.ip_in(
                place,
                &["route", "add", "default", "via", &nat_side.to_string()],
            )?;
            self.ip_in(
                Nat,
                &["addr", "add", &format!("{nat_side}/24"), "dev", &nat],
            )?;
        }
        if self.nats == Nats::PerAz {
            self.ip_in(
                Nat,
                &["addr", "add", &format!("{NAT_PUBLIC_B}/24"), "dev", public],
            )?;
        }
        Ok(())
    }

    /// Forwarding out through MASQUERADE (the second AZ through its own address when per-AZ),
    /// and, as a NAT gateway, no connection opened from the internet side.
    fn wire_nat(&self, public: &str) -> Result<()> {
        use Place::*;
        cmd::run(
            self.command(Nat, "sysctl")
                .args(["-qw", "net.ipv4.ip_forward=1"]),
        )?;
        let iptables = |args: &[&str]| cmd::run(self.command(Nat, "iptables").args(args));
        if self.nats == Nats::PerAz {
            let subnet = format!("{LAMBDA_B}/24");
            let to = NAT_PUBLIC_B.to_string();
            iptables(&[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                &subnet,
                "-o",
                public,
                "-j",
                "SNAT",
                "--to-source",
                &to,
            ])?;
        }
        iptables(&[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            public,
            "-j",
            "MASQUERADE",
        ])?;
        iptables(&[
            "-A",
            "FORWARD",
            "-i",
            public,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ])?;
        iptables(&["-A", "FORWARD", "-i", public, "-j", "DROP"])
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // The processes first: a namespace lives on while a process is in it.
        self.services.clear();
        for place in self.built.drain(..).rev() {
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "del",
                    &format!("{}-{}", self.prefix, place.suffix()),
                ])
                .status();
        }
    }
}

/// setns(2) for the calling thread into the network namespace at `path`.
pub(crate) fn enter_namespace(path: &str) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {path}"))
}

fn ip(args: &[&str]) -> Result<()> {
    cmd::run(Command::new("ip").args(args))
}

/// Root and the tools, or one message naming everything missing and how to get it.
fn preflight() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    let missing: Vec<&str> = ["ip", "iptables", "nginx", "ss"]
        .into_iter()
        .filter(|p| cmd::which(p).is_none())
        .collect();
    if euid != "0" || !missing.is_empty() {
        bail!(
            "the deployed network needs root (network namespaces, veth pairs, iptables) and \
             ip, iptables, nginx and ss; effective uid {euid}, missing: {missing:?}. As root: \
             apt-get install -y iproute2 iptables nginx-light (CI runs as root)"
        );
    }
    Ok(())
}

/// One nginx process (no master/worker split, so the process the world kills is all of it),
/// appending the peer to `X-Forwarded-For` as the ALB's `append` mode does
/// (`$proxy_add_x_forwarded_for`: the incoming lines joined, then the peer), and dropping
/// header fields with invalid names as the ALB's `drop_invalid_header_fields` does
/// (`ignore_invalid_headers on`, `underscores_in_headers off`: letters, digits and `-` only).
fn nginx_conf(temp: &Path, upstream_port: u16) -> String {
    let t = temp.display();
    format!(
        "daemon off;\nmaster_process off;\npid {t}/nginx.pid;\nerror_log {t}/error.log;\n\
         events {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
         fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
         ignore_invalid_headers on;\n  underscores_in_headers off;\n  \
         server {{\n    listen {ALB_PUBLIC}:80;\n    location / {{\n      \
         proxy_pass http://{APP}:{upstream_port};\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
    )
}
