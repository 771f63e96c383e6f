use super::*;

fn profile(text: &str) -> Profile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, text).unwrap();
    seawall_profile::load_file_with_warnings(&path).unwrap().0
}

const FULL: Features = Features {
    landlock_abi: 7,
    user_notif: true,
    addfd_send: true,
    wait_killable: true,
    memfd_noexec: true,
};

const ENFORCE_ALL: &str = r#"[profile]
name = "app"
mode = "enforce"
[drift]
prevent = true
[exec]
deny = ["/usr/bin/wget"]
[files]
read_only = ["/etc/**"]
[network]
egress_allow = ["127.0.0.1:8080/tcp", "10.0.0.0/8:53/udp"]
listen_allow = [80, "8000-8001"]
block_raw_sockets = true
"#;

#[test]
fn a_full_kernel_enforces_everything_and_refuses_nothing() {
    let p = Plan::new(&profile(ENFORCE_ALL), FULL);
    assert!(p.refusals().is_empty(), "{:?}", p.refusals());
    assert!(p.landlock_drift && p.landlock_exec && p.landlock_files);
    assert!(p.watch_exec && p.memfd_noexec && p.net_on_behalf && !p.net_watch);
    assert!(p.watch_code_maps);
    assert_eq!(p.watch_files, FileWatch::Changes);
    assert_eq!(p.raw_sockets, Mode::Enforce);
    assert_eq!(p.tcp.bind, Some(vec![0, 80, 8000, 8001]));
    assert_eq!(p.tcp.connect, Some(vec![8080]));
    assert!(p.scopes.signal && p.scopes.abstract_unix && !p.guard_pid_in_filter);
    assert!(p.describe().contains("drift (enforce): Landlock"));
}

#[test]
fn a_kernel_without_landlock_or_notification_refuses_enforce_but_runs_audit() {
    let bare = Features {
        landlock_abi: 0,
        user_notif: false,
        addfd_send: false,
        wait_killable: false,
        memfd_noexec: false,
    };
    let p = Plan::new(&profile(ENFORCE_ALL), bare);
    let r = p.refusals();
    assert!(
        r.iter()
            .any(|s| s.starts_with("drift: files written after start")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|s| s.starts_with("drift: code not in the image can be mapped executable")),
        "{r:?}"
    );
    assert!(!p.watch_code_maps);
    assert!(r.iter().any(|s| s.starts_with("exec: ")), "{r:?}");
    assert!(r.iter().any(|s| s.starts_with("file: ")), "{r:?}");
    assert!(r.iter().any(|s| s.starts_with("network: egress")), "{r:?}");
    assert!(p.guard_pid_in_filter);

    let audit = ENFORCE_ALL.replace("mode = \"enforce\"", "mode = \"audit\"");
    let p = Plan::new(&profile(&audit), bare);
    assert!(p.refusals().is_empty(), "{:?}", p.refusals());
    assert!(p.describe().contains("degraded: no events"));
}

#[test]
fn landlock_port_rules_only_when_ports_say_it_all() {
    let any_port = ENFORCE_ALL.replace("\"127.0.0.1:8080/tcp\"", "\"127.0.0.1\"");
    let p = Plan::new(&profile(&any_port), FULL);
    assert_eq!(p.tcp.connect, None);
    let old = Features {
        landlock_abi: 3,
        ..FULL
    };
    let p = Plan::new(&profile(ENFORCE_ALL), old);
    assert_eq!((p.tcp.bind.clone(), p.tcp.connect.clone()), (None, None));
    assert!(p
        .refusals()
        .iter()
        .any(|s| s.contains("abstract unix sockets")));
}

#[test]
fn the_shipped_example_profile_loads_and_a_full_kernel_enforces_all_of_it() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/micro/app.toml");
    let (p, warnings) = seawall_profile::load_file_with_warnings(&path).unwrap();
    // The only warning is the one that says it is a seawall-micro profile.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.starts_with("no `images`"),
        "{warnings:?}"
    );
    let plan = Plan::new(&p, FULL);
    assert!(plan.refusals().is_empty(), "{:?}", plan.refusals());
    assert!(plan.landlock_drift && plan.landlock_exec && plan.landlock_files);
    assert!(plan.net_on_behalf && plan.memfd_noexec);
    assert_eq!(plan.watch_files, FileWatch::All);
    assert_eq!(plan.raw_sockets, Mode::Enforce);
    assert!(plan.tcp.bind.as_ref().is_some_and(|b| b.contains(&8080)));
}

#[test]
fn code_mappings_are_watched_whenever_drift_is_on() {
    let audit = ENFORCE_ALL.replace("prevent = true", "prevent = true\nmode = \"audit\"");
    assert!(Plan::new(&profile(&audit), FULL).watch_code_maps);
    let off = ENFORCE_ALL.replace("prevent = true", "prevent = false");
    let p = Plan::new(&profile(&off), FULL);
    assert!(!p.watch_code_maps, "{}", p.describe());
}

#[test]
fn w_xor_x_is_the_default_and_allow_anonymous_exec_lifts_it() {
    let p = Plan::new(&profile(ENFORCE_ALL), FULL);
    assert!(!p.anonymous_exec);
    let wx = "W^X: anonymous or written memory never becomes executable";
    assert!(p.describe().contains(wx), "{}", p.describe());
    let jit = ENFORCE_ALL.replace(
        "prevent = true\n",
        "prevent = true\nallow_anonymous_exec = true\n",
    );
    let p = Plan::new(&profile(&jit), FULL);
    assert!(p.anonymous_exec && p.watch_code_maps);
    assert!(!p.describe().contains(wx), "{}", p.describe());
    assert!(
        p.describe().contains("drift.allow_anonymous_exec = true"),
        "{}",
        p.describe()
    );
}
