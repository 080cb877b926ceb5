//! The X-Forwarded-For walk: any bytes, any number of lines. It must not panic; a peer outside
//! the trusted proxies is the client whatever the header says; and the answer does not depend
//! on how often it is asked.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((peer_byte, rest)) = data.split_first() else {
        return;
    };
    // The peer is a trusted proxy half the time, so the header is read.
    let proxy = peer_byte % 2 == 0;
    let peer: IpAddr = if proxy {
        [10, 0, 0, *peer_byte].into()
    } else {
        [203, 0, 113, *peer_byte].into()
    };
    let trusted = ["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
    let lines: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
    let answer = shared_auth::client_ip(peer, lines.iter().copied(), &trusted);
    if !proxy {
        assert_eq!(answer, Some(peer), "an untrusted peer is the client");
    }
    assert_eq!(
        answer,
        shared_auth::client_ip(peer, lines.iter().copied(), &trusted)
    );
});
