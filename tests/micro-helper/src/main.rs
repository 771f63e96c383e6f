//! `micro-helper OP ARGS…`: one attack (or one benign call) per run, made with raw syscalls
//! (`syscall(2)`, `int 0x80`), never libc's wrappers. Each prints `OP: ok` or `OP: ERRNO` per
//! call so the test reads exactly what the process saw.

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOSYS => "ENOSYS",
        libc::EBUSY => "EBUSY",
        libc::EXDEV => "EXDEV",
        libc::ENOENT => "ENOENT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EINVAL => "EINVAL",
        libc::ESRCH => "ESRCH",
        libc::EFAULT => "EFAULT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EBADF => "EBADF",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EISCONN => "EISCONN",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ENETUNREACH => "ENETUNREACH",
        _ => return format!("errno{e}"),
    };
    n.to_string()
}

/// A raw syscall's result as the process sees it.
fn sys(r: i64) -> Result<i64, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn report(op: &str, r: Result<i64, i32>) -> Result<i64, i32> {
    match r {
        Ok(_) => println!("{op}: ok"),
        Err(e) => println!("{op}: {}", name(e)),
    }
    r
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// A sockaddr for `ip:port` as bytes (sockaddr_in or sockaddr_in6).
fn sockaddr(ip: IpAddr, port: u16) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = vec![0u8; 16];
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[4..8].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => {
            let mut b = vec![0u8; 28];
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[8..24].copy_from_slice(&v6.octets());
            b
        }
    }
}

fn family(ip: IpAddr) -> i32 {
    if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

unsafe fn raw_socket(fam: i32, ty: i32, proto: i32) -> Result<i64, i32> {
    sys(libc::syscall(libc::SYS_socket, fam, ty, proto))
}

unsafe fn raw_connect(fd: i64, addr: &[u8]) -> Result<i64, i32> {
    sys(libc::syscall(
        libc::SYS_connect,
        fd,
        addr.as_ptr(),
        addr.len(),
    ))
}

fn parse_sa(ip: &str, port: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), port.parse().expect("port"))
}

/// connect IP PORT [v6]: TCP connect with raw syscalls; on success says hello and closes.
/// With `v6`, an AF_INET6 socket is used (for IPv4-mapped addresses).
unsafe fn connect(ip: &str, port: &str) {
    let sa = parse_sa(ip, port);
    let fd = match report("socket", raw_socket(family(sa.ip()), libc::SOCK_STREAM, 0)) {
        Ok(fd) => fd,
        Err(_) => return,
    };
    if report("connect", raw_connect(fd, &sockaddr(sa.ip(), sa.port()))).is_ok() {
        let msg = b"hello from the tree\n";
        let _ = sys(libc::syscall(libc::SYS_write, fd, msg.as_ptr(), msg.len()));
    }
    libc::syscall(libc::SYS_close, fd);
}

/// udp IP PORT: one datagram by sendto, one by sendmsg, one by sendmmsg.
unsafe fn udp(ip: &str, port: &str) {
    let sa = parse_sa(ip, port);
    let Ok(fd) = report("socket", raw_socket(family(sa.ip()), libc::SOCK_DGRAM, 0)) else {
        return;
    };
    let mut addr = sockaddr(sa.ip(), sa.port());
    let mut data = *b"sendto\n";
    report(
        "sendto",
        sys(libc::syscall(
            libc::SYS_sendto,
            fd,
            data.as_ptr(),
            data.len(),
            0,
            addr.as_ptr(),
            addr.len(),
        )),
    )
    .ok();
    data.copy_from_slice(b"sendms\n");
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut h: libc::msghdr = std::mem::zeroed();
    h.msg_name = addr.as_mut_ptr().cast();
    h.msg_namelen = addr.len() as u32;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    report("sendmsg", sys(libc::syscall(libc::SYS_sendmsg, fd, &h, 0))).ok();
    let mut mm: [libc::mmsghdr; 1] = std::mem::zeroed();
    mm[0].msg_hdr = h;
    report(
        "sendmmsg",
        sys(libc::syscall(libc::SYS_sendmmsg, fd, mm.as_mut_ptr(), 1, 0)),
    )
    .ok();
}

/// race-connect ALLOWED_IP PORT DENIED_IP PORT SECONDS: one thread flips the sockaddr buffer
/// between two addresses while others connect through it as fast as they can.
unsafe fn race_connect(allowed: SocketAddr, denied: SocketAddr, secs: &str) {
    let a = sockaddr(allowed.ip(), allowed.port());
    let d = sockaddr(denied.ip(), denied.port());
    let buf: &'static mut [u8] = Box::leak(a.clone().into_boxed_slice());
    let addr = buf.as_mut_ptr() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let flipper = std::thread::spawn(move || {
        let p = addr as *mut u8;
        let mut flip = false;
        while !s.load(Ordering::Relaxed) {
            let src = if flip { &d } else { &a };
            std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
            flip = !flip;
        }
    });
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (ok, refused) = (ok.clone(), refused.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let Ok(fd) = raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0) else {
                        continue;
                    };
                    match sys(libc::syscall(libc::SYS_connect, fd, addr as *const u8, 16)) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                    };
                    libc::syscall(libc::SYS_close, fd);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    println!(
        "race-connect: ok={} refused={}",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

/// race-exec ALLOWED DRIFT SECONDS: one thread flips the path buffer between an allowed
/// program and a drift one while vfork'd children execve through it. Counts how children
/// ended: the allowed program exits 0, the drift one 42.
unsafe fn race_exec(allowed: &str, drift: &str, secs: &str) {
    let mut a = allowed.as_bytes().to_vec();
    let mut d = drift.as_bytes().to_vec();
    let n = a.len().max(d.len()) + 1;
    a.resize(n, 0);
    d.resize(n, 0);
    let buf: &'static mut [u8] = Box::leak(a.clone().into_boxed_slice());
    let path = buf.as_mut_ptr() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let flipper = std::thread::spawn(move || {
        let mut flip = false;
        while !s.load(Ordering::Relaxed) {
            let src = if flip { &d } else { &a };
            std::ptr::copy_nonoverlapping(src.as_ptr(), path as *mut u8, n);
            flip = !flip;
        }
    });
    let marker = cstr("marker");
    let argv = [
        path as *const libc::c_char,
        marker.as_ptr(),
        std::ptr::null(),
    ];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let (mut allowed_ran, mut drift_ran, mut refused) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    while Instant::now() < deadline {
        // vfork: the child shares memory, so the flipper thread keeps racing the buffer it
        // execs from; it only calls execve or _exit.
        #[allow(deprecated)]
        let pid = libc::vfork();
        if pid == 0 {
            libc::syscall(libc::SYS_execve, path, argv.as_ptr(), envp.as_ptr());
            libc::_exit(100);
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        match libc::WEXITSTATUS(st) {
            0 => allowed_ran += 1,
            42 => drift_ran += 1,
            _ => refused += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    println!("race-exec: allowed={allowed_ran} drift={drift_ran} refused={refused}");
}

/// race-sendmsg IP PORT SECONDS: one thread swaps fd N between a unix datagram socket and a
/// UDP socket (dup2) while another sends a datagram to IP:PORT through N.
unsafe fn race_sendmsg(ip: &str, port: &str, secs: &str) {
    let mut pair = [0i32; 2];
    let Ok(_) = sys(libc::syscall(
        libc::SYS_socketpair,
        libc::AF_UNIX,
        libc::SOCK_DGRAM,
        0,
        pair.as_mut_ptr(),
    ) as i64) else {
        println!("race-sendmsg: socketpair {}", name(errno()));
        return;
    };
    let udp = match raw_socket(libc::AF_INET, libc::SOCK_DGRAM, 0) {
        Ok(fd) => fd as i32,
        Err(e) => {
            println!("race-sendmsg: socket {}", name(e));
            return;
        }
    };
    let target = 100i32;
    libc::syscall(libc::SYS_dup2, pair[0], target);
    let addr = sockaddr(ip.parse().unwrap(), port.parse().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (unix, u) = (pair[0], udp);
    let swapper = std::thread::spawn(move || {
        let mut flip = false;
        while !s.load(Ordering::Relaxed) {
            libc::syscall(libc::SYS_dup2, if flip { u } else { unix }, target);
            flip = !flip;
        }
    });
    let (mut ok, mut refused) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let data = b"raced\n";
    while Instant::now() < deadline {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut h: libc::msghdr = std::mem::zeroed();
        h.msg_name = addr.as_ptr() as *mut _;
        h.msg_namelen = addr.len() as u32;
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        match sys(libc::syscall(libc::SYS_sendmsg, target, &h, 0)) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = swapper.join();
    println!("race-sendmsg: ok={ok} refused={refused}");
}

/// memfd-exec: an executable memfd holding this program, run with execveat(AT_EMPTY_PATH);
/// then an explicit MFD_EXEC request, and chmod +x of a plain memfd.
unsafe fn memfd_exec() {
    let name = cstr("payload");
    report(
        "memfd_create(MFD_EXEC)",
        sys(libc::syscall(
            libc::SYS_memfd_create,
            name.as_ptr(),
            libc::MFD_EXEC,
        ))
        .inspect(|&fd| {
            libc::syscall(libc::SYS_close, fd);
        }),
    )
    .ok();
    let Ok(fd) = report(
        "memfd_create",
        sys(libc::syscall(libc::SYS_memfd_create, name.as_ptr(), 0)),
    ) else {
        return;
    };
    let me = std::fs::read("/proc/self/exe").expect("read self");
    libc::syscall(libc::SYS_write, fd, me.as_ptr(), me.len());
    report(
        "fchmod(0755)",
        sys(libc::syscall(libc::SYS_fchmod, fd, 0o755)),
    )
    .ok();
    let empty = cstr("");
    let marker = cstr("marker");
    let argv = [marker.as_ptr(), marker.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    report(
        "execveat(memfd)",
        sys(libc::syscall(
            libc::SYS_execveat,
            fd,
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )),
    )
    .ok();
}

/// exec PATH [ARGS]: raw execve.
unsafe fn exec(path: &str, args: &[String]) {
    let p = cstr(path);
    let owned: Vec<CString> = std::iter::once(path)
        .chain(args.iter().map(String::as_str))
        .map(cstr)
        .collect();
    let mut argv: Vec<*const libc::c_char> = owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    report(
        "execve",
        sys(libc::syscall(
            libc::SYS_execve,
            p.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
        )),
    )
    .ok();
}

/// file PATH: write, O_TRUNC open, truncate(2), openat2 write, rename over it, unlink it,
/// hard link it into /tmp — every way to change a file, each with a raw syscall.
unsafe fn file_attacks(path: &str) {
    let p = cstr(path);
    let data = b"tampered\n";
    let r = sys(libc::syscall(
        libc::SYS_openat,
        libc::AT_FDCWD,
        p.as_ptr(),
        libc::O_WRONLY | libc::O_APPEND,
    ));
    if let Ok(fd) = report("open(O_WRONLY)", r) {
        libc::syscall(libc::SYS_write, fd, data.as_ptr(), data.len());
        libc::syscall(libc::SYS_close, fd);
    }
    let r = sys(libc::syscall(
        libc::SYS_openat,
        libc::AT_FDCWD,
        p.as_ptr(),
        libc::O_WRONLY | libc::O_TRUNC,
    ));
    if let Ok(fd) = report("open(O_TRUNC)", r) {
        libc::syscall(libc::SYS_close, fd);
    }
    report(
        "truncate",
        sys(libc::syscall(libc::SYS_truncate, p.as_ptr(), 0)),
    )
    .ok();
    let mut how: libc::open_how = std::mem::zeroed();
    how.flags = (libc::O_WRONLY | libc::O_APPEND) as u64;
    let r = sys(libc::syscall(
        libc::SYS_openat2,
        libc::AT_FDCWD,
        p.as_ptr(),
        &how,
        std::mem::size_of::<libc::open_how>(),
    ));
    if let Ok(fd) = report("openat2(O_WRONLY)", r) {
        libc::syscall(libc::SYS_write, fd, data.as_ptr(), data.len());
        libc::syscall(libc::SYS_close, fd);
    }
    let other = cstr("/tmp/replacement");
    let _ = std::fs::write("/tmp/replacement", "replaced\n");
    report(
        "rename(over it)",
        sys(libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            other.as_ptr(),
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
        )),
    )
    .ok();
    let moved = cstr("/tmp/moved-away");
    report(
        "rename(away)",
        sys(libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::AT_FDCWD,
            moved.as_ptr(),
            0,
        )),
    )
    .ok();
    let link = cstr("/tmp/hardlink");
    if report(
        "link(into /tmp)",
        sys(libc::syscall(
            libc::SYS_linkat,
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::AT_FDCWD,
            link.as_ptr(),
            0,
        )),
    )
    .is_ok()
    {
        let r = sys(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            link.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND,
        ));
        if let Ok(fd) = report("open(link, O_WRONLY)", r) {
            libc::syscall(libc::SYS_write, fd, data.as_ptr(), data.len());
        }
    }
    report(
        "unlink",
        sys(libc::syscall(
            libc::SYS_unlinkat,
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
        )),
    )
    .ok();
}

/// file-names PATH: write PATH through its other names: `/proc/self/root`, a symlink, and a
/// `/proc/self/fd` magic link reopened from an `O_PATH` fd.
unsafe fn file_names(path: &str) {
    let data = b"tampered\n";
    let write_through = |op: &str, name: &CString| {
        let r = sys(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND,
        ));
        if let Ok(fd) = report(op, r) {
            libc::syscall(libc::SYS_write, fd, data.as_ptr(), data.len());
            libc::syscall(libc::SYS_close, fd);
        }
    };
    write_through(
        "open(/proc/self/root/…)",
        &cstr(&format!("/proc/self/root{path}")),
    );
    let sym = cstr("/tmp/symlink-to-it");
    let target = cstr(path);
    libc::syscall(libc::SYS_unlinkat, libc::AT_FDCWD, sym.as_ptr(), 0);
    if report(
        "symlink",
        sys(libc::syscall(
            libc::SYS_symlinkat,
            target.as_ptr(),
            libc::AT_FDCWD,
            sym.as_ptr(),
        )),
    )
    .is_ok()
    {
        write_through("open(symlink, O_WRONLY)", &sym);
    }
    if let Ok(fd) = report(
        "open(O_PATH)",
        sys(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::O_PATH,
        )),
    ) {
        write_through(
            "open(/proc/self/fd/N, O_WRONLY)",
            &cstr(&format!("/proc/self/fd/{fd}")),
        );
    }
}

/// chroot DIR PATH EXE: another root (CAP_SYS_CHROOT, which Docker grants by default): keep a
/// handle on the old root, chroot into DIR, write PATH through the handle, then exec EXE (a
/// path inside the new root).
unsafe fn chroot_escape(dir: &str, path: &str, exe: &str) {
    let slash = cstr("/");
    let Ok(old_root) = report(
        "open(/)",
        sys(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            slash.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY,
        )),
    ) else {
        return;
    };
    let d = cstr(dir);
    if report("chroot", sys(libc::syscall(libc::SYS_chroot, d.as_ptr()))).is_err() {
        return;
    }
    libc::syscall(libc::SYS_chdir, slash.as_ptr());
    let rel = cstr(path.trim_start_matches('/'));
    let r = sys(libc::syscall(
        libc::SYS_openat,
        old_root,
        rel.as_ptr(),
        libc::O_WRONLY | libc::O_APPEND,
    ));
    if let Ok(fd) = report("chroot: openat(old root, O_WRONLY)", r) {
        libc::syscall(libc::SYS_write, fd, b"tampered\n".as_ptr(), 9usize);
    }
    let e = cstr(exe);
    let marker = cstr("marker");
    let argv = [e.as_ptr(), marker.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    report(
        "chroot: execve",
        sys(libc::syscall(
            libc::SYS_execve,
            e.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
        )),
    )
    .ok();
}

/// read PATH: a raw open for reading.
unsafe fn read(path: &str) {
    let p = cstr(path);
    if let Ok(fd) = report(
        "open(O_RDONLY)",
        sys(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::O_RDONLY,
        )),
    ) {
        libc::syscall(libc::SYS_close, fd);
    }
}

/// raw-socket: packet and raw sockets, each way they can be asked for.
unsafe fn raw_sockets() {
    report(
        "socket(AF_PACKET)",
        raw_socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
    )
    .ok();
    report(
        "socket(AF_INET, SOCK_RAW)",
        raw_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
    )
    .ok();
    // High garbage in the int register: the kernel reads the low half.
    report(
        "socket(SOCK_RAW, high bits)",
        sys(libc::syscall(
            libc::SYS_socket,
            0x7777_0000_0000_0002u64,
            0x5555_0000_0000_0003u64,
            1,
        )),
    )
    .ok();
}

/// abi: the same call through the i386 and x32 entry points.
#[cfg(target_arch = "x86_64")]
unsafe fn abi(which: &str) {
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
unsafe fn io_uring() {
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
unsafe fn seccomp_loosen(ip: &str, port: &str) {
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
    connect(ip, port);
}

/// supervisor PID: ptrace it, write its memory, take its fds, signal it.
unsafe fn supervisor(pid: &str) {
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

/// bind PORT: a TCP socket bound to 127.0.0.1:PORT and listening.
unsafe fn bind(port: &str) {
    let Ok(fd) = report("socket", raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0)) else {
        return;
    };
    let addr = sockaddr("127.0.0.1".parse().unwrap(), port.parse().unwrap());
    if report(
        "bind",
        sys(libc::syscall(libc::SYS_bind, fd, addr.as_ptr(), addr.len())),
    )
    .is_ok()
    {
        report("listen", sys(libc::syscall(libc::SYS_listen, fd, 1))).ok();
    }
}

/// wait-connect FILE IP PORT: waits (up to 20 s) until FILE exists, then connects.
unsafe fn wait_connect(file: &str, ip: &str, port: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::path::Path::new(file).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    connect(ip, port);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Run as a payload (copied binary, memfd): say so and exit with the drift code.
    if args.get(1).map(String::as_str) == Some("marker") {
        println!("DRIFT-RAN");
        std::process::exit(42);
    }
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    // SAFETY: every operation is a raw syscall on memory this program owns.
    unsafe {
        match a(1) {
            "connect" => connect(a(2), a(3)),
            "udp" => udp(a(2), a(3)),
            "race-connect" => race_connect(parse_sa(a(2), a(3)), parse_sa(a(4), a(5)), a(6)),
            "bind" => bind(a(2)),
            "race-exec" => race_exec(a(2), a(3), a(4)),
            "race-sendmsg" => race_sendmsg(a(2), a(3), a(4)),
            "memfd-exec" => memfd_exec(),
            "exec" => exec(a(2), &args[3..]),
            "file" => file_attacks(a(2)),
            "read" => read(a(2)),
            "file-names" => file_names(a(2)),
            "chroot" => chroot_escape(a(2), a(3), a(4)),
            "raw-socket" => raw_sockets(),
            #[cfg(target_arch = "x86_64")]
            "abi" => abi(a(2)),
            "io-uring" => io_uring(),
            "seccomp" => seccomp_loosen(a(2), a(3)),
            "supervisor" => supervisor(a(2)),
            "wait-connect" => wait_connect(a(2), a(3), a(4)),
            other => {
                eprintln!("micro-helper: unknown operation {other:?}");
                std::process::exit(2);
            }
        }
    }
}
