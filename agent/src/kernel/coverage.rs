//! What each backend enforces, only reports, or cannot see — per control and per way around
//! it (the classes of issue 9) — as one table that `seawall status`, `seawall profile check`
//! and the README's coverage matrix all read, so none of them can claim more than the others.
//! Every cell names the test that shows it; a cell no test shows is not in the table.

use seawall_profile::{Mode, PathRule, Profile};
use serde::{Deserialize, Serialize};

use super::syscall_hooks::{SyscallHooks, COST, OPT_IN};

/// How far a backend holds against one way around a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Refused (EPERM, EROFS, or killed before the first instruction), and reported.
    Enforced,
    /// Seen and reported, but the operation (or part of it) goes through.
    ReportedOnly,
    /// This backend has no hook that sees it.
    NotVisible,
}

impl Coverage {
    pub fn as_str(self) -> &'static str {
        match self {
            Coverage::Enforced => "enforced",
            Coverage::ReportedOnly => "reported only",
            Coverage::NotVisible => "not visible",
        }
    }
}

/// The two backends a host can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// tp_btf exec + SIGKILL, fanotify, cgroup socket programs.
    Fallback,
    /// BPF LSM hooks (EPERM in the kernel), with the cgroup socket programs.
    BpfLsm,
}

/// One backend's answer for one way around a control.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub coverage: Coverage,
    /// How, in a few words.
    pub how: &'static str,
    /// The test that shows it (`file::test` or `vm-test: check`).
    pub shown_by: &'static str,
}

/// One way around a control.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Stable name (status JSON).
    pub class: &'static str,
    /// The control it walks around (`drift`, `exec`, `file`, `network`).
    pub control: &'static str,
    /// What the attacker does.
    pub what: &'static str,
    pub fallback: Cell,
    /// On the fallback with the opt-in syscall hooks attached, when they change the answer.
    pub fallback_opt_in: Option<Cell>,
    pub lsm: Cell,
    /// On the fallback, the kernel feature that would close a gap.
    pub closes: Option<&'static str>,
}

const fn cell(coverage: Coverage, how: &'static str, shown_by: &'static str) -> Cell {
    Cell {
        coverage,
        how,
        shown_by,
    }
}

use Coverage::{Enforced, NotVisible, ReportedOnly};

const LSM: &str = "BPF LSM (boot with lsm=...,bpf; CONFIG_BPF_LSM)";

/// The matrix. Order: the classes of issue 9.
pub const MATRIX: &[Row] = &[
    Row {
        class: "changed_root",
        control: "drift, exec",
        what: "chroot into a tmpfs, a volume or an image sub-directory, then exec",
        fallback: cell(Enforced, "judged against the root the container's init entered; killed before the first instruction", "soundness::chroot_into_a_tmpfs_is_still_drift, chroot_into_an_image_directory_keeps_exec_paths, a_volume_is_not_the_image"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "same root, EPERM at exec", "vm-test: chroot_tmpfs_drift_eperm, chroot_subdir_deny_list_eperm"),
        closes: None,
    },
    Row {
        class: "loader_as_program",
        control: "drift",
        what: "the dynamic loader run on a dropped file (ld.so /tmp/x)",
        fallback: cell(Enforced, "the loader run as a program is drift unless drift.allow names it (image programs run through it too)", "soundness::the_dynamic_loader_run_as_a_program_is_drift_on_the_fallback"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "the loader runs; its PROT_EXEC mapping of a non-image file is EPERM", "vm-test: loader_on_dropped_file_fails, loader_on_image_program_runs"),
        closes: None,
    },
    Row {
        class: "preload_environment",
        control: "drift",
        what: "LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH naming a dropped library",
        fallback: cell(Enforced, "every element must be on drift.allow, else killed at exec (an empty element, an oversized environment: drift)", "soundness::ld_preload_ld_audit_and_ld_library_path_of_a_dropped_library_are_drift"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "the mapping of the dropped library is EPERM; image libraries load", "vm-test: preload_dropped_library_not_run, preload_image_library_runs"),
        closes: None,
    },
    Row {
        class: "loader_config_files",
        control: "drift",
        what: "a library named in /etc/ld.so.preload or a rewritten /etc/ld.so.cache",
        fallback: cell(Enforced, "both are read-only mounts under drift enforce (an empty preload file is created first): EROFS", "soundness::ld_preload_ld_audit_and_ld_library_path_of_a_dropped_library_are_drift"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "the loader's mapping of a non-image library is EPERM, as for LD_PRELOAD", "vm-test: preload_dropped_library_not_run"),
        closes: None,
    },
    Row {
        class: "executable_mapping",
        control: "drift",
        what: "an image program mapping a dropped file executable (dlopen, mmap/mprotect PROT_EXEC, memfd)",
        fallback: cell(NotVisible, "no hook on mmap", ""),
        fallback_opt_in: Some(cell(Enforced, "mmap with PROT_EXEC judged at syscall exit on the file behind the descriptor it was given, with exec's drift decision (dlopen, the loader's --preload, memfd); mprotect and pkey_mprotect adding PROT_EXEC to a file mapping judged at syscall entry on the mapping at the start address (bpf_find_vma; an overlay file's mapping holds the backing file of its layer: upper is drift, the image's layers are not; a busy mm is looked up again at exit, and drift if still unreadable): the caller is killed before it returns (exit 137), so the code never runs in that thread; NOT covered: another thread jumping into the new mapping before the kill lands, a dup2 onto the descriptor racing the lookup, an mprotect range reaching past the first mapping into a second file's, and 32-bit (int 0x80) syscalls", "soundness::syscall_hooks::an_executable_mapping_of_a_dropped_file_is_killed, an_executable_mapping_is_reported_in_audit")),
        lsm: cell(Enforced, "mmap_file / file_mprotect: EPERM for a non-image file", "vm-test: mmap_exec_upper_eperm, mprotect_exec_upper_eperm, mmap_exec_memfd_eperm"),
        closes: Some(LSM),
    },
    Row {
        class: "anonymous_executable_memory",
        control: "drift",
        what: "code written into anonymous memory made executable (what JITs do)",
        fallback: cell(NotVisible, "not judged: JITs need it", ""),
        fallback_opt_in: None,
        lsm: cell(NotVisible, "not judged: JITs need it", ""),
        closes: None,
    },
    Row {
        class: "ptrace",
        control: "drift",
        what: "ptrace attach, PTRACE_TRACEME, process_vm_writev into another process",
        fallback: cell(NotVisible, "no hook (kernel.yama.ptrace_scope >= 2 refuses it for containers)", ""),
        fallback_opt_in: Some(cell(Enforced, "any ptrace request and process_vm_writev kill the caller at syscall entry: process_vm_writev copies nothing; an attach still completes (the target is left stopped) but the tracer dies before it can poke; Docker's default seccomp profile already refuses process_vm_writev without CAP_SYS_PTRACE; 32-bit (int 0x80) syscalls are not covered", "soundness::syscall_hooks::ptrace_and_process_vm_writev_are_killed_before_they_act, ptrace_and_process_vm_writev_are_reported_in_audit")),
        lsm: cell(Enforced, "ptrace_access_check / ptrace_traceme: EPERM", "vm-test: ptrace_attach_eperm, ptrace_traceme_eperm"),
        closes: Some("BPF LSM, or Yama with kernel.yama.ptrace_scope=2"),
    },
    Row {
        class: "proc_mem",
        control: "drift",
        what: "writing code through /proc/<pid>/mem (its own process included)",
        fallback: cell(NotVisible, "fanotify cannot mark procfs", ""),
        fallback_opt_in: Some(cell(Enforced, "open, openat and openat2 of a procfs mem file with FMODE_WRITE are judged at syscall exit on the file behind the new descriptor: the caller is killed before it returns; another thread guessing the descriptor and writing first, 32-bit syscalls and io_uring opens are not covered", "soundness::syscall_hooks::proc_mem_opened_for_writing_is_killed, proc_mem_opened_for_writing_is_reported_in_audit")),
        lsm: cell(Enforced, "file_open of /proc/*/mem for writing: EPERM", "vm-test: proc_self_mem_write_eperm"),
        closes: Some("BPF LSM, or booting with proc_mem.force_override=never (Linux >= 6.12)"),
    },
    Row {
        class: "script_in_container",
        control: "drift",
        what: "a #! script written in the container",
        fallback: cell(Enforced, "fanotify exec permission on the container's overlay: EPERM", "enforcement::a_script_written_in_the_container_is_refused_as_drift"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "bprm_check_security sees the script itself: EPERM", "vm-test: exec_drift_script_eperm"),
        closes: None,
    },
    Row {
        class: "script_on_other_filesystem",
        control: "drift",
        what: "a #! script on a tmpfs (/dev, --tmpfs) or a volume",
        fallback: cell(Enforced, "fanotify exec permission on every mount of the container: EPERM", "soundness::scripts_on_other_filesystems_and_with_odd_names_are_refused"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "bprm_check_security: EPERM (not on the root filesystem)", "vm-test: script_on_tmpfs_eperm"),
        closes: None,
    },
    Row {
        class: "script_non_utf8_name",
        control: "drift",
        what: "a #! script whose name is not valid UTF-8",
        fallback: cell(Enforced, "judged on the event's descriptor and the path's bytes; the event shows them as \\xHH", "soundness::scripts_on_other_filesystems_and_with_odd_names_are_refused"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "paths are bytes in the kernel: EPERM, the event keeps the bytes", "vm-test: script_non_utf8_name_eperm, event_script_non_utf8_blocked"),
        closes: None,
    },
    Row {
        class: "script_through_descriptor",
        control: "drift",
        what: "a deleted script, or one in a memfd, run through /proc/self/fd/N",
        fallback: cell(Enforced, "a script run through a descriptor path is drift at exec", "soundness::a_script_run_from_memory_or_deleted_is_refused"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "EPERM (deleted / not on the root filesystem)", "vm-test: script_deleted_fd_eperm, script_memfd_eperm"),
        closes: None,
    },
    Row {
        class: "script_fed_to_interpreter",
        control: "drift",
        what: "an image interpreter reading a dropped file (sh /tmp/x, python /tmp/x.py)",
        fallback: cell(NotVisible, "not an exec: the interpreter is the image's", ""),
        fallback_opt_in: None,
        lsm: cell(NotVisible, "not an exec: the interpreter is the image's", ""),
        closes: None,
    },
    Row {
        class: "truncated_path",
        control: "exec, drift, file",
        what: "a path deeper or longer than the kernel walks, its tail spelling an allowed path",
        fallback: cell(Enforced, "never on an allow list; on a deny list with directory rules", "soundness::a_truncated_path_never_matches_an_allow_list"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "same", "vm-test: truncated_path_not_allowed_eperm"),
        closes: None,
    },
    Row {
        class: "ruled_file_other_name",
        control: "file",
        what: "hard link, rename away and back, unlink of a file under an exact or dir/** rule",
        fallback: cell(Enforced, "its name is a mount point or below a read-only mount: EXDEV, EBUSY, EROFS (not reported)", "soundness::file_rules_hold_through_other_names_threads_and_syscalls"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "path_link / path_rename / path_unlink on the ruled path: EPERM", "vm-test: file_hard_link_*, file_rename_*, file_unlink_eperm"),
        closes: None,
    },
    Row {
        class: "ruled_file_truncate_chmod",
        control: "file",
        what: "truncate(2), chmod, chown of a file under an exact read_only rule",
        fallback: cell(NotVisible, "not opens; a read-only mount would refuse them but also the write opens fanotify reports (below a dir/** rule truncate(2) and chmod are EROFS); the opt-in syscall hooks cannot refuse them either: a tracepoint cannot fail a syscall, and a SIGKILL sent at entry lands after truncate/chmod/chown have changed the file", ""),
        fallback_opt_in: None,
        lsm: cell(Enforced, "path_truncate / path_chmod / path_chown: EPERM", "vm-test: file_truncate_syscall_eperm, file_chmod_eperm, file_chown_eperm"),
        closes: Some(LSM),
    },
    Row {
        class: "glob_rule_other_syscalls",
        control: "file",
        what: "unlink, rename, link, truncate(2), chmod, chown of a file under a dir/* rule or a glob",
        fallback: cell(NotVisible, "fanotify sees opens only, and the opt-in syscall hooks cannot refuse these (a tracepoint cannot fail a syscall; a SIGKILL sent at entry lands after the file has changed); write the rule as dir/** (a read-only mount: truncate(2) and chmod are EROFS)", ""),
        fallback_opt_in: None,
        lsm: cell(NotVisible, "dir/* is matched in the kernel; a full glob only by fanotify, on opens", ""),
        closes: Some("a dir/** rule instead of the glob (a read-only mount on the fallback; no backend matches a full glob outside opens)"),
    },
    Row {
        class: "file_rules_other_thread_or_abi",
        control: "file",
        what: "a write open from another thread, openat2, the 32-bit entry point, io_uring",
        fallback: cell(Enforced, "flags read from the blocked thread; any syscall but the 64-bit open family counts as a write (fail closed): EPERM", "soundness::file_rules_hold_through_other_names_threads_and_syscalls"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "file_open reads the kernel's own flags: EPERM", "vm-test: file_write_other_thread_eperm, file_write_openat2_eperm, file_write_int80_eperm"),
        closes: None,
    },
    Row {
        class: "refused_create",
        control: "file",
        what: "a refused O_CREAT below a read-only rule leaving an empty file",
        fallback: cell(Enforced, "below a dir/** rule the mount refuses the create (EROFS); under a glob the empty file stays", "soundness::file_rules_hold_through_other_names_threads_and_syscalls"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "path_mknod refuses it before the file exists", "vm-test: file_create_in_read_only_tree_eperm, file_refused_create_left_nothing"),
        closes: None,
    },
    Row {
        class: "files_on_other_mounts",
        control: "file",
        what: "a ruled file on a volume or one of Docker's bind mounts (/etc/hostname, /etc/hosts)",
        fallback: cell(Enforced, "every mount of the container is marked", "soundness::file_rules_hold_through_other_names_threads_and_syscalls"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "file_open sees every file", "vm-test: file_deny_on_tmpfs_eperm"),
        closes: None,
    },
    Row {
        class: "packet_socket",
        control: "network",
        what: "an AF_PACKET socket under block_raw_sockets",
        fallback: cell(NotVisible, "the cgroup sock_create program runs for inet sockets only", ""),
        fallback_opt_in: Some(cell(Enforced, "socket(AF_PACKET) kills the caller before it returns; a sibling thread racing on the new descriptor, io_uring's socket operation and 32-bit socketcall are not covered", "soundness::syscall_hooks::an_af_packet_socket_is_killed, an_af_packet_socket_is_reported_in_audit")),
        lsm: cell(Enforced, "socket_create: EPERM", "vm-test: net_packet_socket_eperm"),
        closes: Some(LSM),
    },
    Row {
        class: "icmp_socket",
        control: "network",
        what: "an ICMP datagram (ping) socket sending past egress rules",
        fallback: cell(Enforced, "refused at socket() whenever the profile has egress rules (its sends are not visible)", "soundness::icmp_datagram_sockets_are_refused_when_egress_is_ruled"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "socket_sendmsg judges each destination", "vm-test: net_icmp_send_denied_eperm, net_icmp_send_allowed"),
        closes: None,
    },
    Row {
        class: "kernel_chosen_listen_port",
        control: "network",
        what: "listen_allow passed by binding port 0 or listen() on an unbound socket",
        fallback: cell(Enforced, "listen() succeeds; every packet to the listener is dropped (it gets nothing)", "soundness::listen_allow_holds_for_kernel_chosen_ports"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "socket_listen: EPERM", "vm-test: net_listen_port_zero_eperm, net_listen_unbound_eperm"),
        closes: None,
    },
    Row {
        class: "loopback_alias",
        control: "network",
        what: "reaching a denied 127.0.0.1 as 127/8, 0.0.0.0, ::, ::1 or ::ffff:127.x",
        fallback: cell(Enforced, "a loopback destination is judged as itself, 127.0.0.1 and ::1", "soundness::a_denied_loopback_address_cannot_be_reached_by_another_name"),
        fallback_opt_in: None,
        lsm: cell(Enforced, "same, in socket_connect", "vm-test: net_alias_*_eperm"),
        closes: None,
    },
];

/// What the running kernel itself adds, read from procfs (no privileges needed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelFacts {
    /// `kernel.yama.ptrace_scope`, when Yama is built in.
    pub yama_ptrace_scope: Option<u8>,
    /// `proc_mem.force_override=` on the kernel command line.
    pub proc_mem_force_override: Option<String>,
    /// Whether `bpf` is in the active LSM list (`/sys/kernel/security/lsm`); `None` when
    /// securityfs is not readable.
    pub bpf_lsm_listed: Option<bool>,
}

impl KernelFacts {
    pub fn probe() -> KernelFacts {
        let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let force = std::fs::read_to_string("/proc/cmdline").ok().and_then(|c| {
            c.split_whitespace()
                .find_map(|w| w.strip_prefix("proc_mem.force_override="))
                .map(str::to_string)
        });
        let lsm = std::fs::read_to_string("/sys/kernel/security/lsm")
            .ok()
            .map(|l| l.split(',').any(|x| x.trim() == "bpf"));
        KernelFacts {
            yama_ptrace_scope: yama,
            proc_mem_force_override: force,
            bpf_lsm_listed: lsm,
        }
    }
}

/// One row as the running agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CoverageLine {
    pub class: String,
    pub control: String,
    pub coverage: Coverage,
    pub how: String,
    /// What would close a gap, when there is one.
    pub closes: Option<String>,
}

/// The matrix for `backend` on this kernel: where the kernel itself closes a fallback gap
/// (Yama, `proc_mem.force_override`), the line says so.
pub fn lines(backend: BackendKind, facts: &KernelFacts, hooks: &SyscallHooks) -> Vec<CoverageLine> {
    MATRIX
        .iter()
        .map(|r| {
            let c = match (backend, r.fallback_opt_in) {
                (BackendKind::Fallback, Some(opt_in)) if hooks.attached() => opt_in,
                (BackendKind::Fallback, _) => r.fallback,
                (BackendKind::BpfLsm, _) => r.lsm,
            };
            let (mut coverage, mut how) = (c.coverage, c.how.to_string());
            let mut closes = r.closes.map(str::to_string);
            if backend == BackendKind::Fallback && r.fallback_opt_in.is_some() {
                if hooks.attached() {
                    how = format!("enforced (kill) by the opt-in syscall hooks: {how}");
                } else {
                    let why = match hooks {
                        SyscallHooks::Failed(why) => format!(" (asked for, but: {why})"),
                        _ => String::new(),
                    };
                    how = format!("{how}; enable {OPT_IN}{why} (cost: {COST})");
                    closes = Some(format!(
                        "{}, or the agent's opt-in {OPT_IN}",
                        r.closes.unwrap_or(LSM)
                    ));
                }
            }
            // What the kernel itself refuses, where nothing of ours enforces already.
            if backend == BackendKind::Fallback && coverage != Enforced {
                if r.class == "ptrace" && facts.yama_ptrace_scope.is_some_and(|s| s >= 2) {
                    coverage = Enforced;
                    how = "refused by the kernel: kernel.yama.ptrace_scope >= 2".into();
                }
                if r.class == "proc_mem"
                    && facts.proc_mem_force_override.as_deref() == Some("never")
                {
                    how = "writes into read-only code refused by the kernel (proc_mem.force_override=never); writable memory of other processes still reachable".into();
                    coverage = ReportedOnly;
                }
            }
            CoverageLine {
                class: r.class.into(),
                control: r.control.into(),
                coverage,
                how,
                closes: (coverage != Enforced).then_some(closes).flatten(),
            }
        })
        .collect()
}

/// What `profile` asks for that `backend` cannot enforce here, one warning per gap, naming it
/// and what would close it.
pub fn profile_gaps(
    profile: &Profile,
    backend: BackendKind,
    facts: &KernelFacts,
    hooks: &SyscallHooks,
) -> Vec<String> {
    let lines = lines(backend, facts, hooks);
    let warn = |class: &str, asks: &str| -> Option<String> {
        let l = lines
            .iter()
            .find(|l| l.class == class && l.coverage != Enforced)?;
        let row = MATRIX.iter().find(|r| r.class == class)?;
        Some(format!(
            "{asks}: {} is {} on this kernel ({}){}",
            row.what,
            l.coverage.as_str(),
            l.how,
            l.closes
                .as_deref()
                .map(|c| format!("; closed by {c}"))
                .unwrap_or_default()
        ))
    };
    let mut out = Vec::new();
    if profile.drift.mode == Mode::Enforce {
        for class in ["executable_mapping", "ptrace", "proc_mem"] {
            out.extend(warn(class, "drift enforce"));
        }
    }
    let f = &profile.files;
    if f.mode != Mode::Off {
        let exact_read_only = f
            .read_only
            .patterns()
            .iter()
            .any(|p| matches!(PathRule::parse(p), Ok(PathRule::Exact(_))));
        if exact_read_only {
            out.extend(warn("ruled_file_truncate_chmod", "files.read_only"));
        }
        let globs: Vec<String> = f
            .deny
            .patterns()
            .iter()
            .chain(f.read_only.patterns())
            .filter(|p| {
                !matches!(
                    PathRule::parse(p),
                    Ok(PathRule::Exact(_) | PathRule::Tree(_))
                )
            })
            .map(|g| format!("`{g}`"))
            .collect();
        if !globs.is_empty() {
            let asks = format!("files {}", globs.join(", "));
            out.extend(warn("glob_rule_other_syscalls", &asks));
        }
    }
    if profile.network.mode != Mode::Off && profile.network.block_raw_sockets {
        out.extend(warn("packet_socket", "block_raw_sockets"));
    }
    out
}

/// The README's coverage matrix, generated from [`MATRIX`] (a unit test keeps the README
/// equal to it).
pub fn markdown() -> String {
    let mut s = String::from(
        "| control | way around it | fallback (this kernel) | BPF LSM | shown by |\n| --- | --- | --- | --- | --- |\n",
    );
    for r in MATRIX {
        let cell = |c: &Cell| format!("**{}**: {}", c.coverage.as_str(), c.how);
        let shown: Vec<&str> = [r.fallback.shown_by, r.lsm.shown_by]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let opt_in = r
            .fallback_opt_in
            .map(|c| {
                format!(
                    "; with `fallback_syscall_hooks = true` (cost: {COST}): {}",
                    cell(&c)
                )
            })
            .unwrap_or_default();
        let shown: Vec<&str> = shown
            .into_iter()
            .chain(r.fallback_opt_in.map(|c| c.shown_by))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {}{}{} | {} | {} |\n",
            r.control,
            r.what,
            cell(&r.fallback),
            r.closes
                .filter(|_| r.fallback.coverage != Enforced)
                .map(|c| format!(" (closed by {c})"))
                .unwrap_or_default(),
            opt_in,
            cell(&r.lsm),
            shown.join("; ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_claimed_cell_names_the_test_that_shows_it() {
        for r in MATRIX {
            let cells = [
                (Some(r.fallback), "fallback"),
                (r.fallback_opt_in, "fallback with the opt-in hooks"),
                (Some(r.lsm), "lsm"),
            ];
            for (c, backend) in cells.into_iter().filter_map(|(c, b)| Some((c?, b))) {
                if c.coverage != NotVisible {
                    assert!(
                        !c.shown_by.is_empty(),
                        "{} on {backend}: no test shows it",
                        r.class
                    );
                }
            }
            if r.fallback.coverage == NotVisible && r.lsm.coverage == Enforced {
                assert!(r.closes.is_some(), "{}: say what closes the gap", r.class);
            }
        }
    }

    #[test]
    fn the_readme_shows_the_matrix_the_code_has() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md's coverage matrix is not the one in agent/src/kernel/coverage.rs; paste:\n{}",
            markdown()
        );
    }

    #[test]
    fn yama_closes_ptrace_on_the_fallback() {
        let facts = KernelFacts {
            yama_ptrace_scope: Some(2),
            ..Default::default()
        };
        let l = lines(BackendKind::Fallback, &facts, &SyscallHooks::Off);
        let p = l.iter().find(|l| l.class == "ptrace").unwrap();
        assert_eq!(p.coverage, Enforced);
        assert!(p.closes.is_none());
        let l = lines(
            BackendKind::Fallback,
            &KernelFacts::default(),
            &SyscallHooks::Off,
        );
        let p = l.iter().find(|l| l.class == "ptrace").unwrap();
        assert_eq!(p.coverage, NotVisible);
        assert!(p.closes.as_deref().unwrap().contains("BPF LSM"));
    }

    #[test]
    fn the_opt_in_hooks_turn_the_fallback_gaps_they_cover_into_kills() {
        let line = |hooks: &SyscallHooks, class: &str| {
            lines(BackendKind::Fallback, &KernelFacts::default(), hooks)
                .into_iter()
                .find(|l| l.class == class)
                .unwrap()
        };
        for class in ["executable_mapping", "ptrace", "proc_mem", "packet_socket"] {
            let off = line(&SyscallHooks::Off, class);
            assert_eq!(off.coverage, NotVisible, "{class}");
            assert!(
                off.how.contains("enable fallback_syscall_hooks"),
                "{}",
                off.how
            );
            assert!(off.how.contains("10-19%"), "the cost is said: {}", off.how);
            assert!(off.closes.unwrap().contains("fallback_syscall_hooks"));
            let on = line(&SyscallHooks::Attached, class);
            assert_eq!(on.coverage, Enforced, "{class}");
            assert!(on
                .how
                .starts_with("enforced (kill) by the opt-in syscall hooks"));
            assert!(on.closes.is_none());
            let failed = line(&SyscallHooks::Failed("EPERM".into()), class);
            assert_eq!(failed.coverage, NotVisible);
            assert!(
                failed.how.contains("asked for, but: EPERM"),
                "{}",
                failed.how
            );
        }
        // What the hooks do not cover stays as it was; BPF LSM never takes the opt-in cell.
        assert_eq!(
            line(&SyscallHooks::Attached, "anonymous_executable_memory").coverage,
            NotVisible
        );
        let lsm = lines(
            BackendKind::BpfLsm,
            &KernelFacts::default(),
            &SyscallHooks::Attached,
        );
        let ptrace = lsm.iter().find(|l| l.class == "ptrace").unwrap();
        assert!(
            ptrace.how.starts_with("ptrace_access_check"),
            "{}",
            ptrace.how
        );
    }

    #[test]
    fn profile_check_names_each_gap_and_what_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.toml"),
            "[profile]\nname = \"p\"\nimages = [\"x\"]\nmode = \"enforce\"\n[drift]\nprevent = true\n\
             [files]\nread_only = [\"/etc/*.conf\"]\n[network]\nblock_raw_sockets = true\n",
        )
        .unwrap();
        let set = seawall_profile::ProfileSet::load_dir(dir.path()).unwrap();
        let p = set.for_image("x", None);
        let w = profile_gaps(
            p,
            BackendKind::Fallback,
            &KernelFacts::default(),
            &SyscallHooks::Off,
        );
        assert!(
            w.iter()
                .any(|w| w.contains("dlopen") && w.contains("BPF LSM")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("AF_PACKET") && w.contains("socket_create")
                    || w.contains("AF_PACKET") && w.contains("BPF LSM")),
            "{w:?}"
        );
        assert!(w.iter().any(|w| w.contains("truncate(2)")), "{w:?}");
        let w = profile_gaps(
            p,
            BackendKind::BpfLsm,
            &KernelFacts::default(),
            &SyscallHooks::Off,
        );
        assert!(w.iter().all(|w| !w.contains("AF_PACKET")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("`/etc/*.conf`")), "{w:?}");
    }
}
