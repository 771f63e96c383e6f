//! The kernel owner: one dedicated thread holds the loaded object and makes every map write.
//! Other tasks send it typed commands, each with a oneshot reply (lockc's `communication.rs`
//! pattern), so writes are ordered and a policy swap never interleaves with another.
//!
//! A dedicated thread rather than a task: map syscalls block and must not stall the runtime.
//! Its end is never silent: [`KernelOwner::exited`] resolves when the thread stops for any
//! reason, and says whether it panicked; the daemon treats that as fatal.

use std::path::PathBuf;

use agent_common::{ContainerPolicy, NetRule, NetRuleKey, PathRuleKey};
use tokio::sync::{mpsc, oneshot};

use super::{
    maps::{AdoptedRules, ContainerKeys, Counters, KernelError, KernelState, MapUsage},
    recovery::{HeldExec, Sequence, Suppressed},
};

/// The reply channel of a command that can fail.
type Reply<T> = oneshot::Sender<Result<T, KernelError>>;

/// What the owner can be asked to do. Each variant carries its reply channel.
pub(super) enum Command {
    /// Mark a container parent and attach the container-parent programs there (once).
    AddParent {
        cgroup_id: u64,
        dir: PathBuf,
        /// `PARENT_CHILDREN` or `PARENT_NESTED`.
        kind: u32,
        reply: Reply<()>,
    },
    /// The policy of containers without one of their own yet (key 0).
    SetDefaultPolicy {
        policy: ContainerPolicy,
        reply: Reply<()>,
    },
    /// A container's policy.
    SetContainer {
        cgroup_id: u64,
        policy: ContainerPolicy,
        reply: Reply<()>,
    },
    /// Forget a container's policy and init.
    RemoveContainer {
        cgroup_id: u64,
        reply: oneshot::Sender<()>,
    },
    /// The init and process origins of a container that ran before the agent.
    SeedContainer {
        cgroup_id: u64,
        init_pid: u32,
        origins: Vec<(u32, u32)>,
        reply: Reply<()>,
    },
    /// New rules, written before any container points at them.
    InsertRules {
        paths: Vec<PathRuleKey>,
        nets: Vec<(NetRuleKey, NetRule)>,
        reply: Reply<()>,
    },
    /// Old rules, removed once nothing points at them.
    RemoveRules {
        paths: Vec<PathRuleKey>,
        nets: Vec<NetRuleKey>,
        reply: oneshot::Sender<()>,
    },
    /// What maps adopted from an earlier agent hold.
    AdoptedRules {
        reply: oneshot::Sender<AdoptedRules>,
    },
    /// Detach the links an earlier agent pinned; replies how many.
    ReleasePrevious { reply: oneshot::Sender<usize> },
    /// The agent is alive (the kernel may hold a new container's execs).
    Heartbeat { reply: Reply<()> },
    /// The kernel's counters.
    Counters { reply: Reply<Counters> },
    /// Every exec the kernel holds now.
    HeldExecs {
        reply: oneshot::Sender<Vec<HeldExec>>,
    },
    /// Whether a hold is still there.
    IsHeld {
        pid: u32,
        ktime_ns: u64,
        reply: oneshot::Sender<bool>,
    },
    /// A hold was decided.
    ForgetHeld {
        pid: u32,
        ktime_ns: u64,
        reply: oneshot::Sender<()>,
    },
    /// The kernel's numbering and the recorded high-water mark.
    Sequence { reply: Reply<Sequence> },
    /// Record the high-water mark (one value per CPU).
    SetHandled { per_cpu: Vec<u64>, reply: Reply<()> },
    /// What floods held back since the last call.
    TakeSuppressed {
        reply: oneshot::Sender<Vec<Suppressed>>,
    },
    /// Which container cgroups the per-container maps hold.
    ContainerKeys {
        reply: oneshot::Sender<ContainerKeys>,
    },
    /// How full the maps are.
    Usage {
        reply: oneshot::Sender<Vec<MapUsage>>,
    },
    /// Hold nothing more (the agent is stopping).
    StopHolding { reply: Reply<()> },
    /// Pin the links staged at start (start-up succeeded).
    CommitPins { reply: Reply<()> },
    /// The intel tries and assurance refusals (`intel.rs`).
    Intel(super::intel::IntelCommand),
    /// Drop the state and end the thread.
    Stop,
}

/// How the owner thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerExit {
    /// It was asked to stop, or every handle was dropped.
    Stopped,
    /// It panicked: its state is gone, and nothing writes maps any more.
    Panicked,
}

/// A cheap, cloneable handle for sending commands to the owner.
#[derive(Clone)]
pub struct KernelHandle {
    tx: mpsc::Sender<Command>,
}

/// The owner thread itself: its handle, and how to learn that it ended.
pub struct KernelOwner {
    handle: KernelHandle,
    exit: oneshot::Receiver<OwnerExit>,
}

/// Tells the daemon the thread ended, however it ended (drop runs while a panic unwinds).
struct ExitSignal(Option<oneshot::Sender<OwnerExit>>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let how = if std::thread::panicking() {
            OwnerExit::Panicked
        } else {
            OwnerExit::Stopped
        };
        if let Some(tx) = self.0.take() {
            let _ = tx.send(how);
        }
    }
}

impl KernelOwner {
    /// Starts the owner thread on `state`. `on_command` runs after every command (the daemon
    /// marks the owner's liveness there).
    pub fn spawn(
        state: KernelState,
        on_command: impl Fn() + Send + 'static,
    ) -> Result<Self, KernelError> {
        let (tx, rx) = mpsc::channel::<Command>(256);
        let (exit_tx, exit) = oneshot::channel();
        std::thread::Builder::new()
            .name("seawall-kernel".into())
            .spawn(move || {
                let _exit = ExitSignal(Some(exit_tx));
                serve(state, rx, on_command);
            })
            .map_err(KernelError::Spawn)?;
        Ok(Self {
            handle: KernelHandle { tx },
            exit,
        })
    }

    /// A handle to send commands with.
    pub fn handle(&self) -> KernelHandle {
        self.handle.clone()
    }

    /// Resolves when the thread ends, with how it ended.
    pub async fn exited(&mut self) -> OwnerExit {
        (&mut self.exit).await.unwrap_or(OwnerExit::Panicked)
    }

    /// Asks the thread to stop after the commands already queued, and waits until it has.
    pub async fn stop(mut self) -> OwnerExit {
        let _ = self.handle.tx.send(Command::Stop).await;
        self.exited().await
    }
}

/// The owner's loop: one command at a time, in order.
fn serve(mut state: KernelState, mut rx: mpsc::Receiver<Command>, on_command: impl Fn()) {
    while let Some(command) = rx.blocking_recv() {
        // A reply nobody waits for any more (the caller gave up) is not an error.
        match command {
            Command::AddParent {
                cgroup_id,
                dir,
                kind,
                reply,
            } => {
                let _ = reply.send(state.add_parent(cgroup_id, &dir, kind));
            }
            Command::SetDefaultPolicy { policy, reply } => {
                let _ = reply.send(state.set_default_policy(policy));
            }
            Command::SetContainer {
                cgroup_id,
                policy,
                reply,
            } => {
                let _ = reply.send(state.set_container(cgroup_id, policy));
            }
            Command::RemoveContainer { cgroup_id, reply } => {
                state.remove_container(cgroup_id);
                let _ = reply.send(());
            }
            Command::SeedContainer {
                cgroup_id,
                init_pid,
                origins,
                reply,
            } => {
                let _ = reply.send(state.seed_container(cgroup_id, init_pid, &origins));
            }
            Command::InsertRules { paths, nets, reply } => {
                let _ = reply.send(state.insert_rules(&paths, &nets));
            }
            Command::RemoveRules { paths, nets, reply } => {
                state.remove_rules(&paths, &nets);
                let _ = reply.send(());
            }
            Command::AdoptedRules { reply } => {
                let _ = reply.send(state.adopted_rules());
            }
            Command::ReleasePrevious { reply } => {
                let _ = reply.send(state.release_previous());
            }
            Command::Heartbeat { reply } => {
                if crate::failpoint::armed("kernel_owner_panic").is_some() {
                    // After the start's heartbeat and a tick's: with the agent up.
                    static BEATS: std::sync::atomic::AtomicU32 =
                        std::sync::atomic::AtomicU32::new(0);
                    if BEATS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 2 {
                        panic!("failpoint kernel_owner_panic");
                    }
                }
                let _ = reply.send(state.heartbeat());
            }
            Command::Counters { reply } => {
                let _ = reply.send(state.counters());
            }
            Command::HeldExecs { reply } => {
                let _ = reply.send(state.recovery.held());
            }
            Command::IsHeld {
                pid,
                ktime_ns,
                reply,
            } => {
                let _ = reply.send(state.recovery.is_held(pid, ktime_ns));
            }
            Command::ForgetHeld {
                pid,
                ktime_ns,
                reply,
            } => {
                state.recovery.forget_held(pid, ktime_ns);
                let _ = reply.send(());
            }
            Command::Sequence { reply } => {
                let _ = reply.send(state.recovery.sequence());
            }
            Command::SetHandled { per_cpu, reply } => {
                let _ = reply.send(state.recovery.set_handled(per_cpu));
            }
            Command::TakeSuppressed { reply } => {
                let _ = reply.send(state.recovery.take_suppressed());
            }
            Command::ContainerKeys { reply } => {
                let _ = reply.send(state.container_keys());
            }
            Command::Usage { reply } => {
                let _ = reply.send(state.usage());
            }
            Command::StopHolding { reply } => {
                let _ = reply.send(state.stop_holding());
            }
            Command::CommitPins { reply } => {
                let _ = reply.send(state.commit_pins());
            }
            Command::Intel(command) => state.intel.serve(command),
            Command::Stop => return,
        }
        on_command();
    }
}

impl KernelHandle {
    /// Sends `command` built around a fresh reply channel and waits for the answer.
    pub(super) async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, KernelError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| KernelError::Gone)?;
        answer.await.map_err(|_| KernelError::Gone)
    }

    /// Containers live below `dir` (`kind`: `PARENT_CHILDREN` or `PARENT_NESTED`): mark it and
    /// attach the container-parent programs.
    pub async fn add_parent(
        &self,
        cgroup_id: u64,
        dir: PathBuf,
        kind: u32,
    ) -> Result<(), KernelError> {
        self.ask(|reply| Command::AddParent {
            cgroup_id,
            dir,
            kind,
            reply,
        })
        .await?
    }

    /// The policy of containers the agent has not configured yet.
    pub async fn set_default_policy(&self, policy: ContainerPolicy) -> Result<(), KernelError> {
        self.ask(|reply| Command::SetDefaultPolicy { policy, reply })
            .await?
    }

    /// Writes a container's policy.
    pub async fn set_container(
        &self,
        cgroup_id: u64,
        policy: ContainerPolicy,
    ) -> Result<(), KernelError> {
        self.ask(|reply| Command::SetContainer {
            cgroup_id,
            policy,
            reply,
        })
        .await?
    }

    /// Forgets a container.
    pub async fn remove_container(&self, cgroup_id: u64) -> Result<(), KernelError> {
        self.ask(|reply| Command::RemoveContainer { cgroup_id, reply })
            .await
    }

    /// Records the init of a running container and the origin of its processes.
    pub async fn seed_container(
        &self,
        cgroup_id: u64,
        init_pid: u32,
        origins: Vec<(u32, u32)>,
    ) -> Result<(), KernelError> {
        self.ask(|reply| Command::SeedContainer {
            cgroup_id,
            init_pid,
            origins,
            reply,
        })
        .await?
    }

    /// Writes new rules.
    pub async fn insert_rules(
        &self,
        paths: Vec<PathRuleKey>,
        nets: Vec<(NetRuleKey, NetRule)>,
    ) -> Result<(), KernelError> {
        self.ask(|reply| Command::InsertRules { paths, nets, reply })
            .await?
    }

    /// Removes old rules.
    pub async fn remove_rules(
        &self,
        paths: Vec<PathRuleKey>,
        nets: Vec<NetRuleKey>,
    ) -> Result<(), KernelError> {
        self.ask(|reply| Command::RemoveRules { paths, nets, reply })
            .await
    }

    /// What adopted maps hold.
    pub async fn adopted_rules(&self) -> Result<AdoptedRules, KernelError> {
        self.ask(|reply| Command::AdoptedRules { reply }).await
    }

    /// Detaches an earlier agent's pinned links; returns how many.
    pub async fn release_previous(&self) -> Result<usize, KernelError> {
        self.ask(|reply| Command::ReleasePrevious { reply }).await
    }

    /// Tells the kernel the agent is alive.
    pub async fn heartbeat(&self) -> Result<(), KernelError> {
        self.ask(|reply| Command::Heartbeat { reply }).await?
    }

    /// The kernel's counters.
    pub async fn counters(&self) -> Result<Counters, KernelError> {
        self.ask(|reply| Command::Counters { reply }).await?
    }

    /// Every exec the kernel holds now.
    pub async fn held_execs(&self) -> Result<Vec<HeldExec>, KernelError> {
        self.ask(|reply| Command::HeldExecs { reply }).await
    }

    /// Whether the hold of `pid` made at `ktime_ns` is still undecided.
    pub async fn is_held(&self, pid: u32, ktime_ns: u64) -> Result<bool, KernelError> {
        self.ask(|reply| Command::IsHeld {
            pid,
            ktime_ns,
            reply,
        })
        .await
    }

    /// The hold of `pid` made at `ktime_ns` was decided.
    pub async fn forget_held(&self, pid: u32, ktime_ns: u64) -> Result<(), KernelError> {
        self.ask(|reply| Command::ForgetHeld {
            pid,
            ktime_ns,
            reply,
        })
        .await
    }

    /// The kernel's numbering and the recorded high-water mark.
    pub async fn sequence(&self) -> Result<Sequence, KernelError> {
        self.ask(|reply| Command::Sequence { reply }).await?
    }

    /// Records the high-water mark of records written out (one value per CPU).
    pub async fn set_handled(&self, per_cpu: Vec<u64>) -> Result<(), KernelError> {
        self.ask(|reply| Command::SetHandled { per_cpu, reply })
            .await?
    }

    /// What floods held back since the last call.
    pub async fn take_suppressed(&self) -> Result<Vec<Suppressed>, KernelError> {
        self.ask(|reply| Command::TakeSuppressed { reply }).await
    }

    /// Which container cgroups the per-container maps hold.
    pub async fn container_keys(&self) -> Result<ContainerKeys, KernelError> {
        self.ask(|reply| Command::ContainerKeys { reply }).await
    }

    /// How full the maps are.
    pub async fn usage(&self) -> Result<Vec<MapUsage>, KernelError> {
        self.ask(|reply| Command::Usage { reply }).await
    }

    /// Tells the kernel to hold nothing more: the agent is stopping.
    pub async fn stop_holding(&self) -> Result<(), KernelError> {
        self.ask(|reply| Command::StopHolding { reply }).await?
    }

    /// Pins the links staged at start: start-up succeeded, they may outlive the agent now.
    pub async fn commit_pins(&self) -> Result<(), KernelError> {
        self.ask(|reply| Command::CommitPins { reply }).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_thread_that_panics_is_reported_as_panicked_and_a_clean_end_as_stopped() {
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let _exit = ExitSignal(Some(tx));
            panic!("map write failed badly");
        });
        assert!(thread.join().is_err());
        assert_eq!(rx.await, Ok(OwnerExit::Panicked));

        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let _exit = ExitSignal(Some(tx));
        })
        .join()
        .unwrap();
        assert_eq!(rx.await, Ok(OwnerExit::Stopped));
    }
}
