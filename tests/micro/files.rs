//! `files.read_only` and `files.deny`: no write, truncate, rename or unlink of a read-only
//! file, no read of a denied one, under any other name.

use super::*;

#[test]
fn a_read_only_file_cannot_be_written_truncated_renamed_or_unlinked_and_a_denied_one_not_read() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        before=$(md5sum /etc/passwd)
        /mt/micro-helper file /etc/passwd
        /mt/micro-helper file-names /etc/passwd
        [ "$before" = "$(md5sum /etc/passwd)" ] && echo unchanged
        cat /etc/passwd > /dev/null && echo readable
        /mt/micro-helper read /mt/secret
        echo new > /tmp/other && echo tmp-writable
        "#,
    );
    for line in [
        "open(O_WRONLY): EACCES",
        "open(O_TRUNC): EACCES",
        "truncate: EACCES",
        "openat2(O_WRONLY): EACCES",
        "rename(over it): EACCES",
        "rename(away): EACCES",
        "link(into /tmp): EXDEV",
        "unlink: EACCES",
        "open(/proc/self/root/…): EACCES",
        "open(symlink, O_WRONLY): EACCES",
        "open(/proc/self/fd/N, O_WRONLY): EACCES",
        "unchanged",
        "readable",
        "open(O_RDONLY): EACCES",
        "tmp-writable",
    ] {
        r.assert_out(line);
    }
    for (what, needle) in [
        ("write", "open /etc/passwd O_WRONLY|O_APPEND"),
        ("truncating open", "O_TRUNC"),
        ("truncate", "truncate /etc/passwd"),
        ("rename", "rename /etc/passwd"),
        ("unlink", "unlink /etc/passwd"),
    ] {
        let e = r.event(what, |e| {
            is(e, "file", "file", "blocked") && message_has(e, needle)
        });
        assert_eq!(e["file"]["path"], "/etc/passwd");
        assert!(message_has(e, "(read_only)"), "{e}");
    }
    r.event("denied read", |e| {
        is(e, "file", "file", "blocked")
            && e["file"]["path"] == "/mt/secret"
            && message_has(e, "(deny)")
    });
    assert_other_names_reported(&r);
}
