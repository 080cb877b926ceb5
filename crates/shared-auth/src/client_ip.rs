//! Which address a request really comes from.
//!
//! Behind the ALB the TCP peer is the load balancer; the caller's address is in
//! `X-Forwarded-For`. Every hop *appends* to that header, so only the entries added by proxies
//! we trust can be believed: walk it from the right, skip our own proxies, and the first entry
//! that is not one of them is the client. The left-most entry is whatever the caller wrote and
//! is never trusted.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The address of the caller, or `None` when it cannot be known (an unparsable entry was met
/// before the answer): callers must deny then, never guess.
///
/// * `peer`: the TCP peer of the connection.
/// * `forwarded_for`: every `X-Forwarded-For` header line, in the order received; several
///   lines count as one comma-joined list.
/// * `trusted_proxies`: networks whose entries (and whose connections) are believed.
///
/// If the peer is not a trusted proxy, the peer is the client and the header is ignored.
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are read as the IPv4 address they carry.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let mut entries = Vec::new();
    for line in forwarded_for {
        // A header line that is not even text is as unknown as a garbage entry.
        let line = std::str::from_utf8(line).ok()?;
        entries.extend(line.split(','));
    }
    // Everything was added by our own proxies (or nothing was): the request started inside the
    // trusted network, and its origin is the left-most hop we know of.
    let mut answer = peer;
    for entry in entries.iter().rev() {
        let ip = parse_entry(entry)?;
        answer = ip;
        if !trusted(&ip) {
            break;
        }
    }
    Some(answer)
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`198.51.100.1:4711`,
/// `[2001:db8::1]:443`, `[2001:db8::1]`, `2001:db8::1`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    let ip = if let Ok(ip) = entry.parse::<IpAddr>() {
        ip
    } else if let Ok(sock) = entry.parse::<SocketAddr>() {
        sock.ip()
    } else {
        let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
        inner.parse::<std::net::Ipv6Addr>().ok()?.into()
    };
    Some(ip.to_canonical())
}

/// Whether `ip` lies in any of `allowed`.
pub fn is_allowed(ip: IpAddr, allowed: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    allowed.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().expect("test CIDR")).collect()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }
    fn resolve(peer: &str, lines: &[&str], trusted: &[&str]) -> Option<IpAddr> {
        client_ip(ip(peer), lines.iter().map(|l| l.as_bytes()), &nets(trusted))
    }
    const VPC: &[&str] = &["10.0.0.0/16"];

    #[test]
    fn untrusted_peer_is_the_client_and_its_header_is_ignored() {
        assert_eq!(
            resolve("198.51.100.9", &["203.0.113.7"], VPC),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            resolve("198.51.100.9", &["garbage"], VPC),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(resolve("198.51.100.9", &[], &[]), Some(ip("198.51.100.9")));
    }

    #[test]
    fn right_most_untrusted_entry_wins_over_a_spoofed_left_most_one() {
        // The caller wrote 203.0.113.7 (the allowlisted NAT address) itself; the ALB appended
        // the real source 198.51.100.1.
        assert_eq!(
            resolve("10.0.1.5", &["203.0.113.7, 198.51.100.1"], VPC),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        assert_eq!(
            resolve("10.0.1.5", &["198.51.100.1, 10.0.2.2, 10.0.3.3"], VPC),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        // A spoof in a first header line cannot push itself to the right of the ALB's entry.
        assert_eq!(
            resolve("10.0.1.5", &["203.0.113.7", "198.51.100.1"], VPC),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            resolve("10.0.1.5", &["198.51.100.1", "10.0.9.9"], VPC),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn ports_and_ipv6_forms_are_understood() {
        assert_eq!(
            resolve("10.0.1.5", &["198.51.100.1:4711"], VPC),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            resolve("10.0.1.5", &["[2001:db8::1]:443"], VPC),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            resolve("10.0.1.5", &["[2001:db8::1]"], VPC),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            resolve("10.0.1.5", &["2001:db8::1"], VPC),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            resolve("10.0.1.5", &[" \t2001:db8::2 "], VPC),
            Some(ip("2001:db8::2"))
        );
        assert_eq!(
            resolve("fd00::5", &["2001:db8::1, fd00::6"], &["fd00::/8"]),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_read_as_ipv4() {
        assert_eq!(
            resolve("::ffff:10.0.1.5", &["::ffff:198.51.100.1"], VPC),
            Some(ip("198.51.100.1"))
        );
        assert!(is_allowed(
            ip("::ffff:203.0.113.7"),
            &nets(&["203.0.113.7/32"])
        ));
    }

    #[test]
    fn garbage_before_the_answer_means_unknown() {
        for bad in [
            "unknown",
            "",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.4.5",
            "fe80::1%eth0",
            "[::1",
            "1.2.3.4:99999",
            "_hidden",
        ] {
            assert_eq!(resolve("10.0.1.5", &[bad], VPC), None, "entry {bad:?}");
            assert_eq!(
                resolve("10.0.1.5", &[&format!("198.51.100.1, {bad}")], VPC),
                None,
                "entry {bad:?}"
            );
        }
        assert_eq!(
            client_ip(ip("10.0.1.5"), [&b"\xff\xfe"[..]], &nets(VPC)),
            None
        );
    }

    #[test]
    fn garbage_left_of_the_answer_is_never_read() {
        assert_eq!(
            resolve("10.0.1.5", &["garbage, 198.51.100.1"], VPC),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn all_trusted_gives_the_left_most_hop() {
        assert_eq!(
            resolve("10.0.1.5", &["10.0.7.7, 10.0.8.8"], VPC),
            Some(ip("10.0.7.7"))
        );
        assert_eq!(resolve("10.0.1.5", &[], VPC), Some(ip("10.0.1.5")));
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u16; 8]>().prop_map(IpAddr::from),
        ]
    }

    proptest! {
        /// Whatever a caller prepends, the answer is the address the trusted proxy appended.
        #[test]
        fn spoofed_prefix_never_changes_the_answer(
            spoof in proptest::collection::vec(any_ip(), 0..6),
            real in any_ip(),
        ) {
            let trusted = nets(&["10.0.0.0/8"]);
            prop_assume!(!trusted.iter().any(|n| n.contains(&real.to_canonical())));
            let mut list: Vec<String> = spoof.iter().map(IpAddr::to_string).collect();
            list.push(real.to_string());
            let line = list.join(", ");
            prop_assert_eq!(
                client_ip(ip("10.1.2.3"), [line.as_bytes()], &trusted),
                Some(real.to_canonical())
            );
        }

        /// Splitting the list across header lines never changes the answer.
        #[test]
        fn header_lines_behave_as_one_list(list in proptest::collection::vec(any_ip(), 1..6), split in 0usize..6) {
            let trusted = nets(&["10.0.0.0/8"]);
            let strs: Vec<String> = list.iter().map(IpAddr::to_string).collect();
            let split = split.min(strs.len());
            let joined = strs.join(",");
            let (a, b) = (strs[..split].join(","), strs[split..].join(","));
            let lines: Vec<&[u8]> = [a.as_bytes(), b.as_bytes()].into_iter().filter(|l| !l.is_empty()).collect();
            prop_assert_eq!(
                client_ip(ip("10.1.2.3"), lines, &trusted),
                client_ip(ip("10.1.2.3"), [joined.as_bytes()], &trusted)
            );
        }

        /// Arbitrary bytes never panic, and any answer is the peer or an entry of the header,
        /// never an address made up along the way.
        #[test]
        fn arbitrary_headers_answer_only_with_given_addresses(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let peer = ip("10.1.2.3");
            if let Some(answer) = client_ip(peer, [bytes.as_slice()], &nets(&["10.0.0.0/8"])) {
                let text = String::from_utf8_lossy(&bytes);
                prop_assert!(answer == peer || text.split(',').any(|e| parse_entry(e) == Some(answer)));
            }
        }
    }
}
