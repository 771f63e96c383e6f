//! Kernel struct offsets, resolved from BTF by the loader and set as read-only globals.

/// Byte offsets of the kernel struct fields the programs read. Every one is resolved from the
/// running kernel's BTF at load time; none is guessed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.pid`.
    pub task_pid: u32,
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.real_parent`.
    pub task_real_parent: u32,
    /// `task_struct.fs`.
    pub task_fs: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `task_struct.exit_code`.
    pub task_exit_code: u32,
    /// `mm_struct.arg_start`.
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`.
    pub mm_arg_end: u32,
    /// `fs_struct.root` (a `struct path`).
    pub fs_root: u32,
    /// `path.mnt`.
    pub path_mnt: u32,
    /// `path.dentry`.
    pub path_dentry: u32,
    /// `linux_binprm.file`.
    pub bprm_file: u32,
    /// `file.f_path`.
    pub file_f_path: u32,
    /// `file.f_inode`.
    pub file_f_inode: u32,
    /// `inode.i_sb`.
    pub inode_i_sb: u32,
    /// `inode.i_nlink` (`__i_nlink`).
    pub inode_i_nlink: u32,
    /// `super_block.s_magic`.
    pub sb_s_magic: u32,
    /// `dentry.d_parent`.
    pub dentry_d_parent: u32,
    /// `dentry.d_name` + `qstr.name`.
    pub dentry_d_name_name: u32,
    /// `dentry.d_sb`.
    pub dentry_d_sb: u32,
    /// `vfsmount.mnt_root`.
    pub vfsmount_mnt_root: u32,
    /// `mount.mnt` (the embedded `vfsmount`).
    pub mount_mnt: u32,
    /// `mount.mnt_parent`.
    pub mount_mnt_parent: u32,
    /// `mount.mnt_mountpoint`.
    pub mount_mnt_mountpoint: u32,
    /// `ovl_inode.__upperdentry` − `ovl_inode.vfs_inode`: from an overlay inode to its upper dentry.
    pub ovl_upperdentry_from_inode: u32,
    /// `cgroup.kn`.
    pub cgroup_kn: u32,
    /// `kernfs_node.id`.
    pub kernfs_node_id: u32,
    /// `kernfs_node.parent` (`__parent` since 6.15).
    pub kernfs_node_parent: u32,
    /// `file.f_flags` (open flags, `O_*`).
    pub file_f_flags: u32,
    /// `sock.sk_cgrp_data.cgroup` (the cgroup of the socket's creator).
    pub sock_cgroup: u32,
    /// `sock.__sk_common.skc_family`.
    pub sock_family: u32,
    /// `sock.__sk_common.skc_daddr` (IPv4 peer).
    pub sock_daddr: u32,
    /// `sock.__sk_common.skc_v6_daddr` (IPv6 peer).
    pub sock_v6_daddr: u32,
    /// `sock.__sk_common.skc_dport` (peer port, network order).
    pub sock_dport: u32,
    /// Explicit padding to keep the struct a multiple of 8 bytes.
    pub _pad_offsets: u32,
    /// `socket.type` (`SOCK_*`, a `short`).
    pub socket_type: u32,
    /// `cgroup.root` (the hierarchy a cgroup belongs to).
    pub cgroup_root: u32,
    /// `cgroup_root.hierarchy_id`: 0 for the unified (v2) hierarchy, the only one container
    /// cgroup ids are taken from; v1 hierarchies have ids of their own that may collide.
    pub cgroup_root_hierarchy_id: u32,
    /// `linux_binprm.filename` (the name `execve` was given).
    pub bprm_filename: u32,
    /// `linux_binprm.interp` (differs from `filename` after `#!` or binfmt_misc).
    pub bprm_interp: u32,
    /// `mm_struct.env_start`.
    pub mm_env_start: u32,
    /// `mm_struct.env_end`.
    pub mm_env_end: u32,
    /// `mm_struct.exe_file`.
    pub mm_exe_file: u32,
    /// `vm_area_struct.vm_file`.
    pub vma_vm_file: u32,
    /// `vm_area_struct.vm_flags`.
    pub vma_vm_flags: u32,
    /// `file.f_mode` (`FMODE_*`).
    pub file_f_mode: u32,
    /// `socket.sk`.
    pub socket_sk: u32,
    /// `sock.__sk_common.skc_num` (local port, host order).
    pub sock_num: u32,
    /// `sock.sk_protocol`.
    pub sock_protocol: u32,
    /// `msghdr.msg_name`.
    pub msghdr_msg_name: u32,
    /// `msghdr.msg_namelen`.
    pub msghdr_msg_namelen: u32,
    /// `dentry.d_inode`.
    pub dentry_d_inode: u32,
    /// `inode.i_mode`.
    pub inode_i_mode: u32,
    /// `task_struct.files` (the opt-in syscall hooks find an opened file by its descriptor).
    pub task_files: u32,
    /// `files_struct.fdt`.
    pub files_fdt: u32,
    /// `fdtable.fd` (the array of `struct file *`).
    pub fdtable_fd: u32,
    /// `fdtable.max_fds`.
    pub fdtable_max_fds: u32,
    /// `super_block.s_fs_info` (overlayfs: its `struct ovl_fs`).
    pub sb_s_fs_info: u32,
    /// `ovl_fs.layers` (the array of `struct ovl_layer`; index 0 is the upper layer).
    pub ovl_fs_layers: u32,
    /// `ovl_fs.numlayer` (upper included).
    pub ovl_fs_numlayer: u32,
    /// `sizeof(struct ovl_layer)`.
    pub ovl_layer_size: u32,
    /// `ovl_layer.mnt` (the layer's private mount: the mount of the backing files overlayfs
    /// opens on that layer, which is what an overlay file's mapping holds).
    pub ovl_layer_mnt: u32,
}
