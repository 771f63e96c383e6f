//! Benign work under the enforce profile is unaffected.

use super::*;

#[test]
fn benign_work_under_the_same_profile_is_unaffected() {
    if !ready() {
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = allowed.local_addr().unwrap().port();
    let accepter = seawall_integration::serve_once(allowed);
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "host",
        &format!(
            r#"
            set -e
            ls / > /tmp/ls.txt; grep -q etc /tmp/ls.txt
            cat /etc/passwd | grep -q root
            mkdir -p /tmp/work/a; echo data > /tmp/work/a/f; mv /tmp/work/a/f /tmp/work/g
            mv /tmp/work/g /tmp/moved; rm -r /tmp/work /tmp/moved
            echo 'echo from-sh' > /tmp/script; sh /tmp/script
            seq 1 5 | sort -r | head -1
            (sleep 0.1 & wait)
            echo "hi" | nc 127.0.0.1 {port}
            md5sum /bin/busybox > /dev/null
            echo ALL-OK
            "#
        ),
    );
    let out = r.stdout();
    assert_eq!(r.code(), Some(0), "{out}\n{}", text(&r.out.stderr));
    assert!(out.contains("from-sh") && out.contains("ALL-OK"), "{out}");
    assert_eq!(accepter.join().unwrap().as_deref(), Some("hi\n"));
    let bad: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["action"] != "allowed")
        .collect();
    assert!(bad.is_empty(), "benign work drew violations: {bad:?}");
    let start = r.event("start", |e| {
        e["kind"] == "agent" && message_has(e, "micro started")
    });
    assert_eq!(start["container"]["runtime"], "micro");
}
