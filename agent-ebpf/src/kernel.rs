//! Reading kernel memory at offsets the agent resolved from the running kernel's BTF.

use agent_common::KernelOffsets;
use aya_ebpf::helpers::bpf_probe_read_kernel;

/// Set by the loader (`EbpfLoader::set_global`) from `/sys/kernel/btf/vmlinux`; all zero here.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_real_parent: 0,
    task_fs: 0,
    task_mm: 0,
    task_exit_code: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    fs_root: 0,
    path_mnt: 0,
    path_dentry: 0,
    bprm_file: 0,
    file_f_path: 0,
    file_f_inode: 0,
    inode_i_sb: 0,
    inode_i_nlink: 0,
    sb_s_magic: 0,
    dentry_d_parent: 0,
    dentry_d_name_name: 0,
    dentry_d_sb: 0,
    vfsmount_mnt_root: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    mount_mnt_mountpoint: 0,
    ovl_upperdentry_from_inode: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    kernfs_node_parent: 0,
    file_f_flags: 0,
    sock_cgroup: 0,
    sock_family: 0,
    sock_daddr: 0,
    sock_v6_daddr: 0,
    sock_dport: 0,
    _pad_offsets: 0,
    socket_type: 0,
    cgroup_root: 0,
    cgroup_root_hierarchy_id: 0,
    bprm_filename: 0,
    bprm_interp: 0,
    mm_env_start: 0,
    mm_env_end: 0,
    mm_exe_file: 0,
    vma_vm_file: 0,
    vma_vm_flags: 0,
    file_f_mode: 0,
    socket_sk: 0,
    sock_num: 0,
    sock_protocol: 0,
    msghdr_msg_name: 0,
    msghdr_msg_namelen: 0,
    dentry_d_inode: 0,
    inode_i_mode: 0,
    task_files: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    fdtable_max_fds: 0,
    sb_s_fs_info: 0,
    ovl_fs_layers: 0,
    ovl_fs_numlayer: 0,
    ovl_layer_size: 0,
    ovl_layer_mnt: 0,
};

/// 1 when the agent wants events of host processes too.
#[unsafe(no_mangle)]
static HOST_EVENTS: u32 = 0;

/// The offsets, read so the compiler cannot fold the all-zero initializer.
#[inline(always)]
pub fn offsets() -> &'static KernelOffsets {
    // SAFETY: a read-only global; the volatile read defeats constant folding.
    unsafe { core::ptr::read_volatile(&&OFFSETS) }
}

#[inline(always)]
pub fn host_events() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&HOST_EVENTS) != 0 }
}

/// Reads a `T` at `base + off`.
#[inline(always)]
pub unsafe fn read<T>(base: u64, off: u32) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).map_err(|e| e as i64) }
}

/// Reads a pointer at `base + off`, failing on NULL.
#[inline(always)]
pub unsafe fn read_ptr(base: u64, off: u32) -> Result<u64, i64> {
    let p: u64 = unsafe { read(base, off)? };
    if p == 0 {
        Err(-14)
    } else {
        Ok(p)
    }
}

/// Fills the common head from the current task.
#[inline(always)]
pub fn fill_header(
    h: &mut agent_common::EventHeader,
    kind: u32,
    container_cgroup_id: u64,
    ppid: u32,
) {
    use aya_ebpf::helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    };
    h.kind = kind;
    h.control = agent_common::CONTROL_NONE;
    h.action = agent_common::ACTION_ALLOWED;
    h.tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    h.ppid = ppid;
    h.uid = bpf_get_current_uid_gid() as u32;
    // SAFETY: plain helper calls.
    h.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.container_cgroup_id = container_cgroup_id;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // Numbered as it enters the ring (`emit::submit`).
    h.seq = 0;
}
