//! A container's file controls made ready before anything of it runs: on the fallback its
//! literal and `dir/**` file rules become kernel-enforced mounts inside its mount namespace
//! (`fanotify::enforced`), then fanotify marks every mount it has, the new ones included. Both
//! need the container's mount namespace, which exists only once its init runs, so the kernel
//! holds the container's first exec (`RULES_HOLD_FIRST_EXEC`) until this is done; a container
//! already running is prepared at once, and a reload prepares it again (mounts of dropped rules
//! are removed, new ones made).

use seawall_profile::{Mode, Profile};
use seawall_proto::event::{Action, Severity};
use seawall_service::ErrorChain;

use super::Daemon;
use crate::{
    fanotify::enforced::{self, MountKind},
    runtime::cgroup,
};

impl Daemon {
    /// The profile called `name` (the default one when there is none).
    pub(super) fn profile_named(&self, name: &str) -> &Profile {
        self.profiles
            .profiles()
            .find(|p| p.name == name)
            .unwrap_or_else(|| self.profiles.default_profile())
    }

    /// Whether the container `cgroup_id` under `profile` must be prepared at its first exec:
    /// when fanotify watches it (its opens, scripts, or executed files for intel), or (on the
    /// fallback) its file rules become kernel-enforced mounts.
    pub(super) fn needs_preparing(&self, cgroup_id: u64, profile: &Profile) -> bool {
        self.files
            .as_ref()
            .is_some_and(|f| f.needs(cgroup_id, profile))
            || (!self.lsm_active && !mount_plan(profile).is_empty())
    }

    /// Prepares a registered container at its held first exec (`pid` is the held process,
    /// already in the container's mount namespace), unless it was prepared already.
    pub(super) fn prepare_at_first_exec(&mut self, cgroup_id: u64, pid: u32) {
        if self.prepared.contains_key(&cgroup_id) {
            return;
        }
        let Some(c) = self.containers.get(cgroup_id) else {
            return;
        };
        let profile = self.profile_named(&c.profile.clone()).clone();
        if self.needs_preparing(cgroup_id, &profile) {
            self.prepare_container(cgroup_id, pid, &profile);
        }
    }

    /// Inside the mount namespace of `pid` (a process of the container): makes the
    /// kernel-enforced mounts of its file rules (removing those a reload dropped), then marks
    /// every mount for fanotify.
    pub(super) fn prepare_container(&mut self, cgroup_id: u64, pid: u32, profile: &Profile) {
        // Mounts are made in the namespace of `pid`: never unless it is the container's own
        // (a pid reused by a host process would put them on the host).
        if !self.pid_in_container(pid, cgroup_id) {
            tracing::warn!(
                container_cgroup_id = cgroup_id,
                pid,
                "the process to prepare the container through has left it: not prepared"
            );
            return;
        }
        // Nor in a namespace that is not the container's own: a process of the container's
        // cgroup still in the host's (a runtime's helper) would put them on the host.
        if let Some(why) = host_mount_namespace(pid) {
            tracing::error!(container_cgroup_id = cgroup_id, pid, reason = %why, "not preparing the container through a process outside its mount namespace");
            self.agent_event(
                Action::Allowed,
                Severity::High,
                format!("file rules of container cgroup {cgroup_id} are not prepared: {why}"),
            );
            return;
        }
        let mut made = Vec::new();
        if !self.lsm_active {
            // BPF LSM decides on the inode; the mounts are the fallback's way to the same.
            let plan = mount_plan(profile);
            let old = self
                .prepared
                .remove(&cgroup_id)
                .map(|(_, m)| m)
                .unwrap_or_default();
            let stale: Vec<_> = old.iter().filter(|m| !plan.contains(m)).cloned().collect();
            if let Err(e) = enforced::remove(pid, &stale) {
                tracing::warn!(container_cgroup_id = cgroup_id, error = %ErrorChain(&e), "removing mounts of dropped file rules failed");
            }
            made.extend(old.into_iter().filter(|m| plan.contains(m)));
            let new: Vec<_> = plan.iter().filter(|m| !made.contains(m)).cloned().collect();
            match enforced::apply(pid, &new) {
                Ok(applied) => {
                    if !applied.made.is_empty() {
                        tracing::info!(
                            container_cgroup_id = cgroup_id,
                            mounts = applied.made.len(),
                            missing = applied.missing.len(),
                            "file rules kernel-enforced by mounts in the container"
                        );
                    }
                    made.extend(applied.made);
                }
                Err(e) => {
                    let reason = ErrorChain(&e).to_string();
                    tracing::error!(container_cgroup_id = cgroup_id, error = %reason, "making the container's file rules kernel-enforced failed: fanotify still decides its opens");
                    self.agent_event(
                        Action::Allowed,
                        Severity::High,
                        format!("file rules of container cgroup {cgroup_id} are not kernel-enforced: {reason}"),
                    );
                }
            }
        }
        let read_only: Vec<Vec<u8>> = made
            .iter()
            .filter(|m| m.kind == MountKind::ReadOnly)
            .map(|m| m.path.as_bytes().to_vec())
            .collect();
        self.prepared.insert(cgroup_id, (pid, made));
        if let Some(files) = &mut self.files {
            if let Err(e) = files.watch_mounts(cgroup_id, pid, &read_only) {
                tracing::warn!(container_cgroup_id = cgroup_id, error = %ErrorChain(&e), "file controls unavailable for this container");
            }
        }
    }

    /// A process of a container that is running already (or was prepared before, and this is
    /// a reload): the pid it was prepared through while that lives, else its init.
    pub(super) fn running_pid(&self, cgroup_id: u64, init_pid: u32) -> Option<u32> {
        self.prepared
            .get(&cgroup_id)
            .map(|(pid, _)| *pid)
            .filter(|pid| self.pid_in_container(*pid, cgroup_id))
            .or((init_pid != 0).then_some(init_pid))
    }

    /// Whether `pid` is (still) in the container cgroup `cgroup_id`.
    pub(super) fn pid_in_container(&self, pid: u32, cgroup_id: u64) -> bool {
        cgroup::pid_cgroup(pid)
            .and_then(|p| self.parents.container_dir_of_init(&p))
            .and_then(|d| cgroup::cgroup_id(&d).ok())
            == Some(cgroup_id)
    }
}

/// The kernel-enforced mounts `profile` asks for.
fn mount_plan(profile: &Profile) -> Vec<enforced::PlannedMount> {
    enforced::plan(&profile.files, profile.drift.mode == Mode::Enforce)
}

/// Why `pid`'s mount namespace must not be entered to prepare a container: it is the agent's
/// own or init's (the host's), or it cannot be told. `None` when it is another one.
fn host_mount_namespace(pid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let theirs = match ns(&format!("/proc/{pid}/ns/mnt")) {
        Ok(n) => n,
        Err(e) => return Some(format!("its mount namespace cannot be read: {e}")),
    };
    match ns("/proc/self/ns/mnt") {
        Ok(n) if n == theirs => {
            return Some(format!("process {pid} is in the agent's mount namespace"))
        }
        Ok(_) => {}
        Err(e) => return Some(format!("the agent's mount namespace cannot be read: {e}")),
    }
    // init's, where it can be read: reading another process's namespace takes ptrace access,
    // which the agent may lack for init (it then has its own, checked above).
    match ns("/proc/1/ns/mnt") {
        Ok(n) if n == theirs => Some(format!("process {pid} is in init's mount namespace")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::host_mount_namespace;

    #[test]
    fn the_agents_own_and_unreadable_namespaces_are_never_entered() {
        let own = host_mount_namespace(std::process::id()).expect("own namespace refused");
        assert!(own.contains("the agent's"), "{own}");
        let gone = host_mount_namespace(u32::MAX).expect("unreadable namespace refused");
        assert!(gone.contains("cannot be read"), "{gone}");
    }

    #[test]
    fn a_process_in_a_mount_namespace_of_its_own_may_be_prepared_through() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: unsharing a mount namespace needs root");
            return;
        }
        let mut child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "30"])
            .spawn()
            .expect("unshare");
        let pid = child.id();
        // `unshare` execs `sleep` once it is in the new namespace.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut verdict = host_mount_namespace(pid);
        while verdict.is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            verdict = host_mount_namespace(pid);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(verdict, None);
    }
}
