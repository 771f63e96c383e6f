//! Exec with raw syscalls: a plain execve, an executable memfd, and threads racing the path
//! buffer of vfork'd children's execve.

use crate::*;

/// race-exec ALLOWED DRIFT SECONDS: one thread flips the path buffer between an allowed
/// program and a drift one while vfork'd children execve through it. Counts how children
/// ended: the allowed program exits 0, the drift one 42.
pub unsafe fn race_exec(allowed: &str, drift: &str, secs: &str) {
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

/// memfd-exec: an executable memfd holding this program, run with execveat(AT_EMPTY_PATH);
/// then an explicit MFD_EXEC request, and chmod +x of a plain memfd.
pub unsafe fn memfd_exec() {
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
pub unsafe fn exec(path: &str, args: &[String]) {
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
