//! The supervisor's side of the seccomp filter: one thread takes each notified call, looks at
//! it (never trusting memory the caller's threads can change after the look), answers, and
//! emits the event. Calls that are carried out for the caller (sockets) go to the domain's
//! workers, which answer when done.
//!
//! Should this loop ever stop (the supervisor killed), the kernel fails every pending and
//! future notified call with ENOSYS: the tree fails closed.

mod code_maps;
mod exec;
mod files;
mod listener;
mod net;
mod resolve;
mod sockets;
mod target;

use std::collections::HashMap;
use std::sync::Arc;

pub use listener::Listener;
pub use sockets::{SocketTable, SOCK_PACKET};

use seawall_profile::{Mode, Profile};
use seawall_proto::event::{Action, Kind};

use crate::events::{Draft, Events};
use crate::fs::compile::Compiled;
use crate::fs::walk::FileId;
use crate::plan::Plan;
use crate::supervise::domain::Domain;
use listener::{Reply, Request};

/// Everything the handlers decide with.
pub struct Context {
    pub listener: Arc<Listener>,
    pub plan: Plan,
    pub profile: Profile,
    /// The Landlock rules as installed, to predict the kernel's answer for events.
    pub fs: Compiled,
    /// Regular files at start, with their ctime: running or mapping anything else as code is
    /// drift.
    pub at_start: HashMap<FileId, i128>,
    pub events: Events,
    pub sockets: Arc<SocketTable>,
    pub domain: Domain,
}

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7;

/// The names `names` gives the bits set in `value`, in `names`' order (flags for events).
fn bit_names(value: i32, names: &[(i32, &'static str)]) -> Vec<&'static str> {
    names
        .iter()
        .filter(|&&(bit, _)| value & bit != 0)
        .map(|&(_, name)| name)
        .collect()
}

/// The action an event reports for a violation under `mode`, given whether the kernel blocks.
pub fn action_for(mode: Mode, blocked: bool) -> Action {
    match (mode, blocked) {
        (_, true) => Action::Blocked,
        _ => Action::Audited,
    }
}

/// Serves notifications until the listener fails (every caller gone).
pub fn serve(ctx: Arc<Context>) {
    loop {
        let req = match ctx.listener.recv() {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "seccomp listener closed");
                return;
            }
        };
        if let Some(reply) = dispatch(&ctx, &req) {
            ctx.listener.reply(req.id, reply);
        }
    }
}

/// Answers now (`Some`), or later from a worker or by installing an fd (`None`).
fn dispatch(ctx: &Arc<Context>, req: &Request) -> Option<Reply> {
    let foreign = req.arch != NATIVE_ARCH
        || (cfg!(target_arch = "x86_64") && req.nr as u32 & 0x4000_0000 != 0);
    if foreign {
        return Some(foreign_abi(ctx, req));
    }
    match i64::from(req.nr) {
        libc::SYS_execve | libc::SYS_execveat => Some(exec::on_exec(ctx, req)),
        libc::SYS_memfd_create => exec::on_memfd(ctx, req),
        libc::SYS_mmap => Some(code_maps::on_mmap(ctx, req)),
        libc::SYS_mprotect | libc::SYS_pkey_mprotect => Some(code_maps::on_mprotect(ctx, req)),
        libc::SYS_shmat => Some(code_maps::on_shmat(ctx, req)),
        libc::SYS_ptrace => Some(code_maps::on_poke(ctx, req)),
        libc::SYS_socket => net::on_socket(ctx, req),
        libc::SYS_connect | libc::SYS_bind => net::on_address(ctx, req),
        libc::SYS_sendto | libc::SYS_sendmsg | libc::SYS_sendmmsg => net::on_send(ctx, req),
        _ => Some(files::on_file(ctx, req)),
    }
}

/// A call through another ABI (i386 `int 0x80`, x32): the filter cannot read its numbers as
/// ours, so the process is killed, as it would be without a supervisor.
fn foreign_abi(ctx: &Context, req: &Request) -> Reply {
    // Only a caller still waiting is known to be the one that made the call: a tid from a
    // stale notification may name another process by now, so that one is left alone (the
    // call fails anyway).
    let Ok(t) = target::Target::open(&ctx.listener, req, false) else {
        return Reply::Errno(libc::ENOSYS);
    };
    let (tgid, process) = (t.tgid, Some(t.process()));
    let abi = if req.arch == NATIVE_ARCH {
        "x32"
    } else {
        "32-bit"
    };
    ctx.events.emit(Draft {
        kind: Kind::Agent,
        action: Action::Blocked,
        control: "abi",
        message: format!(
            "{abi} syscall {} (arch {:#x}) refused: process {tgid} killed",
            req.nr as u32 & !0x4000_0000,
            req.arch
        ),
        process,
        file: None,
        network: None,
    });
    kill_caller(&ctx.listener, req.id, tgid);
    Reply::Errno(libc::ENOSYS)
}

/// SIGKILL to the caller's process, through a pidfd taken while its call is still pending, so
/// a reused pid is never hit.
fn kill_caller(l: &Listener, id: u64, tgid: u32) {
    // SAFETY: pidfd_open and pidfd_send_signal on an fd we own and close.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, tgid, 0);
        if pidfd < 0 {
            return;
        }
        if l.valid(id) {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
        libc::close(pidfd as i32);
    }
}
