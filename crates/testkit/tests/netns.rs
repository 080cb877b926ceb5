//! The deployed network's addresses, as the api will see them: the sign-up function's requests
//! arrive from the NAT's public address, an attacker's from its own however it spoofs
//! `X-Forwarded-For`, and nothing reaches the app but through the proxy. The contract read
//! from the topology allows the first and refuses the rest, by the api's own rule
//! (`shared_auth::client_ip`).

use std::net::IpAddr;

use ipnet::IpNet;
use testkit::netns::{self, Place, World};

/// Answers every GET with the TCP peer and each `X-Forwarded-For` line, one per line.
const ECHO: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        lines = [self.client_address[0]] + (self.headers.get_all("X-Forwarded-For") or [])
        body = "\n".join(lines).encode()
        self.send_response(200); self.send_header("content-length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

/// A GET from `place`, with `headers`: the echo's lines, or `None` when nothing answers.
fn get(world: &World, place: Place, url: &str, headers: &[(&str, &str)]) -> Option<Vec<String>> {
    let script = "import sys, urllib.request\n\
        r = urllib.request.Request(sys.argv[1])\n\
        [r.add_header(k, v) for k, v in zip(sys.argv[2::2], sys.argv[3::2])]\n\
        print(urllib.request.urlopen(r, timeout=2).read().decode())";
    let mut command = world.command(place, "python3");
    command.args(["-c", script, url]);
    for (k, v) in headers {
        command.args([k, v]);
    }
    let out = command.output().expect("python3 runs");
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .map(str::to_owned)
            .collect()
    })
}

/// The caller the api would see, from the echo's lines, by the contract of `world`.
fn caller(world: &World, echoed: &[String]) -> Option<IpAddr> {
    let trusted: Vec<IpNet> = vec![world.trusted_proxies().parse().expect("cidr")];
    let peer: IpAddr = echoed[0].parse().expect("peer");
    shared_auth::client_ip::client_ip(peer, echoed[1..].iter().map(|l| l.as_bytes()), &trusted)
}

#[test]
fn the_function_arrives_from_the_nat_and_an_attacker_from_itself_whatever_it_writes() {
    let dir =
        std::env::temp_dir().join(format!("tollgate-netns-{}", uuid::Uuid::new_v4().simple()));
    let mut world = World::build(&dir).expect("the deployed network");
    let mut echo = world.command(Place::App, "python3");
    echo.args(["-c", ECHO, &netns::APP.to_string(), "8080"]);
    let _app = testkit::process::Process::spawn("echo", echo, &dir.join("echo.log")).expect("echo");
    world
        .wait_listening(Place::App, (netns::APP, 8080).into())
        .expect("echo listens");
    let alb = world.start_proxy(8080).expect("proxy");
    let url = format!("http://{alb}/user");
    let allowed: IpNet = world.allowed_cidrs().parse().expect("cidr");

    let from_lambda = get(&world, Place::Lambda, &url, &[]).expect("the function reaches the ALB");
    assert_eq!(
        from_lambda[0],
        netns::ALB_VPC.to_string(),
        "the api's peer is the proxy"
    );
    let seen = caller(&world, &from_lambda).expect("known");
    assert_eq!(
        seen,
        IpAddr::V4(netns::NAT_PUBLIC),
        "through the NAT: {from_lambda:?}"
    );
    assert!(allowed.contains(&seen));

    for spoof in [
        vec![("X-Forwarded-For", "198.51.100.10")],
        vec![("X-Forwarded-For", "198.51.100.10, 10.20.2.1")],
        vec![("X-Forwarded-For", "10.20.2.1")],
        vec![
            ("x-forwarded-for", "198.51.100.10"),
            ("X-Forwarded-For", "198.51.100.10"),
        ],
    ] {
        let echoed = get(&world, Place::Internet, &url, &spoof).expect("the ALB is public");
        let seen = caller(&world, &echoed);
        assert_eq!(
            seen,
            Some(IpAddr::V4(netns::ATTACKER)),
            "{spoof:?} → {echoed:?}"
        );
        assert!(!allowed.contains(&seen.expect("known")));
    }

    assert!(
        get(
            &world,
            Place::Internet,
            &format!("http://{}:8080/user", netns::APP),
            &[]
        )
        .is_none(),
        "the app answers the internet directly"
    );
    let lambda_ns = world.ns(Place::Lambda);
    drop(world);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(!left.contains(&lambda_ns), "left behind: {left}");
}
