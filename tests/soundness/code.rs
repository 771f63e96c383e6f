//! Code that is not from the image, run without exec'ing it (class 2): the fallback's part.

use super::*;

#[test]
fn the_dynamic_loader_run_as_a_program_is_drift_on_the_fallback() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("enforce", "[drift]\nprevent = true\n");
    let script = format!(
        "cp {DYN_TRUE} /tmp/t; {LOADER} /tmp/t; echo dropped=$?; {LOADER} {DYN_TRUE}; echo image=$?; \
         {DYN_TRUE}; echo benign=$?"
    );
    let (c, out) = run_in(&image, "loader", &["--network", "none"], &script);
    let s = text(&out.stdout);
    assert_eq!(rc(&s, "dropped"), Some(137), "{s} {}", text(&out.stderr));
    // The fallback cannot see what the loader maps, so even an image file run through it is
    // refused (BPF LSM judges the mapped file instead).
    assert_eq!(rc(&s, "image"), Some(137), "{s}");
    assert_eq!(
        rc(&s, "benign"),
        Some(0),
        "a dynamic image program still runs: {s}"
    );
    let id = c.id();
    let e = agent.expect("loader drift", |e| {
        e["control"] == "drift"
            && e["container"]["id"] == id.as_str()
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("dynamic loader")
    });
    assert_eq!(e["action"], "blocked");
    assert!(
        e["process"]["exe"].as_str().unwrap().contains("ld-linux"),
        "{e}"
    );
}

/// The environment doors, each with its own `rc` key.
fn preload_script() -> String {
    let padding: Vec<String> = (0..3000).map(|i| format!("PAD{i}=x")).collect();
    format!(
        "cp {EVIL_SO} /tmp/evil.so; \
         LD_PRELOAD=/tmp/evil.so {DYN_TRUE}; echo preload=$?; \
         LD_AUDIT=/tmp/evil.so {DYN_TRUE}; echo audit=$?; \
         LD_LIBRARY_PATH=/tmp {DYN_TRUE}; echo libpath=$?; \
         LD_LIBRARY_PATH=/opt/lib: {DYN_TRUE}; echo emptyelem=$?; \
         env {} LD_PRELOAD=/tmp/evil.so {DYN_TRUE}; echo padded=$?; \
         LD_PRELOAD= {DYN_TRUE}; echo empty=$?; \
         LD_LIBRARY_PATH=/opt/lib {DYN_TRUE}; echo allowed=$?; \
         echo /tmp/evil.so > /etc/ld.so.preload; echo preloadfile=$?; {DYN_TRUE}; echo after=$?",
        padding.join(" ")
    )
}

const PRELOAD_KEYS: &[&str] = &["preload", "audit", "libpath", "emptyelem", "padded"];

#[test]
fn ld_preload_ld_audit_and_ld_library_path_of_a_dropped_library_are_drift() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with(
        "enforce",
        "[drift]\nprevent = true\nallow = [\"/opt/lib/**\"]\n",
    );
    let (c, out) = run_in(&image, "preload", &["--network", "none"], &preload_script());
    let s = text(&out.stdout);
    assert!(!s.contains("PRELOAD-RAN"), "the dropped library ran: {s}");
    for key in PRELOAD_KEYS {
        assert_eq!(rc(&s, key), Some(137), "{key}: {s} {}", text(&out.stderr));
    }
    assert_eq!(
        rc(&s, "empty"),
        Some(0),
        "an empty LD_PRELOAD loads nothing: {s}"
    );
    assert_ne!(
        rc(&s, "preloadfile"),
        Some(0),
        "/etc/ld.so.preload was written: {s}"
    );
    assert_eq!(rc(&s, "after"), Some(0), "{s}");
    assert_eq!(
        rc(&s, "allowed"),
        Some(0),
        "a directory on the drift allow list: {s}"
    );
    let id = c.id();
    let blocked = at_least(&agent, PRELOAD_KEYS.len(), |e| {
        e["control"] == "drift"
            && e["action"] == "blocked"
            && e["container"]["id"] == id.as_str()
            && e["process"]["exe"] == DYN_TRUE
    });
    assert!(
        blocked,
        "one blocked drift event per door: {:?}",
        agent.events()
    );
}

#[test]
fn ld_preload_of_a_dropped_library_is_reported_in_audit() {
    if !privileged() {
        return;
    }
    let Some(image) = attack_image() else { return };
    let agent = agent_with("audit", "[drift]\nprevent = true\n");
    let script =
        format!("cp {EVIL_SO} /tmp/evil.so; LD_PRELOAD=/tmp/evil.so {DYN_TRUE}; echo preload=$?");
    let (c, out) = run_in(&image, "preload-audit", &["--network", "none"], &script);
    let s = text(&out.stdout);
    assert!(s.contains("PRELOAD-RAN"), "audit lets it run: {s}");
    assert_eq!(rc(&s, "preload"), Some(0), "{s}");
    let e = drift_event(&agent, &c, DYN_TRUE);
    assert_eq!(e["action"], "audited");
    assert!(e["message"].as_str().unwrap().contains("LD_PRELOAD"), "{e}");
}
