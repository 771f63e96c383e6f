//! Saying what is not covered (class 7).

use super::*;

#[test]
fn status_and_profile_check_say_what_this_backend_cannot_enforce() {
    if !privileged() {
        return;
    }
    let body = "[drift]\nprevent = true\n[network]\nblock_raw_sockets = true\n";
    let agent = agent_with("enforce", body);
    let s = status_json(&agent);
    let line = |class: &str| {
        s["coverage"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["class"] == class).cloned())
            .unwrap_or_else(|| panic!("no coverage line {class}: {s}"))
    };
    let lsm = s["backends"]["lsm_unavailable"].is_null();
    if lsm {
        assert_eq!(line("packet_socket")["coverage"], "enforced");
    } else {
        assert_eq!(line("packet_socket")["coverage"], "not_visible");
        assert!(line("packet_socket")["closes"]
            .as_str()
            .unwrap()
            .contains("BPF LSM"));
        assert_eq!(line("executable_mapping")["coverage"], "not_visible");
    }
    assert_eq!(line("loopback_alias")["coverage"], "enforced");
    assert_eq!(line("changed_root")["coverage"], "enforced");
    let txt = Command::new(agent_bin())
        .args(["status", "--api-socket"])
        .arg(&agent.api)
        .output()
        .unwrap();
    assert!(
        text(&txt.stdout).contains("coverage on this backend"),
        "{}",
        text(&txt.stdout)
    );

    let check = Command::new(agent_bin())
        .args(["profile", "check"])
        .arg(&agent.profiles)
        .output()
        .unwrap();
    let c = text(&check.stdout);
    assert!(
        check.status.success(),
        "warnings do not fail the check: {c}"
    );
    if !lsm {
        assert!(
            c.contains("warning") && c.contains("AF_PACKET") && c.contains("closed by BPF LSM"),
            "{c}"
        );
        assert!(c.contains("dlopen"), "{c}");
    }
}
