//! The network as deployed, on one machine: network namespaces joined by veth pairs.
//!
//! ```text
//!  lambda 10.20.1.2 ── 10.20.1.1 nat 198.51.100.10 (the "EIP", MASQUERADE) ─┐
//!                                                                            │ internet
//!  attacker 198.51.100.66 (the internet namespace itself, on its bridge) ────┤ 198.51.100.0/24
//!                                                                            │
//!  app 10.20.2.10 ── 10.20.2.1 alb 198.51.100.20 (nginx, appending XFF) ─────┘
//! ```
//!
//! The sign-up function's private subnet reaches the internet only through the NAT, so the
//! api sees its requests come from the NAT's public address, as behind the NAT gateway's
//! Elastic IP. The proxy appends the peer to `X-Forwarded-For` as the ALB does in its default
//! `append` mode, and the app is reachable from the proxy only. The contract is read from the
//! topology ([`World::allowed_cidrs`], [`World::trusted_proxies`]), never written by a test.
//!
//! Needs root (namespaces, veth pairs, iptables), `ip`, `iptables` and `nginx`; building fails
//! with what is missing. Everything is torn down on drop, after a panic too; names are unique
//! per world, so tests may build several at once.

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
/// The load balancer's address inside the VPC, the api's peer.
pub const ALB_VPC: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 1);
/// The api (and whatever else runs in the app subnet).
pub const APP: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 10);

/// Where a program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Lambda,
    Nat,
    Internet,
    Alb,
    App,
}

impl Place {
    const ALL: [Place; 5] = [
        Place::Lambda,
        Place::Nat,
        Place::Internet,
        Place::Alb,
        Place::App,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Place::Lambda => "lambda",
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
    proxy: Option<Process>,
    built: Vec<Place>,
}

impl World {
    /// Builds the five namespaces and their links; logs and configuration go under `dir`.
    pub fn build(dir: &Path) -> Result<Self> {
        preflight()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut world = World {
            // Interface names are at most 15 bytes: "tg" + 6 + "-xx" fits.
            prefix: format!("tg{}", &id[..6]),
            dir: dir.to_owned(),
            proxy: None,
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

    /// The guard's allowlist as `deploy` renders it: the NAT's public address.
    pub fn allowed_cidrs(&self) -> String {
        format!("{NAT_PUBLIC}/32")
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
        self.proxy = Some(Process::spawn(
            "the load balancer (nginx)",
            command,
            &self.dir.join("nginx.log"),
        )?);
        let listen = SocketAddr::from((ALB_PUBLIC, 80));
        self.wait_listening(Place::Alb, listen)?;
        Ok(listen)
    }

    /// Waits (5 s at most) until something listens on `addr` in `place`.
    pub fn wait_listening(&self, place: Place, addr: SocketAddr) -> Result<()> {
        for _ in 0..50 {
            let listening = cmd::output(self.command(place, "ss").args(["-Hltn"]))?;
            if listening.lines().any(|l| l.contains(&addr.to_string())) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bail!("nothing listens on {addr} in {} after 5 s", self.ns(place))
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
        cmd::run(
            self.command(Nat, "sysctl")
                .args(["-qw", "net.ipv4.ip_forward=1"]),
        )?;
        cmd::run(self.command(Nat, "iptables").args([
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &public,
            "-j",
            "MASQUERADE",
        ]))?;
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
}

impl Drop for World {
    fn drop(&mut self) {
        // The proxy first: a namespace lives on while a process is in it.
        drop(self.proxy.take());
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
/// appending the peer to `X-Forwarded-For` as the ALB's `append` mode does.
fn nginx_conf(temp: &Path, upstream_port: u16) -> String {
    let t = temp.display();
    format!(
        "daemon off;\nmaster_process off;\npid {t}/nginx.pid;\nerror_log {t}/error.log;\n\
         events {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
         fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
         server {{\n    listen {ALB_PUBLIC}:80;\n    location / {{\n      \
         proxy_pass http://{APP}:{upstream_port};\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
    )
}
