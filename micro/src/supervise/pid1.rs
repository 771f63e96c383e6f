//! PID 1 duties, as tini does them: signals to the supervisor go to the command, every orphan
//! that lands here is reaped, and the command's exit becomes the supervisor's (its code, or
//! 128 + the signal that killed it).
//!
//! Signals are blocked in every thread (the mask is set before any thread exists) and taken
//! with `sigtimedwait` on the main thread only, so no handler ever runs: as PID 1 of a
//! container, a signal the tree sends to the supervisor is then dropped by the kernel.

use std::time::Duration;

/// Signals that are never blocked: they report faults of the thread that gets them.
const SYNCHRONOUS: &[i32] = &[
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGSYS,
    libc::SIGPIPE,
];

/// The set the main thread waits on (everything else that can be caught).
pub fn forwarded_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for &s in SYNCHRONOUS {
            libc::sigdelset(&mut set, s);
        }
        set
    }
}

/// Blocks the forwarded set in the calling thread; call before any other thread starts.
pub fn block_signals() {
    let set = forwarded_set();
    // SAFETY: a valid set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// How the command ended, as a shell would report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn from_wait_status(st: i32) -> Exit {
        if libc::WIFSIGNALED(st) {
            Exit::Signal(libc::WTERMSIG(st))
        } else {
            Exit::Code(libc::WEXITSTATUS(st))
        }
    }

    /// The supervisor's own exit code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Reaps every child that has exited; returns the command's exit if it was among them.
fn reap(child: libc::pid_t) -> Option<Exit> {
    let mut ours = None;
    loop {
        let mut st = 0;
        // SAFETY: waitpid on any child, without blocking.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid <= 0 {
            return ours;
        }
        if pid == child {
            ours = Some(Exit::from_wait_status(st));
        }
    }
}

/// Forwards signals to `child` and reaps until it exits. `tick` runs about once a second.
pub fn supervise(child: libc::pid_t, mut tick: impl FnMut()) -> Exit {
    let set = forwarded_set();
    let timeout = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: a zeroed siginfo out-buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let sig = unsafe { libc::sigtimedwait(&set, &mut info, &timeout) };
        match sig {
            libc::SIGCHLD => {}
            s if s > 0 => {
                tracing::debug!(signal = s, child, "forwarding a signal");
                // SAFETY: signalling the command's pid, which we have not reaped yet.
                unsafe { libc::kill(child, s) };
            }
            _ => tick(),
        }
        if let Some(exit) = reap(child) {
            return exit;
        }
    }
}

/// Kills what is left of the tree once the command has exited, when the supervisor is not
/// PID 1 (as PID 1, the kernel does it when we exit): every process whose parent chain leads
/// here.
pub fn kill_descendants(grace: Duration) {
    let me = std::process::id();
    let mut victims = descendants(me);
    if victims.is_empty() {
        return;
    }
    for &pid in &victims {
        // SAFETY: signalling processes we started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && !victims.is_empty() {
        std::thread::sleep(Duration::from_millis(50));
        let _ = reap(-1);
        victims = descendants(me);
    }
    for pid in victims {
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = reap(-1);
}

fn descendants(root: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The ppid is the second field after the parenthesised comm (which may hold spaces).
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        parent.push((pid, ppid));
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent {
            if pp == p && c != root {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// How long the supervisor waits after the command exits for the rest of its tree.
pub const DESCENDANTS_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Exit::Code(3).code(), 3);
        assert_eq!(Exit::Signal(libc::SIGKILL).code(), 137);
        assert_eq!(Exit::from_wait_status(7 << 8), Exit::Code(7));
        assert_eq!(
            Exit::from_wait_status(libc::SIGTERM),
            Exit::Signal(libc::SIGTERM)
        );
    }
}
