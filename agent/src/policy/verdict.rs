//! Verdicts userspace takes itself: a file open under a container's file policy (fanotify), and
//! the exec verdict for a process the kernel held before its container's policy was written.
//! Paths are bytes (file names need not be UTF-8), and uncertainty never allows: unknown open
//! flags count as a write, an untrusted exec path matches no allow list.

use seawall_profile::{FilePolicy, Mode, PathRule, Profile};
use seawall_proto::event::Action;

/// Whether the flags ask to change the file; unknown flags do (fail closed).
pub fn writes(flags: Option<i32>) -> bool {
    match flags {
        Some(f) => {
            f & libc::O_ACCMODE != libc::O_RDONLY || f & (libc::O_TRUNC | libc::O_CREAT) != 0
        }
        None => true,
    }
}

/// The decision for one open under a container's file policy; `flags: None` (unknown) counts
/// as a write.
pub fn decide(policy: &FilePolicy, path: &[u8], flags: Option<i32>) -> (Action, &'static str) {
    if policy.mode == Mode::Off {
        return (Action::Allowed, "");
    }
    let hit = match policy.mode {
        Mode::Enforce => Action::Blocked,
        _ => Action::Audited,
    };
    if policy.deny.matches_bytes(path) {
        return (hit, "deny");
    }
    let w = writes(flags);
    if w && policy.read_only.matches_bytes(path) {
        return (hit, "read_only");
    }
    if w && policy.monitor.matches_bytes(path) {
        return (Action::Audited, "monitor");
    }
    (Action::Allowed, "")
}

/// Whether any rule could apply to this path under some open flags.
pub fn could_match(policy: &FilePolicy, path: &[u8]) -> bool {
    policy.mode != Mode::Off
        && (policy.deny.matches_bytes(path)
            || policy.read_only.matches_bytes(path)
            || policy.monitor.matches_bytes(path))
}

/// The exec decision the kernel takes (`agent-ebpf/src/exec.rs::decide`), taken in userspace
/// for a process the kernel held because its container's own policy was not written yet.
/// Returns (`CONTROL_*`, `ACTION_*`).
pub fn exec_verdict(p: &Profile, flags: u32, path: impl AsRef<[u8]>) -> (u32, u32) {
    let path = path.as_ref();
    use agent_common::{
        ACTION_ALLOWED, ACTION_AUDITED, ACTION_BLOCKED, CONTROL_CONTAINER_EXEC, CONTROL_DRIFT,
        CONTROL_EXEC, CONTROL_NONE, EXEC_DRIFT_FLAGS, EXEC_FILE_DRIFT_FLAGS,
        EXEC_FROM_EXEC_SESSION, EXEC_PATH_UNTRUSTED, EXEC_ROOT_NOT_OVERLAY,
    };
    let action = |m: Mode| match m {
        Mode::Enforce => ACTION_BLOCKED,
        Mode::Audit => ACTION_AUDITED,
        Mode::Off => ACTION_ALLOWED,
    };
    if flags & EXEC_ROOT_NOT_OVERLAY != 0 {
        return (CONTROL_NONE, ACTION_ALLOWED);
    }
    // As in the kernel: an untrusted path matches no allow list and every deny list.
    let untrusted = flags & EXEC_PATH_UNTRUSTED != 0;
    let file_drift = flags & EXEC_FILE_DRIFT_FLAGS != 0;
    let door_drift = flags & (EXEC_DRIFT_FLAGS & !EXEC_FILE_DRIFT_FLAGS) != 0;
    let drift_allowed = !untrusted && p.drift.allow.iter().any(|r| r.matches_bytes(path));
    if p.drift.mode != Mode::Off && ((file_drift && !drift_allowed) || door_drift) {
        return (CONTROL_DRIFT, action(p.drift.mode));
    }
    if p.exec.mode != Mode::Off {
        let deny_trees = p.exec.deny.iter().any(|r| !matches!(r, PathRule::Exact(_)));
        let denied = (untrusted && deny_trees) || p.exec.deny.iter().any(|r| r.matches_bytes(path));
        let not_allowed = p
            .exec
            .allow
            .as_ref()
            .is_some_and(|a| untrusted || !a.iter().any(|r| r.matches_bytes(path)));
        if denied || not_allowed {
            return (CONTROL_EXEC, action(p.exec.mode));
        }
    }
    if p.exec.container_exec != Mode::Off && flags & EXEC_FROM_EXEC_SESSION != 0 {
        return (CONTROL_CONTAINER_EXEC, action(p.exec.container_exec));
    }
    (CONTROL_NONE, ACTION_ALLOWED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_profile::{PathGlobs, ProfileSet};

    fn set_from(dir: &std::path::Path) -> ProfileSet {
        ProfileSet::load_dir(dir).unwrap_or_else(|r| panic!("{r}"))
    }

    #[test]
    fn open_flags_that_change_the_file_are_writes_and_unknown_flags_do() {
        assert!(writes(Some(0x241)));
        assert!(writes(Some(libc::O_RDWR)));
        assert!(!writes(Some(libc::O_RDONLY | libc::O_CLOEXEC)));
        assert!(writes(None));
    }

    fn policy(mode: Mode) -> FilePolicy {
        FilePolicy {
            mode,
            deny: PathGlobs::new(vec!["/etc/shadow".into()]).unwrap(),
            read_only: PathGlobs::new(vec!["/etc/**".into()]).unwrap(),
            monitor: PathGlobs::new(vec!["/var/log/**".into()]).unwrap(),
        }
    }

    #[test]
    fn only_paths_no_rule_can_match_are_cacheable() {
        let p = policy(Mode::Enforce);
        assert!(
            could_match(&p, b"/etc/passwd"),
            "read_only /etc/** covers it"
        );
        assert!(could_match(&p, b"/var/log/x"));
        assert!(!could_match(&p, b"/tmp/x"));
        assert!(!could_match(&policy(Mode::Off), b"/etc/shadow"));
    }

    #[test]
    fn deny_read_only_and_monitor_decide_by_path_and_intent() {
        let p = policy(Mode::Enforce);
        assert_eq!(
            decide(&p, b"/etc/shadow", Some(0)),
            (Action::Blocked, "deny")
        );
        assert_eq!(decide(&p, b"/etc/passwd", Some(0)), (Action::Allowed, ""));
        assert_eq!(
            decide(&p, b"/etc/passwd", Some(0x241)),
            (Action::Blocked, "read_only")
        );
        assert_eq!(
            decide(&p, b"/var/log/app.log", Some(libc::O_WRONLY)),
            (Action::Audited, "monitor")
        );
        assert_eq!(
            decide(&p, b"/etc/\xff", Some(0x241)),
            (Action::Blocked, "read_only"),
            "a name that is not UTF-8 is still below /etc"
        );
        assert_eq!(decide(&p, b"/tmp/x", Some(0x241)), (Action::Allowed, ""));
        let a = policy(Mode::Audit);
        assert_eq!(
            decide(&a, b"/etc/shadow", Some(0)),
            (Action::Audited, "deny")
        );
        assert_eq!(
            decide(&policy(Mode::Off), b"/etc/shadow", Some(0)),
            (Action::Allowed, "")
        );
    }

    #[test]
    fn unknown_flags_never_count_as_read_only() {
        let p = policy(Mode::Enforce);
        assert_eq!(
            decide(&p, b"/etc/passwd", None),
            (Action::Blocked, "read_only")
        );
    }

    #[test]
    fn the_userspace_exec_verdict_follows_the_kernel_order() {
        use agent_common::*;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("p.toml"),
            "[profile]\nname = \"p\"\nimages = [\"x\"]\nmode = \"enforce\"\n[drift]\nprevent = true\nallow = [\"/tmp/jit/**\"]\n[exec]\nmode = \"audit\"\ndeny = [\"/bin/nc\"]\nblock_container_exec = true\n",
        )
        .unwrap();
        let set = set_from(d.path());
        let p = set.for_image("x", None);
        assert_eq!(
            exec_verdict(p, EXEC_UPPER_LAYER, "/tmp/x"),
            (CONTROL_DRIFT, ACTION_BLOCKED)
        );
        assert_eq!(
            exec_verdict(p, EXEC_UPPER_LAYER, "/tmp/jit/a"),
            (CONTROL_NONE, ACTION_ALLOWED)
        );
        assert_eq!(
            exec_verdict(p, 0, "/bin/nc"),
            (CONTROL_EXEC, ACTION_AUDITED)
        );
        assert_eq!(
            exec_verdict(p, EXEC_FROM_EXEC_SESSION, "/bin/sh"),
            (CONTROL_CONTAINER_EXEC, ACTION_AUDITED)
        );
        assert_eq!(
            exec_verdict(p, EXEC_UPPER_LAYER | EXEC_ROOT_NOT_OVERLAY, "/tmp/x"),
            (CONTROL_NONE, ACTION_ALLOWED)
        );
        assert_eq!(
            exec_verdict(p, 0, "/bin/sh"),
            (CONTROL_NONE, ACTION_ALLOWED)
        );
    }
}
