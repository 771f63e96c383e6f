//! Egress allow lists, listen_allow and raw sockets.

use super::*;

#[test]
fn egress_to_a_denied_loopback_address_is_refused_while_an_allowed_one_works() {
    if !ready() {
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = TcpListener::bind("127.0.0.2:0").unwrap();
    let udp_ok = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_denied = UdpSocket::bind("127.0.0.2:0").unwrap();
    let (ap, dp) = (
        allowed.local_addr().unwrap().port(),
        denied.local_addr().unwrap().port(),
    );
    let (uap, udp_) = (
        udp_ok.local_addr().unwrap().port(),
        udp_denied.local_addr().unwrap().port(),
    );
    let accepter = seawall_integration::serve_once(allowed.try_clone().unwrap());
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "host",
        &format!(
            r#"
            echo "== allowed"; /mt/micro-helper connect 127.0.0.1 {ap}
            echo "== denied"; /mt/micro-helper connect 127.0.0.2 {dp}
            echo "== mapped"; /mt/micro-helper connect ::ffff:127.0.0.2 {dp}
            echo "== udp allowed"; /mt/micro-helper udp 127.0.0.1 {uap}
            echo "== udp denied"; /mt/micro-helper udp 127.0.0.2 {udp_}
            "#
        ),
    );
    let out = r.stdout();
    let section = |name: &str| -> String {
        out.split("== ")
            .find(|s| s.starts_with(&format!("{name}\n")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(section("allowed").contains("connect: ok"), "{out}");
    assert!(section("denied").contains("connect: EPERM"), "{out}");
    assert!(section("mapped").contains("connect: EPERM"), "{out}");
    let ua = section("udp allowed");
    let ud = section("udp denied");
    for op in ["sendto", "sendmsg", "sendmmsg"] {
        assert!(ua.contains(&format!("{op}: ok")), "{out}");
        assert!(ud.contains(&format!("{op}: EPERM")), "{out}");
    }
    // The other side: the allowed listener got the line, the denied ones got nothing.
    assert_eq!(
        accepter.join().unwrap().as_deref(),
        Some("hello from the tree\n")
    );
    assert!(!got_connection(&denied, Duration::from_millis(300)));
    udp_ok
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 64];
    while udp_ok.recv(&mut buf).is_ok() {
        got += 1;
        udp_ok
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    assert_eq!(got, 3, "three datagrams to the allowed address");
    udp_denied
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        udp_denied.recv(&mut buf).is_err(),
        "a datagram reached the denied address"
    );

    let e = r.event("denied connect", |e| {
        is(e, "network", "network", "blocked")
            && e["network"]["op"] == "connect"
            && e["network"]["address"] == "127.0.0.2"
    });
    assert_eq!(e["network"]["port"], dp);
    assert_eq!(e["network"]["protocol"], "tcp");
    r.event("denied mapped connect", |e| {
        is(e, "network", "network", "blocked") && e["network"]["address"] == "::ffff:127.0.0.2"
    });
    r.event("denied datagram", |e| {
        is(e, "network", "network", "blocked")
            && e["network"]["op"] == "sendmsg"
            && e["network"]["protocol"] == "udp"
            && e["network"]["address"] == "127.0.0.2"
    });
    assert!(!r
        .events
        .iter()
        .any(|e| e["action"] == "blocked" && e["network"]["address"] == "127.0.0.1"));
}

#[test]
fn listening_is_limited_to_listen_allow() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        "/mt/micro-helper bind 40005; /mt/micro-helper bind 41000; /mt/micro-helper bind 0",
    );
    let out = r.stdout();
    let binds: Vec<&str> = out.lines().filter(|l| l.starts_with("bind:")).collect();
    assert_eq!(binds, ["bind: ok", "bind: EPERM", "bind: ok"], "{out}");
    let e = r.event("denied bind", |e| {
        is(e, "network", "network", "blocked") && e["network"]["op"] == "bind"
    });
    assert_eq!(e["network"]["port"], 41000);
}

#[test]
fn raw_and_packet_sockets_are_refused_even_with_cap_net_raw() {
    if !ready() {
        return;
    }
    // With CAP_NET_RAW the kernel would grant them: what refuses them here is seawall-micro.
    let r = run_with(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        &["--cap-add", "NET_RAW"],
        &[],
        "/mt/micro-helper raw-socket",
    );
    r.assert_out("socket(AF_PACKET): EPERM");
    r.assert_out("socket(AF_INET, SOCK_RAW): EPERM");
    r.assert_out("socket(SOCK_RAW, high bits): EPERM");
    let raw: Vec<&Value> = r
        .blocked()
        .into_iter()
        .filter(|e| e["network"]["op"] == "raw_socket")
        .collect();
    assert_eq!(raw.len(), 3, "{raw:?}");
    assert!(raw.iter().any(|e| e["network"]["protocol"] == "packet"));
}
