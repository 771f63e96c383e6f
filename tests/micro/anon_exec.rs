//! W^X under drift prevention (`drift.allow_anonymous_exec`, default false): memory a process
//! can write never becomes code. Anonymous mappings asked executable, an image file's private
//! copy written and then made executable, anything writable and executable at once, and a
//! JIT's round (write code into an anonymous page, make it executable, call it) are refused
//! under enforce and reported under audit; with the key set, the JIT runs and nothing is
//! reported about it, while a dropped file still does not map executable. The writes that
//! ignore page protections (`/proc/self/mem`, `PTRACE_POKETEXT`) are shut under W^X too.

use super::*;

const ATTEMPTS: [&str; 5] = [
    "mmap(anonymous, PROT_EXEC)",
    "mmap(anonymous, RWX)",
    "mmap(file, RWX)",
    "mprotect(written file copy, PROT_EXEC)",
    "mprotect(anonymous, PROT_EXEC)",
];

fn profile(drift: &str) -> String {
    enforce_profile("\"127.0.0.1\"").replace("prevent = true", &format!("prevent = true\n{drift}"))
}

fn w_x_events<'a>(r: &'a Run, action: &str) -> Vec<&'a Value> {
    r.events
        .iter()
        .filter(|e| is(e, "exec", "drift", action) && message_has(e, "W^X"))
        .collect()
}

const SCRIPT: &str = r#"
    /mt/micro-helper anon-exec /mt/micro-helper
    echo "benign=$(echo ok)"
    cp /mt/micro-helper /tmp/dropped
    /mt/micro-helper map-file /tmp/dropped
"#;

#[test]
fn under_w_xor_x_memory_the_process_writes_never_becomes_code() {
    if !ready() {
        return;
    }
    let r = run(&profile(""), "none", SCRIPT);
    for op in ATTEMPTS {
        r.assert_out(&format!("{op}: EPERM"));
    }
    assert!(!r.stdout().contains("jit: answer"), "{}", r.stdout());
    r.assert_out("benign=ok");
    r.assert_out("mmap(PROT_EXEC) /tmp/dropped: EPERM");
    let blocked = w_x_events(&r, "blocked");
    for what in [
        "mmap(PROT_EXEC) of anonymous memory",
        "asked writable and executable",
        "mprotect(PROT_EXEC) of a written private copy of /mt/micro-helper",
        "mprotect(PROT_EXEC) of anonymous memory",
    ] {
        assert!(
            blocked.iter().any(|e| message_has(e, what)),
            "no blocked event `{what}`: {blocked:?}"
        );
    }
    assert!(blocked
        .iter()
        .all(|e| e["process"]["args"][1] == "anon-exec" && e["severity"] == "critical"));
}

#[test]
fn in_audit_mode_anonymous_code_runs_and_is_reported() {
    if !ready() {
        return;
    }
    let r = run(&profile("mode = \"audit\""), "none", SCRIPT);
    for op in ATTEMPTS {
        r.assert_out(&format!("{op}: ok"));
    }
    r.assert_out("jit: answer=42");
    let audited = w_x_events(&r, "audited");
    assert!(audited.len() >= ATTEMPTS.len(), "{audited:?}");
    assert!(w_x_events(&r, "blocked").is_empty(), "{:?}", r.blocked());
}

#[test]
fn a_jit_runs_when_the_profile_allows_anonymous_exec() {
    if !ready() {
        return;
    }
    let r = run(&profile("allow_anonymous_exec = true"), "none", SCRIPT);
    for op in ATTEMPTS {
        r.assert_out(&format!("{op}: ok"));
    }
    r.assert_out("jit: answer=42");
    r.assert_out("benign=ok");
    assert!(w_x_events(&r, "audited").is_empty() && w_x_events(&r, "blocked").is_empty());
    // A dropped file is still no code: the loader's way in stays shut.
    r.assert_out("mmap(PROT_EXEC) /tmp/dropped: EPERM");
    r.event("the dropped file refused", |e| {
        is(e, "exec", "drift", "blocked") && e["file"]["path"] == "/tmp/dropped"
    });
}

#[test]
fn under_w_xor_x_no_write_that_ignores_page_protections_reaches_code() {
    if !ready() {
        return;
    }
    let script = "/mt/micro-helper code-writes; echo benign=$(grep -c ^Pid: /proc/self/status)";
    let r = run(&profile(""), "none", script);
    r.assert_out("open(/proc/self/mem, O_RDWR): EACCES");
    r.assert_out("self-mem: answer=7");
    r.assert_out("ptrace(POKETEXT): EPERM");
    r.assert_out("ptrace(POKEDATA): EPERM");
    r.assert_out("traced child: answer=7");
    // Reading /proc stays as it was.
    r.assert_out("benign=1");
    for req in ["PTRACE_POKETEXT", "PTRACE_POKEDATA"] {
        r.event(req, |e| {
            is(e, "exec", "drift", "blocked")
                && message_has(e, &format!("ptrace({req})"))
                && e["process"]["args"][1] == "code-writes"
        });
    }

    // The same program where the profile lets written memory become code: both writes land,
    // which is what the refusals above are keeping out.
    let r = run(&profile("allow_anonymous_exec = true"), "none", script);
    r.assert_out("open(/proc/self/mem, O_RDWR): ok");
    r.assert_out("self-mem: answer=42");
    r.assert_out("ptrace(POKETEXT): ok");
    r.assert_out("traced child: answer=42");
}
