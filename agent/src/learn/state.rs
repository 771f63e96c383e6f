//! The state directory (`--state-dir`, default `/var/lib/seawall/state`): small JSON files the
//! agent keeps across restarts (what each image did, the promotion clocks).
//!
//! Every write is a temp file in the same directory, fsync'd, renamed over the old one, then the
//! directory fsync'd: a crash leaves the old file or the new one, never half of either. A file
//! that does not parse is moved aside (kept for a person to look at) rather than overwritten.

use std::{
    fs::{self, OpenOptions},
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// The agent's state directory, created 0700.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("creating the state directory {path} (set --state-dir to a writable directory)")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid state; it was moved to {kept} for inspection")]
    Invalid {
        path: PathBuf,
        kept: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StateDir {
    /// Creates the directory (and its parents) when missing, and makes it root-only.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let create = |source| StateError::Create {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(create)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(create)?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The value in `name`, or `None` when there is no such file yet. A file that does not
    /// parse is moved aside and reported, so the next write cannot destroy it.
    pub fn load<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(source) => {
                let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
                let kept = self.dir.join(format!("{name}.invalid-{stamp}"));
                if let Err(e) = fs::rename(&path, &kept) {
                    return Err(StateError::Read { path, source: e });
                }
                Err(StateError::Invalid { path, kept, source })
            }
        }
    }

    /// Replaces `name` with `bytes`, atomically.
    pub fn store(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let write = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write)?;
        f.write_all(bytes).map_err(write)?;
        f.sync_all().map_err(write)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(write)?;
        // The rename is durable once the directory is.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(write)?;
        Ok(())
    }
}

/// Writes the latest value of one state file from a task of its own, so whoever produces it
/// (the event loop) never waits on the disk. Only the newest bytes matter: a value replaced
/// before it was written is never written.
#[derive(Debug, Clone)]
pub struct StateWriter {
    tx: Arc<watch::Sender<Option<Arc<Vec<u8>>>>>,
}

impl StateWriter {
    /// The writer of `name` in `state`, and its task, which writes what is pending and ends
    /// when `stop` resolves.
    pub fn spawn(
        state: StateDir,
        name: &'static str,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (
        StateWriter,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, mut rx) = watch::channel::<Option<Arc<Vec<u8>>>>(None);
        let task = async move {
            tokio::pin!(stop);
            loop {
                let stopping = tokio::select! {
                    biased;
                    changed = rx.changed() => changed.is_err(),
                    _ = &mut stop => true,
                };
                // Whatever is pending is written, also on the way out.
                if stopping && !rx.has_changed().unwrap_or(false) {
                    return;
                }
                let pending = rx.borrow_and_update().clone();
                if let Some(bytes) = pending {
                    let state = state.clone();
                    let written =
                        tokio::task::spawn_blocking(move || state.store(name, &bytes)).await;
                    match written {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %seawall_service::ErrorChain(&e), "saving state failed; it is kept in memory and saved again on the next change")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, file = name, "the state writer panicked")
                        }
                    }
                }
                if stopping {
                    return;
                }
            }
        };
        (StateWriter { tx: Arc::new(tx) }, task)
    }

    /// Replaces what is to be written.
    pub fn write(&self, bytes: Vec<u8>) {
        self.tx.send_replace(Some(Arc::new(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_replaces_atomically_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("a/state")).unwrap();
        let mode = fs::metadata(state.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(state.load::<Vec<u32>>("x.json").unwrap(), None);
        state.store("x.json", b"[1,2]").unwrap();
        state.store("x.json", b"[3]").unwrap();
        assert_eq!(state.load::<Vec<u32>>("x.json").unwrap(), Some(vec![3]));
        let names: Vec<String> = fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.json"]);
        let mode = fs::metadata(state.path().join("x.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_file_that_does_not_parse_is_kept_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        fs::write(dir.path().join("x.json"), b"{not json").unwrap();
        let err = state.load::<Vec<u32>>("x.json").unwrap_err();
        let StateError::Invalid { kept, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(fs::read(kept).unwrap(), b"{not json");
        assert!(err.to_string().contains("moved to"), "{err}");
        // Now there is nothing to load, and a new write does not touch the kept copy.
        assert_eq!(state.load::<Vec<u32>>("x.json").unwrap(), None);
        state.store("x.json", b"[1]").unwrap();
        assert_eq!(fs::read(kept).unwrap(), b"{not json");
    }

    #[tokio::test]
    async fn the_writer_writes_the_newest_value_and_what_is_pending_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (w, task) = StateWriter::spawn(state.clone(), "c.json", async {
            let _ = stop_rx.await;
        });
        let task = tokio::spawn(task);
        w.write(b"[1]".to_vec());
        for _ in 0..200 {
            if state.load::<Vec<u32>>("c.json").unwrap().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(state.load::<Vec<u32>>("c.json").unwrap(), Some(vec![1]));
        w.write(b"[2]".to_vec());
        w.write(b"[3]".to_vec());
        let _ = stop_tx.send(());
        task.await.unwrap();
        assert_eq!(state.load::<Vec<u32>>("c.json").unwrap(), Some(vec![3]));
    }
}
