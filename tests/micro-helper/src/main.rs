//! `micro-helper OP ARGS…`: one attack (or one benign call) per run, made with raw syscalls
//! (`syscall(2)`, `int 0x80`), never libc's wrappers. Each prints `OP: ok` or `OP: ERRNO` per
//! call so the test reads exactly what the process saw.

mod code;
mod escape;
mod exec;
mod files;
mod net;
mod race;

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
            "connect" => net::connect(a(2), a(3)),
            "udp" => net::udp(a(2), a(3)),
            "race-connect" => {
                net::race_connect(net::parse_sa(a(2), a(3)), net::parse_sa(a(4), a(5)), a(6))
            }
            "bind" => net::bind(a(2)),
            "race-exec" => exec::race_exec(a(2), a(3), a(4)),
            "race-sendmsg" => net::race_sendmsg(a(2), a(3), a(4)),
            "memfd-exec" => exec::memfd_exec(),
            "map-file" => code::map_file(a(2)),
            "map-memfd" => code::map_memfd(),
            "persona" => code::persona(a(2)),
            "anon-exec" => code::anon_exec(a(2)),
            "jit" => code::jit(),
            #[cfg(target_arch = "x86_64")]
            "code-writes" => code::code_writes(),
            "race-map" => race::race_map(a(2), a(3), a(4)),
            "race-protect" => race::race_protect(a(2), a(3), a(4)),
            "exec" => exec::exec(a(2), &args[3..]),
            "file" => files::file_attacks(a(2)),
            "read" => files::read(a(2)),
            "file-names" => files::file_names(a(2)),
            "chroot" => files::chroot_escape(a(2), a(3), a(4)),
            "raw-socket" => net::raw_sockets(),
            #[cfg(target_arch = "x86_64")]
            "abi" => escape::abi(a(2)),
            "io-uring" => escape::io_uring(),
            "seccomp" => escape::seccomp_loosen(a(2), a(3)),
            "supervisor" => escape::supervisor(a(2)),
            "wait-connect" => net::wait_connect(a(2), a(3), a(4)),
            other => {
                eprintln!("micro-helper: unknown operation {other:?}");
                std::process::exit(2);
            }
        }
    }
}
