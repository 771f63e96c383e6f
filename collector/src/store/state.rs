//! `state.json`: what the store must remember after retention deleted the records that showed it
//! — the next record id and every instance's highest stored seq. Without it a restart after
//! retention would number ids from an old value again and store re-sent events twice.
//!
//! It is written (temporary file, fsync, rename, fsync of the directory) whenever a segment is
//! sealed and before retention deletes one; a retention pass that cannot write it deletes
//! nothing. On open, the store takes the larger of this file and what the segments show.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::segment::HighWater;

const VERSION: u32 = 1;
pub const FILE: &str = "state.json";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct State {
    pub next_id: u64,
    pub high_water: HighWater,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    next_id: u64,
    high_water: Vec<InstanceMark>,
}

#[derive(Serialize, Deserialize)]
struct InstanceMark {
    agent: String,
    #[serde(default)]
    instance: String,
    seq: u64,
}

/// Why `state.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a store state file; move it away to rebuild it from the segments (events re-sent for deleted segments may then be stored twice)")]
    Format {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes `state.json`'s bytes.
pub fn decode(bytes: &[u8]) -> Result<State, serde_json::Error> {
    let f: StateFile = serde_json::from_slice(bytes)?;
    if f.version != VERSION {
        return Err(serde::de::Error::custom(format!(
            "state version {} (this collector knows {VERSION})",
            f.version
        )));
    }
    Ok(State {
        next_id: f.next_id,
        high_water: f
            .high_water
            .into_iter()
            .map(|m| ((m.agent, m.instance), m.seq))
            .collect(),
    })
}

/// The saved state, or an empty one when there is none yet.
pub fn load(dir: &Path) -> Result<State, StateError> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes).map_err(|source| StateError::Format { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(StateError::Read { path, source }),
    }
}

pub fn save(dir: &Path, state: &State) -> std::io::Result<()> {
    let mut high_water: Vec<InstanceMark> = state
        .high_water
        .iter()
        .map(|((agent, instance), seq)| InstanceMark {
            agent: agent.clone(),
            instance: instance.clone(),
            seq: *seq,
        })
        .collect();
    high_water.sort_by(|a, b| (&a.agent, &a.instance).cmp(&(&b.agent, &b.instance)));
    let body = serde_json::to_vec(&StateFile {
        version: VERSION,
        next_id: state.next_id,
        high_water,
    })
    .expect("the state always serializes");
    let tmp = dir.join("state.json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_foreign_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), State::default());
        let mut s = State {
            next_id: 77,
            ..State::default()
        };
        s.high_water.insert(("a".into(), "i".into()), 9);
        s.high_water.insert(("b".into(), String::new()), 3);
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()).unwrap(), s);
        std::fs::write(dir.path().join(FILE), "{\"version\":2}").unwrap();
        assert!(matches!(load(dir.path()), Err(StateError::Format { .. })));
    }
}
