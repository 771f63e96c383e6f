//! Code that was not in the image, through every door: exec from the upper layer, a tmpfs, a
//! chroot; `#!` scripts on a tmpfs, with a non-UTF-8 name, deleted, in memory; executable
//! mappings (`mmap`, `mprotect`, the loader run on a dropped file, `LD_PRELOAD`); `ptrace` and
//! `/proc/self/mem`; and a path too deep for the kernel to trust against an allow list.

use std::{fs, io::Write, os::unix::fs::PermissionsExt};

use crate::{
    run::{
        cstr, eperm, errno, exec, execve, execve_bytes, expect_eperm, expect_ran, fork_run, line,
        worked, Outcome, EXEC_FAILED,
    },
    setup::{deep_path, DYN_TRUE, IMAGE_SO, LOADER},
};

const SCRIPT: &[u8] = b"#!/bin/sh\necho SCRIPT-RAN\n";

fn write_exec(path: &str, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("writing {path}: {e}"))
}

/// Runs `path` as `true` after `chroot(root)` in a child.
fn exec_in_chroot(root: &str, path: &str) -> Outcome {
    fork_run(|| {
        let r = cstr(root);
        // SAFETY: plain syscalls in the child.
        if unsafe { libc::chroot(r.as_ptr()) } != 0 || unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
            return;
        }
        execve(path, &["true"], &[]);
    })
    .0
}

/// Runs a memfd holding `bytes` through `/proc/self/fd/N`.
fn exec_memfd(bytes: &[u8]) -> Outcome {
    fork_run(|| {
        // SAFETY: plain syscalls in the child.
        let fd = unsafe { libc::memfd_create(c"payload".as_ptr(), 0) };
        if fd < 0 {
            return;
        }
        // SAFETY: fd is ours.
        let mut f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        if f.write_all(bytes).is_err() {
            return;
        }
        std::mem::forget(f);
        execve(&format!("/proc/self/fd/{fd}"), &["true"], &[]);
    })
    .0
}

/// Opens `path`, unlinks it, and runs it through `/proc/self/fd/N`.
fn exec_deleted(path: &str) -> Outcome {
    fork_run(|| {
        let p = cstr(path);
        // SAFETY: plain syscalls in the child.
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
        if fd < 0 || unsafe { libc::unlink(p.as_ptr()) } != 0 {
            return;
        }
        execve(&format!("/proc/self/fd/{fd}"), &["true"], &[]);
    })
    .0
}

/// Maps the first page of `path` (or of a memfd when `None`) executable, directly or by
/// `mprotect`; returns the failing call's result as an i64 (< 0 on error, errno set).
fn map_exec(path: Option<&str>, via_mprotect: bool) -> i64 {
    // SAFETY (all): plain syscalls on descriptors and mappings this function owns.
    unsafe {
        let fd = match path {
            Some(p) => libc::open(cstr(p).as_ptr(), libc::O_RDONLY),
            None => {
                let fd = libc::memfd_create(c"code".as_ptr(), 0);
                if fd >= 0 && libc::ftruncate(fd, 4096) != 0 {
                    return -1;
                }
                fd
            }
        };
        if fd < 0 {
            return -1;
        }
        let first = if via_mprotect {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_EXEC
        };
        let p = libc::mmap(std::ptr::null_mut(), 4096, first, libc::MAP_PRIVATE, fd, 0);
        let e = errno();
        libc::close(fd);
        if p == libc::MAP_FAILED {
            *libc::__errno_location() = e;
            return -1;
        }
        let r = if via_mprotect {
            libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) as i64
        } else {
            0
        };
        let e = errno();
        libc::munmap(p, 4096);
        *libc::__errno_location() = e;
        r
    }
}

/// PTRACE_ATTACH to a child of ours; returns the attach result.
fn ptrace_attach() -> i64 {
    // SAFETY: single-threaded; the child only pauses.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::pause();
            libc::_exit(0);
        }
        let r = libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0);
        let e = errno();
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        *libc::__errno_location() = e;
        r
    }
}

/// PTRACE_TRACEME in a child: how it ended (EXEC_FAILED + errno on refusal).
fn traceme() -> Outcome {
    fork_run(|| {
        // SAFETY: plain syscall in the child.
        if unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) } == 0 {
            // SAFETY: leave, it worked.
            unsafe { libc::_exit(0) };
        }
    })
    .0
}

fn open_proc_mem(flags: i32) -> i64 {
    // SAFETY: plain syscalls.
    unsafe {
        let fd = libc::open(c"/proc/self/mem".as_ptr(), flags);
        if fd >= 0 {
            libc::close(fd);
        }
        fd as i64
    }
}

/// What ran with `LD_PRELOAD=lib`, and whether the library's constructor ran.
fn preload(lib: &str) -> (Outcome, bool) {
    let env = format!("LD_PRELOAD={lib}");
    let (o, out) = fork_run(|| execve(DYN_TRUE, &["dyntrue"], &[&env]));
    (o, out.contains("PRELOAD-RAN"))
}

pub fn checks() -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, r: Result<(), String>| out.push(line(name, r));
    check(
        "exec_image_binary_allowed",
        expect_ran(exec("/bin/busybox")),
    );
    let copied = fs::copy("/bin/busybox", "/bin/drifted")
        .map_err(|e| format!("copying into the upper layer: {e}"));
    check(
        "exec_drift_upper_layer_eperm",
        copied.and_then(|_| expect_eperm(exec("/bin/drifted"))),
    );
    // A script written in the container runs an image interpreter: the LSM hook sees the script
    // itself (bprm_check_security runs once per binfmt stage), sched_process_exec only sees /bin/sh.
    check(
        "exec_drift_script_eperm",
        write_exec("/bin/drift.sh", SCRIPT).and_then(|()| expect_eperm(exec("/bin/drift.sh"))),
    );
    check("exec_deny_list_eperm", expect_eperm(exec("/bin/denied")));

    // Class 1: another root. The paths are the files' paths from the container's root.
    let on_tmpfs = fs::copy("/bin/busybox", "/scratch/true").map_err(|e| e.to_string());
    check(
        "chroot_tmpfs_drift_eperm",
        on_tmpfs.and_then(|_| expect_eperm(exec_in_chroot("/scratch", "/true"))),
    );
    check(
        "chroot_subdir_deny_list_eperm",
        expect_eperm(exec_in_chroot("/bin", "/denied")),
    );
    check(
        "chroot_subdir_image_binary_allowed",
        expect_ran(exec_in_chroot("/bin", "/busybox")),
    );

    // Class 3: scripts.
    check(
        "script_on_tmpfs_eperm",
        write_exec("/scratch/s.sh", SCRIPT).and_then(|()| expect_eperm(exec("/scratch/s.sh"))),
    );
    let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/tmp/\xff\xfe.sh");
    check(
        "script_non_utf8_name_eperm",
        fs::write(name, SCRIPT)
            .and_then(|()| fs::set_permissions(name, fs::Permissions::from_mode(0o755)))
            .map_err(|e| format!("writing the script: {e}"))
            .and_then(|()| {
                let p = std::ffi::CString::new(b"/tmp/\xff\xfe.sh".to_vec()).unwrap();
                expect_eperm(fork_run(|| execve_bytes(&p, &["true"], &[])).0)
            }),
    );
    check(
        "script_deleted_fd_eperm",
        write_exec("/tmp/gone.sh", SCRIPT)
            .and_then(|()| expect_eperm(exec_deleted("/tmp/gone.sh"))),
    );
    check("script_memfd_eperm", expect_eperm(exec_memfd(SCRIPT)));
    check(
        "elf_memfd_eperm",
        fs::read("/bin/busybox")
            .map_err(|e| e.to_string())
            .and_then(|b| expect_eperm(exec_memfd(&b))),
    );

    // Class 2: code mapped without exec.
    let dropped = fs::copy("/bin/busybox", "/tmp/code.bin").map_err(|e| e.to_string());
    check(
        "mmap_exec_upper_eperm",
        dropped.and_then(|_| eperm("mmap", map_exec(Some("/tmp/code.bin"), false))),
    );
    check(
        "mprotect_exec_upper_eperm",
        eperm("mprotect", map_exec(Some("/tmp/code.bin"), true)),
    );
    check(
        "mmap_exec_memfd_eperm",
        eperm("mmap", map_exec(None, false)),
    );
    check(
        "mmap_exec_image_allowed",
        worked("mmap", map_exec(Some("/bin/busybox"), false)),
    );
    check(
        "mprotect_exec_image_allowed",
        worked("mprotect", map_exec(Some("/bin/busybox"), true)),
    );
    let t = fs::copy(DYN_TRUE, "/tmp/t").map_err(|e| e.to_string());
    check(
        "loader_on_dropped_file_fails",
        t.and_then(
            |_| match fork_run(|| execve(LOADER, &["ld.so", "/tmp/t"], &[])).0 {
                Outcome::Exited(0) => Err("the loader ran the dropped program".into()),
                Outcome::Exited(c) if c >= EXEC_FAILED => Err(format!(
                    "exec of the image's loader failed with errno {}",
                    c - EXEC_FAILED
                )),
                _ => Ok(()),
            },
        ),
    );
    check(
        "loader_on_image_program_runs",
        expect_ran(fork_run(|| execve(LOADER, &["ld.so", DYN_TRUE], &[])).0),
    );
    let evil = fs::copy(IMAGE_SO, "/tmp/evil.so").map_err(|e| e.to_string());
    check(
        "preload_dropped_library_not_run",
        evil.and_then(|_| match preload("/tmp/evil.so") {
            (_, true) => Err("the dropped library's constructor ran".into()),
            (Outcome::Exited(0), false) => Ok(()),
            (o, false) => Err(format!("the program itself did not run: {o:?}")),
        }),
    );
    check(
        "preload_image_library_runs",
        match preload(IMAGE_SO) {
            (Outcome::Exited(0), true) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Writing into a process: ptrace, PTRACE_TRACEME, /proc/self/mem.
    check(
        "ptrace_attach_eperm",
        eperm("PTRACE_ATTACH", ptrace_attach()),
    );
    check("ptrace_traceme_eperm", expect_eperm(traceme()));
    check(
        "proc_self_mem_write_eperm",
        eperm("open /proc/self/mem O_RDWR", open_proc_mem(libc::O_RDWR)),
    );
    check(
        "proc_self_mem_read_allowed",
        worked(
            "open /proc/self/mem O_RDONLY",
            open_proc_mem(libc::O_RDONLY),
        ),
    );

    // Class 4: a path deeper than the kernel walks is not on the allow list, whatever its
    // kept tail looks like.
    check(
        "truncated_path_not_allowed_eperm",
        expect_eperm(exec(&deep_path())),
    );
    out
}

/// The same doors from a cgroup that is not a container: nothing is refused.
pub fn scope_checks() -> Vec<String> {
    vec![
        line(
            "scope_exec_drift_outside_allowed",
            expect_ran(exec("/bin/drifted")),
        ),
        line(
            "scope_exec_drift_script_outside_allowed",
            expect_ran(exec("/bin/drift.sh")),
        ),
        line(
            "scope_exec_deny_list_outside_allowed",
            expect_ran(exec("/bin/denied")),
        ),
        line(
            "scope_mmap_exec_outside_allowed",
            worked("mmap", map_exec(Some("/tmp/code.bin"), false)),
        ),
        line(
            "scope_ptrace_outside_allowed",
            worked("PTRACE_ATTACH", ptrace_attach()),
        ),
        line(
            "scope_truncated_path_outside_allowed",
            expect_ran(exec(&deep_path())),
        ),
    ]
}
