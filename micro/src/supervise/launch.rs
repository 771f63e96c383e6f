//! Starting the tree: a thread enters the Landlock domain, a second thread (inside the domain)
//! adds the tree's own layer (signal scope, so no thread of the supervisor can be signalled),
//! installs the seccomp filter on itself and forks the first process of the tree, which execs
//! `CMD`. The listener that filter returns is already in the supervisor's fd table (threads
//! share it), so nothing has to be passed over a socket — a `sendmsg` the filter itself would
//! stop. The supervisor's other threads are in no domain and under no filter.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use landlock::RulesetCreated;

use super::domain::Domain;

/// The command to run, resolved before anything is forked.
pub struct Command {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("`{0}`: command not found in PATH")]
    NotFound(String),
    #[error("an argument or environment variable contains a NUL byte")]
    Nul,
    #[error("entering the Landlock domain")]
    Landlock(#[source] landlock::RulesetError),
    #[error("the Landlock ruleset was not enforced (status {0:?})")]
    NotEnforced(landlock::RulesetStatus),
    #[error("setting no_new_privs")]
    NoNewPrivs(#[source] std::io::Error),
    #[error("installing the seccomp filter")]
    Seccomp(#[source] std::io::Error),
    #[error("fork")]
    Fork(#[source] std::io::Error),
    #[error("pipe")]
    Pipe(#[source] std::io::Error),
    #[error("the launch thread stopped before starting the command")]
    Lost,
}

impl Command {
    /// `execvp`'s search, done here so the forked child only has to call `execve`.
    pub fn resolve(args: &[OsString]) -> Result<Command, LaunchError> {
        let first = args.first().ok_or(LaunchError::Lost)?;
        let path: PathBuf = if first.as_bytes().contains(&b'/') {
            PathBuf::from(first)
        } else {
            let search =
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
            std::env::split_paths(&search)
                .map(|d| d.join(first))
                .find(|p| is_executable_file(p))
                .ok_or_else(|| LaunchError::NotFound(first.to_string_lossy().into_owned()))?
        };
        let c = |b: &[u8]| CString::new(b).map_err(|_| LaunchError::Nul);
        Ok(Command {
            path: c(path.as_os_str().as_bytes())?,
            argv: args
                .iter()
                .map(|a| c(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            envp: std::env::vars_os()
                .map(|(k, v)| {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    c(&kv)
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The started tree.
pub struct Launched {
    /// The first process of the tree (the one that execs `CMD`).
    pub child: libc::pid_t,
    /// The seccomp listener; `None` when the filter notifies nothing.
    pub listener: Option<OwnedFd>,
    /// Runs work inside the tree's Landlock domain.
    pub domain: Domain,
    /// Readable end of the exec-status pipe: EOF when `CMD` started, else 4 bytes of errno.
    pub exec_status: OwnedFd,
}

/// Everything the forked child touches, prepared so it allocates nothing.
struct ChildPlan {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    status_fd: RawFd,
}

// SAFETY: the raw pointers point into `Command`, which outlives the launch.
unsafe impl Send for ChildPlan {}

pub fn launch(
    cmd: &Command,
    ruleset: Option<RulesetCreated>,
    tree_layer: Option<RulesetCreated>,
    filter: Vec<libc::sock_filter>,
    listener_wanted: bool,
    wait_killable: bool,
) -> Result<Launched, LaunchError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(LaunchError::Pipe(std::io::Error::last_os_error()));
    }
    // SAFETY: both fds are new and ours.
    let (status_r, status_w) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut argv: Vec<*const libc::c_char> = cmd.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = cmd.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let child = ChildPlan {
        path: cmd.path.clone(),
        argv,
        envp,
        status_fd: status_w.as_raw_fd(),
    };
    let mut flags = 0;
    if listener_wanted {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if wait_killable {
            flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        }
    }

    let (started_tx, started_rx) = mpsc::channel::<Result<(libc::pid_t, RawFd), LaunchError>>();
    let domain = Domain::start(move || {
        // This thread enters the domain; everything it spawns from now on is inside it.
        let entered = match ruleset {
            Some(rs) => match rs.restrict_self() {
                Ok(st) if st.ruleset == landlock::RulesetStatus::FullyEnforced => Ok(()),
                Ok(st) => Err(LaunchError::NotEnforced(st.ruleset)),
                Err(e) => Err(LaunchError::Landlock(e)),
            },
            // SAFETY: plain prctl.
            None => match unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } {
                0 => Ok(()),
                _ => Err(LaunchError::NoNewPrivs(std::io::Error::last_os_error())),
            },
        };
        if let Err(e) = entered {
            let _ = started_tx.send(Err(e));
            return false;
        }
        // A second thread takes the filter (and the tree's own Landlock layer), so this one
        // (the domain's worker spawner) never runs under them.
        let t = std::thread::Builder::new()
            .name("seawall-fork".into())
            .spawn(move || {
                let started = match tree_layer.map(enter_tree_layer) {
                    Some(Err(e)) => Err(e),
                    _ => filter_and_fork(&filter, flags, &child),
                };
                let _ = started_tx.send(started);
            });
        t.is_ok_and(|t| t.join().is_ok())
    });
    let started = started_rx.recv().map_err(|_| LaunchError::Lost)?;
    // The child has its copy of the write end: ours must go for EOF to mean "exec happened".
    drop(status_w);
    let (pid, lfd) = started?;
    Ok(Launched {
        child: pid,
        // SAFETY: the fd seccomp returned, owned by nobody else in this process.
        listener: (lfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(lfd) }),
        domain,
        exec_status: status_r,
    })
}

/// Puts the calling thread one Landlock domain below the supervisor's workers.
fn enter_tree_layer(layer: RulesetCreated) -> Result<(), LaunchError> {
    match layer.restrict_self() {
        Ok(st) if st.ruleset == landlock::RulesetStatus::FullyEnforced => Ok(()),
        Ok(st) => Err(LaunchError::NotEnforced(st.ruleset)),
        Err(e) => Err(LaunchError::Landlock(e)),
    }
}

/// Installs the filter on the calling thread and forks the tree's first process.
fn filter_and_fork(
    filter: &[libc::sock_filter],
    flags: libc::c_ulong,
    child: &ChildPlan,
) -> Result<(libc::pid_t, RawFd), LaunchError> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a valid program; the thread already has no_new_privs.
    let l = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if l < 0 {
        return Err(LaunchError::Seccomp(std::io::Error::last_os_error()));
    }
    let listener = if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        l as RawFd
    } else {
        -1
    };
    // SAFETY: in the child only async-signal-safe syscalls run, on memory prepared before.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; never returns.
        unsafe { exec_child(child, listener) }
    }
    Ok((pid, listener))
}

/// The child: drop what belongs to the supervisor, become a process group of its own like
/// tini's child (in the terminal's foreground when there is one), and exec.
unsafe fn exec_child(c: &ChildPlan, listener: RawFd) -> ! {
    if listener >= 0 {
        libc::close(listener);
    }
    let mut all: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    let foreground = libc::tcgetpgrp(0) == libc::getpgrp();
    libc::setpgid(0, 0);
    if foreground {
        // SIGTTOU is still blocked here, so handing ourselves the terminal cannot stop us.
        libc::tcsetpgrp(0, libc::getpid());
    }
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    libc::execve(c.path.as_ptr(), c.argv.as_ptr(), c.envp.as_ptr());
    let err: i32 = *libc::__errno_location();
    libc::write(c.status_fd, (&err as *const i32).cast(), 4);
    libc::_exit(127);
}

/// Waits for `CMD` to have been exec'd: `Ok(())`, or the errno execve failed with.
pub fn exec_result(status: &OwnedFd) -> Result<(), i32> {
    let mut buf = [0u8; 4];
    let mut got = 0usize;
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(status.as_raw_fd(), buf[got..].as_mut_ptr().cast(), 4 - got) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
        if got == 4 {
            break;
        }
    }
    if got == 4 {
        Err(i32::from_ne_bytes(buf))
    } else {
        Ok(())
    }
}
