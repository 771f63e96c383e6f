//! The exec deny list, under every name of the denied file.

use super::*;

#[test]
fn the_exec_deny_list_holds_under_every_name() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        /usr/local/bin/wget --help >/dev/null 2>&1; echo "direct=$?"
        ln -s /usr/local/bin/wget /tmp/w-sym; /tmp/w-sym --help >/dev/null 2>&1; echo "symlink=$?"
        ln /usr/local/bin/wget /tmp/w-hard 2>/dev/null; echo "hardlink=$?"
        /mt/micro-helper exec /usr/local/bin/wget --help
        "#,
    );
    r.assert_out("direct=126");
    r.assert_out("symlink=126");
    r.assert_out("hardlink=1");
    r.assert_out("execve: EACCES");
    let e = r.event("wget denied", |e| {
        is(e, "exec", "exec", "blocked") && e["process"]["exe"] == "/usr/local/bin/wget"
    });
    assert!(message_has(e, "(denied)"), "{e}");
    assert_eq!(e["severity"], "high");
}
