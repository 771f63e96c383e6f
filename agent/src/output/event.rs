//! Enrichment: a kernel event plus what the tables know → the stable JSON event.

use seawall_proto::event::{Action, Event, Kind, Network, Process, Severity};

use agent_common::{
    ACTION_AUDITED, ACTION_BLOCKED, CONTROL_CONTAINER_EXEC, CONTROL_DRIFT, CONTROL_EXEC,
    CONTROL_FILE, CONTROL_NETWORK, EXEC_ARGS_TRUNCATED, EXEC_FOREIGN_FS, EXEC_FROM_EXEC_SESSION,
    EXEC_OUTSIDE_ROOT, EXEC_PATH_TRUNCATED, EXEC_ROOT_NOT_OVERLAY, EXEC_UNLINKED, EXEC_UPPER_LAYER,
    NET_OP_BIND, NET_OP_CONNECT, NET_OP_RAW_SOCKET, NET_OP_SENDMSG, PROTO_RAW, PROTO_TCP,
    PROTO_UDP,
};

use super::{clock::Clock, flags::flags_text};
use crate::{
    kernel::decode::{Header, KernelEvent},
    runtime::{
        procs::{ProcessInfo, ProcessTable},
        table::ContainerTable,
    },
};

pub fn control_name(control: u32) -> &'static str {
    match control {
        CONTROL_DRIFT => "drift",
        CONTROL_EXEC => "exec",
        CONTROL_CONTAINER_EXEC => "container_exec",
        CONTROL_NETWORK => "network",
        CONTROL_FILE => "file",
        agent_common::CONTROL_INTEL => "intel",
        agent_common::CONTROL_ASSURANCE => "assurance",
        _ => "visibility",
    }
}

pub fn action_of(action: u32) -> Action {
    match action {
        ACTION_BLOCKED => Action::Blocked,
        ACTION_AUDITED => Action::Audited,
        _ => Action::Allowed,
    }
}

/// Where an executed file lives (`process.exe_source`), from the kernel's exec flags, in the
/// order the drift message names them.
fn exe_source(flags: u32) -> &'static str {
    if flags & (EXEC_ROOT_NOT_OVERLAY | EXEC_OUTSIDE_ROOT) != 0 {
        "outside_root"
    } else if flags & EXEC_UPPER_LAYER != 0 {
        "container"
    } else if flags & EXEC_FOREIGN_FS != 0 {
        "other_fs"
    } else if flags & EXEC_UNLINKED != 0 {
        "deleted"
    } else {
        "image"
    }
}

fn severity(control: u32, action: Action) -> Severity {
    match (action, control) {
        (Action::Allowed, _) => Severity::Info,
        (Action::Blocked, CONTROL_DRIFT) => Severity::Critical,
        (Action::Blocked, _) => Severity::High,
        (Action::Audited, CONTROL_DRIFT) => Severity::High,
        (Action::Audited, _) => Severity::Medium,
    }
}

/// Why an exec (or an executable mapping) matched its control, in words, from its `EXEC_*`
/// flags: for drift the door first (how the code got in), then what is wrong with the file; for
/// the exec lists why the path could not be trusted, if it could not.
pub fn exec_reason(control: u32, flags: u32) -> &'static str {
    use agent_common::*;
    const DRIFT: &[(u32, &str)] = &[
        (EXEC_VIA_PTRACE, " (ptrace attach to another process)"),
        (EXEC_VIA_PROC_MEM, " (write access to process memory)"),
        (
            EXEC_VIA_MMAP,
            " (file mapped executable, not from the image)",
        ),
        (EXEC_LOADER, " (the dynamic loader run as a program)"),
        (
            EXEC_PRELOAD_ENV,
            " (LD_PRELOAD/LD_AUDIT/LD_LIBRARY_PATH names a library not on the drift allow list)",
        ),
        (
            EXEC_ENV_UNSCANNED,
            " (environment too large to check for LD_* variables)",
        ),
        (
            EXEC_SCRIPT_VIA_FD,
            " (script run through a file descriptor)",
        ),
        (
            EXEC_UNREADABLE,
            " (what the kernel needed to check could not be read)",
        ),
        (EXEC_ROOT_UNKNOWN, " (the container's root is not known)"),
        (EXEC_UPPER_LAYER, " (written inside the container)"),
        (EXEC_FOREIGN_FS, " (not on the image's filesystem)"),
        (EXEC_UNLINKED, " (deleted or memory-only file)"),
        (EXEC_OUTSIDE_ROOT, " (not below the container's root)"),
    ];
    const PATH: &[(u32, &str)] = &[
        (EXEC_PATH_TRUNCATED, " (path too deep or too long to check)"),
        (EXEC_OUTSIDE_ROOT, " (not below the container's root)"),
        (EXEC_UNREADABLE, " (path could not be read)"),
        (EXEC_ROOT_UNKNOWN, " (the container's root is not known)"),
    ];
    let table = if control == CONTROL_DRIFT {
        DRIFT
    } else {
        PATH
    };
    table
        .iter()
        .find(|(bit, _)| flags & bit != 0)
        .map(|(_, why)| *why)
        .unwrap_or("")
}

/// Builds events; owns the numbering.
pub struct Enricher {
    pub node: String,
    pub clock: Clock,
    next_seq: u64,
}

impl Enricher {
    pub fn new(node: String, first_seq: u64) -> Self {
        Self {
            node,
            clock: Clock::new(),
            next_seq: first_seq.max(1),
        }
    }

    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// A bare event of `kind` stamped now.
    pub fn event(
        &mut self,
        kind: Kind,
        action: Action,
        control: &str,
        severity: Severity,
        message: String,
    ) -> Event {
        Event {
            seq: self.next_seq(),
            time: Clock::now(),
            node: self.node.clone(),
            kind,
            action,
            control: control.into(),
            severity,
            message,
            process: None,
            container: None,
            file: None,
            network: None,
            intel: None,
        }
    }

    fn process(h: &Header, known: Option<&ProcessInfo>) -> Process {
        Process {
            pid: h.pid,
            ppid: if h.ppid != 0 {
                h.ppid
            } else {
                known.map(|p| p.ppid).unwrap_or(0)
            },
            uid: h.uid,
            comm: h.comm.clone(),
            exe: known.map(|p| p.exe.clone()).unwrap_or_default(),
            args: known.map(|p| p.args.clone()).unwrap_or_default(),
            ..Default::default()
        }
    }

    /// The JSON event for a kernel event, or None for bookkeeping-only events (fork, exit,
    /// cgroup creation).
    pub fn kernel_event(
        &mut self,
        ev: &KernelEvent,
        containers: &ContainerTable,
        procs: &ProcessTable,
    ) -> Option<Event> {
        let h = ev.header();
        let action = action_of(h.action);
        let control = h.control;
        let container = containers.get(h.container_cgroup_id).map(|c| c.to_event());
        let (kind, process, network, message) = match ev {
            KernelEvent::Exec {
                flags, path, args, ..
            } => {
                let mut p = Self::process(h, procs.get(h.pid));
                p.exe = path.clone();
                p.args = args.clone();
                p.args_truncated = flags & EXEC_ARGS_TRUNCATED != 0;
                p.exec_session = flags & EXEC_FROM_EXEC_SESSION != 0;
                p.exe_truncated = flags & EXEC_PATH_TRUNCATED != 0;
                p.exe_source = exe_source(*flags).into();
                let why = exec_reason(control, *flags);
                let message = match action {
                    // The message of every allowed exec: one exact allocation, no formatter.
                    Action::Allowed => ["exec ", path.as_str()].concat(),
                    a => format!("{}: exec {path}{why} {a}", control_name(control)),
                };
                (Kind::Exec, p, None, message)
            }
            KernelEvent::Net {
                op,
                protocol,
                addr,
                port,
                ..
            } => {
                let op = match *op {
                    NET_OP_CONNECT => "connect",
                    NET_OP_BIND => "bind",
                    NET_OP_SENDMSG => "sendmsg",
                    NET_OP_RAW_SOCKET => "raw_socket",
                    agent_common::NET_OP_ACCEPT => "accept",
                    agent_common::NET_OP_LISTEN => "listen",
                    agent_common::NET_OP_ICMP => "icmp",
                    agent_common::NET_OP_PACKET => "packet",
                    _ => "unknown",
                };
                let protocol = match *protocol {
                    PROTO_TCP => "tcp",
                    PROTO_UDP => "udp",
                    PROTO_RAW => "raw",
                    agent_common::PROTO_ICMP => "icmp",
                    agent_common::PROTO_ICMPV6 => "icmpv6",
                    _ => "other",
                };
                let message = match action {
                    Action::Allowed => format!("{op} {protocol} {addr} port {port}"),
                    a => format!("network: {op} {protocol} {addr} port {port} {a}"),
                };
                (
                    Kind::Network,
                    Self::process(h, procs.get(h.pid)),
                    Some(Network {
                        op: op.into(),
                        protocol: protocol.into(),
                        address: addr.to_string(),
                        port: *port,
                    }),
                    message,
                )
            }
            KernelEvent::File {
                open_flags,
                op,
                path,
                ..
            } => {
                let flags = flags_text(*open_flags as i32);
                let op = match *op {
                    agent_common::FILE_OP_UNLINK => "unlink",
                    agent_common::FILE_OP_RENAME => "rename",
                    agent_common::FILE_OP_LINK => "link",
                    agent_common::FILE_OP_TRUNCATE => "truncate",
                    agent_common::FILE_OP_CHMOD => "chmod",
                    agent_common::FILE_OP_CHOWN => "chown",
                    agent_common::FILE_OP_CREATE => "create",
                    _ => "open",
                };
                let flags = if op == "open" { flags } else { op.to_string() };
                let message = format!("file: {op} {path} {flags} {action}");
                return Some(Event {
                    seq: self.next_seq(),
                    time: self.clock.from_boot_ns(h.ktime_ns),
                    node: self.node.clone(),
                    kind: Kind::File,
                    action,
                    control: "file".into(),
                    severity: severity(CONTROL_FILE, action),
                    message,
                    process: Some(Self::process(h, procs.get(h.pid))),
                    container,
                    file: Some(seawall_proto::event::File {
                        path: path.clone(),
                        flags,
                    }),
                    network: None,
                    intel: None,
                });
            }
            KernelEvent::Fork { .. }
            | KernelEvent::Exit { .. }
            | KernelEvent::CgroupMkdir { .. } => return None,
        };
        Some(Event {
            seq: self.next_seq(),
            time: self.clock.from_boot_ns(h.ktime_ns),
            node: self.node.clone(),
            kind,
            action,
            control: control_name(control).into(),
            severity: severity(control, action),
            message,
            process: Some(process),
            container,
            file: None,
            network,
            intel: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::decode, runtime::table::ContainerInfo};

    #[test]
    fn an_exec_in_a_container_becomes_the_documented_json() {
        let raw = decode::tests::exec_event(42, "/bin/busybox", &["cat", "/etc/hostname"]);
        let ev = decode::decode(&raw).unwrap();
        let mut containers = ContainerTable::default();
        containers.upsert(
            77,
            ContainerInfo {
                id: "c0ffee".into(),
                name: "web".into(),
                image: "seawall-test/busybox:latest".into(),
                image_id: "sha256:1".into(),
                ..Default::default()
            },
        );
        let procs = ProcessTable::new(10);
        let mut e = Enricher::new("node-1".into(), 1);
        let out = e.kernel_event(&ev, &containers, &procs).unwrap();
        let json: serde_json::Value = serde_json::from_str(&out.to_json_line()).unwrap();
        assert_eq!(json["seq"], 1);
        assert_eq!(json["kind"], "exec");
        assert_eq!(json["action"], "allowed");
        assert_eq!(json["control"], "visibility");
        assert_eq!(json["severity"], "info");
        assert_eq!(json["node"], "node-1");
        assert_eq!(json["process"]["pid"], 42);
        assert_eq!(json["process"]["exe"], "/bin/busybox");
        assert_eq!(
            json["process"]["args"],
            serde_json::json!(["cat", "/etc/hostname"])
        );
        assert_eq!(json["container"]["id"], "c0ffee");
        assert_eq!(json["container"]["image"], "seawall-test/busybox:latest");
        assert!(json["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(json["process"]["exe_source"], "image");
        assert!(
            json["process"].get("exec_session").is_none(),
            "false flags are left out"
        );
        // The next event takes the next number.
        let out2 = e.kernel_event(&ev, &containers, &procs).unwrap();
        assert_eq!(out2.seq, 2);
    }

    #[test]
    fn a_blocked_drift_is_critical_and_says_why() {
        let mut raw = decode::tests::exec_event(5, "/tmp/x", &["/tmp/x"]);
        // header.control @4, header.action @8, flags @72
        raw[4..8].copy_from_slice(&CONTROL_DRIFT.to_ne_bytes());
        raw[8..12].copy_from_slice(&ACTION_BLOCKED.to_ne_bytes());
        raw[72..76].copy_from_slice(&EXEC_UPPER_LAYER.to_ne_bytes());
        let ev = decode::decode(&raw).unwrap();
        let mut e = Enricher::new("n".into(), 1);
        let out = e
            .kernel_event(&ev, &ContainerTable::default(), &ProcessTable::new(1))
            .unwrap();
        assert_eq!(out.control, "drift");
        assert_eq!(out.action, Action::Blocked);
        assert_eq!(out.severity, Severity::Critical);
        assert!(
            out.message.contains("written inside the container"),
            "{}",
            out.message
        );
        let p = out.process.unwrap();
        assert_eq!(p.exe_source, "container");
        assert!(!p.exec_session);
    }

    #[test]
    fn an_exec_says_whether_it_is_in_a_session_where_its_file_lives_and_whether_its_path_was_cut() {
        let mut raw = decode::tests::exec_event(5, "/usr/bin/x", &["x"]);
        // header.control @4 stays 0 (visibility): no control was asked about any of this;
        // flags @72.
        let flags = EXEC_FROM_EXEC_SESSION | EXEC_PATH_TRUNCATED | EXEC_FOREIGN_FS | EXEC_UNLINKED;
        raw[72..76].copy_from_slice(&flags.to_ne_bytes());
        let ev = decode::decode(&raw).unwrap();
        let mut e = Enricher::new("n".into(), 1);
        let out = e
            .kernel_event(&ev, &ContainerTable::default(), &ProcessTable::new(1))
            .unwrap();
        assert_eq!(out.control, "visibility");
        let p = out.process.unwrap();
        assert!(p.exec_session && p.exe_truncated);
        assert_eq!(p.exe_source, "other_fs", "memfd: another filesystem first");
        raw[72..76].copy_from_slice(&(EXEC_ROOT_NOT_OVERLAY | EXEC_UPPER_LAYER).to_ne_bytes());
        let ev = decode::decode(&raw).unwrap();
        let p = e
            .kernel_event(&ev, &ContainerTable::default(), &ProcessTable::new(1))
            .unwrap()
            .process
            .unwrap();
        assert_eq!(p.exe_source, "outside_root");
    }
}
