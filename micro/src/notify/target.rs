//! Looking at the caller of a notified syscall: its memory (through `/proc/TID/mem`, which a
//! default container's seccomp profile allows where `process_vm_readv` is not), its fds, cwd and
//! identity. Everything read from memory is a copy: decisions are taken on the copy and, when
//! they matter, carried out on it by the supervisor, never by letting the kernel re-read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use seawall_proto::event::Process;

use super::listener::{Listener, Request};

/// The most a string argument (a path) may take; longer is refused as `ENAMETOOLONG` would be.
pub const MAX_PATH: usize = 4096;

/// An open view of the caller.
pub struct Target {
    pub tid: u32,
    /// The caller's process (thread group).
    pub tgid: u32,
    mem: File,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The caller died or was interrupted: there is nobody to answer.
    #[error("the caller is gone")]
    Gone,
    #[error("reading the caller's memory")]
    Memory(#[source] io::Error),
    #[error("a string argument has no terminating NUL within {MAX_PATH} bytes")]
    TooLong,
}

impl TargetError {
    /// The errno the caller gets when its call cannot be looked at.
    pub fn errno(&self) -> i32 {
        match self {
            TargetError::Gone => libc::ESRCH,
            TargetError::Memory(_) => libc::EFAULT,
            TargetError::TooLong => libc::ENAMETOOLONG,
        }
    }
}

impl Target {
    /// Opens the caller's memory, then checks the notification is still pending: the thread
    /// id cannot have been reused by then.
    pub fn open(l: &Listener, req: &Request, write: bool) -> Result<Target, TargetError> {
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(format!("/proc/{}/mem", req.tid))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    TargetError::Gone
                } else {
                    TargetError::Memory(e)
                }
            })?;
        if !l.valid(req.id) {
            return Err(TargetError::Gone);
        }
        let tgid = status_field(req.tid, "Tgid:").unwrap_or(req.tid);
        Ok(Target {
            tid: req.tid,
            tgid,
            mem,
        })
    }

    /// `len` bytes at `addr`, all of them or an error.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, TargetError> {
        let mut buf = vec![0u8; len];
        self.mem
            .read_exact_at(&mut buf, addr)
            .map_err(TargetError::Memory)?;
        Ok(buf)
    }

    /// A plain value of type `T` at `addr`.
    pub fn read_value<T: Copy>(&self, addr: u64) -> Result<T, TargetError> {
        let b = self.read(addr, std::mem::size_of::<T>())?;
        // SAFETY: T is plain data (only used with repr(C) kernel structs and integers).
        Ok(unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) })
    }

    /// A NUL-terminated string at `addr`, without the NUL.
    pub fn read_cstr(&self, addr: u64) -> Result<Vec<u8>, TargetError> {
        let mut out = Vec::new();
        let mut at = addr;
        // Read up to the end of each page so an unmapped next page does not fail the read.
        while out.len() < MAX_PATH {
            let room = (4096 - (at % 4096) as usize).min(MAX_PATH - out.len());
            let mut chunk = vec![0u8; room];
            let n = self
                .mem
                .read_at(&mut chunk, at)
                .map_err(TargetError::Memory)?;
            if n == 0 {
                return Err(TargetError::Memory(io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(z) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            at += n as u64;
        }
        Err(TargetError::TooLong)
    }

    /// A NULL-terminated array of strings (argv), at most `max` of them.
    pub fn read_argv(&self, addr: u64, max: usize) -> Result<(Vec<String>, bool), TargetError> {
        let mut out = Vec::new();
        if addr == 0 {
            return Ok((out, false));
        }
        for i in 0..max {
            let p: u64 = self.read_value(addr + 8 * i as u64)?;
            if p == 0 {
                return Ok((out, false));
            }
            out.push(String::from_utf8_lossy(&self.read_cstr(p)?).into_owned());
        }
        Ok((out, true))
    }

    /// Writes `bytes` at `addr` in the caller (results of a call done on its behalf).
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), TargetError> {
        self.mem
            .write_all_at(bytes, addr)
            .map_err(TargetError::Memory)
    }

    /// `/proc/TID/…`: the caller's own view of its fds, cwd and root.
    pub fn proc_path(&self, what: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{what}", self.tid))
    }

    /// Threads in the caller's process: with one, nothing else can change its fd table
    /// while it waits (sharing an fd table between processes is refused by the filter).
    pub fn threads(&self) -> u32 {
        status_field(self.tid, "Threads:").unwrap_or(u32::MAX)
    }

    /// The caller as the event schema describes a process.
    pub fn process(&self) -> Process {
        process_info(self.tgid)
    }
}

/// A numeric field of `/proc/TID/status`.
fn status_field(tid: u32, key: &str) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `pid`, `ppid`, `uid`, `comm`, `exe`, `args` of a process, from procfs.
pub fn process_info(pid: u32) -> Process {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Process {
        pid,
        ppid,
        uid: status_field(pid, "Uid:").unwrap_or(u32::MAX),
        comm: std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
        exe: std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        args,
        args_truncated: false,
        // What the kernel resolved about an exec is the host agent's to say.
        ..Default::default()
    }
}
