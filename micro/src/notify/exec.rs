//! execve/execveat and memfd_create.
//!
//! Exec decisions are Landlock's: the execute right exists only on files that were executable
//! at start (drift) and allowed by the exec lists. Here the call is only looked at, to say in
//! an event what the kernel is about to refuse, and then let through: the path this reads can
//! be changed by another thread after the look, which can only make the event wrong, never the
//! decision.
//!
//! memfds are the one executable file Landlock does not see (they live on an internal mount it
//! skips), so under drift the supervisor creates every memfd itself with `MFD_NOEXEC_SEAL`:
//! such a memfd can never gain an execute bit.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use seawall_profile::Mode;
use seawall_proto::event::{Action, Kind};

use super::listener::{Reply, Request};
use super::resolve::{display, resolve, Resolved};
use super::target::Target;
use super::{action_for, Context};
use crate::events::Draft;
use crate::fs::rights::EXECUTE;

const AT_EMPTY_PATH: u64 = 0x1000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// Arguments kept in an exec event.
const MAX_ARGS: usize = 64;

/// Why an exec breaks a control, if it does.
struct Violation {
    control: &'static str,
    mode: Mode,
    why: &'static str,
}

/// Why running `r` is drift, if it is (drift not off, not under `drift.allow`): a memfd or a
/// deleted file, a file that was not in the filesystem at start, or one changed since
/// (`ctime_now`, when the file can be looked at). Exec and code mappings share this decision.
pub fn drift_reason(ctx: &Context, r: &Resolved, ctime_now: Option<i128>) -> Option<&'static str> {
    let drift = &ctx.profile.drift;
    if drift.mode == Mode::Off || drift.allow.iter().any(|a| a.matches(&display(&r.path))) {
        return None;
    }
    if r.detached {
        return Some(" (deleted or memory-only file)");
    }
    match r.id.and_then(|id| ctx.at_start.get(&id)) {
        None => Some(" (not in the filesystem at start)"),
        Some(&ctime) => (ctime_now.unwrap_or(ctime) != ctime).then_some(" (changed since start)"),
    }
}

fn judge(ctx: &Context, r: &Resolved) -> Option<Violation> {
    let path = display(&r.path);
    let exec = &ctx.profile.exec;
    let now = std::fs::metadata(&r.path)
        .ok()
        .map(|m| crate::fs::walk::ctime_ns(&m));
    if let Some(why) = drift_reason(ctx, r, now) {
        return Some(Violation {
            control: "drift",
            mode: ctx.profile.drift.mode,
            why,
        });
    }
    if exec.mode != Mode::Off {
        let denied = exec.deny.iter().any(|d| d.matches(&path));
        let not_allowed = exec
            .allow
            .as_ref()
            .is_some_and(|a| !a.iter().any(|x| x.matches(&path)));
        if denied || not_allowed {
            return Some(Violation {
                control: "exec",
                mode: exec.mode,
                why: if denied {
                    " (denied)"
                } else {
                    " (not allowed)"
                },
            });
        }
    }
    None
}

/// Whether the kernel will refuse to execute this file because of our rules.
fn landlock_refuses(ctx: &Context, r: &Resolved) -> bool {
    if r.detached {
        // A memfd made by the supervisor has no execute bit and can never get one.
        return ctx.plan.memfd_noexec && r.mode & 0o111 == 0;
    }
    ctx.fs.handled & EXECUTE != 0 && ctx.fs.rights_at(&r.path) & EXECUTE == 0
}

pub fn on_exec(ctx: &Context, req: &Request) -> Reply {
    let at = i64::from(req.nr) == libc::SYS_execveat;
    let (dirfd, path_ptr, argv_ptr, flags) = if at {
        (req.int(0), req.args[1], req.args[2], req.args[4])
    } else {
        (libc::AT_FDCWD, req.args[0], req.args[1], 0)
    };
    let Ok(t) = Target::open(&ctx.listener, req, false) else {
        // Nothing to report on; the kernel still decides.
        return Reply::Continue;
    };
    let Ok(path) = t.read_cstr(path_ptr) else {
        return Reply::Continue;
    };
    let Some(r) = resolve(
        &t,
        dirfd,
        &path,
        flags & AT_SYMLINK_NOFOLLOW == 0,
        flags & AT_EMPTY_PATH != 0,
    ) else {
        return Reply::Continue;
    };
    // Not executable at all: the kernel refuses whatever the profile says.
    if r.id.is_none() || (r.mode & 0o111 == 0 && !r.detached) {
        return Reply::Continue;
    }
    let Some(v) = judge(ctx, &r) else {
        return Reply::Continue;
    };
    let blocked = v.mode == Mode::Enforce && landlock_refuses(ctx, &r);
    let action = action_for(v.mode, blocked);
    let shown = display(&r.path);
    let mut process = t.process();
    process.exe = shown.clone();
    if let Ok((args, cut)) = t.read_argv(argv_ptr, MAX_ARGS) {
        process.args = args;
        process.args_truncated = cut;
    }
    let not_enforced = if v.mode == Mode::Enforce && !blocked {
        " (not enforced here: see seawall-micro --check)"
    } else {
        ""
    };
    ctx.events.emit(Draft {
        kind: Kind::Exec,
        action,
        control: v.control,
        message: format!(
            "{}: exec {shown}{} {action}{not_enforced}",
            v.control, v.why
        ),
        process: Some(process),
        file: None,
        network: None,
    });
    Reply::Continue
}

/// memfd_create under drift enforcement: created here, sealed against exec, handed over.
pub fn on_memfd(ctx: &Context, req: &Request) -> Option<Reply> {
    let flags = req.args[1] as u32;
    let t = match Target::open(&ctx.listener, req, false) {
        Ok(t) => t,
        Err(e) => return Some(Reply::Errno(e.errno())),
    };
    let name = match t.read_cstr(req.args[0]) {
        Ok(n) => n,
        Err(e) => return Some(Reply::Errno(e.errno())),
    };
    if flags & libc::MFD_EXEC != 0 {
        ctx.events.emit(Draft {
            kind: Kind::Exec,
            action: Action::Blocked,
            control: "drift",
            message: format!(
                "drift: memfd_create({:?}, MFD_EXEC) blocked: an executable memfd is code that was not in the image",
                String::from_utf8_lossy(&name)
            ),
            process: Some(t.process()),
            file: None,
            network: None,
        });
        return Some(Reply::Errno(libc::EPERM));
    }
    let Ok(cname) = std::ffi::CString::new(name) else {
        return Some(Reply::Errno(libc::EINVAL));
    };
    let ours = (flags & !libc::MFD_CLOEXEC) | libc::MFD_NOEXEC_SEAL | libc::MFD_CLOEXEC;
    // SAFETY: a valid name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), ours) };
    if fd < 0 {
        return Some(Reply::Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL),
        ));
    }
    // SAFETY: the fd just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    match ctx
        .listener
        .add_fd(req.id, fd.as_fd(), flags & libc::MFD_CLOEXEC != 0, true)
    {
        Ok(_) => None,
        Err(e) => Some(Reply::Errno(e.raw_os_error().unwrap_or(libc::EBADF))),
    }
}
