//! Container engines feeding one runtime-agnostic container table, keyed by cgroup v2 id.
//!
//! A source is a task that watches its engine and sends [`SourceEvent`]s: Docker (`docker.rs`,
//! which also answers [`Lookup`]s by id), and containerd, CRI runtimes such as CRI-O, and podman
//! (`engines.rs`, the `seawall-engines` clients). Each does its own engine calls, so the
//! daemon's event loop never waits on an engine. Which sources run is decided in `sources.rs`
//! (configured sockets, or the default sockets found on this host).

pub mod cgroup;
pub mod docker;
pub mod engines;
pub mod procs;
pub mod sources;
pub mod table;

pub use seawall_engines::{Runtime, SourceId};
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
    /// A lookup got no answer (the engine timed out or failed): asked again, the container's
    /// first exec still held, while its engine is up and the wait lasts.
    LookupFailed {
        /// The id that was looked up.
        id: String,
    },
    /// After a (re)connect: every running container of `source`. Containers of that source
    /// the table holds that are not in it have stopped meanwhile.
    Resync {
        source: SourceId,
        running: Vec<ContainerInfo>,
    },
    /// The engine does not answer (yet, or any more): its new containers run under the
    /// default profile, without metadata, until it does; those it reported keep their policy.
    Unreachable { source: SourceId },
}

impl SourceEvent {
    /// The source whose state (up after a listing, down) this event tells, if it tells one.
    pub fn source_state(&self) -> Option<(&SourceId, bool)> {
        match self {
            SourceEvent::Resync { source, .. } => Some((source, true)),
            SourceEvent::Unreachable { source } => Some((source, false)),
            _ => None,
        }
    }
}

/// Asks a source to look one container up by id; the answer comes back as a
/// [`SourceEvent::Created`] (or [`SourceEvent::Unknown`], [`SourceEvent::LookupFailed`]) on
/// the source's channel.
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
