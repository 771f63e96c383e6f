//! Whole-profile tests: the shipped examples, every error with its position, loading and matching.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")
}

/// Writes `files` into a fresh directory.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Checks one file named `name` and returns its diagnostics as `line:col: severity: message`.
fn diags(name: &str, text: &str) -> Vec<String> {
    let dir = dir_with(&[(name, text)]);
    let report = check_path(&dir.path().join(name));
    report
        .diagnostics
        .iter()
        .map(|d| {
            let s = d.to_string();
            let prefix = format!("{}:", dir.path().join(name).display());
            s.strip_prefix(&prefix).unwrap_or(&s).to_string()
        })
        .collect()
}

const HEAD: &str = "[profile]\nname = \"web\"\nimages = [\"nginx*\"]\n";

#[test]
fn shipped_examples_are_valid() {
    let report = check_path(&examples_dir());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.warnings().count(), 0, "{report}");
    assert_eq!(report.summary(), "4 profiles ok");

    let set = ProfileSet::load_dir(&examples_dir()).unwrap();
    let names: Vec<&str> = set.profiles().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "nginx", "postgres", "redis"]);

    let default = set.default_profile();
    assert_eq!(default.source, examples_dir().join("default.toml"));
    assert_eq!(default.drift.mode, Mode::Audit);

    let nginx = set.for_image("docker.io/library/nginx:1.27", None);
    assert_eq!(nginx.name, "nginx");
    assert_eq!(nginx.mode, Mode::Enforce);
    assert_eq!(nginx.drift.mode, Mode::Enforce);
    assert_eq!(nginx.exec.container_exec, Mode::Enforce);
    assert!(nginx
        .exec
        .allow
        .as_ref()
        .unwrap()
        .iter()
        .any(|r| r.matches("/usr/sbin/nginx")));
    assert!(nginx.exec.deny.iter().any(|r| r.matches("/bin/bash")));
    assert_eq!(nginx.files.mode, Mode::Audit);
    assert!(nginx.files.deny.matches("/root/.ssh/id_rsa"));
    assert!(nginx
        .files
        .read_only
        .matches("/etc/nginx/conf.d/default.conf"));
    assert!(nginx.network.block_raw_sockets);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let allow = nginx.network.egress_allow.as_ref().unwrap();
    assert!(allow
        .iter()
        .any(|r| r.matches(ip("8.8.8.8"), 53, Protocol::Udp)));
    assert!(!allow
        .iter()
        .any(|r| r.matches(ip("8.8.8.8"), 443, Protocol::Tcp)));
    assert!(allow
        .iter()
        .any(|r| r.matches(ip("::1"), 9000, Protocol::Tcp)));
    assert_eq!(
        nginx.network.listen_allow.as_deref(),
        Some(
            &[
                PortRange::single(80),
                PortRange::single(443),
                PortRange {
                    first: 8080,
                    last: 8081
                }
            ][..]
        )
    );

    let redis = set.for_image("redis:7.2-alpine", None);
    assert_eq!(redis.name, "redis");
    assert_eq!((redis.mode, redis.drift.mode), (Mode::Audit, Mode::Enforce));
    assert!(redis.exec.allow.is_none());
    let allow = redis.network.egress_allow.as_ref().unwrap();
    assert!(allow
        .iter()
        .any(|r| r.matches(ip("10.1.2.3"), 6379, Protocol::Tcp)));
    assert!(allow
        .iter()
        .any(|r| r.matches(ip("fd12::1"), 6379, Protocol::Tcp)));

    let pg = set.for_image(
        "some/mirror:whatever",
        Some("sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"),
    );
    assert_eq!(pg.name, "postgres");
    assert_eq!(pg.network.mode, Mode::Audit);
    assert!(pg
        .drift
        .allow
        .iter()
        .any(|r| r.matches("/tmp/pg_jit/x/y.so")));

    assert_eq!(
        set.for_image("seawall-test/busybox:latest", None).name,
        "default"
    );
}

#[test]
fn each_example_file_checks_on_its_own() {
    for name in ["default.toml", "nginx.toml", "redis.toml", "postgres.toml"] {
        let report = check_path(&examples_dir().join(name));
        assert!(report.is_ok(), "{name}: {report}");
        assert_eq!(report.summary(), "1 profile ok", "{name}");
    }
}

#[test]
fn minimal_profile_defaults() {
    let dir = dir_with(&[("web.toml", HEAD)]);
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    let p = set.for_image("nginx:1", None);
    assert_eq!(p.name, "web");
    assert_eq!(p.mode, Mode::Audit);
    assert_eq!(p.drift.mode, Mode::Off);
    assert_eq!(p.exec.container_exec, Mode::Off);
    assert!(p.exec.allow.is_none() && p.network.egress_allow.is_none());
    // No default.toml: the built-in default (drift audit) applies.
    let d = set.for_image("alpine:3", None);
    assert_eq!(d.name, "default");
    assert_eq!(d.source, PathBuf::from("<builtin>"));
    assert_eq!(d.drift.mode, Mode::Audit);
}

#[test]
fn unknown_keys_list_known_ones_and_suggest_typos() {
    let d = diags("web.toml", &format!("{HEAD}[drift]\nprevnt = true\n"));
    assert_eq!(
        d,
        ["5:1: error: unknown key `prevnt` in [drift]; did you mean `prevent`? known keys: prevent, allow, mode, allow_anonymous_exec"]
    );
    let d = diags("web.toml", &format!("{HEAD}\n[netwrk]\nmode = \"audit\"\n"));
    assert_eq!(
        d,
        ["5:2: error: unknown key `netwrk` in the top level; did you mean `network`? known keys: profile, drift, exec, files, network, intel"]
    );
    let d = diags("web.toml", &format!("{HEAD}[exec]\nfileless = true\n"));
    assert_eq!(
        d,
        ["5:1: error: unknown key `fileless` in [exec]; known keys: allow, deny, block_container_exec, mode"]
    );
}

#[test]
fn bad_modes_list_the_allowed_values() {
    let d = diags("web.toml", &format!("{HEAD}mode = \"block\"\n"));
    assert_eq!(
        d,
        ["4:8: error: `profile.mode` must be one of \"audit\", \"enforce\", found `\"block\"`"]
    );
    let d = diags("web.toml", &format!("{HEAD}mode = \"off\"\n"));
    assert!(d[0].starts_with("4:8: error: `profile.mode` must be one of \"audit\", \"enforce\", found `\"off\"` (to switch a single control off"), "{d:?}");
    let d = diags("web.toml", &format!("{HEAD}[files]\nmode = 1\n"));
    assert_eq!(d, ["5:8: error: `files.mode` must be one of \"audit\", \"enforce\", \"off\", found an integer"]);
}

#[test]
fn bad_network_entries_show_the_syntax() {
    let text = format!(
        "{HEAD}[network]\negress_allow = [\"10.0.0.1/8\", \"10.0.0.0/8:99999\", {{ cidr = \"::1\", ports = \"1-2\", proto = \"tcp\" }}]\nlisten_allow = [80, \"90-80\", 70000]\n"
    );
    let d = diags("web.toml", &text);
    assert_eq!(d.len(), 5, "{d:?}");
    assert!(d[0].starts_with("5:17: error: network.egress_allow: `10.0.0.1/8` has host bits set after the /8 prefix; write `10.0.0.0/8` for the network, or `10.0.0.1` for the single address"), "{d:?}");
    assert!(d[1].starts_with("5:31: error: network.egress_allow: `10.0.0.0/8:99999`: `99999` is not a port or port range"), "{d:?}");
    assert!(d[2].starts_with("5:82: error: unknown key `proto` in a `network.egress_allow` entry; did you mean `protocol`? known keys: cidr, ports, protocol"), "{d:?}");
    assert_eq!(
        d[3],
        "6:21: error: network.listen_allow: port range `90-80` runs backwards; write `80-90`"
    );
    assert_eq!(d[4], "6:30: error: network.listen_allow: 70000 is not a port; write 0-65535, or a range as a string (`\"8000-8100\"`)");
}

#[test]
fn exec_globs_outside_the_three_forms_are_rejected_with_the_nearest_form() {
    let d = diags(
        "web.toml",
        &format!("{HEAD}[exec]\nallow = [\"/usr/sbin/nginx\", \"/usr/bin/ngin*\"]\n[drift]\nprevent = true\nallow = [\"/opt/*/bin/*\"]\n"),
    );
    assert_eq!(
        d,
        [
            "5:29: error: exec.allow: `/usr/bin/ngin*` is not a form the kernel can enforce: exec and drift paths are enforced in the kernel, so they must be an exact path (`/usr/bin/nginx`), one directory level (`/usr/bin/*`) or a whole tree (`/opt/app/**`); the nearest allowed form is `/usr/bin/*` (every file in `/usr/bin/`)",
            "8:10: error: drift.allow: `/opt/*/bin/*` is not a form the kernel can enforce: exec and drift paths are enforced in the kernel, so they must be an exact path (`/usr/bin/nginx`), one directory level (`/usr/bin/*`) or a whole tree (`/opt/app/**`); the nearest allowed form is `/opt/**` (everything below `/opt/`)",
        ]
    );
}

#[test]
fn all_errors_of_a_file_are_collected() {
    let text = "[profile]\nname = \"bad name\"\nimages = [\"sha256:abc\", 3]\nmode = \"enforce\"\n\
                [drift]\nprevent = \"yes\"\n[files]\ndeny = \"/etc/shadow\"\nmonitor = [\"etc/x\"]\n";
    let d = diags("web.toml", text);
    let positions: Vec<&str> = d.iter().map(|s| s.split(": ").next().unwrap()).collect();
    assert_eq!(
        positions,
        ["2:8", "3:11", "3:25", "6:11", "8:8", "9:12"],
        "{d:#?}"
    );
    assert!(d[0].contains("may only contain letters, digits"));
    assert!(d[1].contains("64 hex digits"));
    assert!(d[2].contains("entries must be strings in double quotes, found an integer"));
    assert!(d[3].contains("`drift.prevent` must be `true` or `false` (no quotes), found a string"));
    assert!(d[4].contains("e.g. `deny = [\"/etc/shadow\"]`"));
    assert!(d[5].contains("write `/etc/x`"));
    let report = check_path(&dir_with(&[("web.toml", text)]).path().join("web.toml"));
    assert_eq!(report.summary(), "6 errors in 1 file");
}

#[test]
fn toml_syntax_errors_have_a_position() {
    let d = diags("web.toml", "[profile]\nname = \"web\nimages = []\n");
    assert_eq!(d.len(), 1);
    assert!(
        d[0].starts_with("2:") && d[0].contains("invalid TOML"),
        "{d:?}"
    );
}

#[test]
fn structural_errors() {
    let d = diags("web.toml", "[drift]\nprevent = true\n");
    assert_eq!(d.len(), 1);
    assert!(
        d[0].starts_with("1:1: error: missing the `[profile]` table"),
        "{d:?}"
    );

    let d = diags("web.toml", "[profile]\nname = \"web\"\nimages = []\n");
    assert_eq!(d, ["3:10: error: this profile matches no container; add `images = [\"nginx*\"]` (globs on the image reference), `images = [\"sha256:...\"]` (digests), or a Kubernetes selector `namespaces = [\"shop\"]` / `pod_labels = { app = \"web\" }`; or remove `images` for a seawall-micro profile"]);

    let d = diags("web.toml", "[profile]\nimages = [\"x\"]\n");
    assert!(
        d[0].starts_with("1:1: error: `[profile]` has no `name`"),
        "{d:?}"
    );

    let d = diags("default.toml", "[profile]\nname = \"web\"\n");
    assert!(
        d[0].starts_with(
            "2:8: error: `default.toml` holds the default profile; write `name = \"default\"`"
        ),
        "{d:?}"
    );

    let d = diags("web.toml", "[profile]\nname = \"default\"\n");
    assert!(
        d[0].starts_with("2:8: error: the profile named `default` must live in `default.toml`"),
        "{d:?}"
    );

    let d = diags("web.toml", &format!("drift = true\n{HEAD}"));
    assert!(
        d[0].starts_with("1:9: error: `drift` must be a table"),
        "{d:?}"
    );

    let d = diags(
        "default.toml",
        "[profile]\nname = \"default\"\nimages = [\"x\"]\n",
    );
    assert!(
        d[0].starts_with("3:10: warning: the default profile applies to every container"),
        "{d:?}"
    );

    let d = diags("web.toml", &format!("{HEAD}[exec]\nallow = []\n"));
    assert!(
        d[0].starts_with("5:9: warning: `exec.allow = []` allows no executable"),
        "{d:?}"
    );
}

#[test]
fn duplicate_names_are_errors_and_shared_globs_warnings() {
    let dir = dir_with(&[
        (
            "a.toml",
            "[profile]\nname = \"web\"\nimages = [\"nginx*\"]\n",
        ),
        (
            "b.toml",
            "[profile]\nname = \"web\"\nimages = [\"httpd\"]\n",
        ),
        (
            "c.toml",
            "[profile]\nname = \"other\"\nimages = [\"redis\", \"docker.io/library/nginx*\"]\n",
        ),
    ]);
    let report = check_path(dir.path());
    let a = dir.path().join("a.toml");
    let lines: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            format!("{}:2:8: error: profile name `web` is already used by {}:2:8; each profile needs its own name", dir.path().join("b.toml").display(), a.display()),
            format!("{}:3:20: warning: image pattern `docker.io/library/nginx*` is also claimed by profile `web` at {}:3:11; only `other` applies to those images (first by name); make one pattern more specific or merge the profiles", dir.path().join("c.toml").display(), a.display()),
        ]
    );
    assert_eq!(report.summary(), "1 error in 1 file, 1 warning");
    assert!(!report.is_ok());
}

#[test]
fn load_dir_is_all_or_nothing() {
    let good = "[profile]\nname = \"web\"\nimages = [\"nginx*\"]\n";
    let dir = dir_with(&[
        ("web.toml", good),
        (
            "db.toml",
            "[profile]\nname = \"db\"\nimages = [\"postgres*\"]\nmode = \"enforcing\"\n",
        ),
        ("README.md", "not a profile"),
    ]);
    let err = ProfileSet::load_dir(dir.path()).unwrap_err();
    assert_eq!(err.errors().count(), 1, "{err}");
    assert!(
        err.to_string()
            .contains("db.toml:4:8: error: `profile.mode`"),
        "{err}"
    );
    assert_eq!(err.profiles_ok, 1);

    fs::write(
        dir.path().join("db.toml"),
        "[profile]\nname = \"db\"\nimages = [\"postgres*\"]\nmode = \"enforce\"\n",
    )
    .unwrap();
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    assert_eq!(set.profiles().count(), 3);
    assert_eq!(set.for_image("postgres:16", None).mode, Mode::Enforce);

    assert!(ProfileSet::load_dir(&dir.path().join("missing")).is_err());
}

#[test]
fn image_matching_precedence() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let dir = dir_with(&[
        ("default.toml", "[profile]\nname = \"default\"\n"),
        (
            "any-nginx.toml",
            "[profile]\nname = \"any-nginx\"\nimages = [\"nginx*\"]\n",
        ),
        (
            "nginx-127.toml",
            "[profile]\nname = \"nginx-127\"\nimages = [\"nginx:1.27*\"]\n",
        ),
        (
            "nginx-exact.toml",
            "[profile]\nname = \"nginx-exact\"\nimages = [\"nginx\"]\n",
        ),
        (
            "pinned.toml",
            &format!("[profile]\nname = \"pinned\"\nimages = [\"{digest}\"]\n"),
        ),
        (
            "team.toml",
            "[profile]\nname = \"team\"\nimages = [\"seawall-test/*\"]\n",
        ),
    ]);
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    let name = |r: &str, d: Option<&str>| set.for_image(r, d).name.clone();
    // A digest beats every glob.
    assert_eq!(name("nginx:1.27", Some(digest)), "pinned");
    assert_eq!(name(digest, None), "pinned");
    // Longest literal prefix wins.
    assert_eq!(name("docker.io/library/nginx:1.27.3", None), "nginx-127");
    // Same prefix: the pattern without wildcards wins over `nginx*`.
    assert_eq!(name("nginx:1.26", None), "nginx-exact");
    assert_eq!(name("nginx-exporter:1", None), "any-nginx");
    assert_eq!(name("seawall-test/busybox:latest", None), "team");
    assert_eq!(name("busybox", None), "default");
    assert_eq!(
        set.for_image("busybox", None).source,
        dir.path().join("default.toml")
    );
}

#[test]
fn builtin_default_is_drift_audit_only() {
    let set = ProfileSet::builtin_default();
    let p = set.for_image("anything:1", None);
    assert!(p.is_default());
    assert_eq!(p.drift.mode, Mode::Audit);
    assert_eq!(p.exec.container_exec, Mode::Off);
    assert!(p.exec.allow.is_none() && p.exec.deny.is_empty());
    assert!(p.files.deny.is_empty() && p.network.egress_allow.is_none());
    assert_eq!(set.profiles().count(), 1);
}

#[test]
fn array_of_tables_form_for_egress() {
    let text = format!(
        "{HEAD}[[network.egress_allow]]\ncidr = \"10.0.0.0/8\"\nports = \"80-90\"\nprotocol = \"tcp\"\n"
    );
    let dir = dir_with(&[("web.toml", &text)]);
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    let rules = set
        .for_image("nginx", None)
        .network
        .egress_allow
        .clone()
        .unwrap();
    assert_eq!(rules, [NetRule::parse("10.0.0.0/8:80-90/tcp").unwrap()]);
}

#[test]
fn intel_mode_overrides_the_agent_default_and_ignores_the_profile_mode() {
    let intel_of = |text: &str| {
        let dir = dir_with(&[("web.toml", text)]);
        let set = ProfileSet::load_dir(dir.path()).unwrap();
        set.for_image("nginx:1", None).intel
    };
    assert_eq!(intel_of(&format!("{HEAD}mode = \"enforce\"\n")), None);
    assert_eq!(
        intel_of(&format!("{HEAD}[intel]\nmode = \"audit\"\n")),
        Some(Mode::Audit)
    );
    assert_eq!(
        intel_of(&format!("{HEAD}[intel]\nmode = \"off\"\n")),
        Some(Mode::Off)
    );
    assert_eq!(intel_of(&format!("{HEAD}[intel]\n")), None);
    let d = diags("web.toml", &format!("{HEAD}[intel]\nmode = \"block\"\n"));
    assert_eq!(d, ["5:8: error: `intel.mode` must be one of \"audit\", \"enforce\", \"off\", found `\"block\"`"]);
    let d = diags("web.toml", &format!("{HEAD}[intel]\nfeeds = []\n"));
    assert!(
        d[0].contains("unknown key `feeds` in [intel]; known keys: mode"),
        "{d:?}"
    );
}

#[test]
fn a_profile_without_images_is_a_micro_profile() {
    let text = "[profile]\nname = \"app\"\nmode = \"enforce\"\n[drift]\nprevent = true\n";
    let d = diags("app.toml", text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("1:1: warning: no `images`: this profile is for seawall-micro"),
        "{d:?}"
    );
    let dir = dir_with(&[("app.toml", text)]);
    let report = check_path(dir.path());
    assert!(report.is_ok());
    assert_eq!(report.summary(), "1 profile ok, 1 warning");

    let (p, warnings) = load_file_with_warnings(&dir.path().join("app.toml")).unwrap();
    assert_eq!(
        (p.name.as_str(), p.mode, p.drift.mode),
        ("app", Mode::Enforce, Mode::Enforce)
    );
    assert!(p.images.is_empty());
    assert_eq!(warnings.len(), 1);

    // The agent loads it, but it applies to no image: the default does.
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    assert_eq!(set.for_image("app:1", None).name, "default");
    assert_eq!(set.warnings().len(), 1);

    let err = load_file(dir.path()).unwrap_err();
    assert!(err.diagnostics[0].message.contains("not a file"));
    let bad = dir_with(&[("bad.toml", "[profile]\nname = \"x\"\nmode = \"on\"\n")]);
    let err = load_file(&bad.path().join("bad.toml")).unwrap_err();
    assert!(!err.is_ok());
}

#[test]
fn enforce_after_promotes_only_the_controls_that_inherit() {
    let text = "[profile]\nname = \"web\"\nimages = [\"nginx*\"]\nenforce_after = \"1d12h\"\n\
                [drift]\nprevent = true\n[exec]\nallow = [\"/bin/sh\"]\nblock_container_exec = true\n\
                [files]\nmode = \"audit\"\nread_only = [\"/etc/**\"]\n[network]\nmode = \"off\"\n";
    let dir = dir_with(&[("web.toml", text)]);
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    let p = set.for_image("nginx", None);
    // As written: everything audits until the agent promotes it.
    assert_eq!(p.mode, Mode::Audit);
    assert_eq!(
        (p.drift.mode, p.exec.mode, p.exec.container_exec),
        (Mode::Audit, Mode::Audit, Mode::Audit)
    );
    let promotion = p.enforce_after.as_ref().unwrap();
    assert_eq!(promotion.after.as_secs(), 36 * 3600);

    let q = p.promoted().unwrap();
    assert_eq!(q.mode, Mode::Enforce);
    assert_eq!(
        (q.drift.mode, q.exec.mode, q.exec.container_exec),
        (Mode::Enforce, Mode::Enforce, Mode::Enforce)
    );
    // A control that says its own mode keeps it: the operator chose it.
    assert_eq!((q.files.mode, q.network.mode), (Mode::Audit, Mode::Off));
    assert_eq!(q.exec.allow, p.exec.allow);
    assert!(q.files.read_only.matches("/etc/passwd"));
    assert!(q.enforce_after.is_none() && q.promoted().is_none());

    // Without the key nothing is promoted.
    assert!(ProfileSet::load_dir(dir_with(&[("web.toml", HEAD)]).path())
        .unwrap()
        .for_image("nginx", None)
        .promoted()
        .is_none());
}

#[test]
fn a_set_with_promoted_profiles_swaps_only_those_named() {
    let web = format!("{HEAD}enforce_after = \"7d\"\n[drift]\nprevent = true\n");
    let db = "[profile]\nname = \"db\"\nimages = [\"postgres*\"]\nenforce_after = \"7d\"\n\
              [drift]\nprevent = true\n";
    let dir = dir_with(&[("web.toml", &web), ("db.toml", db)]);
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    let promoted = set.with_promoted(|p| p.name == "web");
    let web = promoted.for_image("nginx", None);
    assert_eq!((web.mode, web.drift.mode), (Mode::Enforce, Mode::Enforce));
    assert!(web.enforce_after.is_none());
    let db = promoted.for_image("postgres:15", None);
    assert_eq!((db.mode, db.drift.mode), (Mode::Audit, Mode::Audit));
    assert!(db.enforce_after.is_some());
    // The default has no enforce_after: asking to promote it changes nothing.
    let all = set.with_promoted(|_| true);
    assert_eq!(all.default_profile().mode, set.default_profile().mode);
    assert_eq!(all.profiles().count(), set.profiles().count());
}

#[test]
fn enforce_after_errors() {
    let d = diags("web.toml", &format!("{HEAD}enforce_after = \"7 days\"\n"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("4:17: error: `profile.enforce_after`: `7 days` is not a duration"),
        "{d:?}"
    );
    let d = diags("web.toml", &format!("{HEAD}enforce_after = 7\n"));
    assert!(
        d[0].starts_with("4:17: error: `profile.enforce_after` must be a string"),
        "{d:?}"
    );
    let d = diags(
        "web.toml",
        &format!("{HEAD}mode = \"enforce\"\nenforce_after = \"7d\"\n"),
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("5:17: error: `enforce_after` switches an audit profile to enforce"),
        "{d:?}"
    );
    let d = diags("web.toml", &format!("{HEAD}enfroce_after = \"7d\"\n"));
    assert!(d[0].contains("did you mean `enforce_after`?"), "{d:?}");
}

#[test]
fn kubernetes_selectors_beat_image_matches_in_the_documented_order() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let dir = dir_with(&[
        ("default.toml", "[profile]\nname = \"default\"\n"),
        (
            "nginx.toml",
            &format!("[profile]\nname = \"nginx\"\nimages = [\"nginx*\", \"{digest}\"]\n"),
        ),
        (
            "shop.toml",
            "[profile]\nname = \"shop\"\nnamespaces = [\"shop\"]\n",
        ),
        (
            "teams.toml",
            "[profile]\nname = \"teams\"\nnamespaces = [\"team-*\", \"shop\"]\n",
        ),
        (
            "shop-nginx.toml",
            "[profile]\nname = \"shop-nginx\"\nnamespaces = [\"shop\"]\nimages = [\"nginx*\"]\n",
        ),
        (
            "web.toml",
            "[profile]\nname = \"web\"\npod_labels = { app = \"web\" }\n",
        ),
        (
            "web-front.toml",
            "[profile]\nname = \"web-front\"\nnamespaces = [\"shop\"]\n\n[profile.pod_labels]\napp = \"web\"\ntier = \"front\"\n",
        ),
    ]);
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    let l = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let none = l(&[]);
    let web = l(&[("app", "web")]);
    let web_front = l(&[("app", "web"), ("tier", "front")]);
    let name = |image: &str,
                d: Option<&str>,
                ns: &str,
                labels: &std::collections::BTreeMap<String, String>| {
        set.for_container(
            image,
            d,
            Some(PodRef {
                namespace: ns,
                labels,
            }),
        )
        .name
        .clone()
    };
    // Outside any pod a selector never applies: images only.
    assert_eq!(set.for_image("nginx:1.27", None).name, "nginx");
    assert_eq!(set.for_container("busybox", None, None).name, "default");
    // A namespace beats an image match, even a digest.
    assert_eq!(name("busybox", None, "shop", &none), "shop");
    assert_eq!(name(digest, None, "team-a", &none), "teams");
    // A selector that also names images (which match) beats one that does not.
    assert_eq!(name("nginx:1.27", None, "shop", &none), "shop-nginx");
    // ... but only when they match.
    assert_eq!(name("redis:7", None, "shop", &none), "shop");
    // More pod labels beat fewer, whatever the namespace or images say.
    assert_eq!(name("nginx:1.27", None, "shop", &web), "web");
    assert_eq!(name("nginx:1.27", None, "shop", &web_front), "web-front");
    assert_eq!(name("busybox", None, "elsewhere", &web_front), "web");
    // An exact namespace beats a glob at equal labels.
    assert_eq!(name("busybox", None, "shop", &none), "shop");
    // A pod no selector picks falls back to images, then the default.
    assert_eq!(
        name("nginx:1.27", Some(digest), "elsewhere", &none),
        "nginx"
    );
    assert_eq!(name("busybox", None, "elsewhere", &none), "default");
}

#[test]
fn kubernetes_selector_errors_have_positions() {
    let d = diags(
        "web.toml",
        "[profile]\nname = \"web\"\nnamespaces = [\"Shop\"]\npod_labels = { app = 1 }\n",
    );
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d[0].starts_with("3:15: error: profile.namespaces: `Shop`"),
        "{d:?}"
    );
    assert!(
        d[1].starts_with("4:22: error: `profile.pod_labels.app` must be a string"),
        "{d:?}"
    );
    let d = diags(
        "web.toml",
        "[profile]\nname = \"web\"\npod_labels = \"app=web\"\n",
    );
    assert!(
        d[0].starts_with("3:14: error: `profile.pod_labels` must be a table"),
        "{d:?}"
    );
    // A selector is enough to match something: no `images` needed.
    assert!(diags(
        "web.toml",
        "[profile]\nname = \"web\"\nnamespaces = [\"shop\"]\n"
    )
    .is_empty());
    let d = diags(
        "default.toml",
        "[profile]\nname = \"default\"\nnamespaces = [\"shop\"]\n",
    );
    assert!(
        d[0].contains("warning: the default profile applies to every container"),
        "{d:?}"
    );
}

#[test]
fn drift_allow_anonymous_exec_defaults_to_w_xor_x() {
    let load = |drift: &str| {
        let dir = dir_with(&[("web.toml", &format!("{HEAD}[drift]\n{drift}"))]);
        load_file_with_warnings(&dir.path().join("web.toml")).unwrap()
    };
    let (p, w) = load("prevent = true\n");
    assert!(!p.drift.allow_anonymous_exec && w.is_empty(), "{w:?}");
    let (p, w) = load("prevent = true\nallow_anonymous_exec = true\n");
    assert!(p.drift.allow_anonymous_exec && w.is_empty(), "{w:?}");
    let (_, w) = load("allow_anonymous_exec = true\n");
    assert!(
        w.iter()
            .any(|w| w.to_string().contains("no effect without `prevent = true`")),
        "{w:?}"
    );
    let d = diags(
        "web.toml",
        &format!("{HEAD}[drift]\nallow_anonymous_exec = \"yes\"\n"),
    );
    assert!(
        d.iter()
            .any(|d| d.contains("error") && d.contains("allow_anonymous_exec")),
        "{d:?}"
    );
}
