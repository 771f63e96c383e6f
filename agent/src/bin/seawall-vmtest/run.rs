//! Running things and judging what they saw: children, execs with their output, errnos, and the
//! `PASS`/`FAIL` report.

use std::{
    ffi::CString,
    fs,
    io::{BufRead, BufReader, Read, Write},
    os::fd::{FromRawFd, OwnedFd},
};

#[derive(Default)]
pub struct Report {
    pub passed: u32,
    pub failed: u32,
}

impl Report {
    pub fn pass(&mut self, name: &str) {
        self.passed += 1;
        println!("PASS {name}");
    }
    pub fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        println!("FAIL {name}: {why}");
    }
    pub fn check(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => self.pass(name),
            Err(e) => self.fail(name, &e),
        }
    }
    /// A line `PASS x` / `FAIL x: y` written by a child.
    pub fn line(&mut self, line: &str) {
        if let Some(name) = line.strip_prefix("PASS ") {
            self.pass(name);
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, "?"));
            self.fail(name, why);
        }
    }
}

/// One check's line for a child to report.
pub fn line(name: &str, r: Result<(), String>) -> String {
    match r {
        Ok(()) => format!("PASS {name}"),
        Err(e) => format!("FAIL {name}: {e}"),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both are fresh descriptors owned from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs `f` in a forked child and returns the result lines it wrote.
pub fn in_child(f: impl FnOnce() -> Result<Vec<String>, String>) -> Result<Vec<String>, String> {
    let (r, w) = pipe()?;
    // SAFETY: the process is single-threaded here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(r);
        let mut w = fs::File::from(w);
        let lines = f().unwrap_or_else(|e| vec![format!("FAIL child_setup: {e}")]);
        for l in lines {
            let _ = writeln!(w, "{l}");
        }
        drop(w);
        // SAFETY: leave without running the parent's destructors twice.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let mut lines: Vec<String> = BufReader::new(fs::File::from(r))
        .lines()
        .map_while(Result::ok)
        .collect();
    match wait(pid) {
        Outcome::Exited(0) => {}
        other => lines.push(format!("FAIL child: ended with {other:?}")),
    }
    Ok(lines)
}

/// How a child ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
}

pub fn wait(pid: libc::pid_t) -> Outcome {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        Outcome::Signaled(libc::WTERMSIG(status))
    } else {
        Outcome::Exited(libc::WEXITSTATUS(status))
    }
}

/// Exit status of a forked child whose `execve` (or setup) failed: this base plus errno.
pub const EXEC_FAILED: i32 = 200;

/// Forks; the child runs `f` (which must not return on success, e.g. execve) and exits with
/// `EXEC_FAILED + errno` when it does return. Returns how the child ended and its stdout.
pub fn fork_run(f: impl FnOnce()) -> (Outcome, String) {
    let Ok((r, w)) = pipe() else {
        return (Outcome::Exited(-1), String::new());
    };
    // SAFETY: single-threaded; the child only calls async-signal-safe functions before exec.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: stdout becomes the pipe; plain syscalls.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::dup2(w.as_raw_fd(), 1);
        }
        f();
        // SAFETY: leave with the errno of what failed.
        unsafe { libc::_exit(EXEC_FAILED + *libc::__errno_location()) };
    }
    drop(w);
    let mut out = String::new();
    let _ = fs::File::from(r).read_to_string(&mut out);
    (wait(pid), out)
}

/// `execve(path, argv, envp)` in the calling (child) process.
pub fn execve(path: &str, argv: &[&str], env: &[&str]) {
    let p = CString::new(path.as_bytes()).unwrap();
    execve_bytes(&p, argv, env);
}

/// `execve` of a path given as bytes (not always UTF-8).
pub fn execve_bytes(path: &CString, argv: &[&str], env: &[&str]) {
    let argv: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let env: Vec<CString> = env.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut ap: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ap.push(std::ptr::null());
    let mut ep: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    ep.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of NUL-terminated strings that live across the call.
    unsafe { libc::execve(path.as_ptr(), ap.as_ptr(), ep.as_ptr()) };
}

/// Runs busybox `true` from the file `path`: `Exited(0)` when it ran, `Exited(200 + errno)`
/// when `execve` failed, `Signaled(9)` when the fallback backend killed it.
pub fn exec(path: &str) -> Outcome {
    fork_run(|| execve(path, &["true"], &[])).0
}

pub fn expect_eperm(o: Outcome) -> Result<(), String> {
    match o {
        Outcome::Exited(c) if c == EXEC_FAILED + libc::EPERM => Ok(()),
        Outcome::Exited(c) if c >= EXEC_FAILED => {
            Err(format!("failed with errno {}, not EPERM", c - EXEC_FAILED))
        }
        Outcome::Exited(c) => Err(format!("it ran (exit {c})")),
        Outcome::Signaled(s) => Err(format!("killed by signal {s} instead of EPERM")),
    }
}

pub fn expect_ran(o: Outcome) -> Result<(), String> {
    match o {
        Outcome::Exited(0) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// The errno of the last failed call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// `Ok` when a syscall returned `r` < 0 with EPERM.
pub fn eperm(what: &str, r: i64) -> Result<(), String> {
    if r >= 0 {
        return Err(format!("{what} succeeded"));
    }
    match errno() {
        libc::EPERM => Ok(()),
        e => Err(format!("{what} failed with errno {e}, not EPERM")),
    }
}

/// `Ok` when a syscall returned `r` >= 0.
pub fn worked(what: &str, r: i64) -> Result<(), String> {
    if r >= 0 {
        Ok(())
    } else {
        Err(format!("{what}: errno {}", errno()))
    }
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}
