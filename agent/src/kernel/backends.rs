//! Which backend each control runs on, decided from what loaded and described from the program
//! table, so `seawall status`, the startup summary and the metrics say what is really attached.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    programs::{self, Backend, Control, Hook},
    syscall_hooks::{self, SyscallHooks},
};

/// The backend of every control, as the probe found them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backends {
    /// One line per control: the backend, its programs and where they attach, and what it does
    /// not cover (`"exec": "tp_btf/sched_process_exec + bpf_send_signal(SIGKILL) …"`).
    #[serde(flatten)]
    pub detail: BTreeMap<Control, String>,
    /// The backend of each control by stable name (`"exec": "exec_signal"`).
    #[serde(default)]
    pub backend: BTreeMap<Control, Backend>,
    /// Why the preferred backend (BPF LSM) is not used, when it is not.
    pub lsm_unavailable: Option<String>,
    /// The fallback's opt-in syscall hooks: off, attached, not loaded (BPF LSM), or failed.
    #[serde(default)]
    pub syscall_hooks: SyscallHooks,
}

/// What the probe learned: whether the LSM programs loaded and whether fanotify started, each
/// with the reason when not (kept as text: it is shown, not matched on).
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// `None` when the BPF LSM programs are attached; otherwise why not.
    pub lsm_unavailable: Option<String>,
    /// `None` when the fanotify group started; otherwise why not.
    pub fanotify_unavailable: Option<String>,
    /// What became of the opt-in syscall hooks.
    pub syscall_hooks: SyscallHooks,
}

/// Program names of `control` on `backend`, with their hooks (`tp_btf/sched_process_exec`).
fn hooks(control: Control, backend: Backend) -> String {
    programs::serving(control, backend)
        .map(|p| match p.hook {
            Hook::CgroupSockAddr(_)
            | Hook::CgroupSockCreate
            | Hook::CgroupSkbIngress
            | Hook::CgroupSkbEgress => p.name.to_string(),
            Hook::Syscall(tp) => tp.to_string(),
            hook => hook.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Backends {
    /// The backends this build runs here, given what loaded.
    pub fn decide(probe: &Probe) -> Backends {
        let lsm = probe.lsm_unavailable.is_none();
        let fanotify = probe.fanotify_unavailable.as_deref();
        let attached = probe.syscall_hooks.attached();
        let opt_in = |what: &str, control: Control| {
            if attached {
                format!(
                    "{what}: killed by the opt-in syscall hooks {} + bpf_send_signal(SIGKILL)",
                    hooks(control, Backend::SyscallSignal)
                )
            } else {
                format!("{what} not visible (opt-in: {})", syscall_hooks::OPT_IN)
            }
        };
        let mut detail = BTreeMap::new();
        let mut backend = BTreeMap::new();
        for control in Control::ALL {
            let (b, text) = match (control, lsm) {
                (Control::Drift | Control::Exec | Control::ContainerExec, true) => (
                    Backend::BpfLsm,
                    format!("BPF LSM {} (EPERM)", hooks(control, Backend::BpfLsm)),
                ),
                (Control::Drift | Control::Exec | Control::ContainerExec, false) => {
                    let signal = format!(
                        "{} + bpf_send_signal(SIGKILL) before the first instruction",
                        hooks(control, Backend::ExecSignal)
                    );
                    let text = match (control, fanotify) {
                        (Control::Drift, None) => format!("{signal}; the loader run as a program and LD_PRELOAD/LD_AUDIT of non-image libraries killed at exec; scripts: fanotify exec permission on every mount of the container (EPERM); {}", opt_in("executable mappings of non-image files (dlopen, mmap, mprotect), ptrace, process_vm_writev and /proc/<pid>/mem", control)),
                        (Control::Drift, Some(_)) => format!("{signal}; scripts not covered (no fanotify)"),
                        _ => signal,
                    };
                    (Backend::ExecSignal, text)
                }
                (Control::File, true) => (
                    Backend::BpfLsm,
                    format!(
                        "BPF LSM {} (EPERM, decided on the inode); fanotify for globs the kernel cannot match",
                        hooks(control, Backend::BpfLsm)
                    ),
                ),
                (Control::File, false) => match fanotify {
                    None => (Backend::Fanotify, "literal and dir/** rules: kernel-enforced mounts in the container (EROFS, EBUSY); every rule: fanotify permission events on every mount of the container (EPERM); unlink/rename/truncate(2) under dir/* and glob rules not covered".to_string()),
                    Some(why) => (Backend::Sensor, format!("unavailable: {why}")),
                },
                (Control::Network, _) => {
                    let cgroup = format!(
                        "cgroup {} at the container parent cgroup",
                        hooks(control, Backend::CgroupSock)
                    );
                    let text = if lsm {
                        format!(
                            "{cgroup}, and BPF LSM {} (EPERM)",
                            hooks(control, Backend::BpfLsm)
                        )
                    } else {
                        format!("{cgroup} (EPERM); {}", opt_in("AF_PACKET sockets", control))
                    };
                    (Backend::CgroupSock, text)
                }
            };
            backend.insert(control, b);
            detail.insert(control, text);
        }
        Backends {
            detail,
            backend,
            lsm_unavailable: probe.lsm_unavailable.clone(),
            syscall_hooks: probe.syscall_hooks.clone(),
        }
    }

    /// The line for `control` (empty when an older agent did not report it).
    pub fn describe(&self, control: Control) -> &str {
        self.detail.get(&control).map(String::as_str).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_lsm_the_fallbacks_are_named_with_their_programs() {
        let b = Backends::decide(&Probe {
            lsm_unavailable: Some("BPF LSM is not enabled".into()),
            fanotify_unavailable: None,
            syscall_hooks: SyscallHooks::Off,
        });
        assert!(b
            .describe(Control::Exec)
            .contains("tp_btf/sched_process_exec"));
        assert!(b.describe(Control::Exec).contains("SIGKILL"));
        assert!(b
            .describe(Control::Drift)
            .contains("fanotify exec permission"));
        assert_eq!(b.backend[&Control::File], Backend::Fanotify);
        let net = b.describe(Control::Network);
        assert!(net.contains("at the container parent cgroup"), "{net}");
        assert!(
            net.contains("connect4") && net.contains("sock_create"),
            "{net}"
        );
        assert!(!net.contains("per container"), "{net}");
        assert_eq!(b.lsm_unavailable.as_deref(), Some("BPF LSM is not enabled"));
    }

    #[test]
    fn the_fallback_names_the_syscall_hooks_when_attached_and_the_opt_in_when_not() {
        let probe = |syscall_hooks| Probe {
            lsm_unavailable: Some("no bpf".into()),
            fanotify_unavailable: None,
            syscall_hooks,
        };
        let off = Backends::decide(&probe(SyscallHooks::Off));
        assert!(off
            .describe(Control::Drift)
            .contains("not visible (opt-in: fallback_syscall_hooks"));
        assert!(off
            .describe(Control::Network)
            .contains("AF_PACKET sockets not visible"));
        let on = Backends::decide(&probe(SyscallHooks::Attached));
        let drift = on.describe(Control::Drift);
        assert!(
            drift.contains("sys_enter_ptrace") && drift.contains("sys_exit_mmap"),
            "{drift}"
        );
        assert!(on.describe(Control::Network).contains("sys_enter_socket"));
    }

    #[test]
    fn with_lsm_every_enforcing_control_says_so() {
        let b = Backends::decide(&Probe::default());
        for c in [
            Control::Exec,
            Control::Drift,
            Control::ContainerExec,
            Control::File,
        ] {
            assert_eq!(b.backend[&c], Backend::BpfLsm, "{c}");
            assert!(b.describe(c).starts_with("BPF LSM lsm/"), "{c}");
        }
        assert!(b
            .describe(Control::Network)
            .contains("BPF LSM lsm/socket_connect"));
    }

    #[test]
    fn status_json_keeps_one_string_per_control() {
        let b = Backends::decide(&Probe {
            lsm_unavailable: Some("x".into()),
            fanotify_unavailable: Some("no fanotify".into()),
            syscall_hooks: SyscallHooks::Failed("refused".into()),
        });
        let v = serde_json::to_value(&b).unwrap();
        assert!(v["exec"].as_str().unwrap().contains("SIGKILL"));
        assert!(v["network"].as_str().unwrap().contains("cgroup"));
        assert_eq!(v["backend"]["file"], "sensor");
        assert_eq!(v["file"], "unavailable: no fanotify");
        let back: Backends = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
    }
}
