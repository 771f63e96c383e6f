//! Container engines feeding one runtime-agnostic container table, keyed by cgroup v2 id.
//!
//! A source (Docker today; containerd, CRI-O or podman tomorrow) is one file: a task that
//! watches its engine and sends [`SourceEvent`]s, and answers [`Lookup`]s by id. It does its
//! own engine calls, so the daemon's event loop never waits on an engine.

pub mod cgroup;
pub mod docker;
pub mod procs;
pub mod table;

use tokio::sync::mpsc;

use table::ContainerInfo;

/// What a container source tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// A container exists (created, or found by a lookup): its metadata, before it runs.
    Created(ContainerInfo),
    /// A container started: its metadata with the init pid.
    Started(ContainerInfo),
    /// A container stopped or was removed.
    Stopped {
        /// The engine's container id.
        id: String,
    },
    /// A lookup found no such container (the cgroup is not one of this engine's).
    Unknown {
        /// The id that was looked up.
        id: String,
    },
    /// After a gap in the engine's event stream: every running container. Containers the
    /// table holds that are not in it have stopped meanwhile.
    Resync(Vec<ContainerInfo>),
    /// The engine does not answer (yet): containers run under the default profile, without
    /// metadata, until it does.
    Unreachable,
}

/// Asks a source to look one container up by id; the answer comes back as a
/// [`SourceEvent::Created`] (or [`SourceEvent::Unknown`]) on the source's channel.
#[derive(Debug, Clone)]
pub struct Lookup(mpsc::Sender<String>);

impl Lookup {
    /// A lookup handle and the receiver the source reads requests from.
    pub fn channel(depth: usize) -> (Lookup, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(depth);
        (Lookup(tx), rx)
    }

    /// Queues a lookup without waiting; false when the source is gone or saturated (the
    /// container then runs under the default profile until it is seen again).
    pub fn request(&self, id: &str) -> bool {
        self.0.try_send(id.to_string()).is_ok()
    }
}
