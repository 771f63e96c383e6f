//! The daemon's side of learning and promotion: the state directory and the learner at start,
//! each emitted event to the learner and (when it is a violation) to its profile's clock,
//! containers with what of them is watched, the clock's set installed, and promotions on the
//! tick, each reported by an agent event.

use seawall_profile::{HumanDuration, Mode, Profile, ProfileSet};
use seawall_proto::event::{Action, Event, Kind, Severity};
use seawall_service::ErrorChain;

use super::{config::AgentConfig, supervise::Tasks, Daemon, Stop};
use crate::learn::{
    self,
    promotion::{self, PromotionClock, STATE_FILE as CLOCK_FILE},
    state::{StateDir, StateWriter},
    LearnConfig, LearnQuery, Learner,
};

/// How often a changed behaviour summary is written to the state directory.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What learning and promotion need in the daemon.
pub(super) struct Learning {
    /// Hands events to the learner's task; none with `--no-learn`.
    pub learner: Option<Learner>,
    /// The local API's way to ask the learner.
    pub query: Option<LearnQuery>,
    /// The `enforce_after` clocks.
    pub promotion: PromotionClock,
}

/// Opens the state directory and starts the learner's task and the clocks' writer, both
/// joined with the daemon's other tasks. Without a usable state directory, both keep their
/// state in memory only (said loudly): enforcement does not depend on it.
pub(super) fn start(cfg: &AgentConfig, stop: &Stop, tasks: &mut Tasks) -> Learning {
    let state = match StateDir::open(&cfg.state_dir) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %ErrorChain(&e), "no state directory: learned behaviour and enforce_after clocks are kept in memory only and restart with the agent");
            None
        }
    };
    let (learner, query) = if cfg.learn {
        let (learner, query, task) = learn::start(
            LearnConfig {
                limits: seawall_profile::BehaviourLimits {
                    per_category: cfg.learn_per_category,
                },
                max_images: cfg.learn_max_images,
                save_every: SAVE_EVERY,
            },
            state.clone(),
            stop.wait(),
        );
        tasks.spawn("learner", task);
        (Some(learner), Some(query))
    } else {
        (None, None)
    };
    let (saved, writer) = match state {
        Some(state) => {
            let saved = state.load(CLOCK_FILE).unwrap_or_else(|e| {
                tracing::warn!(error = %ErrorChain(&e), "enforce_after clocks not restored: they start afresh");
                None
            });
            let (writer, task) = StateWriter::spawn(state, CLOCK_FILE, stop.wait());
            tasks.spawn("enforce_after clock writer", task);
            (saved, Some(writer))
        }
        None => (None, None),
    };
    Learning {
        learner,
        query,
        promotion: PromotionClock::new(saved, writer),
    }
}

/// Whether a container under `p` has its raw and packet sockets reported by the kernel.
fn raw_sockets_watched(p: &Profile) -> bool {
    p.network.mode != Mode::Off && p.network.block_raw_sockets
}

impl Daemon {
    /// An event on its way to the sinks: to the learner, and a violation to its profile's
    /// clock (events of a container not in the table ran under the default profile).
    pub(super) fn learn_from(&mut self, ev: &Event) {
        if let Some(l) = &mut self.learner {
            l.observe(ev);
        }
        let violation = ev.action != Action::Allowed
            && matches!(ev.kind, Kind::Exec | Kind::File | Kind::Network);
        if !violation {
            return;
        }
        let profile = ev
            .container
            .as_ref()
            .and_then(|c| self.containers.cgroup_of(&c.id))
            .and_then(|cg| self.containers.get(cg))
            .map(|c| c.profile.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or(seawall_profile::DEFAULT_PROFILE_NAME)
            .to_string();
        self.promotion.violation(&profile, promotion::now());
    }

    /// A container registered under `profile`: the learner hears of it once, with what of it
    /// is watched.
    pub(super) fn learn_container(
        &mut self,
        info: &crate::runtime::table::ContainerInfo,
        files_watched: bool,
    ) {
        let Some(l) = &mut self.learner else {
            return;
        };
        let raw = self
            .profiles
            .profiles()
            .find(|p| p.name == info.profile)
            .is_some_and(raw_sockets_watched);
        l.container_started(&info.image, &info.image_id, &info.id, files_watched, raw);
    }

    /// The set to install for `loaded` (the profiles as their files say): the clocks are
    /// brought up to date and the profiles whose clock ran out are promoted.
    pub(super) fn promoted_set(&mut self, loaded: ProfileSet) -> ProfileSet {
        self.promotion.sync(&loaded, promotion::now());
        let in_force = self.promotion.apply(&loaded);
        self.loaded = loaded;
        self.promotion.save();
        self.refresh_promotions();
        in_force
    }

    /// On the tick: promotes the profiles whose clock ran out (an agent event each, then the
    /// promoted set installed), and saves the clocks when they changed.
    pub(super) async fn promote_due(&mut self) {
        let due = self.promotion.due(promotion::now());
        for p in &due {
            let since = time::OffsetDateTime::from_unix_timestamp(p.since)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            tracing::info!(profile = %p.profile, %since, "enforce_after: no violation for the whole period, switching the profile to enforce");
            let ev = self.events.event(
                Kind::Agent,
                Action::Allowed,
                "promotion",
                Severity::Low,
                format!(
                    "profile {} promoted to enforce: no violation for {} (since {since}, enforce_after); its controls that follow the profile's mode now block",
                    p.profile,
                    HumanDuration(p.after)
                ),
            );
            self.emit(ev);
        }
        if !due.is_empty() {
            let loaded = self.loaded.clone();
            if let Err(e) = self.install(loaded).await {
                tracing::error!(error = %ErrorChain(&e), "installing the promoted profiles failed; the previous policy stays");
            }
            self.refresh_status();
        }
        if self.promotion.dirty() {
            self.promotion.save();
            self.refresh_promotions();
        }
    }

    fn refresh_promotions(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.promotions = self.promotion.status();
        }
    }
}
