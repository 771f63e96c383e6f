//! Changing a file every way there is (write, truncate, rename, unlink, link) and through its
//! other names, reading a denied one, and another root (chroot).

use crate::*;

/// file PATH: write, O_TRUNC open, truncate(2), openat2 write, rename over it, unlink it,
/// hard link it into /tmp — every way to change a file, each with a raw syscall.
pub unsafe fn file_attacks(path: &str) {
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
pub unsafe fn file_names(path: &str) {
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
pub unsafe fn chroot_escape(dir: &str, path: &str, exe: &str) {
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
pub unsafe fn read(path: &str) {
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
