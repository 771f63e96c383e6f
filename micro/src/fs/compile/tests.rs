use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["bin", "tmp", "etc/nginx", "opt/app"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for (f, mode) in [
            ("bin/tool", 0o755),
            ("bin/data", 0o644),
            ("etc/conf", 0o644),
            ("etc/other", 0o644),
            ("etc/secret", 0o600),
            ("etc/nginx/nginx.conf", 0o644),
            ("opt/app/run", 0o755),
        ] {
            fs::write(r.join(f), "x").unwrap();
            fs::set_permissions(r.join(f), fs::Permissions::from_mode(mode)).unwrap();
        }
        Tree { dir }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }
    fn snap(&self) -> Snapshot {
        Snapshot::take(self.dir.path(), 10_000).unwrap()
    }
}

fn has(c: &Compiled, p: &Path, r: Rights) -> bool {
    c.rights_at(p) & r == r
}

#[test]
fn drift_grants_execute_only_to_start_executables_and_never_with_write() {
    let t = Tree::new();
    let c = compile(
        &t.snap(),
        &FsIntent {
            abi: 7,
            drift: true,
            ..FsIntent::default()
        },
    );
    assert_eq!(
        c.handled & (EXECUTE | WRITE_FILE | REFER),
        EXECUTE | WRITE_FILE | REFER
    );
    assert!(has(&c, &t.p("bin/tool"), EXECUTE));
    assert!(!has(&c, &t.p("bin/tool"), WRITE_FILE));
    assert!(!has(&c, &t.p("bin/tool"), TRUNCATE));
    assert!(has(&c, &t.p("bin/data"), WRITE_FILE));
    assert!(!has(&c, &t.p("bin/data"), EXECUTE));
    // A new file in /tmp is writable, not executable; /bin takes no new regular file.
    assert!(has(&c, &t.p("tmp/new"), WRITE_FILE | MAKE_REG));
    assert!(!has(&c, &t.p("tmp/new"), EXECUTE));
    assert!(!has(&c, &t.p("bin"), MAKE_REG));
    assert!(!has(&c, &t.p("bin/new"), EXECUTE));
    assert!(has(&c, &t.p("opt/app/run"), EXECUTE));
}

#[test]
fn exec_allow_and_deny_with_drift_and_without() {
    let t = Tree::new();
    let allow = [PathRule::parse(&format!("{}/**", t.s("opt/app"))).unwrap()];
    let deny = [PathRule::parse(&t.s("bin/tool")).unwrap()];
    let snap = t.snap();
    let c = compile(
        &snap,
        &FsIntent {
            abi: 7,
            drift: true,
            exec_allow: Some(&allow),
            ..FsIntent::default()
        },
    );
    assert!(has(&c, &t.p("opt/app/run"), EXECUTE));
    assert!(!has(&c, &t.p("bin/tool"), EXECUTE));
    // Without drift, an allowed tree takes new files too; a denied file stays denied.
    let c = compile(
        &snap,
        &FsIntent {
            abi: 7,
            exec_allow: Some(&allow),
            exec_deny: &deny,
            ..FsIntent::default()
        },
    );
    assert!(has(&c, &t.p("opt/app/new"), EXECUTE));
    assert!(!has(&c, &t.p("bin/tool"), EXECUTE));
    assert_eq!(c.handled, EXECUTE | REFER);
    // Deny only: everything else executes, including files created later elsewhere.
    let c = compile(
        &snap,
        &FsIntent {
            abi: 7,
            exec_deny: &deny,
            ..FsIntent::default()
        },
    );
    assert!(!has(&c, &t.p("bin/tool"), EXECUTE));
    assert!(has(&c, &t.p("bin/data"), EXECUTE));
    assert!(has(&c, &t.p("tmp/new"), EXECUTE));
}

#[test]
fn read_only_and_deny_cover_the_file_its_directory_and_its_hard_links() {
    let t = Tree::new();
    fs::create_dir(t.p("links")).unwrap();
    fs::hard_link(t.p("etc/conf"), t.p("links/conf-link")).unwrap();
    let ro = PathGlobs::new(vec![t.s("etc/conf"), format!("{}/**", t.s("etc/nginx"))]).unwrap();
    let deny = PathGlobs::new(vec![t.s("etc/secret")]).unwrap();
    let c = compile(
        &t.snap(),
        &FsIntent {
            abi: 7,
            read_only: Some(&ro),
            deny: Some(&deny),
            ..FsIntent::default()
        },
    );
    for p in ["etc/conf", "links/conf-link", "etc/nginx/nginx.conf"] {
        assert!(!has(&c, &t.p(p), WRITE_FILE), "{p}");
        assert!(!has(&c, &t.p(p), TRUNCATE), "{p}");
        assert!(has(&c, &t.p(p), READ_FILE), "{p}");
    }
    // The directories of read-only files: no unlink, rename over, or new entry that matches.
    assert!(!has(&c, &t.p("etc"), REMOVE_FILE));
    assert!(!has(&c, &t.p("etc"), MAKE_REG));
    assert!(!has(&c, &t.p("etc/nginx"), MAKE_REG));
    assert!(has(&c, &t.p("etc/other"), WRITE_FILE | READ_FILE));
    assert!(has(
        &c,
        &t.p("tmp/x"),
        WRITE_FILE | MAKE_REG | REMOVE_FILE | READ_FILE
    ));
    // The price of a hard link: its directory cannot hand write to its other, new entries.
    assert!(!has(&c, &t.p("links/new"), WRITE_FILE));
    assert!(!has(&c, &t.p("etc/secret"), READ_FILE));
    // A denied file takes nothing from its directories but file rights: / is still listable.
    assert!(has(&c, t.dir.path(), READ_DIR));
    assert!(!has(&c, &t.p("etc/secret"), WRITE_FILE));
    assert!(c.rules.len() < 40, "{}", c.rules.len());
}

#[test]
fn older_abis_drop_what_they_do_not_know_and_nothing_means_no_ruleset() {
    let t = Tree::new();
    let ro = PathGlobs::new(vec![t.s("etc/conf")]).unwrap();
    let c = compile(
        &t.snap(),
        &FsIntent {
            abi: 1,
            read_only: Some(&ro),
            ..FsIntent::default()
        },
    );
    assert_eq!(c.handled & (REFER | TRUNCATE), 0);
    assert!(!has(&c, &t.p("etc/conf"), WRITE_FILE));
    let none = compile(
        &t.snap(),
        &FsIntent {
            abi: 7,
            ..FsIntent::default()
        },
    );
    assert_eq!(none.handled, 0);
    assert!(none.rules.is_empty());
}

#[test]
fn under_w_x_nothing_below_a_procfs_is_writable_and_everything_else_keeps_its_rights() {
    let t = Tree::new();
    fs::create_dir_all(t.p("proc/1")).unwrap();
    fs::write(t.p("proc/1/mem"), "x").unwrap();
    let mut snap = t.snap();
    // The fixture cannot mount a procfs: mark its stand-in as the walk marks a real one.
    let proc_dir = snap.find(&t.p("proc")).unwrap();
    snap.nodes[proc_dir].kind = NodeKind::Dir {
        walked: false,
        pseudo: true,
    };
    snap.procfs.push(proc_dir);
    let shut = compile(
        &snap,
        &FsIntent {
            abi: 7,
            drift: true,
            shut_proc_writes: true,
            ..FsIntent::default()
        },
    );
    assert!(!has(&shut, &t.p("proc/1/mem"), WRITE_FILE));
    assert!(!has(&shut, &t.p("proc/1/mem"), TRUNCATE));
    assert!(has(&shut, &t.p("tmp/new"), WRITE_FILE | MAKE_REG));
    assert!(has(&shut, &t.p("etc/conf"), WRITE_FILE));
    // Without the key (allow_anonymous_exec), /proc keeps its write right.
    let open = compile(
        &snap,
        &FsIntent {
            abi: 7,
            drift: true,
            ..FsIntent::default()
        },
    );
    assert!(has(&open, &t.p("proc/1/mem"), WRITE_FILE));
}
