//! Container cgroup names, the one rule both sides apply (bounded loops and masked indexes, as
//! the verifier needs them).

use crate::{CGROUP_PATH_BUF, CONTAINER_ID_HEX};

/// The byte at `i`, masked into the buffer (the verifier needs every index provably in range).
#[inline(always)]
fn at(buf: &[u8; CGROUP_PATH_BUF], i: usize) -> u8 {
    buf[i & (CGROUP_PATH_BUF - 1)]
}

#[inline(always)]
fn starts_with(buf: &[u8; CGROUP_PATH_BUF], start: usize, prefix: &[u8]) -> bool {
    let mut k = 0;
    while k < prefix.len() {
        if at(buf, start + k) != prefix[k] {
            return false;
        }
        k += 1;
    }
    true
}

/// Whether the `CONTAINER_ID_HEX` bytes at `start` are hex digits.
#[inline(always)]
fn hex_id_at(buf: &[u8; CGROUP_PATH_BUF], start: usize) -> bool {
    let mut k = 0;
    while k < CONTAINER_ID_HEX {
        if !at(buf, start + k).is_ascii_hexdigit() {
            return false;
        }
        k += 1;
    }
    true
}

/// Where a last component of `leaf_len` bytes starts in a path of `len` bytes, when the byte
/// before it is the `/` that makes it a component of its own.
#[inline(always)]
fn leaf_of(buf: &[u8; CGROUP_PATH_BUF], len: usize, leaf_len: usize) -> Option<usize> {
    if len <= leaf_len {
        return None;
    }
    let leaf = len - leaf_len;
    (at(buf, leaf - 1) == b'/').then_some(leaf)
}

/// Whether the last component is `<prefix><64 hex><suffix>`.
#[inline(always)]
fn leaf_is(buf: &[u8; CGROUP_PATH_BUF], len: usize, prefix: &[u8], suffix: &[u8]) -> Option<usize> {
    let leaf = leaf_of(buf, len, prefix.len() + CONTAINER_ID_HEX + suffix.len())?;
    (starts_with(buf, leaf, prefix)
        && starts_with(buf, leaf + prefix.len() + CONTAINER_ID_HEX, suffix)
        && hex_id_at(buf, leaf + prefix.len()))
    .then_some(leaf)
}

/// Whether the component that ends just before the `/` at `slash` is a `pod<uid>` directory
/// (more than the three letters). Scans back at most [`POD_DIR_MAX`] bytes: one loop variable,
/// so the verifier walks it once.
#[inline(always)]
fn in_pod_dir(buf: &[u8; CGROUP_PATH_BUF], slash: usize) -> bool {
    let mut k = 1;
    while k <= POD_DIR_MAX {
        if k > slash {
            return false;
        }
        if at(buf, slash - k) == b'/' {
            return k > 4 && starts_with(buf, slash - k + 1, b"pod");
        }
        k += 1;
    }
    false
}

/// The longest pod directory name looked for: `pod` and a UUID is 39 bytes.
const POD_DIR_MAX: usize = 64;

/// Whether the last component of the cgroup path in `buf` (`len` bytes, no NUL) names a
/// container, as the runtimes name them. The kernel decides with it at `cgroup_mkdir` (below a
/// [`PARENT_NESTED`](crate::PARENT_NESTED) parent) and the agent with the same code, so the two cannot disagree on
/// which cgroup is a container:
/// - `<prefix><64 hex>.scope` for `cri-containerd-` (containerd's CRI plugin), `crio-`,
///   `docker-` (Docker and cri-dockerd) and `libpod-` (podman) under the systemd driver.
///   CRI-O's and podman's monitors (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) do
///   not fit;
/// - `<64 hex>` or `crio-<64 hex>` whose parent is a `pod<uid>` directory (cgroupfs driver);
/// - `libpod-<64 hex>` (podman, cgroupfs; its monitor is `conmon`).
///
/// Host services (`foo.service`), sessions, slices and pod or QoS levels never fit. Every
/// candidate has a fixed length, so the rule looks at the end of the path only and never
/// searches it (a search for the last `/` is more than the verifier will walk).
#[inline(always)]
pub fn names_a_container(buf: &[u8; CGROUP_PATH_BUF], len: u32) -> bool {
    let len = len as usize;
    if len >= CGROUP_PATH_BUF {
        return false;
    }
    const SCOPE: &[u8] = b".scope";
    if leaf_is(buf, len, b"cri-containerd-", SCOPE).is_some()
        || leaf_is(buf, len, b"crio-", SCOPE).is_some()
        || leaf_is(buf, len, b"docker-", SCOPE).is_some()
        || leaf_is(buf, len, b"libpod-", SCOPE).is_some()
        || leaf_is(buf, len, b"libpod-", b"").is_some()
    {
        return true;
    }
    if let Some(leaf) = leaf_is(buf, len, b"", b"") {
        return in_pod_dir(buf, leaf - 1);
    }
    if let Some(leaf) = leaf_is(buf, len, b"crio-", b"") {
        return in_pod_dir(buf, leaf - 1);
    }
    false
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::CGROUP_PATH_BUF;
    use std::{format, string::ToString};

    /// `names_a_container` of a path, as the kernel sees it.
    fn names(path: &str) -> bool {
        let mut buf = [0u8; CGROUP_PATH_BUF];
        buf[..path.len()].copy_from_slice(path.as_bytes());
        names_a_container(&buf, path.len() as u32)
    }

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn container_cgroups_of_every_runtime_and_driver_are_named_so() {
        let pod =
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f6c4a4e_1b2c.slice";
        for path in [
            format!("{pod}/cri-containerd-{ID}.scope"),
            format!("{pod}/crio-{ID}.scope"),
            format!("{pod}/docker-{ID}.scope"),
            format!("/kubepods/burstable/pod0f6c4a4e-1b2c/{ID}"),
            format!("/kubepods/pod0f6c4a4e-1b2c/{ID}"),
            format!("/kubepods/besteffort/pod0f6c4a4e-1b2c/crio-{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/libpod-{ID}"),
        ] {
            assert!(names(&path), "{path}");
        }
    }

    #[test]
    fn host_services_pods_monitors_and_near_misses_are_not_containers() {
        let short = &ID[..63];
        for path in [
            "/system.slice/foo.service".to_string(),
            "/system.slice/containerd.service".to_string(),
            "/user.slice/user-1000.slice/session-3.scope".to_string(),
            "/init.scope".to_string(),
            "/kubepods".to_string(),
            "/kubepods/burstable".to_string(),
            "/kubepods/burstable/pod0f6c4a4e-1b2c".to_string(),
            "/kubepods.slice/kubepods-burstable.slice".to_string(),
            format!("/kubepods/pod0f6c4a4e/crio-conmon-{ID}"),
            format!("/kubepods.slice/kubepods-pod1.slice/crio-conmon-{ID}.scope"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            "/libpod_parent/conmon".to_string(),
            // A bare id needs a pod directory: `/docker/<id>` is a child rule, not a name rule.
            format!("/docker/{ID}"),
            format!("/kubepods/burstable/{ID}"),
            format!("/kubepods/pod/{ID}"),
            format!("/kubepods/burstable/pod1/{short}"),
            format!("/system.slice/docker-{short}.scope"),
            format!("/system.slice/docker-{ID}.service"),
            format!("/system.slice/docker-{ID}x.scope"),
            format!("/system.slice/docker-{}.scope", ID.replace('3', "g")),
            "".to_string(),
            "/".to_string(),
        ] {
            assert!(!names(&path), "{path}");
        }
    }
}
