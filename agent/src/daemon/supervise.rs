//! The daemon's tasks, each named, so that the end of any one of them before shutdown is
//! noticed at once and named: the ring reader, the container sources, the local API, the
//! metrics endpoint and the watchdog run here; the kernel owner and the fanotify thread signal
//! their end themselves, and the delivery sender is checked on every tick. Every one of those
//! ends is fatal: an agent that goes on without one of them enforces or reports less than it
//! says, silently.

use std::{collections::HashMap, fmt, future::Future, time::Duration};

use seawall_service::ErrorChain;
use tokio::task::{Id, JoinSet};

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// It returned, which only shutdown should make it do.
    Returned,
    /// It returned an error (the error, with its sources).
    Failed(String),
    /// It panicked.
    Panicked,
}

impl fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskEnd::Returned => f.write_str("returned"),
            TaskEnd::Failed(e) => write!(f, "failed: {e}"),
            TaskEnd::Panicked => f.write_str("panicked"),
        }
    }
}

/// The daemon's named tasks.
#[derive(Default)]
pub(super) struct Tasks {
    set: JoinSet<TaskEnd>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    /// Runs a task that should run until shutdown.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(async move {
            task.await;
            TaskEnd::Returned
        });
        self.names.insert(handle.id(), name);
    }

    /// Runs a task that may end with an error.
    pub fn spawn_fallible<E: std::error::Error + Send + 'static>(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let handle = self.set.spawn(async move {
            match task.await {
                Ok(()) => TaskEnd::Returned,
                Err(e) => TaskEnd::Failed(ErrorChain(&e).to_string()),
            }
        });
        self.names.insert(handle.id(), name);
    }

    /// Resolves when a task ends, with its name and how; pending while none has.
    pub async fn ended(&mut self) -> (&'static str, TaskEnd) {
        loop {
            match self.set.join_next_with_id().await {
                Some(Ok((id, how))) => return (self.name(id), how),
                Some(Err(e)) => {
                    let how = if e.is_panic() {
                        TaskEnd::Panicked
                    } else {
                        TaskEnd::Failed("cancelled".into())
                    };
                    return (self.name(e.id()), how);
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn name(&mut self, id: Id) -> &'static str {
        self.names.remove(&id).unwrap_or("a task")
    }

    /// Waits `grace` for every task to finish after shutdown was signalled, then cuts the rest.
    pub async fn join(mut self, grace: Duration) {
        let joined = tokio::time::timeout(grace, async {
            while let Some(done) = self.set.join_next_with_id().await {
                if let Err(e) = done {
                    if e.is_panic() {
                        let name = self.names.get(&e.id()).copied().unwrap_or("a task");
                        tracing::error!(task = name, "a task of the agent panicked");
                    }
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!("tasks still running after the shutdown grace period: cut");
            self.set.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_is_named_with_how_it_ended() {
        let mut tasks = Tasks::default();
        tasks.spawn("sleeper", std::future::pending());
        tasks.spawn("quitter", async {});
        assert_eq!(tasks.ended().await, ("quitter", TaskEnd::Returned));
        tasks.spawn("crasher", async { panic!("boom") });
        assert_eq!(tasks.ended().await, ("crasher", TaskEnd::Panicked));
        tasks.spawn_fallible("failer", async {
            Err::<(), _>(std::io::Error::other("disk gone"))
        });
        let (name, how) = tasks.ended().await;
        assert_eq!(name, "failer");
        assert!(matches!(how, TaskEnd::Failed(e) if e.contains("disk gone")));
        // The sleeper is still there: nothing more ends.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), tasks.ended())
                .await
                .is_err()
        );
    }
}
