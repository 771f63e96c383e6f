//! Raw ring-buffer records → typed kernel events. Everything the kernel sends is checked for
//! size and kind here; a malformed record is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::{
    CgroupEvent, EventHeader, ExecEvent, ExitEvent, FileEvent, ForkEvent, NetEvent,
    EVENT_CGROUP_MKDIR, EVENT_EXEC, EVENT_EXIT, EVENT_FILE, EVENT_FORK, EVENT_NET, FAMILY_INET,
    FAMILY_INET6,
};

/// The fields every kernel event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub control: u32,
    pub action: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    /// 0 for host processes.
    pub container_cgroup_id: u64,
    pub comm: String,
    /// The kernel's sequence number: CPU above `SEQ_CPU_SHIFT`, that CPU's count below.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Exec {
        header: Header,
        flags: u32,
        /// The path as text ([`path_text`]), `…`-prefixed when truncated.
        path: String,
        /// The path's bytes, as the kernel matched them.
        path_bytes: Vec<u8>,
        args: Vec<String>,
    },
    Fork {
        header: Header,
        child_pid: u32,
    },
    Exit {
        header: Header,
        exit_code: u32,
    },
    Net {
        header: Header,
        op: u32,
        protocol: u32,
        addr: IpAddr,
        port: u16,
    },
    CgroupMkdir {
        header: Header,
        id: u64,
        path: String,
    },
    /// An open a file rule matched (BPF LSM backend).
    File {
        header: Header,
        open_flags: u32,
        /// `FILE_OP_*`.
        op: u32,
        path: String,
    },
}

impl KernelEvent {
    pub fn header(&self) -> &Header {
        match self {
            KernelEvent::Exec { header, .. }
            | KernelEvent::Fork { header, .. }
            | KernelEvent::Exit { header, .. }
            | KernelEvent::Net { header, .. }
            | KernelEvent::CgroupMkdir { header, .. }
            | KernelEvent::File { header, .. } => header,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("kernel record of {got} bytes is too short for a {what} ({need} bytes): agent and kernel programs are from different builds?")]
    Short {
        what: &'static str,
        got: usize,
        need: usize,
    },
    #[error("kernel record has unknown kind {0}")]
    UnknownKind(u32),
}

fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            what,
            got: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; T is a repr(C) plain-old-data ABI type; read_unaligned copes
    // with the ring buffer's 8-byte alignment either way.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A path's bytes as text, losslessly: valid UTF-8 stays as it is, every byte that is not
/// part of valid UTF-8 is written `\xHH`, and a backslash is written `\\` (so the text
/// always maps back to exactly one byte string). File names are bytes to the kernel; an event
/// must neither drop nor replace what an attacker put in one.
pub fn path_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Kernel-supplied bytes up to the first NUL, lossily as UTF-8 (never trusted to be valid).
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn header(h: &EventHeader) -> Header {
    Header {
        control: h.control,
        action: h.action,
        pid: h.tgid,
        ppid: h.ppid,
        uid: h.uid,
        ktime_ns: h.ktime_ns,
        cgroup_id: h.cgroup_id,
        container_cgroup_id: h.container_cgroup_id,
        comm: c_str(&h.comm),
        seq: h.seq,
    }
}

/// Splits NUL-separated argv (as in `/proc/pid/cmdline`).
pub fn split_args(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn ip(family: u32, addr: &[u8; 16]) -> IpAddr {
    if family == FAMILY_INET6 {
        // A dual-stack socket's IPv4 peer (::ffff:a.b.c.d) is an IPv4 address to a reader.
        let v6 = Ipv6Addr::from(*addr);
        v6.to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    }
}

/// An exec record (from the ring, or from `HELD_EXECS`) as a kernel event.
pub fn exec_record(e: &ExecEvent) -> KernelEvent {
    let path_len = (e.path_len as usize).min(e.path.len());
    let args_len = (e.args_len as usize).min(e.args.len());
    // A truncated path is only the tail the kernel kept: marked, never passed off as a real
    // path.
    let mark = if e.flags & agent_common::EXEC_PATH_TRUNCATED != 0 {
        "…"
    } else {
        ""
    };
    KernelEvent::Exec {
        header: header(&e.header),
        flags: e.flags,
        path: format!("{mark}{}", path_text(&e.path[..path_len])),
        path_bytes: e.path[..path_len].to_vec(),
        args: split_args(&e.args[..args_len]),
    }
}

pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let h: EventHeader = read(bytes, "event header")?;
    Ok(match h.kind {
        EVENT_EXEC => exec_record(&read::<ExecEvent>(bytes, "exec event")?),
        EVENT_FORK => {
            let e: ForkEvent = read(bytes, "fork event")?;
            KernelEvent::Fork {
                header: header(&e.header),
                child_pid: e.child_tgid,
            }
        }
        EVENT_EXIT => {
            let e: ExitEvent = read(bytes, "exit event")?;
            KernelEvent::Exit {
                header: header(&e.header),
                exit_code: e.exit_code,
            }
        }
        EVENT_NET => {
            let e: NetEvent = read(bytes, "network event")?;
            let family = if e.family == FAMILY_INET6 {
                FAMILY_INET6
            } else {
                FAMILY_INET
            };
            KernelEvent::Net {
                header: header(&e.header),
                op: e.op,
                protocol: e.protocol,
                addr: ip(family, &e.addr),
                port: e.port,
            }
        }
        EVENT_CGROUP_MKDIR => {
            let e: CgroupEvent = read(bytes, "cgroup event")?;
            let len = (e.path_len as usize).min(e.path.len());
            KernelEvent::CgroupMkdir {
                header: header(&e.header),
                id: e.id,
                path: String::from_utf8_lossy(&e.path[..len]).into_owned(),
            }
        }
        EVENT_FILE => {
            let e: FileEvent = read(bytes, "file event")?;
            let len = (e.path_len as usize).min(e.path.len());
            KernelEvent::File {
                header: header(&e.header),
                open_flags: e.open_flags,
                op: e.op,
                path: path_text(&e.path[..len]),
            }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use agent_common::{ARGS_BUF, PATH_BUF};

    pub fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test helper over repr(C) ABI types.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    pub fn header(kind: u32, pid: u32) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..3].copy_from_slice(b"cat");
        EventHeader {
            kind,
            control: 0,
            action: 0,
            tgid: pid,
            ppid: 1,
            uid: 0,
            ktime_ns: 5,
            cgroup_id: 77,
            container_cgroup_id: 77,
            comm,
            seq: 1,
        }
    }

    pub fn exec_event(pid: u32, path: &str, args: &[&str]) -> Vec<u8> {
        let mut e = ExecEvent {
            header: header(EVENT_EXEC, pid),
            flags: 0,
            path_len: path.len() as u32,
            args_len: 0,
            target_tgid: 0,
            path: [0; PATH_BUF],
            args: [0; ARGS_BUF],
        };
        e.path[..path.len()].copy_from_slice(path.as_bytes());
        let joined: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
        e.args[..joined.len()].copy_from_slice(&joined);
        e.args_len = joined.len() as u32;
        bytes_of(&e)
    }

    #[test]
    fn exec_record_decodes_path_and_argv() {
        let raw = exec_event(42, "/bin/busybox", &["cat", "/etc/hostname"]);
        let KernelEvent::Exec {
            header, path, args, ..
        } = decode(&raw).unwrap()
        else {
            panic!("not an exec")
        };
        assert_eq!(header.pid, 42);
        assert_eq!(header.comm, "cat");
        assert_eq!(path, "/bin/busybox");
        assert_eq!(args, vec!["cat", "/etc/hostname"]);
    }

    #[test]
    fn paths_are_shown_losslessly() {
        assert_eq!(path_text(b"/bin/ls"), "/bin/ls");
        assert_eq!(path_text(b"/tmp/\xff\xfe.sh"), "/tmp/\\xff\\xfe.sh");
        assert_eq!(path_text("/tmp/é".as_bytes()), "/tmp/é");
        assert_eq!(
            path_text(b"/tmp/a\\xff"),
            "/tmp/a\\\\xff",
            "a literal backslash is doubled"
        );
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let raw = exec_event(1, "/x", &[]);
        assert!(matches!(
            decode(&raw[..100]),
            Err(DecodeError::Short { .. })
        ));
        let mut h = header(99, 1);
        h.kind = 99;
        assert_eq!(decode(&bytes_of(&h)), Err(DecodeError::UnknownKind(99)));
        assert!(decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn net_record_decodes_ipv4_and_ipv6() {
        let mut e = NetEvent {
            header: header(EVENT_NET, 3),
            op: agent_common::NET_OP_CONNECT,
            family: FAMILY_INET,
            protocol: agent_common::PROTO_TCP,
            port: 8080,
            _pad: 0,
            addr: [0; 16],
        };
        e.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let KernelEvent::Net { addr, port, .. } = decode(&bytes_of(&e)).unwrap() else {
            panic!()
        };
        assert_eq!(addr.to_string(), "127.0.0.1");
        assert_eq!(port, 8080);
        e.family = FAMILY_INET6;
        e.addr = Ipv6Addr::LOCALHOST.octets();
        let KernelEvent::Net { addr, .. } = decode(&bytes_of(&e)).unwrap() else {
            panic!()
        };
        assert_eq!(addr.to_string(), "::1");
        e.addr = std::net::Ipv4Addr::new(127, 0, 0, 1)
            .to_ipv6_mapped()
            .octets();
        let KernelEvent::Net { addr, .. } = decode(&bytes_of(&e)).unwrap() else {
            panic!()
        };
        assert_eq!(
            addr.to_string(),
            "127.0.0.1",
            "IPv4-mapped peers read as IPv4"
        );
    }

    #[test]
    fn argv_with_invalid_utf8_and_no_trailing_nul_is_kept() {
        assert_eq!(
            split_args(b"a\0b\xff"),
            vec!["a".to_string(), "b\u{fffd}".into()]
        );
        assert!(split_args(b"").is_empty());
    }
}
