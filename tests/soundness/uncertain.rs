//! Fail closed on uncertainty (class 4).

use super::*;

/// Deeper than the kernel walks (160 components): only the deepest 160 are kept, which here
/// read `/usr/local/a/…/true`, a path under an allowed tree. It must not be allowed.
#[test]
fn a_truncated_path_never_matches_an_allow_list() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with(
        "enforce",
        "[exec]\nallow = [\"/bin/*\", \"/usr/local/**\"]\n",
    );
    let deep = format!("/tmp/usr/local/{}", nested(157));
    let script = format!(
        "mkdir -p {deep} && cp /bin/busybox {deep}/true && {deep}/true; echo deep=$?; \
         /usr/local/bin/wget --help >/dev/null 2>&1; echo allowed=$?"
    );
    let (c, out) = run_in(&image, "deep", &["--network", "none"], &script);
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "deep"), Some(137), "{s} {}", text(&out.stderr));
    assert_eq!(
        rc(&s, "allowed"),
        Some(0),
        "an allowed tool still runs: {s}"
    );
    let id = c.id();
    let e = agent.expect("blocked truncated exec", |e| {
        e["control"] == "exec" && e["action"] == "blocked" && e["container"]["id"] == id.as_str()
    });
    assert!(e["message"].as_str().unwrap().contains("too deep"), "{e}");
    assert!(
        e["process"]["exe"]
            .as_str()
            .unwrap()
            .starts_with("…/usr/local/a/"),
        "a truncated path is marked, not passed off as a real one: {e}"
    );
}
