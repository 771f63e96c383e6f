//! The one table of kernel programs: for each, its hook, where it is attached, the controls it
//! serves, the backend it provides and what it needs from the kernel. The loader, the LSM
//! backend, the kernel owner's attach, `seawall status`, the startup summary, the metrics and
//! the VM test all read this table, so what they say is what is loaded.
//!
//! Adding a program to `agent-ebpf` is one entry here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A control a profile can set (`audit`/`enforce`); stable names in status, events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Exec of a file that was not in the image.
    Drift,
    /// Exec allow/deny lists.
    Exec,
    /// Processes entered with `docker exec`.
    ContainerExec,
    /// File deny / read-only / monitor rules.
    File,
    /// Egress allow/deny, listen allow, raw sockets.
    Network,
}

impl Control {
    /// Every control, in the order status and the summary list them.
    pub const ALL: [Control; 5] = [
        Control::Exec,
        Control::Drift,
        Control::ContainerExec,
        Control::File,
        Control::Network,
    ];

    /// The stable name (`container_exec`, …).
    pub fn name(self) -> &'static str {
        match self {
            Control::Drift => "drift",
            Control::Exec => "exec",
            Control::ContainerExec => "container_exec",
            Control::File => "file",
            Control::Network => "network",
        }
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mechanism that takes a control's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// BPF LSM hooks: the syscall fails with EPERM in the kernel.
    BpfLsm,
    /// The exec tracepoint plus `bpf_send_signal(SIGKILL)`: the new image dies before its first
    /// instruction (exit 137).
    ExecSignal,
    /// fanotify permission events on the container's own overlay: EPERM from userspace.
    Fanotify,
    /// cgroup sock_addr and sock programs at the container parent cgroup: EPERM.
    CgroupSock,
    /// The fallback's opt-in syscall tracepoints (`fallback_syscall_hooks`) plus
    /// `bpf_send_signal(SIGKILL)`: the caller dies before the syscall returns to user.
    SyscallSignal,
    /// Plain visibility: events, no decision.
    Sensor,
}

impl Backend {
    /// The stable name (`bpf_lsm`, `exec_signal`, …).
    pub fn name(self) -> &'static str {
        match self {
            Backend::BpfLsm => "bpf_lsm",
            Backend::ExecSignal => "exec_signal",
            Backend::Fanotify => "fanotify",
            Backend::CgroupSock => "cgroup_sock",
            Backend::SyscallSignal => "syscall_signal",
            Backend::Sensor => "sensor",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// cgroup sock_addr attach types (the `#[cgroup_sock_addr(...)]` of each program).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockAddrHook {
    /// `connect(2)` on an IPv4 socket.
    Connect4,
    /// `connect(2)` on an IPv6 socket (IPv4-mapped peers included).
    Connect6,
    /// `sendmsg(2)`/`sendto(2)` with an IPv4 destination (UDP).
    Sendmsg4,
    /// `sendmsg(2)`/`sendto(2)` with an IPv6 destination (UDP).
    Sendmsg6,
    /// `bind(2)` of an IPv4 socket.
    Bind4,
    /// `bind(2)` of an IPv6 socket.
    Bind6,
}

/// Where a program hooks into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A BTF-enabled tracepoint (`tp_btf/<name>`).
    TpBtf(&'static str),
    /// A BPF LSM hook (`lsm/<name>`).
    Lsm(&'static str),
    /// A cgroup sock_addr program.
    CgroupSockAddr(SockAddrHook),
    /// The cgroup `sock_create` program (inet sockets only).
    CgroupSockCreate,
    /// A cgroup_skb ingress program (packets delivered to the container's sockets).
    CgroupSkbIngress,
    /// A cgroup_skb egress program (packets the container's sockets send).
    CgroupSkbEgress,
    /// A plain syscall tracepoint (`tracepoint/syscalls/<name>`): every syscall of every task
    /// on the host takes the slow path while one is attached, so only by opt-in.
    Syscall(&'static str),
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::TpBtf(tp) => write!(f, "tp_btf/{tp}"),
            Hook::Lsm(hook) => write!(f, "lsm/{hook}"),
            Hook::CgroupSockAddr(h) => write!(f, "cgroup_sock_addr/{h:?}"),
            Hook::CgroupSockCreate => f.write_str("cgroup_sock/sock_create"),
            Hook::CgroupSkbIngress => f.write_str("cgroup_skb/ingress"),
            Hook::CgroupSkbEgress => f.write_str("cgroup_skb/egress"),
            Hook::Syscall(tp) => write!(f, "tracepoint/syscalls/{tp}"),
        }
    }
}

/// Where a program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachScope {
    /// Once, for the whole machine; the program's membership gate keeps the host out.
    Global,
    /// Once at each container *parent* cgroup (`/docker`, …), never the hierarchy root: every
    /// container below it, present and future, is covered before its first syscall.
    ContainerParent,
}

/// What a program needs from the running kernel to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelNeed {
    /// Kernel BTF (`/sys/kernel/btf/vmlinux`): tp_btf and LSM programs, and every offset.
    Btf,
    /// `bpf` in the active LSM list, and a kernel that lets LSM programs load (ftrace open).
    BpfLsm,
    /// A cgroup v2 hierarchy to attach to.
    CgroupV2,
    /// The operator's opt-in (`fallback_syscall_hooks`), on a host without BPF LSM.
    OptIn,
}

/// One kernel program of the object.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// The function name in `agent-ebpf`, which is the program's name in the object.
    pub name: &'static str,
    /// Where it hooks in.
    pub hook: Hook,
    /// Where it is attached.
    pub scope: AttachScope,
    /// The controls it takes decisions for (empty: visibility and bookkeeping only).
    pub controls: &'static [Control],
    /// What it provides.
    pub backend: Backend,
    /// What it needs from the kernel.
    pub needs: &'static [KernelNeed],
}

use Control::*;

const EXEC_CONTROLS: &[Control] = &[Drift, Exec, ContainerExec];

/// Every program the agent loads, in load order.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "sched_process_exec",
        hook: Hook::TpBtf("sched_process_exec"),
        scope: AttachScope::Global,
        controls: EXEC_CONTROLS,
        backend: Backend::ExecSignal,
        needs: &[KernelNeed::Btf],
    },
    Program {
        name: "sched_process_fork",
        hook: Hook::TpBtf("sched_process_fork"),
        scope: AttachScope::Global,
        controls: &[],
        backend: Backend::Sensor,
        needs: &[KernelNeed::Btf],
    },
    Program {
        name: "sched_process_exit",
        hook: Hook::TpBtf("sched_process_exit"),
        scope: AttachScope::Global,
        controls: &[],
        backend: Backend::Sensor,
        needs: &[KernelNeed::Btf],
    },
    Program {
        name: "cgroup_mkdir",
        hook: Hook::TpBtf("cgroup_mkdir"),
        scope: AttachScope::Global,
        controls: &[],
        backend: Backend::Sensor,
        needs: &[KernelNeed::Btf],
    },
    Program {
        name: "inet_sock_set_state",
        hook: Hook::TpBtf("inet_sock_set_state"),
        scope: AttachScope::Global,
        controls: &[],
        backend: Backend::Sensor,
        needs: &[KernelNeed::Btf],
    },
    sock_addr("connect4", SockAddrHook::Connect4),
    sock_addr("connect6", SockAddrHook::Connect6),
    sock_addr("sendmsg4", SockAddrHook::Sendmsg4),
    sock_addr("sendmsg6", SockAddrHook::Sendmsg6),
    sock_addr("bind4", SockAddrHook::Bind4),
    sock_addr("bind6", SockAddrHook::Bind6),
    Program {
        name: "sock_create",
        hook: Hook::CgroupSockCreate,
        scope: AttachScope::ContainerParent,
        controls: &[Network],
        backend: Backend::CgroupSock,
        needs: &[KernelNeed::CgroupV2],
    },
    Program {
        // Listeners on ports the kernel chose (bind to port 0, listen() on an unbound socket)
        // are outside what bind4/6 see: their packets are dropped unless listen_allow names
        // the port.
        name: "listen_gate",
        hook: Hook::CgroupSkbIngress,
        scope: AttachScope::ContainerParent,
        controls: &[Network],
        backend: Backend::CgroupSock,
        needs: &[KernelNeed::CgroupV2],
    },
    Program {
        // Destinations a feed lists, on every packet: raw sockets, ICMP datagram sockets and
        // other protocols that no sock_addr program judges. Loaded on both backends.
        name: "intel_egress",
        hook: Hook::CgroupSkbEgress,
        scope: AttachScope::ContainerParent,
        controls: &[Network],
        backend: Backend::CgroupSock,
        needs: &[KernelNeed::CgroupV2],
    },
    lsm("bprm_check_security", EXEC_CONTROLS),
    // Code that is not from the image, run without exec'ing it.
    lsm("mmap_file", &[Drift]),
    lsm("file_mprotect", &[Drift]),
    lsm("ptrace_access_check", &[Drift]),
    lsm("ptrace_traceme", &[Drift]),
    lsm("file_open", &[File, Drift]),
    // File rules on the inode, for every way to change a file besides opening it.
    lsm("path_unlink", &[File]),
    lsm("path_rmdir", &[File]),
    lsm("path_mkdir", &[File]),
    lsm("path_mknod", &[File]),
    lsm("path_symlink", &[File]),
    lsm("path_truncate", &[File]),
    lsm("path_chmod", &[File]),
    lsm("path_chown", &[File]),
    lsm("path_link", &[File]),
    lsm("path_rename", &[File]),
    // Every socket family (AF_PACKET), ICMP datagrams, and listeners on any port.
    lsm("socket_connect", &[Network]),
    lsm("socket_create", &[Network]),
    lsm("socket_sendmsg", &[Network]),
    lsm("socket_listen", &[Network]),
    // The fallback's opt-in syscall hooks: the doors above that only BPF LSM sees otherwise.
    syscall("sys_enter_ptrace", &[Drift]),
    syscall("sys_enter_process_vm_writev", &[Drift]),
    syscall("sys_enter_mmap", &[Drift]),
    syscall("sys_exit_mmap", &[Drift]),
    syscall("sys_enter_mprotect", &[Drift]),
    syscall("sys_exit_mprotect", &[Drift]),
    syscall("sys_enter_pkey_mprotect", &[Drift]),
    syscall("sys_exit_pkey_mprotect", &[Drift]),
    syscall("sys_enter_socket", &[Network]),
    syscall("sys_enter_open", &[Drift]),
    syscall("sys_exit_open", &[Drift]),
    syscall("sys_enter_openat", &[Drift]),
    syscall("sys_exit_openat", &[Drift]),
    syscall("sys_enter_openat2", &[Drift]),
    syscall("sys_exit_openat2", &[Drift]),
];

const fn syscall(name: &'static str, controls: &'static [Control]) -> Program {
    Program {
        name,
        hook: Hook::Syscall(name),
        scope: AttachScope::Global,
        controls,
        backend: Backend::SyscallSignal,
        needs: &[KernelNeed::OptIn],
    }
}

const fn lsm(name: &'static str, controls: &'static [Control]) -> Program {
    Program {
        name,
        hook: Hook::Lsm(name),
        scope: AttachScope::Global,
        controls,
        backend: Backend::BpfLsm,
        needs: &[KernelNeed::Btf, KernelNeed::BpfLsm],
    }
}

const fn sock_addr(name: &'static str, hook: SockAddrHook) -> Program {
    Program {
        name,
        hook: Hook::CgroupSockAddr(hook),
        scope: AttachScope::ContainerParent,
        controls: &[Network],
        backend: Backend::CgroupSock,
        needs: &[KernelNeed::CgroupV2],
    }
}

/// The programs whose hook is a tp_btf tracepoint (loaded and attached globally at start).
pub fn tracepoints() -> impl Iterator<Item = (&'static Program, &'static str)> {
    PROGRAMS.iter().filter_map(|p| match p.hook {
        Hook::TpBtf(tp) => Some((p, tp)),
        _ => None,
    })
}

/// The BPF LSM programs and their hooks.
pub fn lsm_hooks() -> impl Iterator<Item = (&'static Program, &'static str)> {
    PROGRAMS.iter().filter_map(|p| match p.hook {
        Hook::Lsm(hook) => Some((p, hook)),
        _ => None,
    })
}

/// The fallback's opt-in syscall tracepoints and their names in `syscalls/`.
pub fn syscall_hooks() -> impl Iterator<Item = (&'static Program, &'static str)> {
    PROGRAMS.iter().filter_map(|p| match p.hook {
        Hook::Syscall(tp) => Some((p, tp)),
        _ => None,
    })
}

/// The programs attached at each container parent cgroup.
pub fn at_container_parent() -> impl Iterator<Item = &'static Program> {
    PROGRAMS
        .iter()
        .filter(|p| p.scope == AttachScope::ContainerParent)
}

/// The names of the programs that provide `backend` for `control`.
pub fn serving(control: Control, backend: Backend) -> impl Iterator<Item = &'static Program> {
    PROGRAMS
        .iter()
        .filter(move |p| p.backend == backend && p.controls.contains(&control))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_control_has_a_backend_on_every_kernel() {
        let mut names: Vec<_> = PROGRAMS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROGRAMS.len(), "duplicate program name");
        for c in Control::ALL {
            // Without BPF LSM every control still has a program (file: fanotify, in userspace).
            let fallback = PROGRAMS
                .iter()
                .any(|p| p.controls.contains(&c) && p.backend != Backend::BpfLsm);
            assert!(
                fallback || c == Control::File,
                "{c} has no fallback program"
            );
            assert!(
                serving(c, Backend::BpfLsm).next().is_some(),
                "{c} has no LSM program"
            );
        }
    }

    #[test]
    fn network_programs_attach_at_the_container_parent_and_nothing_else_does() {
        for p in PROGRAMS {
            let network = matches!(
                p.hook,
                Hook::CgroupSockAddr(_)
                    | Hook::CgroupSockCreate
                    | Hook::CgroupSkbIngress
                    | Hook::CgroupSkbEgress
            );
            assert_eq!(
                network,
                p.scope == AttachScope::ContainerParent,
                "{}: cgroup programs and only they attach at the container parent",
                p.name
            );
        }
        assert_eq!(at_container_parent().count(), 9);
    }

    #[test]
    fn syscall_tracepoints_are_opt_in_and_nothing_else_is() {
        // DESIGN.md: a syscall tracepoint slows every syscall on the host; none may be loaded
        // by default (the start-up load takes tp_btf programs only).
        for p in PROGRAMS {
            let syscall = matches!(p.hook, Hook::Syscall(_));
            assert_eq!(syscall, p.needs.contains(&KernelNeed::OptIn), "{}", p.name);
            assert_eq!(syscall, p.backend == Backend::SyscallSignal, "{}", p.name);
        }
        assert!(tracepoints().all(|(p, _)| !matches!(p.hook, Hook::Syscall(_))));
        assert_eq!(syscall_hooks().count(), 15);
    }

    #[test]
    fn stable_names_serialize_as_they_print() {
        for c in Control::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        for b in [
            Backend::BpfLsm,
            Backend::ExecSignal,
            Backend::Fanotify,
            Backend::CgroupSock,
            Backend::SyscallSignal,
            Backend::Sensor,
        ] {
            assert_eq!(serde_json::to_value(b).unwrap(), b.name());
        }
    }
}
