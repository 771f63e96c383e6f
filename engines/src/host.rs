//! What the host itself tells about a running container, whatever the runtime said.

use crate::{cgroup_path, record::ContainerRecord, rootfs};

/// What the host can tell about a running container: its cgroup as the kernel reports it for
/// the init process (when readable from here; else the spec's path stays), and its overlay
/// upper directory.
pub fn complete(mut r: ContainerRecord) -> ContainerRecord {
    if let Some(pid) = r.init_pid {
        if let Some(p) = cgroup_path::unified_path_of_pid(pid) {
            r.cgroup_path = Some(p);
        }
        if let Some(upper) = rootfs::overlay_upper_dir_of_pid(pid) {
            r.upper_dir = Some(upper);
        }
    }
    r
}
