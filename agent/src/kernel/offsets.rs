//! Kernel struct offsets from the running kernel's BTF, resolved once at load and handed to the
//! programs as a read-only global. A missing field is an error that names it, never a zero.

use std::path::Path;

use agent_common::KernelOffsets;
use seawall_btf::{Btf, BtfError};

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
        cgroup_root: f("cgroup", "root")?,
        cgroup_root_hierarchy_id: f("cgroup_root", "hierarchy_id")?,
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
        task_files: f("task_struct", "files")?,
        files_fdt: f("files_struct", "fdt")?,
        fdtable_fd: f("fdtable", "fd")?,
        fdtable_max_fds: f("fdtable", "max_fds")?,
        sb_s_fs_info: f("super_block", "s_fs_info")?,
        ovl_fs_layers: f("ovl_fs", "layers")?,
        ovl_fs_numlayer: f("ovl_fs", "numlayer")?,
        ovl_layer_size: btf.struct_size("ovl_layer")?,
        ovl_layer_mnt: f("ovl_layer", "mnt")?,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(o.ovl_layer_size > o.ovl_layer_mnt && o.ovl_fs_layers != o.ovl_fs_numlayer);
    }
}
