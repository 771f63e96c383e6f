//! Code brought in without an exec: mmap(PROT_EXEC) of a file or a memfd, mprotect and
//! pkey_mprotect adding PROT_EXEC to a file mapping, flags with bits in the upper half of the
//! register, and the persona that makes every readable mapping executable.

use crate::{cstr, name, report, sys};

const PAGE: usize = 4096;
const READ_IMPLIES_EXEC: u64 = 0x0040_0000;

/// A raw mmap of one page of `fd`.
unsafe fn map(prot: u64, flags: u64, fd: i64) -> Result<i64, i32> {
    sys(libc::syscall(
        libc::SYS_mmap,
        0usize,
        PAGE,
        prot,
        flags,
        fd,
        0usize,
    ))
}

/// Every way to get `fd`'s pages mapped executable, each reported as `OP: ok|ERRNO`.
unsafe fn attempts(what: &str, fd: i64) {
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let private = libc::MAP_PRIVATE as u64;
    if let Ok(p) = report(&format!("mmap(PROT_EXEC) {what}"), map(rx, private, fd)) {
        libc::syscall(libc::SYS_munmap, p, PAGE);
    }
    // MAP_ANONYMOUS in the upper half is no anonymous mapping for the kernel.
    let upper = private | ((libc::MAP_ANONYMOUS as u64) << 32);
    if let Ok(p) = report(
        &format!("mmap(PROT_EXEC, high flags) {what}"),
        map(rx, upper, fd),
    ) {
        libc::syscall(libc::SYS_munmap, p, PAGE);
    }
    let shared = libc::MAP_SHARED as u64;
    if let Ok(p) = report(
        &format!("mmap(PROT_EXEC, MAP_SHARED) {what}"),
        map(rx, shared, fd),
    ) {
        libc::syscall(libc::SYS_munmap, p, PAGE);
    }
    let Ok(p) = report(
        &format!("mmap(PROT_READ) {what}"),
        map(libc::PROT_READ as u64, private, fd),
    ) else {
        return;
    };
    report(
        &format!("mprotect(PROT_EXEC) {what}"),
        sys(libc::syscall(libc::SYS_mprotect, p, PAGE, rx)),
    )
    .ok();
    report(
        &format!("pkey_mprotect(PROT_EXEC) {what}"),
        sys(libc::syscall(libc::SYS_pkey_mprotect, p, PAGE, rx, -1i64)),
    )
    .ok();
    println!("{what} executable: {}", mapped_executable(p as u64));
    libc::syscall(libc::SYS_munmap, p, PAGE);
}

/// Whether `/proc/self/maps` shows the page at `addr` with execute permission.
fn mapped_executable(addr: u64) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().any(|l| {
        let Some((range, rest)) = l.split_once(' ') else {
            return false;
        };
        let Some((s, e)) = range.split_once('-') else {
            return false;
        };
        let (s, e) = (
            u64::from_str_radix(s, 16).unwrap_or(0),
            u64::from_str_radix(e, 16).unwrap_or(0),
        );
        s <= addr && addr < e && rest.as_bytes().get(2) == Some(&b'x')
    })
}

/// map-file PATH: PATH opened read-only, then every way to map it executable.
pub unsafe fn map_file(path: &str) {
    let p = cstr(path);
    let Ok(fd) = report(
        "open",
        sys(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::O_RDONLY,
        )),
    ) else {
        return;
    };
    attempts(path, fd);
}

/// map-memfd: a memfd filled with this program, then every way to map it executable.
pub unsafe fn map_memfd() {
    let n = cstr("code");
    let Ok(fd) = report(
        "memfd_create",
        sys(libc::syscall(libc::SYS_memfd_create, n.as_ptr(), 0)),
    ) else {
        return;
    };
    let me = std::fs::read("/proc/self/exe").expect("read self");
    libc::syscall(libc::SYS_write, fd, me.as_ptr(), me.len());
    attempts("memfd", fd);
}

/// persona PATH: asks for READ_IMPLIES_EXEC, then maps PATH PROT_READ and says whether that
/// mapping came out executable.
pub unsafe fn persona(path: &str) {
    report(
        "personality(READ_IMPLIES_EXEC)",
        sys(libc::syscall(libc::SYS_personality, READ_IMPLIES_EXEC)),
    )
    .ok();
    let current = libc::syscall(libc::SYS_personality, 0xffff_ffffu64);
    println!(
        "persona READ_IMPLIES_EXEC: {}",
        current >= 0 && current as u64 & READ_IMPLIES_EXEC != 0
    );
    let p = cstr(path);
    let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.as_ptr(), libc::O_RDONLY);
    match map(libc::PROT_READ as u64, libc::MAP_PRIVATE as u64, fd) {
        Ok(a) => println!("read mapping executable: {}", mapped_executable(a as u64)),
        Err(e) => println!("mmap(PROT_READ): {}", name(e)),
    }
}

/// `mov eax, 42; ret`: what a JIT writes and then runs.
const JIT_CODE: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3];

/// anon-exec PATH: every way to get anonymous or written memory executable, each reported as
/// `OP: ok|ERRNO` (W^X), then a JIT's round: code written into an anonymous page, the page
/// made executable and called (`jit: answer=42`).
pub unsafe fn anon_exec(path: &str) {
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let (r, rw) = (
        libc::PROT_READ as u64,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
    );
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let rwx = rx | libc::PROT_WRITE as u64;
    for (op, prot) in [
        ("mmap(anonymous, PROT_EXEC)", rx),
        ("mmap(anonymous, RWX)", rwx),
    ] {
        if let Ok(p) = report(op, map(prot, anon, -1)) {
            libc::syscall(libc::SYS_munmap, p, PAGE);
        }
    }
    let p = cstr(path);
    let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.as_ptr(), libc::O_RDONLY);
    if let Ok(a) = report("mmap(file, RWX)", map(rwx, libc::MAP_PRIVATE as u64, fd)) {
        libc::syscall(libc::SYS_munmap, a, PAGE);
    }
    // An image file's private copy, written, then asked to become code.
    if let Ok(a) = map(rw, libc::MAP_PRIVATE as u64, fd) {
        std::ptr::copy_nonoverlapping(JIT_CODE.as_ptr(), a as *mut u8, JIT_CODE.len());
        libc::syscall(libc::SYS_mprotect, a, PAGE, r);
        report(
            "mprotect(written file copy, PROT_EXEC)",
            sys(libc::syscall(libc::SYS_mprotect, a, PAGE, rx)),
        )
        .ok();
        libc::syscall(libc::SYS_munmap, a, PAGE);
    }
    jit();
}

/// jit: code written into an anonymous page, then `mprotect(PROT_READ|PROT_EXEC)` and a call.
pub unsafe fn jit() {
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let Ok(a) = map(rw, anon, -1) else {
        println!("jit: mmap {}", name(crate::errno()));
        return;
    };
    std::ptr::copy_nonoverlapping(JIT_CODE.as_ptr(), a as *mut u8, JIT_CODE.len());
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    if report(
        "mprotect(anonymous, PROT_EXEC)",
        sys(libc::syscall(libc::SYS_mprotect, a, PAGE, rx)),
    )
    .is_ok()
    {
        let f: extern "C" fn() -> i32 = std::mem::transmute(a as usize);
        println!("jit: answer={}", f());
    }
    libc::syscall(libc::SYS_munmap, a, PAGE);
}

/// The function the code writes below try to change: 7 unless someone rewrote it.
#[inline(never)]
fn answer() -> u64 {
    std::hint::black_box(7)
}

/// `mov eax, 42; ret`.
#[cfg(target_arch = "x86_64")]
const ANSWER_42: [u8; 8] = [0xb8, 0x2a, 0, 0, 0, 0xc3, 0x90, 0x90];

/// Writes that ignore page protections, onto code pages: `/proc/self/mem` opened for writing
/// (its writes go through even to read-only, executable pages), and `PTRACE_POKETEXT` /
/// `PTRACE_POKEDATA` from a parent into its traced child. Prints what each call got and what
/// `answer()` returned afterwards in each process.
#[cfg(target_arch = "x86_64")]
pub unsafe fn code_writes() {
    let f: fn() -> u64 = answer;
    let addr = f as usize as u64;
    // SAFETY: raw syscalls on our own fds, memory and child (the caller's contract).
    unsafe {
        let mem = cstr("/proc/self/mem");
        if let Ok(fd) = report(
            "open(/proc/self/mem, O_RDWR)",
            sys(libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                mem.as_ptr(),
                libc::O_RDWR,
            )),
        ) {
            report(
                "pwrite(/proc/self/mem)",
                sys(libc::syscall(
                    libc::SYS_pwrite64,
                    fd,
                    ANSWER_42.as_ptr(),
                    ANSWER_42.len(),
                    addr,
                )),
            )
            .ok();
            libc::syscall(libc::SYS_close, fd);
        }
        println!("self-mem: answer={}", answer());

        let child = libc::fork();
        if child == 0 {
            libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
            libc::_exit(answer() as i32);
        }
        let mut st = 0;
        libc::waitpid(child, &mut st, 0);
        let word = u64::from_le_bytes(ANSWER_42);
        for (req, op) in [
            (libc::PTRACE_POKETEXT, "ptrace(POKETEXT)"),
            (libc::PTRACE_POKEDATA, "ptrace(POKEDATA)"),
        ] {
            report(op, sys(libc::syscall(libc::SYS_ptrace, req, child, addr, word))).ok();
        }
        libc::syscall(libc::SYS_ptrace, libc::PTRACE_CONT, child, 0, 0);
        libc::waitpid(child, &mut st, 0);
        if libc::WIFEXITED(st) {
            println!("traced child: answer={}", libc::WEXITSTATUS(st));
        } else {
            println!("traced child: status {st:#x}");
        }
    }
}
