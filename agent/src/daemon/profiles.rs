//! Profiles in force: the initial load, reloads on SIGHUP or a changed directory, and the
//! ordered swap (new rules, then every container, then the old rules go).

use std::{path::Path, time::SystemTime};

use seawall_profile::ProfileSet;
use seawall_proto::event::{Action, Severity};
use seawall_service::ErrorChain;

use super::{start::StartError, Daemon, DaemonError};
use crate::{policy::compile, runtime::table::ContainerInfo};

/// Profiles at start: a missing directory falls back to the built-in default (drift in
/// audit), an invalid one is fatal (there is no previous policy to keep).
pub fn initial(dir: &Path) -> Result<ProfileSet, StartError> {
    if !dir.exists() {
        tracing::warn!(dir = %dir.display(), "profiles directory not found: using the built-in default profile (drift: audit)");
        return Ok(ProfileSet::builtin_default());
    }
    ProfileSet::load_dir(dir).map_err(|report| StartError::Profiles {
        dir: dir.to_owned(),
        report,
    })
}

/// Newest modification time in the profiles directory (reload trigger).
pub fn stamp(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    }
    Some(newest)
}

impl Daemon {
    /// Compiles `loaded` (with the promotions its `enforce_after` clocks made) under fresh ids
    /// and swaps it in: at no moment is a container without a complete policy.
    pub(super) async fn install(&mut self, loaded: ProfileSet) -> Result<(), DaemonError> {
        let set = self.promoted_set(loaded);
        let mut compiled = compile::compile_set(&set, &mut self.next_profile_id)?;
        self.intel.set_policy_modes(&mut compiled, &set);
        let old_paths = self.compiled.all_path_rules();
        let old_nets: Vec<_> = self
            .compiled
            .all_net_rules()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        self.kernel
            .insert_rules(compiled.all_path_rules(), compiled.all_net_rules())
            .await?;
        self.kernel
            .set_default_policy(compiled.default_policy())
            .await?;
        self.profiles = set;
        self.compiled = compiled;
        // Point each container at its new policy, then drop the old rules.
        self.reregister_all().await;
        self.kernel.remove_rules(old_paths, old_nets).await?;
        Ok(())
    }

    /// Registers every known container again under what is in force now.
    pub(super) async fn reregister_all(&mut self) {
        let rows: Vec<(u64, ContainerInfo)> = self
            .containers
            .iter()
            .map(|(c, i)| (*c, i.clone()))
            .collect();
        let live = self.parents.live_ids();
        for (cg, info) in rows {
            // A container whose cgroup went meanwhile gets no policy written for it.
            if live.contains(&cg) {
                self.register(cg, info).await;
            }
        }
    }

    /// Reloads the profiles directory; an invalid set is rejected and the previous one stays.
    pub(super) async fn reload(&mut self) {
        let dir = self.cfg.profiles.clone();
        match ProfileSet::load_dir(&dir) {
            Ok(set) => match self.install(set).await {
                Ok(()) => {
                    self.metrics.profile_reload(true);
                    tracing::info!(dir = %dir.display(), "profiles reloaded");
                    self.agent_event(
                        Action::Allowed,
                        Severity::Info,
                        format!("profiles reloaded from {}", dir.display()),
                    );
                }
                Err(e) => {
                    self.metrics.profile_reload(false);
                    let reason = ErrorChain(&e).to_string();
                    tracing::error!(error = %reason, "installing reloaded profiles failed; the previous policy stays");
                    self.agent_event(
                        Action::Allowed,
                        Severity::High,
                        format!("profile reload failed, previous policy stays: {reason}"),
                    );
                }
            },
            Err(report) => {
                self.metrics.profile_reload(false);
                tracing::error!(dir = %dir.display(), "invalid profiles; the previous policy stays:\n{report}");
                self.agent_event(
                    Action::Allowed,
                    Severity::High,
                    format!(
                        "profile reload rejected, previous policy stays: {}",
                        report.to_string().trim()
                    ),
                );
            }
        }
        self.refresh_status();
    }
}
