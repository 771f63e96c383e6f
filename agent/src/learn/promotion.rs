//! The `enforce_after` clock: a profile that says `enforce_after = "7d"` stays in audit until
//! that long has passed without a violation by any of its containers, then switches itself to
//! enforce ([`seawall_profile::Profile::promoted`]). Any violation restarts the clock.
//!
//! Each clock belongs to one version of one profile file: editing the file (new rules, a new
//! period) starts its clock afresh, and a promoted profile whose file changed is back in audit
//! until the new version has earned its promotion. Clocks are wall-clock time and survive
//! restarts (they are kept in the state directory), so time the agent was down counts as time
//! without a violation. Nothing else here changes policy: the daemon installs [`apply`]'s set.
//!
//! [`apply`]: PromotionClock::apply

use std::{collections::BTreeMap, time::Duration};

use seawall_profile::{HumanDuration, Profile, ProfileSet, UnixSeconds};
use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::state::StateWriter;

/// The state file of the clocks.
pub const STATE_FILE: &str = "promotion.json";

/// The version of [`ClockFile`]'s layout.
const FORMAT: u32 = 1;

/// One profile's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProfileClock {
    /// The profile file's contents this clock is for (FNV-1a, hex).
    fingerprint: String,
    /// `enforce_after`, in seconds.
    after_secs: u64,
    /// When the clock (re)started: the profile was first loaded, or its last violation.
    since: UnixSeconds,
    /// Violations that restarted it.
    #[serde(default)]
    violations: u64,
    /// When it was promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promoted: Option<UnixSeconds>,
}

/// The clocks as saved in the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockFile {
    format: u32,
    profiles: BTreeMap<String, ProfileClock>,
}

/// A profile whose clock ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// The profile's name.
    pub profile: String,
    /// Since when it ran without a violation.
    pub since: UnixSeconds,
    /// Its `enforce_after`.
    pub after: Duration,
}

/// One clock as `seawall status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionStatus {
    /// The profile's name.
    pub profile: String,
    /// Its `enforce_after` (`7d`).
    pub enforce_after: String,
    /// When the clock (re)started, RFC 3339.
    pub since: String,
    /// Violations that restarted it.
    pub violations: u64,
    /// When it switches to enforce unless a violation restarts the clock (not yet promoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotes_at: Option<String>,
    /// When it was switched to enforce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
}

/// Every `enforce_after` clock of the profiles in force.
#[derive(Debug, Default)]
pub struct PromotionClock {
    clocks: BTreeMap<String, ProfileClock>,
    dirty: bool,
    writer: Option<StateWriter>,
}

/// Seconds since the epoch, now.
pub fn now() -> UnixSeconds {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(t: UnixSeconds) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{t}"))
}

/// What a clock is for: the bytes of the profile's file, or (when it cannot be read any more)
/// the profile as parsed.
fn fingerprint(p: &Profile) -> String {
    let bytes = std::fs::read(&p.source).unwrap_or_else(|_| format!("{p:?}").into_bytes());
    // FNV-1a: stable across builds and versions, which is all a file identity needs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl PromotionClock {
    /// The clocks as saved (none when there is no state yet), written through `writer` from
    /// now on (kept in memory only without one).
    pub fn new(saved: Option<ClockFile>, writer: Option<StateWriter>) -> PromotionClock {
        let clocks = match saved {
            Some(f) if f.format == FORMAT => f.profiles,
            Some(f) => {
                tracing::warn!(
                    format = f.format,
                    "promotion clocks saved in an unknown format: starting them afresh"
                );
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        };
        PromotionClock {
            clocks,
            dirty: false,
            writer,
        }
    }

    /// Keeps the clock of every profile of `set` with `enforce_after` whose file is unchanged,
    /// starts one at `now` for each new or changed one, and forgets the rest.
    pub fn sync(&mut self, set: &ProfileSet, now: UnixSeconds) {
        let mut kept = BTreeMap::new();
        for p in set.profiles() {
            let Some(after) = &p.enforce_after else {
                continue;
            };
            let fingerprint = fingerprint(p);
            let after_secs = after.after.as_secs();
            let clock = match self.clocks.remove(&p.name) {
                Some(c) if c.fingerprint == fingerprint && c.after_secs == after_secs => c,
                previous => {
                    tracing::info!(profile = %p.name, enforce_after = %HumanDuration(after.after), changed = previous.is_some(), "promotion clock started: the profile audits until that long passes without a violation");
                    self.dirty = true;
                    ProfileClock {
                        fingerprint,
                        after_secs,
                        since: now,
                        violations: 0,
                        promoted: None,
                    }
                }
            };
            kept.insert(p.name.clone(), clock);
        }
        self.dirty |= !self.clocks.is_empty();
        self.clocks = kept;
    }

    /// `set` with the profiles whose clock ran out promoted: the set to install.
    pub fn apply(&self, set: &ProfileSet) -> ProfileSet {
        set.with_promoted(|p| self.is_promoted(&p.name))
    }

    /// Whether `profile` was promoted.
    pub fn is_promoted(&self, profile: &str) -> bool {
        self.clocks
            .get(profile)
            .is_some_and(|c| c.promoted.is_some())
    }

    /// A container under `profile` did something its profile reports: the clock restarts.
    pub fn violation(&mut self, profile: &str, at: UnixSeconds) {
        if let Some(c) = self.clocks.get_mut(profile) {
            if c.promoted.is_none() {
                c.since = c.since.max(at);
                c.violations += 1;
                self.dirty = true;
            }
        }
    }

    /// The profiles whose period has passed without a violation by `now`: marked promoted.
    pub fn due(&mut self, now: UnixSeconds) -> Vec<Promoted> {
        let mut out = Vec::new();
        for (name, c) in &mut self.clocks {
            let elapsed = now.saturating_sub(c.since);
            if c.promoted.is_none() && elapsed >= 0 && elapsed as u64 >= c.after_secs {
                c.promoted = Some(now);
                self.dirty = true;
                out.push(Promoted {
                    profile: name.clone(),
                    since: c.since,
                    after: Duration::from_secs(c.after_secs),
                });
            }
        }
        out
    }

    /// Whether anything changed since the last [`PromotionClock::save`].
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Hands the clocks to the state writer when they changed.
    pub fn save(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let Some(w) = &self.writer else {
            return;
        };
        let file = ClockFile {
            format: FORMAT,
            profiles: self.clocks.clone(),
        };
        match serde_json::to_vec_pretty(&file) {
            Ok(bytes) => w.write(bytes),
            Err(e) => tracing::error!(error = %e, "encoding the promotion clocks failed"),
        }
    }

    /// Every clock, for `seawall status`.
    pub fn status(&self) -> Vec<PromotionStatus> {
        self.clocks
            .iter()
            .map(|(name, c)| PromotionStatus {
                profile: name.clone(),
                enforce_after: HumanDuration(Duration::from_secs(c.after_secs)).to_string(),
                since: rfc3339(c.since),
                violations: c.violations,
                promotes_at: c
                    .promoted
                    .is_none()
                    .then(|| rfc3339(c.since.saturating_add(c.after_secs as i64))),
                promoted_at: c.promoted.map(rfc3339),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_in(dir: &std::path::Path, files: &[(&str, &str)]) -> ProfileSet {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        ProfileSet::load_dir(dir).unwrap()
    }

    const WEB: &str = "[profile]\nname = \"web\"\nimages = [\"nginx*\"]\nenforce_after = \"1h\"\n[drift]\nprevent = true\n";
    const T: UnixSeconds = 1_790_000_000;

    #[test]
    fn switches_after_the_period_and_a_violation_restarts_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let set = set_in(dir.path(), &[("web.toml", WEB)]);
        let mut clock = PromotionClock::new(None, None);
        clock.sync(&set, T);
        assert!(clock.due(T + 3599).is_empty());
        clock.violation("web", T + 1800);
        assert!(clock.due(T + 3600).is_empty(), "the violation restarted it");
        assert_eq!(clock.status()[0].violations, 1);
        assert_eq!(
            clock.status()[0].promotes_at.as_deref(),
            Some("2026-09-21T15:43:20Z")
        );
        let due = clock.due(T + 1800 + 3600);
        assert_eq!(
            due,
            [Promoted {
                profile: "web".into(),
                since: T + 1800,
                after: Duration::from_secs(3600)
            }]
        );
        assert!(clock.due(T + 99_999).is_empty(), "once");
        let in_force = clock.apply(&set);
        let web = in_force.for_image("nginx", None);
        assert_eq!(web.drift.mode, seawall_profile::Mode::Enforce);
        // Violations after the promotion do not undo it.
        clock.violation("web", T + 99_999);
        assert!(clock.is_promoted("web"));
        assert!(clock.status()[0].promoted_at.is_some());
    }

    #[test]
    fn clocks_survive_a_restart_and_an_edited_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let state = super::super::state::StateDir::open(&dir.path().join("state")).unwrap();
        let pdir = dir.path().join("profiles");
        std::fs::create_dir(&pdir).unwrap();
        let set = set_in(&pdir, &[("web.toml", WEB)]);
        let mut clock = PromotionClock::new(None, None);
        clock.sync(&set, T);
        clock.violation("web", T + 10);
        assert!(clock.dirty());
        let saved = ClockFile {
            format: FORMAT,
            profiles: clock.clocks.clone(),
        };
        state
            .store(STATE_FILE, &serde_json::to_vec(&saved).unwrap())
            .unwrap();

        // A restarted agent with the same file keeps the clock where it was.
        let mut again = PromotionClock::new(state.load(STATE_FILE).unwrap(), None);
        again.sync(&set, T + 500);
        assert!(!again.dirty(), "nothing changed");
        assert_eq!(again.due(T + 10 + 3600).len(), 1);

        // The file edited: the clock starts again from the reload.
        let mut edited = PromotionClock::new(state.load(STATE_FILE).unwrap(), None);
        let set = set_in(&pdir, &[("web.toml", &format!("{WEB}# reviewed\n"))]);
        edited.sync(&set, T + 500);
        assert!(edited.due(T + 10 + 3600).is_empty());
        assert_eq!(edited.due(T + 500 + 3600).len(), 1);

        // A profile without enforce_after has no clock; one that went is forgotten.
        let set = set_in(
            &pdir,
            &[(
                "web.toml",
                "[profile]\nname = \"web\"\nimages = [\"nginx*\"]\n",
            )],
        );
        edited.sync(&set, T + 9000);
        assert!(edited.status().is_empty());
        assert!(edited.dirty());
    }

    #[tokio::test]
    async fn saved_through_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let state = super::super::state::StateDir::open(dir.path()).unwrap();
        let pdir = tempfile::tempdir().unwrap();
        let set = set_in(pdir.path(), &[("web.toml", WEB)]);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (writer, task) = StateWriter::spawn(state.clone(), STATE_FILE, async {
            let _ = stop_rx.await;
        });
        let task = tokio::spawn(task);
        let mut clock = PromotionClock::new(None, Some(writer));
        clock.sync(&set, T);
        clock.save();
        assert!(!clock.dirty());
        let _ = stop_tx.send(());
        task.await.unwrap();
        let saved: ClockFile = state.load(STATE_FILE).unwrap().unwrap();
        assert_eq!(saved.profiles["web"].since, T);
    }
}
