//! Code that was not in the image never gets mapped executable, exec or no exec: an
//! `LD_PRELOAD` library, a `dlopen`ed one, a program handed to the dynamic loader (`ld.so FILE`),
//! and, from the static helper with raw syscalls, `mmap(PROT_EXEC)` of a dropped file or a memfd,
//! `mprotect`/`pkey_mprotect` to `PROT_EXEC`, and the persona that makes reads executable. The
//! image's own libraries still load; in audit mode the same library runs and is reported.
//!
//! The busybox test image is static, so the dynamic world is built here with the host's gcc and
//! put on `/mt/dyn` (present at start: image files as far as drift is concerned): glibc's loader
//! and libc, `dynprog` (prints `DYN-OK`, or dlopens its argument), and `good.so`. The dropped
//! library `evil.so` waits in `/mt/stage` and is copied to `/tmp` inside the container, which
//! makes it a file that was not there at start.

use super::*;

const DYNPROG_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "dlopen") == 0) {
        void *h = dlopen(argv[2], RTLD_NOW);
        if (!h) { printf("dlopen: %s\n", dlerror()); return 3; }
        int (*answer)(void) = (int (*)(void))dlsym(h, "lib_answer");
        printf("dlopen: ok answer=%d\n", answer ? answer() : -1);
        return 0;
    }
    printf("DYN-OK\n");
    return 0;
}
"#;

/// A library whose constructor prints `NAME-CONSTRUCTOR-RAN` and creates `MARKER`.
const LIB_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void ran(void) {
    int fd = open(MARKER, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
    printf("%s-CONSTRUCTOR-RAN\n", NAME);
    fflush(stdout);
}
int lib_answer(void) { return 42; }
"#;

fn gcc(dir: &Path, args: &[&str]) {
    let out = Command::new("gcc")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("gcc");
    assert!(out.status.success(), "gcc {args:?}: {}", text(&out.stderr));
}

fn gcc_output(args: &[&str]) -> String {
    let out = Command::new("gcc").args(args).output().expect("gcc");
    text(&out.stdout).trim().to_string()
}

/// Whether the host can build the dynamic world; `SKIP: <why>` (a failure on CI) if not.
fn dyn_ready() -> bool {
    if !ready() {
        return false;
    }
    let loader = Path::new("/lib64/ld-linux-x86-64.so.2");
    let why = if !Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Some("no gcc on the host to build the dynamic-loader fixtures".to_string())
    } else if !loader.exists() {
        Some(format!("no glibc loader at {}", loader.display()))
    } else {
        None
    };
    runs_unless(why)
}

/// `/mt/dyn` and `/mt/stage` as the module doc describes.
fn stage_dyn(mt: &Path) {
    let dyn_dir = mt.join("dyn");
    let stage = mt.join("stage");
    std::fs::create_dir_all(&dyn_dir).unwrap();
    std::fs::create_dir_all(&stage).unwrap();
    let loader = std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap();
    std::fs::copy(loader, dyn_dir.join("ld.so")).unwrap();
    std::fs::copy(
        gcc_output(&["-print-file-name=libc.so.6"]),
        dyn_dir.join("libc.so.6"),
    )
    .unwrap();
    std::fs::write(dyn_dir.join("dynprog.c"), DYNPROG_C).unwrap();
    std::fs::write(dyn_dir.join("lib.c"), LIB_C).unwrap();
    let rpath = "-Wl,-rpath,/mt/dyn,--disable-new-dtags";
    gcc(
        &dyn_dir,
        &[
            "-O1",
            "-o",
            "dynprog",
            "dynprog.c",
            "-Wl,--dynamic-linker=/mt/dyn/ld.so",
            rpath,
        ],
    );
    for (out, name, marker) in [
        ("good.so", "IMAGE", "/tmp/image-lib-ran"),
        ("../stage/evil.so", "DROPPED", "/tmp/dropped-lib-ran"),
    ] {
        let name = format!("-DNAME=\"{name}\"");
        let marker = format!("-DMARKER=\"{marker}\"");
        gcc(
            &dyn_dir,
            &[
                "-O1", "-shared", "-fPIC", &name, &marker, "-o", out, "lib.c", rpath,
            ],
        );
    }
}

/// `script` in a container with the dynamic world staged, drift in `mode`.
fn run_dyn(mode: &str, script: &str) -> Run {
    run_in(&drift_profile(mode), "none", &[], &[], script, stage_dyn)
}

fn drift_profile(mode: &str) -> String {
    enforce_profile("\"127.0.0.1\"").replace(
        "prevent = true",
        &format!("prevent = true\nmode = \"{mode}\""),
    )
}

/// Events about mapping `path` as code.
fn code_events<'a>(r: &'a Run, path: &str, action: &str) -> Vec<&'a Value> {
    r.events
        .iter()
        .filter(|e| is(e, "exec", "drift", action) && e["file"]["path"] == path)
        .collect()
}

#[test]
fn dropped_libraries_never_load_through_the_loader_and_image_ones_do() {
    if !dyn_ready() {
        return;
    }
    let r = run_dyn(
        "enforce",
        r#"
        cp /mt/stage/evil.so /tmp/evil.so
        cp /mt/dyn/dynprog /tmp/dynprog
        /mt/dyn/dynprog; echo "image-prog=$?"
        LD_PRELOAD=/tmp/evil.so /mt/dyn/dynprog 2>&1; echo "preload=$?"
        /mt/dyn/dynprog dlopen /tmp/evil.so; echo "dlopen-dropped=$?"
        /mt/dyn/dynprog dlopen /mt/dyn/good.so; echo "dlopen-image=$?"
        /mt/dyn/ld.so /tmp/dynprog 2>&1; echo "ldso-dropped=$?"
        /mt/dyn/ld.so /mt/dyn/dynprog; echo "ldso-image=$?"
        test -e /tmp/dropped-lib-ran; echo "dropped-marker=$?"
        test -e /tmp/image-lib-ran; echo "image-marker=$?"
        "#,
    );
    let out = r.stdout();
    assert!(!out.contains("DROPPED-CONSTRUCTOR-RAN"), "{out}");
    r.assert_out("image-prog=0");
    // glibc's loader says why it skipped the preload, and the program itself still runs.
    assert!(
        out.contains("/tmp/evil.so") && out.contains("cannot be preloaded"),
        "{out}"
    );
    r.assert_out("preload=0");
    assert!(
        out.lines()
            .any(|l| l.starts_with("dlopen: /tmp/evil.so: failed to map segment")),
        "{out}"
    );
    r.assert_out("dlopen-dropped=3");
    r.assert_out("IMAGE-CONSTRUCTOR-RAN");
    r.assert_out("dlopen: ok answer=42");
    r.assert_out("dlopen-image=0");
    assert!(out.contains("failed to map segment"), "{out}");
    r.assert_out("ldso-dropped=127");
    r.assert_out("ldso-image=0");
    assert_eq!(out.matches("DYN-OK").count(), 3, "{out}");
    r.assert_out("dropped-marker=1");
    r.assert_out("image-marker=0");

    let evil = code_events(&r, "/tmp/evil.so", "blocked");
    // The preload and the dlopen.
    assert!(evil.len() >= 2, "{:?}", r.blocked());
    for e in &evil {
        assert!(message_has(e, "mmap(PROT_EXEC) of /tmp/evil.so"), "{e}");
        assert!(message_has(e, "(not in the filesystem at start)"), "{e}");
        assert_eq!(e["severity"], "critical");
        assert_eq!(e["container"]["runtime"], "micro");
        assert!(
            e["file"]["flags"]
                .as_str()
                .is_some_and(|f| f.contains("PROT_EXEC")),
            "{e}"
        );
    }
    assert!(
        evil.iter().any(|e| e["process"]["args"][1] == "dlopen"),
        "{evil:?}"
    );
    assert!(
        !code_events(&r, "/tmp/dynprog", "blocked").is_empty(),
        "{:?}",
        r.blocked()
    );
    let image = r.events.iter().find(|e| {
        e["control"] == "drift"
            && e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/mt/dyn/"))
    });
    assert!(image.is_none(), "an image library was reported: {image:?}");
}

#[test]
fn raw_syscalls_cannot_map_dropped_code_or_a_memfd_executable() {
    if !ready() {
        return;
    }
    let r = run(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        r#"
        cp /mt/micro-helper /tmp/dropped
        /mt/micro-helper map-file /tmp/dropped
        /mt/micro-helper map-memfd
        echo '# changed' >> /etc/group
        /mt/micro-helper map-file /etc/group
        /mt/micro-helper persona /tmp/dropped
        /mt/micro-helper map-file /mt/micro-helper
        "#,
    );
    for what in ["/tmp/dropped", "memfd", "/etc/group"] {
        for op in [
            "mmap(PROT_EXEC)",
            "mmap(PROT_EXEC, high flags)",
            "mmap(PROT_EXEC, MAP_SHARED)",
            "mprotect(PROT_EXEC)",
            "pkey_mprotect(PROT_EXEC)",
        ] {
            r.assert_out(&format!("{op} {what}: EPERM"));
        }
        r.assert_out(&format!("mmap(PROT_READ) {what}: ok"));
        r.assert_out(&format!("{what} executable: false"));
    }
    r.assert_out("personality(READ_IMPLIES_EXEC): EPERM");
    r.assert_out("persona READ_IMPLIES_EXEC: false");
    r.assert_out("read mapping executable: false");
    // The image's own file maps executable every way. (Docker's default seccomp profile refuses
    // pkey_mprotect before ours is asked: EPERM with or without seawall-micro, and no event; the
    // supervisor's side of it is in the filter's unit test.)
    for op in [
        "mmap(PROT_EXEC)",
        "mmap(PROT_EXEC, high flags)",
        "mmap(PROT_EXEC, MAP_SHARED)",
        "mprotect(PROT_EXEC)",
    ] {
        r.assert_out(&format!("{op} /mt/micro-helper: ok"));
    }
    r.assert_out("/mt/micro-helper executable: true");

    let dropped = code_events(&r, "/tmp/dropped", "blocked");
    assert!(
        dropped
            .iter()
            .any(|e| message_has(e, "mprotect(PROT_EXEC) of /tmp/dropped")),
        "{dropped:?}"
    );
    assert!(dropped.len() >= 4, "three mmaps and mprotect: {dropped:?}");
    r.event("memfd mapped executable", |e| {
        is(e, "exec", "drift", "blocked")
            && e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/memfd:code"))
            && message_has(e, "(deleted or memory-only file)")
    });
    r.event("changed image file", |e| {
        is(e, "exec", "drift", "blocked")
            && e["file"]["path"] == "/etc/group"
            && message_has(e, "(changed since start)")
    });
    assert!(
        code_events(&r, "/mt/micro-helper", "blocked").is_empty(),
        "{:?}",
        r.blocked()
    );
}

#[test]
fn in_audit_mode_a_dropped_library_loads_and_is_reported() {
    if !dyn_ready() {
        return;
    }
    let r = run_dyn(
        "audit",
        r#"
        cp /mt/stage/evil.so /tmp/evil.so
        LD_PRELOAD=/tmp/evil.so /mt/dyn/dynprog; echo "preload=$?"
        test -e /tmp/dropped-lib-ran; echo "dropped-marker=$?"
        "#,
    );
    r.assert_out("DROPPED-CONSTRUCTOR-RAN");
    r.assert_out("DYN-OK");
    r.assert_out("preload=0");
    r.assert_out("dropped-marker=0");
    let audited = code_events(&r, "/tmp/evil.so", "audited");
    assert!(!audited.is_empty(), "{:?}", r.events);
    assert_eq!(audited[0]["severity"], "high");
    assert!(code_events(&r, "/tmp/evil.so", "blocked").is_empty());
}
