//! Learning, for `seawall profile learn`: per image (reference and id), a bounded summary of
//! what its containers did, kept in the state directory and served over the local API; and
//! the `enforce_after` promotion clock.
//!
//! The learner is a consumer of the event stream, like the sinks: the daemon hands it each
//! event it emits, it takes the [`Lesson`] (if any) and passes it to its own task with a
//! `try_send`, so it is never on the kernel's path and never holds up the event loop. When its
//! task falls behind and the queue is full, the lesson is not lost silently: it is counted for
//! its image and the learned profile says that many events were missed.
//!
//! What is learnable when: executables, drift, `docker exec` sessions and outbound connections
//! always (the kernel reports every exec and connect of a monitored container); binds always;
//! raw sockets only under a profile with `block_raw_sockets`; unconnected UDP sends only when a
//! network rule matched them; file reads and writes only with `--audit-files` (which marks every
//! container's overlay) — a file rule alone reports only what it matches, so it does not count
//! as watching. The summary records which of these were watched, and the learned profile says
//! what it could not see.
//!
//! Learning reads events; it never changes policy. Only the promotion clock does, as a profile's
//! `enforce_after` says.

pub mod lesson;
pub mod promotion;
pub mod state;
pub mod store;

use std::{collections::HashMap, time::Duration};

use seawall_profile::{BehaviourLimits, UnixSeconds};
use seawall_proto::event::Event;
use tokio::sync::{mpsc, oneshot};

use self::{
    lesson::{Fact, ImageKey, Lesson},
    state::StateDir,
    store::{BehaviourStore, Snapshot},
};

/// The learner's state file in the state directory.
pub const STATE_FILE: &str = "behaviour.json";
/// Lessons queued for the learner's task at most; beyond, they are counted as missed.
const QUEUE: usize = 65_536;
/// Images whose missed lessons are counted while the queue is full, at most.
const MISSED_IMAGES: usize = 1024;
/// Lessons taken per turn of the learner's task before a query gets a look in.
const BATCH: usize = 1024;
/// How long a query waits for the learner's answer.
const QUERY_WAIT: Duration = Duration::from_secs(10);

/// How much the learner keeps and how often it saves.
#[derive(Debug, Clone, Copy)]
pub struct LearnConfig {
    /// Distinct entries per category of each image.
    pub limits: BehaviourLimits,
    /// Images kept at most (the least recently seen goes first).
    pub max_images: usize,
    /// How often a changed summary is saved.
    pub save_every: Duration,
}

/// The daemon's side: hands lessons to the learner's task without waiting.
pub struct Learner {
    tx: mpsc::Sender<Input>,
    /// Lessons that found the queue full, by image, until the queue has room to say so.
    missed: HashMap<ImageKey, (u64, UnixSeconds, UnixSeconds)>,
}

/// Asks the learner's task what it knows (the local API's `behaviour` request).
#[derive(Clone)]
pub struct LearnQuery {
    tx: mpsc::Sender<oneshot::Sender<Snapshot>>,
}

enum Input {
    Lesson(Lesson),
    Missed {
        image: ImageKey,
        count: u64,
        first: UnixSeconds,
        last: UnixSeconds,
    },
}

/// Why a query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the learner has stopped")]
    Stopped,
    #[error("the learner did not answer within {0:?}")]
    Timeout(Duration),
}

impl Learner {
    /// What `ev` teaches, to the learner's task.
    pub fn observe(&mut self, ev: &Event) {
        if let Some(l) = lesson::lesson(ev) {
            self.send(l);
        }
    }

    /// A container of `image` started (or was first seen), with what of it is watched.
    pub fn container_started(
        &mut self,
        image: &str,
        image_id: &str,
        id: &str,
        files_watched: bool,
        raw_sockets_watched: bool,
    ) {
        let Some(image) = ImageKey::new(image, image_id) else {
            return;
        };
        self.send(Lesson {
            image,
            at: promotion::now(),
            fact: Fact::Container {
                id: id.to_string(),
                files_watched,
                raw_sockets_watched,
            },
        });
    }

    fn send(&mut self, lesson: Lesson) {
        if !self.missed.is_empty() {
            self.report_missed();
        }
        match self.tx.try_send(Input::Lesson(lesson)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Input::Lesson(l))) => {
                if self.missed.is_empty() {
                    tracing::warn!("the learner is behind: events are counted as missed for their image until it catches up");
                }
                let at = l.at;
                if self.missed.len() < MISSED_IMAGES || self.missed.contains_key(&l.image) {
                    let m = self.missed.entry(l.image).or_insert((0, at, at));
                    m.0 += 1;
                    m.1 = m.1.min(at);
                    m.2 = m.2.max(at);
                }
            }
            // The learner stopped (shutdown): nothing to learn any more.
            Err(_) => {}
        }
    }

    /// Tells the task how many lessons each image lost, as far as the queue has room.
    fn report_missed(&mut self) {
        let images: Vec<ImageKey> = self.missed.keys().cloned().collect();
        for image in images {
            let Some(&(count, first, last)) = self.missed.get(&image) else {
                continue;
            };
            let input = Input::Missed {
                image: image.clone(),
                count,
                first,
                last,
            };
            if self.tx.try_send(input).is_err() {
                return;
            }
            self.missed.remove(&image);
        }
    }
}

impl LearnQuery {
    /// Everything the learner knows now.
    pub async fn snapshot(&self) -> Result<Snapshot, QueryError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(reply).await.map_err(|_| QueryError::Stopped)?;
        tokio::time::timeout(QUERY_WAIT, answer)
            .await
            .map_err(|_| QueryError::Timeout(QUERY_WAIT))?
            .map_err(|_| QueryError::Stopped)
    }
}

/// The learner: the daemon's handle, the API's query, and the task that keeps the summaries
/// (restored from `state` when it has them), saves them every `save_every` and at `stop`.
pub fn start(
    cfg: LearnConfig,
    state: Option<StateDir>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    Learner,
    LearnQuery,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut store = BehaviourStore::new(cfg.limits, cfg.max_images);
    if let Some(state) = &state {
        match state.load::<Snapshot>(STATE_FILE) {
            Ok(Some(saved)) => match store.restore(saved) {
                Ok(()) => {
                    tracing::info!(images = store.len(), dir = %state.path().display(), "learned behaviour restored")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "learned behaviour not restored: starting afresh")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %seawall_service::ErrorChain(&e), "learned behaviour not restored: starting afresh")
            }
        }
    }
    let (tx, inputs) = mpsc::channel(QUEUE);
    let (qtx, queries) = mpsc::channel(16);
    let task = run(store, state, inputs, queries, cfg.save_every, stop);
    (
        Learner {
            tx,
            missed: HashMap::new(),
        },
        LearnQuery { tx: qtx },
        task,
    )
}

async fn run(
    mut store: BehaviourStore,
    state: Option<StateDir>,
    mut inputs: mpsc::Receiver<Input>,
    mut queries: mpsc::Receiver<oneshot::Sender<Snapshot>>,
    save_every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(save_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(reply) = queries.recv() => {
                // Everything the daemon emitted before the question is in the answer.
                for _ in 0..QUEUE {
                    match inputs.try_recv() {
                        Ok(i) => apply(&mut store, i),
                        Err(_) => break,
                    }
                }
                let _ = reply.send(store.snapshot());
            }
            Some(first) = inputs.recv() => {
                apply(&mut store, first);
                for _ in 1..BATCH {
                    match inputs.try_recv() {
                        Ok(i) => apply(&mut store, i),
                        Err(_) => break,
                    }
                }
            }
            _ = tick.tick() => save(&mut store, &state).await,
        }
    }
    while let Ok(i) = inputs.try_recv() {
        apply(&mut store, i);
    }
    save(&mut store, &state).await;
}

fn apply(store: &mut BehaviourStore, input: Input) {
    let evicted = match input {
        Input::Lesson(l) => store.learn(l),
        Input::Missed {
            image,
            count,
            first,
            last,
        } => {
            store.missed(image, count, first, last);
            None
        }
    };
    if let Some(k) = evicted {
        tracing::warn!(image = %k.image, image_id = k.image_id.as_deref().unwrap_or(""), "learned behaviour of the least recently seen image dropped to make room (learn_max_images)");
    }
}

/// Writes the summaries when they changed, off the async workers.
async fn save(store: &mut BehaviourStore, state: &Option<StateDir>) {
    let Some(state) = state else {
        return;
    };
    if !store.take_dirty() {
        return;
    }
    let bytes = match serde_json::to_vec(&store.snapshot()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "encoding the learned behaviour failed");
            return;
        }
    };
    let state = state.clone();
    match tokio::task::spawn_blocking(move || state.store(STATE_FILE, &bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            store.mark_dirty();
            tracing::warn!(error = %seawall_service::ErrorChain(&e), "saving the learned behaviour failed; it is kept in memory and saved again later");
        }
        Err(e) => {
            store.mark_dirty();
            tracing::error!(error = %e, "saving the learned behaviour panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_proto::event::{Action, Container, Kind, Process, Severity};

    fn exec_event(image: &str, exe: &str) -> Event {
        Event {
            seq: 1,
            time: "2026-09-21T14:13:20Z".into(),
            node: "n".into(),
            kind: Kind::Exec,
            action: Action::Allowed,
            control: "visibility".into(),
            severity: Severity::Info,
            message: String::new(),
            process: Some(Process {
                exe: exe.into(),
                exe_source: "image".into(),
                ..Default::default()
            }),
            container: Some(Container {
                id: "c".into(),
                image: image.into(),
                image_id: "sha256:1".into(),
                ..Default::default()
            }),
            file: None,
            network: None,
            intel: None,
        }
    }

    fn config() -> LearnConfig {
        LearnConfig {
            limits: BehaviourLimits { per_category: 8 },
            max_images: 4,
            save_every: Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn events_are_learned_served_and_saved_at_stop_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (mut learner, query, task) = start(config(), Some(state.clone()), async {
            let _ = stop_rx.await;
        });
        let task = tokio::spawn(task);
        learner.container_started("app:1", "sha256:1", "c", true, false);
        learner.observe(&exec_event("app:1", "/bin/sh"));
        learner.observe(&exec_event("other:2", "/bin/cat"));
        // What was handed over before the question is in the answer.
        let snap = query.snapshot().await.unwrap();
        let images: Vec<(&str, Option<&str>)> = snap
            .images
            .iter()
            .map(|b| (b.image(), b.image_id()))
            .collect();
        assert_eq!(
            images,
            [("app:1", Some("sha256:1")), ("other:2", Some("sha256:1"))]
        );
        let app = &snap.images[0];
        assert!(app.execs().contains("/bin/sh") && app.containers().contains("c"));
        assert!(app.files_watched());
        let _ = stop_tx.send(());
        task.await.unwrap();
        let saved: Snapshot = state.load(STATE_FILE).unwrap().unwrap();
        assert_eq!(saved, snap, "saved at stop");

        let (_l, query, task) = start(config(), Some(state), std::future::pending());
        let task = tokio::spawn(task);
        assert_eq!(query.snapshot().await.unwrap().images, saved.images);
        task.abort();
    }

    #[tokio::test]
    async fn a_full_queue_counts_missed_events_for_their_image() {
        let (tx, mut inputs) = mpsc::channel(2);
        let mut learner = Learner {
            tx,
            missed: HashMap::new(),
        };
        for _ in 0..5 {
            learner.observe(&exec_event("app:1", "/bin/sh"));
        }
        assert_eq!(learner.missed.values().next().map(|m| m.0), Some(3));
        // Room again: the count goes first, then the next lesson.
        let mut store = BehaviourStore::new(BehaviourLimits::default(), 4);
        while let Ok(i) = inputs.try_recv() {
            apply(&mut store, i);
        }
        learner.observe(&exec_event("app:1", "/bin/cat"));
        while let Ok(i) = inputs.try_recv() {
            apply(&mut store, i);
        }
        let snap = store.snapshot();
        assert_eq!(snap.images[0].missed().map(|m| m.count), Some(3));
        assert!(snap.images[0].execs().contains("/bin/cat"));
        assert!(learner.missed.is_empty());
    }
}
