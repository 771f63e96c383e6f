//! Getting out from under the supervisor: other ABIs, io_uring, a looser seccomp filter, and
//! the supervisor's own process and threads.

use crate::*;

/// abi: the same call through the i386 and x32 entry points.
#[cfg(target_arch = "x86_64")]
pub unsafe fn abi(which: &str) {
    use std::io::Write;
    println!("abi {which}: trying");
    let _ = std::io::stdout().flush();
    let ret: i64 = match which {
        "int80" => {
            // i386 getpid is 20.
            let mut r: i64 = 20;
            std::arch::asm!("int 0x80", inout("rax") r, options(nostack));
            r
        }
        _ => libc::syscall(0x4000_0000 + libc::SYS_getpid),
    };
    println!("abi {which}: survived, returned {ret}");
}

/// io-uring: io_uring_setup.
pub unsafe fn io_uring() {
    let mut params = [0u8; 120];
    report(
        "io_uring_setup",
        sys(libc::syscall(
            libc::SYS_io_uring_setup,
            8,
            params.as_mut_ptr(),
        )),
    )
    .ok();
}

/// seccomp IP PORT: try to loosen the filter (a second listener, an allow-all filter), then
/// connect to IP:PORT.
pub unsafe fn seccomp_loosen(ip: &str, port: &str) {
    let allow = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: allow.as_ptr() as *mut _,
    };
    report(
        "seccomp(NEW_LISTENER)",
        sys(libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog,
        )),
    )
    .ok();
    report(
        "seccomp(allow all)",
        sys(libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog,
        )),
    )
    .ok();
    crate::net::connect(ip, port);
}

/// supervisor PID: ptrace it, write its memory, take its fds, signal it.
pub unsafe fn supervisor(pid: &str) {
    let pid: i32 = pid.parse().unwrap();
    report(
        "ptrace(ATTACH)",
        sys(libc::syscall(
            libc::SYS_ptrace,
            libc::PTRACE_ATTACH,
            pid,
            0,
            0,
        )),
    )
    .ok();
    let mem = cstr(&format!("/proc/{pid}/mem"));
    report(
        "open(/proc/PID/mem)",
        sys(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            mem.as_ptr(),
            libc::O_RDWR,
        )),
    )
    .ok();
    let mut byte = [0u8; 1];
    let local = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: 0x400000 as *mut _,
        iov_len: 1,
    };
    report(
        "process_vm_writev",
        sys(libc::syscall(
            libc::SYS_process_vm_writev,
            pid,
            &local,
            1,
            &remote,
            1,
            0,
        )),
    )
    .ok();
    if let Ok(pfd) = report(
        "pidfd_open",
        sys(libc::syscall(libc::SYS_pidfd_open, pid, 0)),
    ) {
        for fd in 3..8 {
            report(
                &format!("pidfd_getfd({fd})"),
                sys(libc::syscall(libc::SYS_pidfd_getfd, pfd, fd, 0)),
            )
            .ok();
        }
    }
    report(
        "kill(SIGKILL)",
        sys(libc::syscall(libc::SYS_kill, pid, libc::SIGKILL)),
    )
    .ok();
    report(
        "kill(-1, SIGKILL)",
        sys(libc::syscall(libc::SYS_kill, -1, 0)),
    )
    .ok();
    supervisor_threads(pid);
}

/// The supervisor's other threads: a signal aimed at one thread (tgkill, a thread pidfd) is
/// checked against that thread, not the process, and SIGKILL to any thread ends the process.
unsafe fn supervisor_threads(pid: i32) {
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&t| t != pid)
                .collect()
        })
        .unwrap_or_default();
    println!("supervisor threads: {}", tids.len());
    let each = |op: &str, call: &dyn Fn(i32) -> i64| {
        let mut seen: Vec<String> = tids
            .iter()
            .map(|&t| match sys(call(t)) {
                Ok(_) => "ok".to_string(),
                Err(e) => name(e),
            })
            .collect();
        seen.sort();
        seen.dedup();
        println!("{op}: {}", seen.join(","));
    };
    each("threads: tgkill(0)", &|t| {
        libc::syscall(libc::SYS_tgkill, pid, t, 0)
    });
    each("threads: ptrace(ATTACH)", &|t| {
        libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, t, 0, 0)
    });
    each("threads: open(mem)", &|t| {
        let mem = cstr(&format!("/proc/{pid}/task/{t}/mem"));
        libc::syscall(libc::SYS_openat, libc::AT_FDCWD, mem.as_ptr(), libc::O_RDWR)
    });
    const PIDFD_THREAD: i64 = libc::O_EXCL as i64;
    each("threads: pidfd_send_signal(0)", &|t| {
        let fd = libc::syscall(libc::SYS_pidfd_open, t, PIDFD_THREAD);
        if fd < 0 {
            return fd;
        }
        let r = libc::syscall(libc::SYS_pidfd_send_signal, fd, 0, 0, 0);
        libc::close(fd as i32);
        r
    });
    each("threads: tgkill(SIGKILL)", &|t| {
        libc::syscall(libc::SYS_tgkill, pid, t, libc::SIGKILL)
    });
    each("threads: tkill(SIGKILL)", &|t| {
        libc::syscall(libc::SYS_tkill, t, libc::SIGKILL)
    });
}
