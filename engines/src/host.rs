//! What the host itself tells about a running container, whatever the runtime said.

use crate::{cgroup_path, record::ContainerRecord, rootfs};

/// What the host can tell about a running container: its cgroup as the kernel reports it for
/// the init process (when readable from here; else the spec's path stays), its overlay upper
/// directory, and, when the runtime did not say, where its merged root is mounted here.
pub fn complete(mut r: ContainerRecord) -> ContainerRecord {
    if let Some(pid) = r.init_pid {
        if let Some(p) = cgroup_path::unified_path_of_pid(pid) {
            r.cgroup_path = Some(p);
        }
        if let Some(upper) = rootfs::overlay_upper_dir_of_pid(pid) {
            r.upper_dir = Some(upper);
        }
    }
    if r.rootfs.is_none() {
        r.rootfs = r.upper_dir.as_deref().and_then(rootfs::merged_dir_of_upper);
    }
    r
}
