//! Code mapped without an exec: `mmap(PROT_EXEC)` of a file and `mprotect`/`pkey_mprotect`
//! adding `PROT_EXEC`. This is how the dynamic loader brings in `LD_PRELOAD` libraries,
//! `dlopen`ed ones and a program given to it (`ld.so FILE`), and how a static binary runs
//! code from a dropped file or a memfd without execve. Landlock's execute right does not
//! reach any of them, so the supervisor decides, on what the kernel resolved: the open file
//! behind the fd (`/proc/TID/fd/N`), or the mapping at the address (`/proc/TID/maps`), judged
//! as an exec of that file would be (drift: not in the filesystem at start, changed since,
//! memory-only or deleted).
//!
//! W^X (`drift.allow_anonymous_exec = false`, the default): memory the process can write never
//! becomes code. Anonymous mappings asked executable, `mprotect(PROT_EXEC)` of anonymous memory
//! or of a private file copy that was written, anything asked writable and executable at once,
//! and `shmat(SHM_EXEC)` are drift. With the key set (JITs), anonymous mappings stay in the
//! kernel and anonymous ranges are let through.
//!
//! Race: the answer is "continue", so the kernel re-reads the fd (or the mapping) after the
//! look. For a single-threaded caller nothing can change either meanwhile: the caller waits
//! here, and the filter refuses sharing an fd table or an address space with another process
//! (`CLONE_FILES`/`CLONE_VM` without `CLONE_THREAD`; vfork's parent waits). Another thread of a
//! multi-threaded caller can `dup2` a different file onto the fd, or `mmap(MAP_FIXED)` over
//! the address, between the look and the kernel's call: that race is NOT closed (issue 16).
//! Installing the checked file at that number (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SETFD`) before
//! continuing would not close it either (the other thread can dup2 again after the install),
//! and the supervisor cannot make the mapping itself in another address space. It is written
//! down in `--check` (drift, not covered) and in the README; `tests/micro/code_race.rs` shows it
//! (ignored by default).

use std::path::PathBuf;

use seawall_profile::Mode;
use seawall_proto::event::{Action, File, Kind, Process};

use super::exec::drift_reason;
use super::listener::{Reply, Request};
use super::resolve::{display, resolve, Resolved};
use super::target::{process_info, Target, TargetError};
use super::{action_for, bit_names, Context};
use crate::events::Draft;

/// What a mapping request brings in, as the kernel resolved it.
struct Code {
    resolved: Resolved,
    /// `st_ctime` of the file now, when it has a path to look at.
    ctime_ns: Option<i128>,
}

const PROT_WRITE: u64 = libc::PROT_WRITE as u64;
const W_X: &str = " (W^X: drift.allow_anonymous_exec is false)";

/// `mmap(addr, len, prot, flags, fd, off)` with `PROT_EXEC`: of a file, or (under W^X) of
/// anonymous memory.
pub fn on_mmap(ctx: &Context, req: &Request) -> Reply {
    let t = match look(ctx, req, "mmap") {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    let wx = !ctx.profile.drift.allow_anonymous_exec;
    // The kernel's test: the low bits of the flags register.
    if req.args[3] & libc::MAP_ANONYMOUS as u64 != 0 {
        if !wx {
            return Reply::Continue;
        }
        return refuse(ctx, &t, req, "mmap", "anonymous memory", "[anonymous]");
    }
    if wx && req.args[2] & PROT_WRITE != 0 {
        let what = format!("fd {} asked writable and executable", req.int(4));
        return refuse(ctx, &t, req, "mmap", &what, "");
    }
    mmap_file(ctx, req, &t)
}

fn mmap_file(ctx: &Context, req: &Request, t: &Target) -> Reply {
    let fd = req.int(4);
    let link = t.proc_path(&format!("fd/{fd}"));
    let code = match resolve(t, fd, b"", true, true) {
        Some(r) => Code {
            ctime_ns: std::fs::metadata(&link)
                .ok()
                .map(|m| crate::fs::walk::ctime_ns(&m)),
            resolved: r,
        },
        // No such fd: the kernel's own EBADF.
        None if std::fs::symlink_metadata(&link)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
        {
            return Reply::Continue
        }
        None => return undecidable(ctx, t.process(), req, "mmap", &format!("fd {fd}")),
    };
    if !ctx.listener.valid(req.id) {
        // What was read may belong to whoever has the thread id now.
        return Reply::Continue;
    }
    judge(ctx, t, req, "mmap", &code)
}

/// `mprotect(addr, len, prot)` / `pkey_mprotect(…, pkey)` with `PROT_EXEC`.
pub fn on_mprotect(ctx: &Context, req: &Request) -> Reply {
    let t = match look(ctx, req, "mprotect") {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    if !ctx.profile.drift.allow_anonymous_exec && req.args[2] & PROT_WRITE != 0 {
        let what = format!("{:#x} asked writable and executable", req.args[0]);
        return refuse(ctx, &t, req, "mprotect", &what, "");
    }
    mprotect_range(ctx, req, &t)
}

fn mprotect_range(ctx: &Context, req: &Request, t: &Target) -> Reply {
    let (addr, len) = (req.args[0], req.args[1]);
    let maps = match std::fs::read_to_string(t.proc_path("maps")) {
        Ok(m) => m,
        Err(_) => return undecidable(ctx, t.process(), req, "mprotect", "the caller's mappings"),
    };
    let end = addr.saturating_add(len);
    let in_range: Vec<Mapping> = maps
        .lines()
        .filter_map(Mapping::parse)
        .filter(|m| m.start < end && addr < m.end)
        .collect();
    if !ctx.listener.valid(req.id) {
        return Reply::Continue;
    }
    let wx = !ctx.profile.drift.allow_anonymous_exec;
    for m in in_range {
        if m.inode == 0 {
            if wx {
                let name = if m.path.is_empty() {
                    "[anonymous]"
                } else {
                    &m.path
                };
                let what = format!("anonymous memory {name}");
                return refuse(ctx, t, req, "mprotect", &what, name);
            }
            continue;
        }
        if wx && m.written(t) {
            let what = format!("a written private copy of {}", m.path);
            return refuse(ctx, t, req, "mprotect", &what, &m.path);
        }
        let reply = judge(ctx, t, req, "mprotect", &m.code(t));
        if reply != Reply::Continue {
            return reply;
        }
    }
    Reply::Continue
}

/// `shmat(id, addr, SHM_EXEC)` (notified under W^X only): shared memory is written memory.
pub fn on_shmat(ctx: &Context, req: &Request) -> Reply {
    let t = match look(ctx, req, "shmat") {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    let what = format!("System V shared memory {}", req.int(0));
    refuse(ctx, &t, req, "shmat", &what, "[shm]")
}

/// `ptrace(PTRACE_POKETEXT | PTRACE_POKEDATA, pid, addr, word)` under W^X: the kernel writes
/// the word whatever the page's protection, onto code pages too, so another process of the
/// tree could be given code that was never in the image. Refused whatever the address (the
/// filter only sends these two requests; debuggers still attach, read and step).
pub fn on_poke(ctx: &Context, req: &Request) -> Reply {
    let t = match look(ctx, req, "ptrace") {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    let request = if req.args[0] == u64::from(crate::confine::syscalls::PTRACE_POKETEXT) {
        "PTRACE_POKETEXT"
    } else {
        "PTRACE_POKEDATA"
    };
    let what = format!(
        "a word written at {:#x} of process {} (writes ignore page protections)",
        req.args[2],
        req.int(1)
    );
    refuse(ctx, &t, req, &format!("ptrace({request})"), &what, "")
}

/// Memory that can be written asked to become code, under W^X.
fn refuse(ctx: &Context, t: &Target, req: &Request, op: &str, what: &str, path: &str) -> Reply {
    let mode = ctx.profile.drift.mode;
    let blocked = mode == Mode::Enforce;
    emit(
        ctx,
        t.process(),
        action_for(mode, blocked),
        format!("{} of {what}{W_X}", call_name(op)),
        path.to_string(),
        req,
    );
    if blocked {
        Reply::Errno(libc::EPERM)
    } else {
        Reply::Continue
    }
}

/// The verdict on one file, with its event.
fn judge(ctx: &Context, t: &Target, req: &Request, op: &str, code: &Code) -> Reply {
    let Some(why) = drift_reason(ctx, &code.resolved, code.ctime_ns) else {
        return Reply::Continue;
    };
    let mode = ctx.profile.drift.mode;
    let blocked = mode == Mode::Enforce;
    let shown = display(&code.resolved.path);
    emit(
        ctx,
        t.process(),
        action_for(mode, blocked),
        format!("{op}(PROT_EXEC) of {shown}{why}"),
        shown,
        req,
    );
    if blocked {
        Reply::Errno(libc::EPERM)
    } else {
        Reply::Continue
    }
}

/// The caller, opened for looking. A caller that is gone gets no answer that matters; one the
/// supervisor may not look at (not dumpable, or running as another user, which takes
/// CAP_SYS_PTRACE to inspect) cannot be judged.
fn look(ctx: &Context, req: &Request, op: &str) -> Result<Target, Reply> {
    match Target::open(&ctx.listener, req, false) {
        Ok(t) => Ok(t),
        Err(TargetError::Gone) => Err(Reply::Continue),
        Err(_) => Err(undecidable(
            ctx,
            process_info(req.tid),
            req,
            op,
            "the caller's files",
        )),
    }
}

/// What the file is cannot be told: refused under enforce (fail closed), reported either way.
fn undecidable(ctx: &Context, process: Process, req: &Request, op: &str, what: &str) -> Reply {
    let blocked = ctx.profile.drift.mode == Mode::Enforce;
    emit(
        ctx,
        process,
        action_for(ctx.profile.drift.mode, blocked),
        format!("{op}(PROT_EXEC): cannot look at {what}"),
        what.to_string(),
        req,
    );
    if blocked {
        Reply::Errno(libc::EPERM)
    } else {
        Reply::Continue
    }
}

fn emit(
    ctx: &Context,
    process: Process,
    action: Action,
    what: String,
    path: String,
    req: &Request,
) {
    ctx.events.emit(Draft {
        kind: Kind::Exec,
        action,
        control: "drift",
        message: format!("drift: {what} {action}"),
        process: Some(process),
        file: Some(File {
            path,
            flags: if i64::from(req.nr) == libc::SYS_shmat {
                "SHM_EXEC".into()
            } else if i64::from(req.nr) == libc::SYS_ptrace {
                String::new()
            } else {
                prot_text(req.args[2])
            },
        }),
        network: None,
    });
}

/// The call as events name it: `mmap(PROT_EXEC)`, `shmat(SHM_EXEC)`.
fn call_name(op: &str) -> String {
    if op.contains('(') {
        // Already named with its request (`ptrace(PTRACE_POKETEXT)`).
        return op.to_string();
    }
    let flag = if op == "shmat" {
        "SHM_EXEC"
    } else {
        "PROT_EXEC"
    };
    format!("{op}({flag})")
}

/// `PROT_READ|PROT_EXEC` for events.
fn prot_text(prot: u64) -> String {
    bit_names(
        prot as i32,
        &[
            (libc::PROT_READ, "PROT_READ"),
            (libc::PROT_WRITE, "PROT_WRITE"),
            (libc::PROT_EXEC, "PROT_EXEC"),
        ],
    )
    .join("|")
}

/// The next space-separated field of `s`, and what follows it.
fn next_field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_at(s.find(' ').unwrap_or(s.len()))
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    /// `rwxp`/`r-xs`…
    perms: String,
    dev: u64,
    inode: u64,
    /// The kernel's name for the file: escaped (`\012` for a newline), ` (deleted)` when gone.
    path: String,
}

impl Mapping {
    /// `start-end perms offset major:minor inode   path`.
    fn parse(line: &str) -> Option<Mapping> {
        let (range, rest) = next_field(line);
        let (perms, rest) = next_field(rest);
        let (_offset, rest) = next_field(rest);
        let (dev, rest) = next_field(rest);
        let (inode, rest) = next_field(rest);
        let (start, end) = range.split_once('-')?;
        let (major, minor) = dev.split_once(':')?;
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            perms: perms.to_string(),
            dev: libc::makedev(
                u32::from_str_radix(major, 16).ok()?,
                u32::from_str_radix(minor, 16).ok()?,
            ),
            inode: inode.parse().ok()?,
            path: rest.trim_start().to_string(),
        })
    }

    /// A private mapping whose pages may hold what the process wrote rather than the file:
    /// writable now, or with copied-on-write pages (`Anonymous:` in `/proc/TID/smaps`).
    fn written(&self, t: &Target) -> bool {
        if self.perms.as_bytes().get(3) != Some(&b'p') {
            // Shared: writes went to the file, which the ctime check sees.
            return false;
        }
        if self.perms.as_bytes().get(1) == Some(&b'w') {
            return true;
        }
        let Ok(smaps) = std::fs::read_to_string(t.proc_path("smaps")) else {
            // Cannot tell: written, as far as W^X goes.
            return true;
        };
        anonymous_kb(&smaps, self.start).is_none_or(|kb| kb > 0)
    }

    /// The mapped file judged by identity, as the kernel holds it; its path is only looked at
    /// for the ctime, and only when that path still names the same file.
    fn code(&self, t: &Target) -> Code {
        let id = (self.dev, self.inode);
        let detached = self.path.starts_with("/memfd:") || self.path.ends_with(" (deleted)");
        let ctime_ns = (!detached && self.path.starts_with('/'))
            .then(|| std::fs::metadata(t.proc_path(&format!("root{}", self.path))).ok())
            .flatten()
            .filter(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino()) == id
            })
            .map(|m| crate::fs::walk::ctime_ns(&m));
        Code {
            resolved: Resolved {
                path: PathBuf::from(&self.path),
                id: Some(id),
                mode: 0,
                detached,
            },
            ctime_ns,
        }
    }
}

/// `Anonymous:` (kB) of the mapping starting at `start` in an smaps text.
fn anonymous_kb(smaps: &str, start: u64) -> Option<u64> {
    let header = format!("{start:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&header));
    lines.next()?;
    lines
        .take_while(|l| Mapping::parse(l).is_none())
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_pages_are_read_from_smaps() {
        let smaps = "7f00-7f01 r--p 00000000 08:01 12 /lib/a.so\nSize: 4 kB\nAnonymous: 0 kB\n\
                     7f01-7f02 r--p 00001000 08:01 12 /lib/a.so\nSize: 4 kB\nAnonymous: 4 kB\n\
                     VmFlags: rd mr\n";
        assert_eq!(anonymous_kb(smaps, 0x7f00), Some(0));
        assert_eq!(anonymous_kb(smaps, 0x7f01), Some(4));
        assert_eq!(anonymous_kb(smaps, 0x7f02), None);
    }

    #[test]
    fn maps_lines_parse_with_odd_paths() {
        let m = Mapping::parse(
            "7f1c2a000000-7f1c2a022000 r-xp 00002000 00:28 10059937                   /tmp/a b.so (deleted)",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f1c_2a00_0000);
        assert_eq!(m.end, 0x7f1c_2a02_2000);
        assert_eq!(m.dev, libc::makedev(0, 0x28));
        assert_eq!(m.inode, 10_059_937);
        assert_eq!(m.path, "/tmp/a b.so (deleted)");
        let anon = Mapping::parse("7ffd1000-7ffd2000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!((anon.inode, anon.path.as_str()), (0, ""));
        let heap = Mapping::parse("55d0-55e0 rw-p 00000000 00:00 0          [heap]").unwrap();
        assert_eq!(heap.path, "[heap]");
        assert!(Mapping::parse("garbage").is_none());
    }

    #[test]
    fn prot_is_spelled_out() {
        assert_eq!(
            prot_text((libc::PROT_READ | libc::PROT_EXEC) as u64),
            "PROT_READ|PROT_EXEC"
        );
    }
}
