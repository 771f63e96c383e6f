//! A multi-threaded process racing the supervisor's look at a code mapping: a sibling thread
//! swaps the file behind the fd (`dup2`) or the mapping at the address (`mmap(MAP_FIXED)`)
//! while the other asks for it executable, in a loop. What the tests ask for once the race is
//! closed: the dropped code never runs (its marker, printed by the dropped code itself, never
//! appears), the image's code does, and each refusal is a blocked event.
//!
//! The race is NOT closed (issue 16): the tests are ignored so that the default suite does not
//! run them; `--ignored` shows the race (they fail: the dropped code runs).
//!
//! The code files are raw x86_64 functions: `/mt/image.bin` (present at start) returns 1, the
//! dropped one, copied to `/tmp` inside the container, writes `DROPPED-CODE-RAN` and returns 2.

use super::*;

/// `mov eax, 1; ret`.
const IMAGE_CODE: [u8; 6] = [0xb8, 1, 0, 0, 0, 0xc3];

/// write(1, "DROPPED-CODE-RAN\n", 17); return 2.
fn dropped_code() -> Vec<u8> {
    let msg = b"DROPPED-CODE-RAN\n";
    let mut c = vec![0x48, 0x8d, 0x35, 23, 0, 0, 0]; // lea rsi, [rip + 23]: the message
    c.extend([0xbf, 1, 0, 0, 0]); // mov edi, 1
    c.extend([0xba, msg.len() as u8, 0, 0, 0]); // mov edx, len
    c.extend([0xb8, 1, 0, 0, 0]); // mov eax, SYS_write
    c.extend([0x0f, 0x05]); // syscall
    c.extend([0xb8, 2, 0, 0, 0, 0xc3]); // mov eax, 2; ret
    assert_eq!(c.len(), 30, "the message follows the code at offset 30");
    c.extend_from_slice(msg);
    c
}

fn stage_code(mt: &Path) {
    std::fs::write(mt.join("image.bin"), IMAGE_CODE).unwrap();
    std::fs::create_dir_all(mt.join("stage")).unwrap();
    std::fs::write(mt.join("stage/dropped.bin"), dropped_code()).unwrap();
}

/// The counts `OP: image=… dropped=… refused=… other=…` the helper printed.
fn tally(r: &Run, op: &str) -> [usize; 4] {
    let out = r.stdout();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{op}: ")))
        .unwrap_or_else(|| {
            panic!(
                "no `{op}:` summary (code {:?}):\n{out}\nstderr:\n{}",
                r.code(),
                text(&r.out.stderr)
            )
        });
    let mut v = [0; 4];
    for (i, key) in ["image", "dropped", "refused", "other"].iter().enumerate() {
        v[i] = line
            .split(' ')
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {line}"));
    }
    v
}

fn race(op: &str) -> Run {
    run_in(
        &enforce_profile("\"127.0.0.1\""),
        "none",
        &[],
        &[],
        &format!(
            "cp /mt/stage/dropped.bin /tmp/dropped.bin
            /mt/micro-helper {op} /mt/image.bin /tmp/dropped.bin 3; echo \"{op}-exit=$?\""
        ),
        stage_code,
    )
}

fn assert_dropped_never_ran(r: &Run, op: &str, call: &str) {
    let [image, dropped, refused, _] = tally(r, op);
    let out = r.stdout();
    assert!(!out.contains("DROPPED-CODE-RAN"), "{out}");
    assert_eq!(dropped, 0, "{out}");
    assert!(image > 0, "the image's code still maps and runs: {out}");
    assert!(refused > 0, "the swap was seen and refused: {out}");
    r.assert_out(&format!("{op}-exit=0"));
    r.event("the dropped file refused", |e| {
        is(e, "exec", "drift", "blocked")
            && e["file"]["path"] == "/tmp/dropped.bin"
            && message_has(e, &format!("{call}(PROT_EXEC) of /tmp/dropped.bin"))
            && e["process"]["args"][1] == op
    });
}

#[test]
#[ignore = "the multi-threaded mmap race is not closed yet (issue 16): run with --ignored to see it"]
fn a_thread_swapping_the_fd_never_gets_dropped_code_mapped() {
    if !ready() {
        return;
    }
    let r = race("race-map");
    assert_dropped_never_ran(&r, "race-map", "mmap");
}

#[test]
#[ignore = "the multi-threaded mmap race is not closed yet (issue 16): run with --ignored to see it"]
fn a_thread_remapping_the_address_never_gets_dropped_code_executable() {
    if !ready() {
        return;
    }
    let r = race("race-protect");
    assert_dropped_never_ran(&r, "race-protect", "mprotect");
}
