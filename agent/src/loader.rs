//! Loading the kernel programs: offsets from the running kernel's BTF, globals, attach, and the
//! capability probe that decides (and reports) which backend each control runs on.

use std::path::Path;

use agent_common::KernelOffsets;
use aya::{
    programs::{BtfTracePoint, CgroupSock, CgroupSockAddr},
    Ebpf, EbpfLoader,
};

use crate::btf::{Btf, BtfError};

/// The compiled kernel programs, embedded at build time by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/seawall"));

/// Names of the tp_btf programs and the tracepoints they attach to.
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("cgroup_mkdir", "cgroup_mkdir"),
    ("inet_sock_set_state", "inet_sock_set_state"),
];

/// cgroup sock_addr programs, attached to each container's cgroup.
pub const SOCK_ADDR_PROGRAMS: &[&str] = &[
    "connect4", "connect6", "sendmsg4", "sendmsg6", "bind4", "bind6",
];

/// cgroup sock program refusing raw/packet sockets.
pub const SOCK_CREATE_PROGRAM: &str = "sock_create";

/// cgroup_skb ingress program keeping `listen_allow` on listeners on kernel-chosen ports.
pub const LISTEN_GATE_PROGRAM: &str = "listen_gate";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this seawall binary was built without its kernel programs (AYA_BUILD_SKIP was set): rebuild with `cargo xtask run` or `cargo build` with bpf-linker installed")]
    NoObject,
    #[error("reading kernel BTF: {0}")]
    Btf(#[from] BtfError),
    #[error("loading the kernel programs: {0} (are you root, with CAP_BPF and CAP_PERFMON?)")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program {0} is missing from the object: agent and kernel programs are from different builds")]
    Missing(&'static str),
    #[error(transparent)]
    Pin(#[from] crate::pins::PinError),
}

/// Resolves every kernel struct offset the programs read. A missing field is an error that
/// names it, never a silent zero.
pub fn resolve_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let f = |s: &str, p: &str| btf.field_offset(s, p);
    let upper = f("ovl_inode", "__upperdentry")?;
    let vfs_inode = f("ovl_inode", "vfs_inode")?;
    Ok(KernelOffsets {
        task_pid: f("task_struct", "pid")?,
        task_tgid: f("task_struct", "tgid")?,
        task_real_parent: f("task_struct", "real_parent")?,
        task_fs: f("task_struct", "fs")?,
        task_mm: f("task_struct", "mm")?,
        task_exit_code: f("task_struct", "exit_code")?,
        mm_arg_start: f("mm_struct", "arg_start")?,
        mm_arg_end: f("mm_struct", "arg_end")?,
        fs_root: f("fs_struct", "root")?,
        path_mnt: f("path", "mnt")?,
        path_dentry: f("path", "dentry")?,
        bprm_file: f("linux_binprm", "file")?,
        file_f_path: f("file", "f_path")?,
        file_f_inode: f("file", "f_inode")?,
        inode_i_sb: f("inode", "i_sb")?,
        inode_i_nlink: btf.field_offset_any("inode", &["i_nlink", "__i_nlink"])?,
        sb_s_magic: f("super_block", "s_magic")?,
        dentry_d_parent: f("dentry", "d_parent")?,
        dentry_d_name_name: f("dentry", "d_name")? + f("qstr", "name")?,
        dentry_d_sb: f("dentry", "d_sb")?,
        vfsmount_mnt_root: f("vfsmount", "mnt_root")?,
        mount_mnt: f("mount", "mnt")?,
        mount_mnt_parent: f("mount", "mnt_parent")?,
        mount_mnt_mountpoint: f("mount", "mnt_mountpoint")?,
        ovl_upperdentry_from_inode: upper
            .checked_sub(vfs_inode)
            .ok_or_else(|| BtfError::Format("ovl_inode.__upperdentry precedes vfs_inode".into()))?,
        cgroup_kn: f("cgroup", "kn")?,
        kernfs_node_id: f("kernfs_node", "id")?,
        kernfs_node_parent: btf.field_offset_any("kernfs_node", &["parent", "__parent"])?,
        sock_cgroup: f("sock", "sk_cgrp_data.cgroup")?,
        sock_family: f("sock", "__sk_common.skc_family")?,
        sock_daddr: f("sock", "__sk_common.skc_daddr")?,
        sock_v6_daddr: f("sock", "__sk_common.skc_v6_daddr")?,
        sock_dport: f("sock", "__sk_common.skc_dport")?,
        _pad_offsets: 0,
        file_f_flags: f("file", "f_flags")?,
        socket_type: f("socket", "type")?,
        bprm_filename: f("linux_binprm", "filename")?,
        bprm_interp: f("linux_binprm", "interp")?,
        mm_env_start: f("mm_struct", "env_start")?,
        mm_env_end: f("mm_struct", "env_end")?,
        mm_exe_file: f("mm_struct", "exe_file")?,
        vma_vm_file: f("vm_area_struct", "vm_file")?,
        vma_vm_flags: f("vm_area_struct", "vm_flags")?,
        file_f_mode: f("file", "f_mode")?,
        socket_sk: f("socket", "sk")?,
        sock_num: f("sock", "__sk_common.skc_num")?,
        sock_protocol: f("sock", "sk_protocol")?,
        msghdr_msg_name: f("msghdr", "msg_name")?,
        msghdr_msg_namelen: f("msghdr", "msg_namelen")?,
        dentry_d_inode: f("dentry", "d_inode")?,
        inode_i_mode: f("inode", "i_mode")?,
        _pad_tail: 0,
    })
}

/// The running kernel's BTF, with overlayfs's split BTF layered on when overlayfs is a module
/// (Debian's kernels): `ovl_inode` then lives in `/sys/kernel/btf/overlay`, not in vmlinux.
pub fn kernel_btf() -> Result<Btf, BtfError> {
    let base = Btf::from_sys()?;
    if base.has_type("ovl_inode") {
        return Ok(base);
    }
    let overlay = Path::new("/sys/kernel/btf/overlay");
    if !overlay.exists() {
        return Err(BtfError::NoType(
            "ovl_inode (overlayfs is a module that is not loaded: run `modprobe overlay`, or start the container engine first)".into(),
        ));
    }
    Btf::from_file_with_base(overlay, &base)
}

/// Options that shape the load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub host_events: bool,
    pub ringbuf_bytes: u32,
    /// bpffs directory of the shared maps (adopted when an earlier agent pinned them).
    pub bpffs: std::path::PathBuf,
}

/// Loads and attaches the always-on programs (exec/fork/exit/cgroup_mkdir); the network
/// programs are loaded here but attached per container by the kernel task.
/// With `pins`, the tracepoint links are pinned there (they outlive the agent).
pub fn load(
    opts: &LoadOptions,
    mut pins: Option<&mut crate::pins::LinkPins>,
) -> Result<Ebpf, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let btf = kernel_btf()?;
    let offsets = resolve_offsets(&btf)?;
    let host: u32 = opts.host_events.into();
    crate::pins::ensure_dir(&opts.bpffs)?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&opts.bpffs)
        .override_global("OFFSETS", &offsets, true)
        .override_global("HOST_EVENTS", &host, true)
        .map_max_entries(agent_common::MAP_EVENTS, opts.ringbuf_bytes)
        .load(OBJECT)?;
    let kbtf = aya::Btf::from_sys_fs().map_err(|e| LoadError::Load(e.into()))?;
    for &(name, tp) in TRACEPOINTS {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(LoadError::Missing(name))?
            .try_into()
            .map_err(|source| LoadError::Program { name, source })?;
        prog.load(tp, &kbtf)
            .map_err(|source| LoadError::Program { name, source })?;
        let id = prog
            .attach()
            .map_err(|source| LoadError::Program { name, source })?;
        if let Some(pins) = pins.as_deref_mut() {
            let link = prog
                .take_link(id)
                .map_err(|source| LoadError::Program { name, source })?;
            pins.pin(name, link.into())?;
        }
    }
    for &name in SOCK_ADDR_PROGRAMS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .ok_or(LoadError::Missing(name))?
            .try_into()
            .map_err(|source| LoadError::Program { name, source })?;
        prog.load()
            .map_err(|source| LoadError::Program { name, source })?;
    }
    let prog: &mut CgroupSock = ebpf
        .program_mut(SOCK_CREATE_PROGRAM)
        .ok_or(LoadError::Missing(SOCK_CREATE_PROGRAM))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: SOCK_CREATE_PROGRAM,
            source,
        })?;
    prog.load().map_err(|source| LoadError::Program {
        name: SOCK_CREATE_PROGRAM,
        source,
    })?;
    let prog: &mut aya::programs::CgroupSkb = ebpf
        .program_mut(LISTEN_GATE_PROGRAM)
        .ok_or(LoadError::Missing(LISTEN_GATE_PROGRAM))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: LISTEN_GATE_PROGRAM,
            source,
        })?;
    prog.load().map_err(|source| LoadError::Program {
        name: LISTEN_GATE_PROGRAM,
        source,
    })?;
    Ok(ebpf)
}

/// Which backend each control runs on, decided by probing and never pretended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Backends {
    pub exec: String,
    pub drift: String,
    pub container_exec: String,
    pub file: String,
    pub network: String,
    /// Why the preferred backend (BPF LSM) is not used, when it is not.
    pub lsm_unavailable: Option<String>,
}

/// The backends this build runs here: BPF LSM where its programs loaded (`lsm`), the fallbacks
/// otherwise, with the reason.
pub fn backends(fanotify_ok: Result<(), String>, lsm: Result<(), String>) -> Backends {
    let fallback_exec = "tp_btf sched_process_exec + bpf_send_signal(SIGKILL)";
    match lsm {
        Ok(()) => Backends {
            exec: "BPF LSM bprm_check_security (EPERM)".into(),
            drift: "BPF LSM bprm_check_security (EPERM)".into(),
            container_exec: "BPF LSM bprm_check_security (EPERM)".into(),
            file: "BPF LSM file_open (EPERM; opens only, unlink/rename not covered); fanotify for globs the kernel cannot match".into(),
            network: "cgroup sock_addr connect/sendmsg/bind + sock_create at the container parent cgroup, and BPF LSM socket_connect (EPERM)".into(),
            lsm_unavailable: None,
        },
        Err(why) => Backends {
            exec: fallback_exec.into(),
            drift: match &fanotify_ok {
                Ok(()) => format!("{fallback_exec}; scripts written in the container: fanotify exec permission on its overlay (EPERM)"),
                Err(_) => format!("{fallback_exec}; scripts written in the container not covered (no fanotify)"),
            },
            container_exec: fallback_exec.into(),
            file: match fanotify_ok {
                Ok(()) => "fanotify permission events on the container's overlay (EPERM); unlink/rename/truncate(2) not covered".into(),
                Err(e) => format!("unavailable: {e}"),
            },
            network: "cgroup sock_addr connect/sendmsg/bind + sock_create at the container parent cgroup (EPERM)".into(),
            lsm_unavailable: Some(why),
        },
    }
}

/// Whether the embedded object has programs (false in `AYA_BUILD_SKIP` builds).
pub fn has_object() -> bool {
    !OBJECT.is_empty()
}

/// A cgroup directory is safe to attach to: below the hierarchy root, never the root itself.
pub fn safe_attach_point(root: &Path, cgroup_dir: &Path) -> bool {
    cgroup_dir != root
        && cgroup_dir.starts_with(root)
        && cgroup_dir.components().count() > root.components().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_attaches_at_the_hierarchy_root() {
        let root = Path::new("/sys/fs/cgroup/unified");
        assert!(!safe_attach_point(root, root));
        assert!(!safe_attach_point(root, Path::new("/sys/fs/cgroup")));
        assert!(!safe_attach_point(root, Path::new("/tmp/x")));
        assert!(safe_attach_point(
            root,
            Path::new("/sys/fs/cgroup/unified/docker/abc")
        ));
    }

    #[test]
    fn every_offset_resolves_from_this_kernels_btf() {
        let btf = match Btf::from_sys() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("SKIP: no kernel BTF here: {e}");
                return;
            }
        };
        let o = resolve_offsets(&btf).expect("all offsets");
        assert!(o.task_tgid > 0 && o.task_real_parent > 0);
        assert!(o.ovl_upperdentry_from_inode >= btf.struct_size("inode").unwrap());
    }
}
