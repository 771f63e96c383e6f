//! File rules on the file, not on one of its names: opens (from this thread, another thread,
//! `openat2`, the 32-bit entry point, under a chroot), and every other way to change or reach a
//! ruled file (hard links, renames away, onto, and of the holding directory, unlink,
//! `truncate(2)`, `chmod`, `chown`, creating a path under a read-only tree). Checked afterwards
//! from outside: the bytes are unchanged and no refused create left a file behind.

use std::fs;

use crate::{
    run::{cstr, eperm, errno, fork_run, line, worked, Outcome, Report, EXEC_FAILED},
    setup::MERGED,
};

fn open_errno(path: &str, write: bool) -> Result<(), i32> {
    let mut o = fs::OpenOptions::new();
    if write {
        o.write(true).truncate(true);
    } else {
        o.read(true);
    }
    o.open(path)
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn expect_open_eperm(path: &str, write: bool) -> Result<(), String> {
    match open_errno(path, write) {
        Err(libc::EPERM) => Ok(()),
        Err(e) => Err(format!("open {path} failed with errno {e}, not EPERM")),
        Ok(()) => Err(format!("open {path} (write: {write}) succeeded")),
    }
}

fn expect_open_ok(path: &str, write: bool) -> Result<(), String> {
    open_errno(path, write).map_err(|e| format!("open {path} (write: {write}): errno {e}"))
}

/// `open(path, O_WRONLY|O_APPEND)` from a second thread; the raw result.
fn open_from_thread(path: &'static str) -> i64 {
    std::thread::spawn(move || {
        // SAFETY: plain syscalls.
        let fd = unsafe { libc::open(cstr(path).as_ptr(), libc::O_WRONLY | libc::O_APPEND) };
        if fd >= 0 {
            // SAFETY: ours.
            unsafe { libc::close(fd) };
            return (fd as i64, 0);
        }
        (-1, errno())
    })
    .join()
    .map(|(r, e)| {
        // SAFETY: carry the thread's errno over.
        unsafe { *libc::__errno_location() = e };
        r
    })
    .unwrap_or(-1)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn open_openat2(path: &str) -> i64 {
    let how = OpenHow {
        flags: (libc::O_WRONLY | libc::O_APPEND) as u64,
        mode: 0,
        resolve: 0,
    };
    let p = cstr(path);
    // SAFETY: a valid path and open_how for the duration of the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        // SAFETY: ours.
        unsafe { libc::close(fd as i32) };
    }
    fd
}

/// i386 `open(2)` (syscall 5) through `int 0x80`, with the path in a page below 4 GiB.
fn open_int80(path: &str) -> i64 {
    // SAFETY (all): a private anonymous page we own; the path is copied into it NUL-terminated.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        );
        if page == libc::MAP_FAILED {
            return -1;
        }
        std::ptr::copy_nonoverlapping(path.as_ptr(), page.cast::<u8>(), path.len());
        *page.cast::<u8>().add(path.len()) = 0;
        let flags = (libc::O_WRONLY | libc::O_APPEND) as u64;
        let ret: i64;
        // rbx cannot be an operand: swap the path into it around the call.
        std::arch::asm!(
            "xchg rbx, {p}",
            "int 0x80",
            "xchg rbx, {p}",
            p = inout(reg) page as u64 => _,
            inlateout("rax") 5u64 => ret,
            in("rcx") flags,
            in("rdx") 0o644u64,
        );
        libc::munmap(page, 4096);
        let ret = ret as i32 as i64;
        if ret < 0 {
            *libc::__errno_location() = -ret as i32;
            return -1;
        }
        libc::close(ret as i32);
        ret
    }
}

fn link(a: &str, b: &str) -> i64 {
    // SAFETY: valid paths.
    unsafe { libc::link(cstr(a).as_ptr(), cstr(b).as_ptr()) as i64 }
}

fn rename(a: &str, b: &str) -> i64 {
    // SAFETY: valid paths.
    unsafe { libc::rename(cstr(a).as_ptr(), cstr(b).as_ptr()) as i64 }
}

pub fn checks() -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, r: Result<(), String>| out.push(line(name, r));
    check(
        "file_deny_read_eperm",
        expect_open_eperm("/etc/secret", false),
    );
    // The bytes are checked afterwards from outside (`untouched`).
    check(
        "file_deny_truncate_eperm",
        expect_open_eperm("/etc/secret", true),
    );
    check(
        "file_read_only",
        expect_open_ok("/etc/readonly", false)
            .and_then(|()| expect_open_eperm("/etc/readonly", true)),
    );
    check("file_unlisted_writable", expect_open_ok("/etc/plain", true));
    // A file on another mount (a tmpfs) than the container's root.
    check(
        "file_deny_on_tmpfs_eperm",
        expect_open_eperm("/scratch/secret", false),
    );
    check(
        "file_tmp_writable",
        fs::write("/tmp/note", "x").map_err(|e| e.to_string()),
    );

    // Another thread, another syscall, another ABI: the flags are the kernel's own.
    check(
        "file_write_other_thread_eperm",
        eperm("open", open_from_thread("/etc/readonly")),
    );
    check(
        "file_write_openat2_eperm",
        eperm("openat2", open_openat2("/etc/readonly")),
    );
    check(
        "file_write_int80_eperm",
        eperm("int 0x80 open", open_int80("/etc/readonly")),
    );
    // Another root: the path is still /etc/readonly.
    check(
        "file_write_under_chroot_eperm",
        match fork_run(|| {
            // SAFETY: plain syscalls in the child.
            unsafe {
                if libc::chroot(c"/etc".as_ptr()) != 0 {
                    return;
                }
                if libc::open(c"/readonly".as_ptr(), libc::O_WRONLY | libc::O_APPEND) >= 0 {
                    libc::_exit(0);
                }
            }
        })
        .0
        {
            Outcome::Exited(c) if c == EXEC_FAILED + libc::EPERM => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Another name for the same file, or another syscall that changes it.
    check(
        "file_hard_link_read_only_eperm",
        eperm("link", link("/etc/readonly", "/tmp/ro-link")),
    );
    check(
        "file_hard_link_denied_eperm",
        eperm("link", link("/etc/secret", "/tmp/secret-link")),
    );
    check(
        "file_rename_denied_away_eperm",
        eperm("rename", rename("/etc/secret", "/tmp/secret")),
    );
    check(
        "file_rename_read_only_away_eperm",
        eperm("rename", rename("/etc/readonly", "/etc/readonly.old")),
    );
    check(
        "file_rename_onto_read_only_eperm",
        fs::write("/tmp/replacement", "evil\n")
            .map_err(|e| e.to_string())
            .and_then(|()| eperm("rename", rename("/tmp/replacement", "/etc/readonly"))),
    );
    check(
        "file_rename_holding_dir_eperm",
        eperm("rename", rename("/etc", "/etc2")),
    );
    // SAFETY (below): valid paths.
    check(
        "file_unlink_eperm",
        eperm("unlink", unsafe { libc::unlink(c"/etc/readonly".as_ptr()) }
            as i64),
    );
    check(
        "file_truncate_syscall_eperm",
        eperm(
            "truncate",
            unsafe { libc::truncate(c"/etc/readonly".as_ptr(), 0) } as i64,
        ),
    );
    check(
        "file_chmod_eperm",
        eperm(
            "chmod",
            unsafe { libc::chmod(c"/etc/readonly".as_ptr(), 0o777) } as i64,
        ),
    );
    check(
        "file_chown_eperm",
        eperm(
            "chown",
            unsafe { libc::chown(c"/etc/readonly".as_ptr(), 1234, 1234) } as i64,
        ),
    );
    check(
        "file_create_in_read_only_tree_eperm",
        eperm("open O_CREAT", unsafe {
            libc::open(
                c"/etc/ro.d/new".as_ptr(),
                libc::O_WRONLY | libc::O_CREAT,
                0o644,
            )
        } as i64),
    );
    check(
        "file_read_only_tree_readable",
        fs::read("/etc/ro.d/conf")
            .map(drop)
            .map_err(|e| e.to_string()),
    );
    out
}

/// From a cgroup that is not a container: the same calls work (on a scratch copy, so the
/// container's files stay as they were).
pub fn scope_checks() -> Vec<String> {
    vec![
        line(
            "scope_file_outside_allowed",
            expect_open_ok("/etc/secret", false),
        ),
        line(
            "scope_file_link_outside_allowed",
            worked("link", link("/etc/plain", "/tmp/scope-link")),
        ),
    ]
}

/// From outside, after everything ran: the ruled files' bytes, and no file a refused create
/// would have left.
pub fn untouched(report: &mut Report) {
    for (f, want) in [("/etc/secret", "secret\n"), ("/etc/readonly", "readonly\n")] {
        report.check(
            &format!("file_untouched_{}", &f[5..]),
            match fs::read_to_string(format!("{MERGED}{f}")) {
                Ok(b) if b == want => Ok(()),
                Ok(b) => Err(format!("{f} is now {b:?}")),
                Err(e) => Err(format!("{f}: {e}")),
            },
        );
    }
    report.check(
        "file_refused_create_left_nothing",
        match fs::metadata(format!("{MERGED}/etc/ro.d/new")) {
            Err(_) => Ok(()),
            Ok(_) => Err("/etc/ro.d/new exists".into()),
        },
    );
}
