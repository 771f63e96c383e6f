//! Just enough of the bpf(2) syscall for the fault tests to look at and tamper with the maps an
//! agent pinned (read their shape and keys, fill them, replace them) and to count the programs
//! loaded on the machine, without any tool or crate beyond libc.

use std::{ffi::CString, io, os::fd::FromRawFd, os::fd::OwnedFd, path::Path};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `BPF_MAP_TYPE_HASH`.
pub const MAP_TYPE_HASH: u32 = 1;

/// bpf(2) with a zeroed attribute block the caller filled.
fn sys_bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: the kernel reads at most `size` bytes of `attr`, which is that long.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: a fresh fd the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn raw(fd: &OwnedFd) -> u64 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd() as u64
}

/// Opens a pinned object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    sys_bpf(BPF_OBJ_GET, &mut attr).map(owned)
}

/// Pins `fd` at `path`.
pub fn obj_pin(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    attr[1] = raw(fd);
    sys_bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// A new map.
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> io::Result<OwnedFd> {
    let mut attr = [0u64; 16];
    attr[0] = map_type as u64 | (key_size as u64) << 32;
    attr[1] = value_size as u64 | (max_entries as u64) << 32;
    sys_bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// (type, key size, value size, max entries) of a map.
pub fn map_shape(fd: &OwnedFd) -> io::Result<(u32, u32, u32, u32)> {
    let mut info = [0u32; 32];
    let mut attr = [0u64; 16];
    attr[0] = raw(fd) | ((std::mem::size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    // struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, ...
    Ok((info[0], info[2], info[3], info[4]))
}

/// Writes `key` → `value` (any flags: create or replace).
pub fn map_update(fd: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = [0u64; 16];
    attr[0] = raw(fd);
    attr[1] = key.as_ptr() as u64;
    attr[2] = value.as_ptr() as u64;
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Every u64 key of a map.
pub fn map_u64_keys(fd: &OwnedFd) -> Vec<u64> {
    let mut keys = Vec::new();
    let mut next = 0u64;
    let mut first = true;
    loop {
        let current = next;
        let mut attr = [0u64; 16];
        attr[0] = raw(fd);
        attr[1] = if first {
            0
        } else {
            &current as *const u64 as u64
        };
        attr[2] = &mut next as *mut u64 as u64;
        if sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut attr).is_err() {
            return keys;
        }
        first = false;
        keys.push(next);
    }
}

/// How many programs loaded on the machine have `name` (the kernel keeps 15 characters).
pub fn programs_named(name: &str) -> usize {
    let want = &name.as_bytes()[..name.len().min(15)];
    let mut id = 0u32;
    let mut n = 0;
    loop {
        let mut attr = [0u64; 16];
        attr[0] = id as u64;
        if sys_bpf(BPF_PROG_GET_NEXT_ID, &mut attr).is_err() {
            return n;
        }
        id = (attr[0] >> 32) as u32;
        let mut by_id = [0u64; 16];
        by_id[0] = id as u64;
        let Ok(fd) = sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id).map(owned) else {
            continue;
        };
        let mut info = [0u8; 256];
        let mut attr = [0u64; 16];
        attr[0] = raw(&fd) | ((info.len() as u64) << 32);
        attr[1] = info.as_mut_ptr() as u64;
        if sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_err() {
            continue;
        }
        // struct bpf_prog_info: the name (16 bytes) sits at offset 64.
        let prog_name = &info[64..80];
        let len = prog_name.iter().position(|&b| b == 0).unwrap_or(16);
        if &prog_name[..len] == want {
            n += 1;
        }
    }
}
