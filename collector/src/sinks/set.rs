//! The running sinks as one set: started together, reloaded table by table (SIGHUP), and
//! watched, so the systemd watchdog stops when a sink task has died or hangs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::task::{self, SinkJob};
use super::{Output, SinkError, SinkStats};
use crate::config::SinkConfig;
use crate::store::backend::EventStore;

/// A sink task that shows no sign of life for this long is stuck in one step. Every step is
/// bounded well below it: an HTTP request times out after 15 s, a syslog connect after 10 s and
/// a write after 30 s, a backoff sleeps at most 30 s, an idle sink beats every 5 s.
pub const SINK_STALL_BOUND: Duration = Duration::from_secs(90);

/// The names and counters of the running sinks, in configuration order, for the metrics
/// endpoint. A std Mutex: held to swap or copy a short list, never across an await.
pub type SinkList = Arc<Mutex<Vec<(String, Arc<SinkStats>)>>>;

struct Running {
    config: SinkConfig,
    stats: Arc<SinkStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running sinks.
pub struct SinkSet {
    store: Arc<dyn EventStore>,
    data: PathBuf,
    running: Vec<Running>,
    /// Counters by sink name, reused when a sink is restarted by a reload so its totals never
    /// go backwards.
    stats: BTreeMap<String, Arc<SinkStats>>,
    list: SinkList,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Sinks that are new or whose table changed (these were restarted).
    pub started: Vec<String>,
    /// Sinks that are gone or whose table changed.
    pub stopped: Vec<String>,
    /// Sinks left running as they were.
    pub kept: usize,
}

/// Why the sinks are not healthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkUnhealthy {
    #[error("the task of sink {0:?} ended")]
    Ended(String),
    #[error("sink {sink:?} has been stuck in one step for {silent_for:.0?}")]
    Stalled { sink: String, silent_for: Duration },
}

/// Refuses the first table that cannot work, naming its sink.
fn check_all(configs: &[SinkConfig]) -> Result<(), SinkError> {
    for c in configs {
        Output::check(&c.kind).map_err(|source| SinkError::Sink {
            sink: c.name.clone(),
            source: Box::new(source),
        })?;
    }
    Ok(())
}

impl SinkSet {
    /// Starts one task per sink, after checking every table.
    pub fn start(
        configs: &[SinkConfig],
        store: Arc<dyn EventStore>,
        data: &Path,
    ) -> Result<SinkSet, SinkError> {
        check_all(configs)?;
        std::fs::create_dir_all(data.join("sinks"))?;
        let mut set = SinkSet {
            store,
            data: data.to_path_buf(),
            running: Vec::new(),
            stats: BTreeMap::new(),
            list: SinkList::default(),
        };
        for c in configs {
            set.spawn(c.clone());
        }
        set.publish();
        Ok(set)
    }

    /// Applies a new list of sink tables. Nothing changes when one of them cannot work (the
    /// error names it). Otherwise sinks whose table is unchanged keep running untouched; the
    /// others stop (saving their positions) before their replacements start, so a replacement
    /// continues exactly where its predecessor left off.
    pub async fn reload(&mut self, configs: &[SinkConfig]) -> Result<Reloaded, SinkError> {
        check_all(configs)?;
        let mut done = Reloaded::default();
        let (kept, gone): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| configs.contains(&r.config));
        done.kept = kept.len();
        self.running = kept;
        for r in gone {
            done.stopped.push(r.config.name.clone());
            stop(r).await;
        }
        for c in configs {
            if !self.running.iter().any(|r| r.config == *c) {
                done.started.push(c.name.clone());
                self.spawn(c.clone());
            }
        }
        // Configuration order, as a fresh start would have it.
        self.running.sort_by_key(|r| {
            configs
                .iter()
                .position(|c| c.name == r.config.name)
                .unwrap_or(usize::MAX)
        });
        self.stats
            .retain(|name, _| configs.iter().any(|c| c.name == *name));
        self.publish();
        Ok(done)
    }

    /// Stops every sink, each saving its position.
    pub async fn stop(mut self) {
        for r in std::mem::take(&mut self.running) {
            stop(r).await;
        }
        self.publish();
    }

    /// Passes while every sink task runs and has shown it is alive within
    /// [`SINK_STALL_BOUND`]. A sink whose receiver is down is healthy: it keeps retrying.
    pub fn check(&self) -> Result<(), SinkUnhealthy> {
        self.check_within(SINK_STALL_BOUND)
    }

    fn check_within(&self, bound: Duration) -> Result<(), SinkUnhealthy> {
        for r in &self.running {
            if r.task.is_finished() {
                return Err(SinkUnhealthy::Ended(r.config.name.clone()));
            }
            let silent_for = r.stats.silent_for();
            if silent_for > bound {
                return Err(SinkUnhealthy::Stalled {
                    sink: r.config.name.clone(),
                    silent_for,
                });
            }
        }
        Ok(())
    }

    /// The running sinks' names and counters, kept current across reloads.
    pub fn list(&self) -> SinkList {
        self.list.clone()
    }

    /// How many sinks run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    fn spawn(&mut self, config: SinkConfig) {
        let stats = self.stats.entry(config.name.clone()).or_default().clone();
        stats.beat();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(task::run(SinkJob {
            config: config.clone(),
            store: self.store.clone(),
            data: self.data.clone(),
            stats: stats.clone(),
            shutdown,
        }));
        self.running.push(Running {
            config,
            stats,
            stop,
            task,
        });
    }

    fn publish(&self) {
        let list = self
            .running
            .iter()
            .map(|r| (r.config.name.clone(), r.stats.clone()))
            .collect();
        *self.list.lock().unwrap_or_else(|e| e.into_inner()) = list;
    }
}

async fn stop(r: Running) {
    let _ = r.stop.send(true);
    if let Err(e) = r.task.await {
        if e.is_panic() {
            tracing::error!(sink = %r.config.name, error = %e, "a sink task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ExportFormat, SinkKind};
    use crate::store::backend::Embedded;
    use crate::store::{Store, StoreOptions};
    use seawall_proto::event::Severity;

    fn file_sink(name: &str, path: &Path) -> SinkConfig {
        SinkConfig {
            name: name.into(),
            min_severity: Severity::Info,
            kind: SinkKind::File {
                path: path.to_path_buf(),
                format: ExportFormat::Seawall,
                max_bytes: 1 << 20,
                keep: 1,
            },
        }
    }

    #[tokio::test]
    async fn a_reload_restarts_only_changed_sinks_and_refuses_a_bad_table_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("events"), StoreOptions::default()).unwrap();
        let store: Arc<dyn EventStore> = Arc::new(Embedded(Arc::new(store)));
        let a = file_sink("a", &dir.path().join("a.jsonl"));
        let b = file_sink("b", &dir.path().join("b.jsonl"));
        let mut set = SinkSet::start(&[a.clone(), b.clone()], store, dir.path()).unwrap();
        let a_stats = set.list().lock().unwrap()[0].1.clone();
        assert_eq!(set.check(), Ok(()));

        // A table whose file cannot be made is refused, naming the sink; nothing changes.
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let bad = file_sink("c", &blocker.join("c.jsonl"));
        let err = set.reload(&[a.clone(), bad]).await.unwrap_err();
        assert!(
            seawall_service::ErrorChain(&err)
                .to_string()
                .contains("sink c"),
            "{}",
            seawall_service::ErrorChain(&err)
        );
        assert_eq!(set.len(), 2);

        // b changes, c is new, a stays as it was (same task, same counters).
        let mut b2 = b.clone();
        b2.min_severity = Severity::High;
        let c = file_sink("c", &dir.path().join("c.jsonl"));
        let done = set.reload(&[a, b2, c]).await.unwrap();
        assert_eq!(done.kept, 1);
        assert_eq!(done.stopped, vec!["b".to_string()]);
        assert_eq!(done.started, vec!["b".to_string(), "c".to_string()]);
        let names: Vec<String> = set
            .list()
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(Arc::ptr_eq(&set.list().lock().unwrap()[0].1, &a_stats));
        assert_eq!(set.check(), Ok(()));
        set.stop().await;
    }

    #[tokio::test]
    async fn a_sink_that_shows_no_life_or_ended_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("events"), StoreOptions::default()).unwrap();
        let store: Arc<dyn EventStore> = Arc::new(Embedded(Arc::new(store)));
        let a = file_sink("a", &dir.path().join("a.jsonl"));
        let set = SinkSet::start(std::slice::from_ref(&a), store, dir.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // An idle sink beats every few seconds, far less often than this bound.
        match set.check_within(Duration::from_millis(10)) {
            Err(SinkUnhealthy::Stalled { sink, .. }) => assert_eq!(sink, "a"),
            other => panic!("{other:?}"),
        }
        set.running[0].task.abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(set.check(), Err(SinkUnhealthy::Ended("a".into())));
        set.stop().await;
    }
}
