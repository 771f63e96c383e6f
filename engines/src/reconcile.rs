//! From source events to changes of a table keyed by cgroup id: what the agent's container
//! table (and through it the kernel's policy maps) must do for each event, including after a
//! gap, when a source's re-listing is the whole truth and whatever it no longer lists was
//! deleted while the source was away.
//!
//! Decisions, in one place:
//! - A row exists only for a container whose cgroup directory exists now (resolved to its id);
//!   a created container whose cgroup is not made yet gets its row from its `Started` event
//!   (or the agent's `cgroup_mkdir` watch resolves it through the cgroup path).
//! - A source going away removes nothing: its containers keep running, so their policy stays
//!   in force (fail closed) until the source, back, says they are gone.

use std::collections::HashMap;

use crate::{
    record::ContainerRecord,
    source::{ContainerKey, SourceEvent, SourceId},
};

/// What to do to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableChange {
    /// Insert or replace the row of the container whose cgroup has this id.
    Upsert {
        cgroup_id: u64,
        container: Box<ContainerRecord>,
    },
    /// The container left: remove its row.
    Remove { cgroup_id: u64 },
    /// The source went away (its rows stay).
    SourceDown { source: SourceId },
    /// The source is (back) up and has listed.
    SourceUp { source: SourceId, containers: usize },
}

/// Remembers which rows each source's containers hold.
#[derive(Debug, Default)]
pub struct Reconciler {
    held: HashMap<SourceId, HashMap<ContainerKey, u64>>,
}

impl Reconciler {
    pub fn new() -> Self {
        Self::default()
    }

    /// The changes `event` calls for. `resolve` maps a cgroup path (from the root of the
    /// unified hierarchy) to the id of that cgroup, `None` when it does not exist (now).
    pub fn apply(
        &mut self,
        event: SourceEvent,
        resolve: impl Fn(&str) -> Option<u64>,
    ) -> Vec<TableChange> {
        let mut out = Vec::new();
        match event {
            SourceEvent::Listed { source, containers } => {
                let before = self.held.remove(&source).unwrap_or_default();
                let mut now = HashMap::new();
                let count = containers.len();
                for c in containers {
                    if let Some(id) = c.cgroup_path.as_deref().and_then(&resolve) {
                        now.insert(c.key(), id);
                        out.push(TableChange::Upsert {
                            cgroup_id: id,
                            container: Box::new(c),
                        });
                    }
                }
                let mut gone: Vec<u64> = before
                    .iter()
                    .filter(|(k, id)| now.get(*k) != Some(*id))
                    .map(|(_, id)| *id)
                    .filter(|id| !now.values().any(|n| n == id))
                    .collect();
                gone.sort_unstable();
                out.extend(
                    gone.into_iter()
                        .map(|cgroup_id| TableChange::Remove { cgroup_id }),
                );
                self.held.insert(source.clone(), now);
                out.push(TableChange::SourceUp {
                    source,
                    containers: count,
                });
            }
            SourceEvent::Created { source, container }
            | SourceEvent::Started { source, container } => {
                if let Some(id) = container.cgroup_path.as_deref().and_then(&resolve) {
                    let held = self.held.entry(source).or_default();
                    if let Some(old) = held.insert(container.key(), id).filter(|old| *old != id) {
                        out.push(TableChange::Remove { cgroup_id: old });
                    }
                    out.push(TableChange::Upsert {
                        cgroup_id: id,
                        container: Box::new(container),
                    });
                }
            }
            SourceEvent::Exited { source, key, .. } | SourceEvent::Deleted { source, key } => {
                if let Some(id) = self.held.get_mut(&source).and_then(|h| h.remove(&key)) {
                    out.push(TableChange::Remove { cgroup_id: id });
                }
            }
            SourceEvent::Disconnected { source, .. } => {
                out.push(TableChange::SourceDown { source });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use super::*;
    use crate::{error::EngineError, record::Runtime};

    fn source() -> SourceId {
        SourceId {
            runtime: Runtime::Containerd,
            socket: PathBuf::from("/run/containerd/containerd.sock"),
        }
    }

    fn rec(id: &str, cgroup: Option<&str>) -> ContainerRecord {
        let mut r = ContainerRecord::new(Runtime::Containerd, id);
        r.namespace = "k8s.io".into();
        r.cgroup_path = cgroup.map(str::to_string);
        r
    }

    /// Cgroups that exist: `/kubepods/pod1/<n>` has id `n`.
    fn resolve(path: &str) -> Option<u64> {
        path.strip_prefix("/kubepods/pod1/")?.parse().ok()
    }

    fn key(id: &str) -> ContainerKey {
        ContainerKey {
            namespace: "k8s.io".into(),
            id: id.into(),
        }
    }

    #[test]
    fn a_relisting_is_the_whole_truth() {
        let mut r = Reconciler::new();
        let first = r.apply(
            SourceEvent::Listed {
                source: source(),
                containers: vec![
                    rec("a", Some("/kubepods/pod1/1")),
                    rec("b", Some("/kubepods/pod1/2")),
                    rec("stopped", Some("/kubepods/pod1/gone")),
                    rec("created", None),
                ],
            },
            resolve,
        );
        assert_eq!(
            first
                .iter()
                .filter(|c| matches!(c, TableChange::Upsert { .. }))
                .count(),
            2,
            "only containers whose cgroup exists get rows: {first:?}"
        );
        // The source goes away: nothing is removed (fail closed).
        let down = r.apply(
            SourceEvent::Disconnected {
                source: source(),
                error: Arc::new(EngineError::StreamEnded {
                    runtime: Runtime::Containerd,
                }),
            },
            resolve,
        );
        assert_eq!(down, vec![TableChange::SourceDown { source: source() }]);
        // Back: `b` was deleted during the gap, `c` started during it.
        let again = r.apply(
            SourceEvent::Listed {
                source: source(),
                containers: vec![
                    rec("a", Some("/kubepods/pod1/1")),
                    rec("c", Some("/kubepods/pod1/3")),
                ],
            },
            resolve,
        );
        let ids = |f: fn(&TableChange) -> Option<u64>| -> Vec<u64> {
            again.iter().filter_map(f).collect()
        };
        assert_eq!(
            ids(|c| match c {
                TableChange::Upsert { cgroup_id, .. } => Some(*cgroup_id),
                _ => None,
            }),
            [1, 3]
        );
        assert_eq!(
            ids(|c| match c {
                TableChange::Remove { cgroup_id } => Some(*cgroup_id),
                _ => None,
            }),
            [2]
        );
        assert!(matches!(
            again.last(),
            Some(TableChange::SourceUp { containers: 2, .. })
        ));
    }

    #[test]
    fn lifecycle_events_add_and_remove_rows() {
        let mut r = Reconciler::new();
        let created = r.apply(
            SourceEvent::Created {
                source: source(),
                container: rec("a", Some("/kubepods/pod1/not-yet")),
            },
            resolve,
        );
        assert!(created.is_empty(), "no cgroup yet, no row: {created:?}");
        let started = r.apply(
            SourceEvent::Started {
                source: source(),
                container: rec("a", Some("/kubepods/pod1/7")),
            },
            resolve,
        );
        assert!(matches!(
            started.as_slice(),
            [TableChange::Upsert { cgroup_id: 7, .. }]
        ));
        let exited = r.apply(
            SourceEvent::Exited {
                source: source(),
                key: key("a"),
                exit_status: Some(0),
            },
            resolve,
        );
        assert_eq!(exited, vec![TableChange::Remove { cgroup_id: 7 }]);
        // Deleting an already-removed or unknown container changes nothing.
        let deleted = r.apply(
            SourceEvent::Deleted {
                source: source(),
                key: key("a"),
            },
            resolve,
        );
        assert!(deleted.is_empty());
    }

    #[test]
    fn a_restarted_container_in_a_new_cgroup_moves_its_row() {
        let mut r = Reconciler::new();
        r.apply(
            SourceEvent::Started {
                source: source(),
                container: rec("a", Some("/kubepods/pod1/4")),
            },
            resolve,
        );
        let moved = r.apply(
            SourceEvent::Started {
                source: source(),
                container: rec("a", Some("/kubepods/pod1/5")),
            },
            resolve,
        );
        assert!(matches!(
            moved.as_slice(),
            [
                TableChange::Remove { cgroup_id: 4 },
                TableChange::Upsert { cgroup_id: 5, .. }
            ]
        ));
    }

    #[test]
    fn sources_do_not_remove_each_others_rows() {
        let mut r = Reconciler::new();
        let other = SourceId {
            runtime: Runtime::Podman,
            socket: PathBuf::from("/run/podman/podman.sock"),
        };
        r.apply(
            SourceEvent::Listed {
                source: source(),
                containers: vec![rec("a", Some("/kubepods/pod1/1"))],
            },
            resolve,
        );
        let listed = r.apply(
            SourceEvent::Listed {
                source: other,
                containers: vec![],
            },
            resolve,
        );
        assert!(!listed
            .iter()
            .any(|c| matches!(c, TableChange::Remove { .. })));
    }
}
