//! Drift: a copied binary, a written script and a memfd never run; the image's executables
//! are not writable.

use super::*;

#[test]
fn drift_a_copied_binary_a_written_script_and_a_memfd_never_run() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        cp /bin/busybox /tmp/echo; /tmp/echo COPY-RAN; echo "copy=$?"
        printf '#!/bin/sh\necho SCRIPT-RAN\n' > /tmp/s.sh; chmod +x /tmp/s.sh; /tmp/s.sh; echo "script=$?"
        /mt/micro-helper memfd-exec
        echo x >> /bin/busybox; echo "write-exe=$?"
        /bin/busybox true; echo "image=$?"
        "#,
    );
    let out = r.stdout();
    assert!(
        !out.contains("COPY-RAN") && !out.contains("SCRIPT-RAN") && !out.contains("DRIFT-RAN"),
        "{out}"
    );
    r.assert_out("copy=126");
    r.assert_out("script=126");
    r.assert_out("memfd_create(MFD_EXEC): EPERM");
    r.assert_out("fchmod(0755): EPERM");
    r.assert_out("execveat(memfd): EACCES");
    r.assert_out("write-exe=1");
    r.assert_out("image=0");
    for (what, exe) in [
        ("copied binary", "/tmp/echo"),
        ("written script", "/tmp/s.sh"),
    ] {
        let e = r.event(what, |e| {
            is(e, "exec", "drift", "blocked") && e["process"]["exe"] == exe
        });
        assert_eq!(e["severity"], "critical");
        assert_eq!(e["container"]["runtime"], "micro");
    }
    r.event("memfd exec", |e| {
        is(e, "exec", "drift", "blocked")
            && e["process"]["exe"]
                .as_str()
                .is_some_and(|x| x.starts_with("/memfd:payload"))
    });
    r.event("MFD_EXEC request", |e| {
        is(e, "exec", "drift", "blocked") && message_has(e, "MFD_EXEC")
    });
    r.event("write to an image executable", |e| {
        is(e, "file", "drift", "blocked") && e["file"]["path"] == "/bin/busybox"
    });
}
