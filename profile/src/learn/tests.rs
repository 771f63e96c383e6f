//! The learned profile: what it says, that `seawall profile check` accepts it, that it enforces
//! exactly what was seen, and that it is stable.

use std::net::IpAddr;

use agent_common::MAX_NET_RULES;

use super::*;
use crate::{
    check_path, BehaviourLimits, Destination, ListenPort, Profile, ProfileSet, Protocol, Transport,
};

const L: BehaviourLimits = BehaviourLimits { per_category: 256 };
const T0: UnixSeconds = 1_790_000_000; // 2026-09-21T14:13:20Z

fn req(pattern: &str) -> LearnRequest {
    LearnRequest {
        images: vec![ImagePattern::parse(pattern).unwrap()],
        name: None,
        mode: Mode::Audit,
        since: None,
    }
}

fn tcp(addr: &str, port: u16) -> Destination {
    Destination {
        address: addr.parse().unwrap(),
        port,
        protocol: Transport::Tcp,
    }
}

/// The workload of the integration test, three runs of it: a shell script that reads
/// configuration, writes under /tmp, connects to a loopback listener and listens itself.
fn busybox_workload() -> ImageBehaviour {
    let mut b = ImageBehaviour::new(
        "seawall-test/busybox:latest",
        Some("sha256:632c0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab".into()),
    );
    b.mark_files_watched();
    b.mark_raw_sockets_watched();
    for run in 0..3 {
        let t = T0 + run * 60;
        b.record_container(&format!("c{run}"), t, &L);
        for exe in ["/bin/sh", "/bin/cat", "/bin/nc", "/bin/sleep"] {
            b.record_exec(exe, t + 1, &L);
        }
        b.record_read("/etc/passwd", t + 2, &L);
        b.record_read("/etc/hostname", t + 2, &L);
        b.record_read("/usr/lib/libc.so", t + 2, &L);
        b.record_write("/tmp/out", t + 3, &L);
        b.record_egress(tcp("127.0.0.1", 9000), t + 4, &L);
        b.record_listen(
            ListenPort {
                port: 8080,
                protocol: Transport::Tcp,
            },
            t + 5,
            &L,
        );
    }
    b
}

/// Writes `text` as `<name>.toml`, requires `seawall profile check` to pass without warnings,
/// and returns the profile as the daemon would load it.
fn checked(learned: &LearnedProfile) -> Profile {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{}.toml", learned.name));
    std::fs::write(&file, &learned.text).unwrap();
    let report = check_path(&file);
    assert!(report.is_ok(), "{report}\n---\n{}", learned.text);
    assert_eq!(
        report.warnings().count(),
        0,
        "{report}\n---\n{}",
        learned.text
    );
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    let profile = set.profiles().find(|p| p.name == learned.name).cloned();
    profile.unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn allows_exec(p: &Profile, path: &str) -> bool {
    p.exec
        .allow
        .as_ref()
        .is_some_and(|a| a.iter().any(|r| r.matches(path)))
}

fn allows_egress(p: &Profile, addr: &str, port: u16) -> bool {
    p.network
        .egress_allow
        .as_ref()
        .is_some_and(|a| a.iter().any(|r| r.matches(ip(addr), port, Protocol::Tcp)))
}

#[test]
fn the_workload_becomes_this_file() {
    let learned = learn_profile(&[busybox_workload()], &req("seawall-test/busybox*")).unwrap();
    let expected = r#"# Learned by `seawall profile learn` from what the containers of these images did:
#   seawall-test/busybox:latest (sha256:632c0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab): 3 containers, 2026-09-21T14:13:20Z to 2026-09-21T14:15:25Z
# Each entry says how often and when it was seen; patterns say what they were made from.
# Review it, check it (`seawall profile check FILE`), and run it in audit mode first.

[profile]
name = "seawall-test-busybox"
images = ["seawall-test/busybox*"]
mode = "audit"
description = "learned from 3 containers of 1 image, 2026-09-21T14:13:20Z to 2026-09-21T14:15:25Z"
# enforce_after = "7d"  # uncomment to enforce once 7 days pass without a violation

[drift]
prevent = true
# No drift was seen while learning.

[exec]
allow = [
    "/bin/cat",  # 3 runs, first 2026-09-21T14:13:21Z, last 2026-09-21T14:15:21Z
    "/bin/nc",  # 3 runs, first 2026-09-21T14:13:21Z, last 2026-09-21T14:15:21Z
    "/bin/sh",  # 3 runs, first 2026-09-21T14:13:21Z, last 2026-09-21T14:15:21Z
    "/bin/sleep",  # 3 runs, first 2026-09-21T14:13:21Z, last 2026-09-21T14:15:21Z
]
block_container_exec = true  # no `docker exec` session was seen

[files]
# Configuration, keys and credentials the workload read and never wrote:
read_only = [
    "/etc/hostname",  # 3 reads, first 2026-09-21T14:13:22Z, last 2026-09-21T14:15:22Z
    "/etc/passwd",  # 3 reads, first 2026-09-21T14:13:22Z, last 2026-09-21T14:15:22Z
]
# Written while learning, by directory (not restricted; for review):
#   "/tmp": 3 writes, first 2026-09-21T14:13:23Z, last 2026-09-21T14:15:23Z

[network]
egress_allow = [
    "127.0.0.1:9000/tcp",  # 3 connections, first 2026-09-21T14:13:24Z, last 2026-09-21T14:15:24Z
]
# UDP sent without `connect` (plain sendto) is reported only when a rule matches, so learning
# does not see it: add such destinations (a resolver that does not connect) by hand.
listen_allow = [
    8080,  # tcp, 3 binds, first 2026-09-21T14:13:25Z, last 2026-09-21T14:15:25Z
]
block_raw_sockets = true  # no raw or packet socket was seen
"#;
    assert_eq!(learned.text, expected, "\n{}", learned.text);
    assert_eq!(learned.name, "seawall-test-busybox");
    assert!(learned.cut.is_empty());
    assert_eq!(learned.learned_from.len(), 1);
}

#[test]
fn the_learned_profile_checks_and_enforces_exactly_what_was_seen() {
    let p = checked(&learn_profile(&[busybox_workload()], &req("seawall-test/busybox*")).unwrap());
    assert_eq!(p.mode, Mode::Audit);
    assert!(p.images[0].matches("seawall-test/busybox:latest", None));
    assert_eq!(p.drift.mode, Mode::Audit);
    assert_eq!(p.exec.container_exec, Mode::Audit);
    for seen in ["/bin/sh", "/bin/cat", "/bin/nc", "/bin/sleep"] {
        assert!(allows_exec(&p, seen), "{seen}");
    }
    for unseen in ["/bin/wget", "/tmp/sh", "/bin/sh2", "/usr/bin/env"] {
        assert!(!allows_exec(&p, unseen), "{unseen}");
    }
    assert!(allows_egress(&p, "127.0.0.1", 9000));
    assert!(allows_egress(&p, "::ffff:127.0.0.1", 9000));
    assert!(!allows_egress(&p, "127.0.0.2", 9000));
    assert!(!allows_egress(&p, "127.0.0.1", 9001));
    let udp =
        p.network.egress_allow.as_ref().unwrap()[0].matches(ip("127.0.0.1"), 9000, Protocol::Udp);
    assert!(!udp, "a TCP destination must not allow UDP");
    assert_eq!(
        p.network.listen_allow.as_deref(),
        Some(&[crate::PortRange::single(8080)][..])
    );
    assert!(p.network.block_raw_sockets);
    assert!(p.files.read_only.matches("/etc/passwd"));
    assert!(!p.files.read_only.matches("/etc/shadow"));
    assert!(!p.files.read_only.matches("/tmp/out"));
}

#[test]
fn same_behaviour_same_bytes_whatever_the_order() {
    let a = busybox_workload();
    let mut other = ImageBehaviour::new("seawall-test/busybox:1", None);
    other.record_exec("/bin/echo", T0, &L);
    other.record_egress(tcp("127.0.0.1", 7000), T0, &L);
    let one = learn_profile(&[a.clone(), other.clone()], &req("seawall-test/busybox*")).unwrap();
    let two = learn_profile(&[other.clone(), a.clone()], &req("seawall-test/busybox*")).unwrap();
    assert_eq!(one.text, two.text);
    // The same behaviour recorded in another order, and after a trip through the state file.
    let mut reversed = ImageBehaviour::new(a.image(), a.image_id().map(str::to_string));
    reversed.mark_files_watched();
    reversed.mark_raw_sockets_watched();
    for run in (0..3).rev() {
        let t = T0 + run * 60;
        reversed.record_listen(
            ListenPort {
                port: 8080,
                protocol: Transport::Tcp,
            },
            t + 5,
            &L,
        );
        reversed.record_egress(tcp("127.0.0.1", 9000), t + 4, &L);
        reversed.record_write("/tmp/out", t + 3, &L);
        reversed.record_read("/etc/hostname", t + 2, &L);
        reversed.record_read("/etc/passwd", t + 2, &L);
        for exe in ["/bin/sleep", "/bin/nc", "/bin/cat", "/bin/sh"] {
            reversed.record_exec(exe, t + 1, &L);
        }
        reversed.record_container(&format!("c{run}"), t, &L);
    }
    let json = serde_json::to_string(&reversed).unwrap();
    let reloaded: ImageBehaviour = serde_json::from_str(&json).unwrap();
    let r = req("seawall-test/busybox*");
    assert_eq!(
        learn_profile(&[reloaded], &r).unwrap().text,
        learn_profile(&[a], &r).unwrap().text
    );
    assert!(one.text.contains("\"/bin/echo\""));
    assert!(one
        .text
        .contains("#   seawall-test/busybox:1: 0 containers"));
}

#[test]
fn many_siblings_are_generalised_and_the_comment_says_from_what() {
    let mut b = ImageBehaviour::new("app:1", None);
    for i in 0..12 {
        b.record_exec(&format!("/app/bin/tool{i:02}"), T0 + i, &L);
    }
    for i in 0..30 {
        b.record_exec(&format!("/usr/bin/t{i:02}"), T0, &L);
    }
    for i in 1..=10u8 {
        b.record_egress(tcp(&format!("10.1.2.{i}"), 5432), T0, &L);
    }
    for port in 7000..7010 {
        b.record_listen(
            ListenPort {
                port,
                protocol: Transport::Udp,
            },
            T0,
            &L,
        );
    }
    let learned = learn_profile(&[b], &req("app")).unwrap();
    assert!(learned.text.contains(
        "    \"7000-7009\",  # generalised: 10 ports seen (udp); 10 binds, at 2026-09-21T14:13:20Z\n"
    ), "{}", learned.text);
    assert!(learned.text.contains(
        "    \"/app/bin/*\",  # generalised: 12 executables seen in /app/bin/ (tool00, tool01, tool02, tool03, tool04, tool05, and 6 more); 12 runs, first 2026-09-21T14:13:20Z, last 2026-09-21T14:13:31Z\n"
    ), "{}", learned.text);
    assert!(learned.text.contains(
        "    \"10.1.2.0/24:5432/tcp\",  # generalised: 10 destinations seen (10 addresses); 10 connections, at 2026-09-21T14:13:20Z\n"
    ), "{}", learned.text);
    let p = checked(&learned);
    assert!(allows_exec(&p, "/app/bin/tool99"));
    assert!(!allows_exec(&p, "/app/bin/sub/tool"));
    // /usr/bin is never generalised: `*` there would allow every shell and downloader.
    assert!(allows_exec(&p, "/usr/bin/t07"));
    assert!(!allows_exec(&p, "/usr/bin/wget"));
    assert!(allows_egress(&p, "10.1.2.200", 5432));
    assert!(!allows_egress(&p, "10.1.3.1", 5432));
    let listen = p.network.listen_allow.as_ref().unwrap();
    assert!(listen.iter().any(|r| r.contains(7005)));
    assert!(!listen.iter().any(|r| r.contains(7010)));
}

#[test]
fn what_a_container_makes_up_cannot_break_the_file() {
    let mut b = ImageBehaviour::new("evil:1\n[exec]\nallow = [\"x\"]", None);
    b.mark_files_watched();
    let hostile = [
        "/tmp/a\nallow = [\"/**\"]",
        "/tmp/new\nline = 1",
        "/tmp/quote\"d",
        "/tmp/back\\slash",
        "/tmp/star*",
        "/tmp/br[a]ce{s}",
        "/tmp/../etc/x",
        "/tmp//double",
        "/tmp/ünïcode",
        "/tmp/bell\u{7}",
    ];
    for p in hostile {
        b.record_exec(p, T0, &L);
        b.record_drift(p, T0, &L);
        b.record_write(p, T0, &L);
    }
    for p in ["/etc/a\"b", "/etc/x*", "/etc/new\nline", "/etc/fine"] {
        b.record_read(p, T0, &L);
    }
    let learned = learn_profile(&[b], &req("evil*")).unwrap();
    let p = checked(&learned);
    assert!(allows_exec(&p, "/tmp/quote\"d"));
    assert!(allows_exec(&p, "/tmp/ünïcode"));
    assert!(allows_exec(&p, "/tmp/new\nline = 1"));
    assert!(!allows_exec(&p, "/tmp/a\nallow = [\"/**\"]"));
    // Globs and non-canonical paths are not allowed, and not generalised into something wider.
    assert!(!allows_exec(&p, "/tmp/star*"));
    assert!(!allows_exec(&p, "/tmp/back\\slash"));
    assert!(!allows_exec(&p, "/tmp/starfish"));
    assert!(!allows_exec(&p, "/tmp/b"));
    assert!(!allows_exec(&p, "/bin/sh"));
    assert!(learned
        .text
        .contains("# Not listed: these paths cannot be written as an exec rule"));
    assert!(
        learned.text.contains("#   \"/tmp/star*\": 1 time"),
        "{}",
        learned.text
    );
    assert!(p.files.read_only.matches("/etc/fine"));
    assert!(p.files.read_only.matches("/etc/a\"b"));
    assert!(!p.files.read_only.matches("/etc/xyz"));
    // No line of the file starts with what a container wrote.
    assert!(!learned
        .text
        .lines()
        .any(|l| l.starts_with("allow = [\"/**\"]")));
}

#[test]
fn a_container_that_floods_is_cut_and_the_profile_says_so() {
    let small = BehaviourLimits { per_category: 64 };
    let mut b = ImageBehaviour::new("flood:1", None);
    for i in 0..5_000u32 {
        b.record_exec(&format!("/tmp/d{}/x{i}", i % 7), T0 + i64::from(i), &small);
        b.record_egress(
            tcp(
                &format!("10.{}.{}.1", i >> 8, i & 0xff),
                1000 + (i % 500) as u16 * 37,
            ),
            T0,
            &small,
        );
    }
    assert!(serde_json::to_string(&b).unwrap().len() < 64 * 2 * 200);
    let learned = learn_profile(&[b], &req("flood*")).unwrap();
    assert_eq!(learned.cut, ["executables", "egress destinations"]);
    assert!(learned.text.contains(
        "# CUT: the agent's limit was reached for executables, egress destinations: those lists are incomplete (see below).\n"
    ));
    assert!(learned.text.contains(
        "# CUT: 4936 observations of further executables were not recorded (the agent's per-image limit was reached, or the path was too long), from 2026-09-21T14:14:24Z to 2026-09-21T15:36:39Z.\n# This list is incomplete: once enforced, what was left out is a violation.\n"
    ), "{}", learned.text);
    let p = checked(&learned);
    // The kernel takes at most MAX_NET_RULES per list; the rest are listed, not allowed.
    assert_eq!(
        p.network.egress_allow.as_ref().unwrap().len(),
        MAX_NET_RULES as usize
    );
    assert!(learned
        .text
        .contains("# Over the kernel's 32 rules per list"));
}

#[test]
fn drift_exec_sessions_and_raw_sockets_seen_are_reported_not_allowed() {
    let mut b = ImageBehaviour::new("app:1", None);
    b.record_exec("/bin/sh", T0, &L);
    b.record_drift("/tmp/payload", T0 + 1, &L);
    b.record_container_exec(T0 + 2);
    b.record_raw_socket(T0 + 3);
    let learned = learn_profile(&[b], &req("app")).unwrap();
    assert!(learned
        .text
        .contains("#   \"/tmp/payload\": 1 run, at 2026-09-21T14:13:21Z\n"));
    let p = checked(&learned);
    assert_eq!(p.drift.mode, Mode::Audit);
    assert!(p.drift.allow.is_empty());
    assert!(!allows_exec(&p, "/tmp/payload"));
    assert_eq!(p.exec.container_exec, Mode::Off);
    assert!(learned.text.contains("block_container_exec = false\n"));
    assert!(!p.network.block_raw_sockets);
    assert!(learned.text.contains("block_raw_sockets = false\n"));
    // Nothing seen on the network: nothing allowed.
    assert_eq!(p.network.egress_allow.as_deref(), Some(&[][..]));
    assert_eq!(p.network.listen_allow.as_deref(), Some(&[][..]));
    // File opens were not watched: no suggestion built on "never written".
    assert!(p.files.read_only.is_empty());
    assert!(learned
        .text
        .contains("# File opens were not watched while learning"));
}

#[test]
fn written_configuration_is_not_suggested_read_only() {
    let mut b = busybox_workload();
    b.record_write("/etc/hostname", T0, &L);
    let p = checked(&learn_profile(&[b], &req("seawall-test/*")).unwrap());
    assert!(p.files.read_only.matches("/etc/passwd"));
    assert!(!p.files.read_only.matches("/etc/hostname"));
}

#[test]
fn since_enforce_mode_and_name() {
    let mut b = busybox_workload();
    b.record_exec("/bin/old", T0 - 86_400, &L);
    let mut r = req("seawall-test/busybox*");
    r.since = Some(T0 - 3_600);
    r.mode = Mode::Enforce;
    r.name = Some("bb".into());
    let learned = learn_profile(std::slice::from_ref(&b), &r).unwrap();
    assert!(learned
        .text
        .contains("# Only what was last seen since 2026-09-21T13:13:20Z is included"));
    assert!(!learned.text.contains("enforce_after"));
    let p = checked(&learned);
    assert_eq!((p.name.as_str(), p.mode), ("bb", Mode::Enforce));
    assert_eq!(p.exec.mode, Mode::Enforce);
    assert!(!allows_exec(&p, "/bin/old"));
    r.since = None;
    assert!(allows_exec(
        &checked(&learn_profile(&[b], &r).unwrap()),
        "/bin/old"
    ));
}

#[test]
fn errors() {
    let b = busybox_workload();
    let mut r = req("nginx*");
    assert_eq!(
        learn_profile(std::slice::from_ref(&b), &r),
        Err(LearnError::NothingLearned {
            patterns: "`nginx*`".into(),
            since: String::new()
        })
    );
    r = req("seawall-test/*");
    r.since = Some(T0 + 86_400);
    let e = learn_profile(std::slice::from_ref(&b), &r).unwrap_err();
    assert_eq!(
        e.to_string(),
        "nothing was recorded for images matching `seawall-test/*` since 2026-09-22T14:13:20Z; run the workload while the agent runs, or widen `--image`/`--since`"
    );
    r = req("seawall-test/*");
    r.images.clear();
    assert_eq!(
        learn_profile(std::slice::from_ref(&b), &r),
        Err(LearnError::NoImages)
    );
    r = req("seawall-test/*");
    r.mode = Mode::Off;
    assert_eq!(
        learn_profile(std::slice::from_ref(&b), &r),
        Err(LearnError::ModeOff)
    );
    r.mode = Mode::Audit;
    r.name = Some("has space".into());
    assert!(matches!(
        learn_profile(std::slice::from_ref(&b), &r),
        Err(LearnError::InvalidName { .. })
    ));
    r.name = Some("default".into());
    assert_eq!(learn_profile(&[b], &r), Err(LearnError::DefaultName));
}

#[test]
fn derived_names() {
    assert_eq!(
        derive_name("seawall-test/busybox:latest"),
        "seawall-test-busybox"
    );
    assert_eq!(derive_name("nginx*"), "nginx");
    assert_eq!(
        derive_name("docker.io/library/redis:7"),
        "docker.io-library-redis"
    );
    assert_eq!(derive_name("**/busybox*"), "busybox");
    assert_eq!(
        derive_name("registry.local:5000/team/app@sha256:ab"),
        "registry.local5000-team-app"
    );
    assert_eq!(
        derive_name("sha256:0123456789abcdef0123"),
        "image-0123456789ab"
    );
    assert_eq!(derive_name("*"), "learned");
    assert_eq!(derive_name("default"), "learned");
}

#[test]
fn a_second_learn_run_diffs_as_what_the_workload_started_doing() {
    let r = req("seawall-test/busybox*");
    let first = checked(&learn_profile(&[busybox_workload()], &r).unwrap());
    let mut more = busybox_workload();
    more.record_exec("/bin/wget", T0 + 600, &L);
    more.record_egress(tcp("127.0.0.1", 9443), T0 + 600, &L);
    more.record_container_exec(T0 + 700);
    let second = checked(&learn_profile(&[more], &r).unwrap());
    assert_eq!(
        crate::diff_profiles(&first, &second).to_string(),
        "[exec] allow:\n  + \"/bin/wget\"\n\
         [exec] container_exec: audit -> off\n\
         [network] egress_allow:\n  + \"127.0.0.1/32:9443/tcp\"\n\
         2 entries added, 0 removed, 1 value changed"
    );
}

#[test]
fn raw_sockets_not_watched_are_left_to_the_reader() {
    let mut b = ImageBehaviour::new("app:1", None);
    b.record_exec("/bin/ping", T0, &L);
    let learned = learn_profile(std::slice::from_ref(&b), &req("app")).unwrap();
    let p = checked(&learned);
    assert!(
        !p.network.block_raw_sockets,
        "what was not watched is not refused: the workload may need it"
    );
    assert!(learned
        .text
        .contains("# Raw and packet sockets were not watched while learning"));
    b.mark_raw_sockets_watched();
    let p = checked(&learn_profile(&[b], &req("app")).unwrap());
    assert!(p.network.block_raw_sockets);
}

#[test]
fn events_the_agent_fell_behind_on_are_said_in_the_header() {
    let mut b = busybox_workload();
    b.record_missed(40, T0 + 10, T0 + 20);
    b.record_missed(2, T0 + 30, T0 + 30);
    let learned = learn_profile(&[b], &req("seawall-test/busybox*")).unwrap();
    assert_eq!(learned.missed, 42);
    assert!(
        learned.text.contains(
            "# MISSED: 42 events of these containers were not learned because the agent fell behind\n\
             # (from 2026-09-21T14:13:30Z to 2026-09-21T14:13:50Z): every list below may be incomplete.\n"
        ),
        "{}",
        learned.text
    );
    checked(&learned);
}
