//! The other side of every refusal: the blocked events in the ring buffer, with the path (from
//! the container's root), the door and the operation the kernel recorded.

use agent_common::{
    EventHeader, ExecEvent, FileEvent, NetEvent, ACTION_BLOCKED, CONTROL_DRIFT, CONTROL_EXEC,
    CONTROL_FILE, CONTROL_NETWORK, EVENT_EXEC, EVENT_FILE, EVENT_NET, EXEC_CHROOTED,
    EXEC_PATH_TRUNCATED, EXEC_VIA_MMAP, EXEC_VIA_PROC_MEM, EXEC_VIA_PTRACE, FAMILY_PACKET,
    FILE_OP_CHMOD, FILE_OP_CREATE, FILE_OP_LINK, FILE_OP_OPEN, FILE_OP_RENAME, FILE_OP_TRUNCATE,
    FILE_OP_UNLINK, MAP_EVENTS, NET_OP_CONNECT, NET_OP_ICMP, NET_OP_LISTEN, NET_OP_RAW_SOCKET,
};
use aya::{maps::RingBuf, Ebpf};

use crate::{run::Report, setup::deep_path, Ports};

/// A predicate over a blocked network record: (op, family, port, address).
type NetPredicate<'a> = &'a dyn Fn(u32, u32, u16, &[u8; 16]) -> bool;

/// One blocked record, decoded.
enum Blocked {
    Exec {
        control: u32,
        flags: u32,
        path: Vec<u8>,
    },
    File {
        op: u32,
        path: Vec<u8>,
    },
    Net {
        op: u32,
        family: u32,
        port: u16,
        addr: [u8; 16],
    },
}

fn read<T>(b: &[u8]) -> Option<T> {
    // SAFETY: the length is checked; records are Pod and read unaligned.
    (b.len() >= size_of::<T>()).then(|| unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) })
}

fn drain(ebpf: &mut Ebpf, intel: &mut crate::intel::Events) -> Result<Vec<Blocked>, String> {
    let mut ring = RingBuf::try_from(ebpf.map_mut(MAP_EVENTS).ok_or("no EVENTS map")?)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        let b: &[u8] = &item;
        let Some(h) = read::<EventHeader>(b) else {
            continue;
        };
        intel.note(&h, b);
        if h.action != ACTION_BLOCKED {
            continue;
        }
        match h.kind {
            EVENT_EXEC => {
                if let Some(e) = read::<ExecEvent>(b) {
                    let n = (e.path_len as usize).min(e.path.len());
                    out.push(Blocked::Exec {
                        control: h.control,
                        flags: e.flags,
                        path: e.path[..n].to_vec(),
                    });
                }
            }
            EVENT_FILE => {
                if let Some(e) = read::<FileEvent>(b) {
                    assert_eq!(h.control, CONTROL_FILE);
                    let n = (e.path_len as usize).min(e.path.len());
                    out.push(Blocked::File {
                        op: e.op,
                        path: e.path[..n].to_vec(),
                    });
                }
            }
            EVENT_NET => {
                if let Some(e) = read::<NetEvent>(b) {
                    if h.control == CONTROL_NETWORK {
                        out.push(Blocked::Net {
                            op: e.op,
                            family: e.family,
                            port: e.port,
                            addr: e.addr,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

pub fn checks(ebpf: &mut Ebpf, report: &mut Report, ports: &Ports) {
    let mut intel_events = crate::intel::Events::default();
    let events = match drain(ebpf, &mut intel_events) {
        Ok(e) => e,
        Err(e) => {
            report.fail("events", &e);
            return;
        }
    };
    let exec = |control: u32, flag: u32, path: &[u8]| {
        events.iter().any(|e| {
            matches!(e, Blocked::Exec { control: c, flags, path: p }
                if *c == control && flags & flag == flag && p.as_slice() == path)
        })
    };
    let file = |op: u32, path: &[u8]| {
        events.iter().any(
            |e| matches!(e, Blocked::File { op: o, path: p } if *o == op && p.as_slice() == path),
        )
    };
    let net = |f: NetPredicate| {
        events
            .iter()
            .any(|e| matches!(e, Blocked::Net { op, family, port, addr } if f(*op, *family, *port, addr)))
    };
    let mut seen = |name: &str, ok: bool, what: &str| {
        report.check(
            name,
            if ok {
                Ok(())
            } else {
                Err(format!("no blocked event: {what}"))
            },
        )
    };
    seen(
        "event_exec_drift_blocked",
        exec(CONTROL_DRIFT, 0, b"/bin/drifted"),
        "drift exec of /bin/drifted",
    );
    seen(
        "event_exec_deny_blocked",
        exec(CONTROL_EXEC, 0, b"/bin/denied"),
        "exec of /bin/denied",
    );
    seen(
        "event_chroot_drift_blocked",
        exec(CONTROL_DRIFT, EXEC_CHROOTED, b"/scratch/true"),
        "chrooted drift exec of /scratch/true, named from the container's root",
    );
    seen(
        "event_chroot_deny_blocked",
        exec(CONTROL_EXEC, EXEC_CHROOTED, b"/bin/denied"),
        "chrooted exec of /bin/denied, named from the container's root",
    );
    seen(
        "event_script_tmpfs_blocked",
        exec(CONTROL_DRIFT, 0, b"/scratch/s.sh"),
        "script on a tmpfs",
    );
    seen(
        "event_script_non_utf8_blocked",
        exec(CONTROL_DRIFT, 0, b"/tmp/\xff\xfe.sh"),
        "script with a non-UTF-8 name, its bytes intact",
    );
    seen(
        "event_mmap_drift_blocked",
        exec(CONTROL_DRIFT, EXEC_VIA_MMAP, b"/tmp/code.bin"),
        "PROT_EXEC mapping of /tmp/code.bin",
    );
    seen(
        "event_loader_mmap_blocked",
        exec(CONTROL_DRIFT, EXEC_VIA_MMAP, b"/tmp/t"),
        "the loader mapping /tmp/t",
    );
    seen(
        "event_preload_mmap_blocked",
        exec(CONTROL_DRIFT, EXEC_VIA_MMAP, b"/tmp/evil.so"),
        "LD_PRELOAD mapping /tmp/evil.so",
    );
    seen(
        "event_ptrace_blocked",
        exec(CONTROL_DRIFT, EXEC_VIA_PTRACE, b""),
        "ptrace attach",
    );
    seen(
        "event_proc_mem_blocked",
        events.iter().any(|e| {
            matches!(e, Blocked::Exec { control, flags, path }
                if *control == CONTROL_DRIFT && flags & EXEC_VIA_PROC_MEM != 0
                    && path.starts_with(b"/proc/") && path.ends_with(b"/mem"))
        }),
        "write open of /proc/<pid>/mem",
    );
    let deep = deep_path();
    let kept: Vec<&str> = deep.trim_start_matches('/').split('/').collect();
    let tail = format!(
        "/{}",
        kept[kept.len() - agent_common::MAX_PATH_DEPTH..].join("/")
    );
    seen(
        "event_truncated_path_blocked",
        exec(CONTROL_EXEC, EXEC_PATH_TRUNCATED, tail.as_bytes()),
        "exec of the deep path, flagged truncated",
    );
    seen(
        "event_file_blocked",
        file(FILE_OP_OPEN, b"/etc/secret"),
        "open of /etc/secret",
    );
    seen(
        "event_file_link_blocked",
        file(FILE_OP_LINK, b"/etc/readonly"),
        "link of /etc/readonly",
    );
    seen(
        "event_file_rename_blocked",
        file(FILE_OP_RENAME, b"/etc/secret"),
        "rename of /etc/secret",
    );
    seen(
        "event_file_rename_dir_blocked",
        file(FILE_OP_RENAME, b"/etc"),
        "rename of /etc",
    );
    seen(
        "event_file_unlink_blocked",
        file(FILE_OP_UNLINK, b"/etc/readonly"),
        "unlink of /etc/readonly",
    );
    seen(
        "event_file_truncate_blocked",
        file(FILE_OP_TRUNCATE, b"/etc/readonly"),
        "truncate(2) of /etc/readonly",
    );
    seen(
        "event_file_chmod_blocked",
        file(FILE_OP_CHMOD, b"/etc/readonly"),
        "chmod of /etc/readonly",
    );
    seen(
        "event_file_create_blocked",
        file(FILE_OP_CREATE, b"/etc/ro.d/new"),
        "create of /etc/ro.d/new",
    );
    seen(
        "event_net_blocked",
        net(&|op, _, port, _| op == NET_OP_CONNECT && port == ports.denied),
        "connect",
    );
    seen(
        "event_net_alias_blocked",
        net(&|op, _, port, a| {
            op == NET_OP_CONNECT && port == ports.denied && a[..4] == [127, 0, 0, 2]
        }),
        "connect to 127.0.0.2",
    );
    seen(
        "event_net_packet_blocked",
        net(&|op, family, _, _| op == NET_OP_RAW_SOCKET && family == FAMILY_PACKET),
        "AF_PACKET socket",
    );
    seen(
        "event_net_icmp_blocked",
        net(&|op, _, _, a| op == NET_OP_ICMP && a[..4] == [127, 0, 0, 3]),
        "ICMP send to 127.0.0.3",
    );
    seen(
        "event_net_listen_blocked",
        net(&|op, _, port, _| op == NET_OP_LISTEN && port == 0),
        "listen on an unbound socket",
    );
    intel_events.report(report);
}
