//! Turning a `PublishRequest`'s events into what the store takes, one event at a time.
//!
//! A batch never fails as a whole because of one event in it: that batch would fail the same way
//! on every retry and stall the agent's delivery for good. An event the collector cannot take as
//! it is (an enum value it does not know, a port out of range, a seq out of order, a `node` its
//! certificate does not cover) is rejected with a reason; where its seq can still be kept, a
//! `kind: agent`, `control: delivery` record takes its place in the store, so the loss is visible
//! downstream. An event too large to store is cut to size ([`Event::bound`]).

use seawall_proto::event::{Action, Event, Kind, Severity, MAX_EVENT_BYTES};
use seawall_proto::pb;

/// A batch as the store takes it.
#[derive(Debug, Default)]
pub struct Intake {
    /// Strictly increasing seqs: events as sent (cut to size when too large) and delivery
    /// records in place of rejected ones.
    pub events: Vec<Event>,
    pub rejected: Vec<pb::RejectedEvent>,
    /// Events cut to [`MAX_EVENT_BYTES`].
    pub bounded: u32,
}

/// Which `node` names an agent identity may publish events for.
pub trait NodePolicy {
    /// `None` when `node` is allowed, else why not.
    fn check(&self, node: &str) -> Option<String>;
    /// The node a rejection record names when the event's own `node` was not allowed (empty:
    /// keep the event's).
    fn identity(&self) -> &str;
}

/// Any node (`--insecure`, where identities are only claimed anyway).
pub struct AnyNode;

impl NodePolicy for AnyNode {
    fn check(&self, _: &str) -> Option<String> {
        None
    }
    fn identity(&self) -> &str {
        ""
    }
}

/// Decodes one batch. Never fails: what cannot be taken is listed in `rejected`.
pub fn decode(wire: Vec<pb::Event>, nodes: &dyn NodePolicy) -> Intake {
    let mut out = Intake::default();
    let mut last_seq = 0u64;
    for w in wire {
        let seq = w.seq;
        if seq == 0 || seq <= last_seq {
            // No record can hold this seq: the store keeps each instance's seqs increasing.
            let reason = if seq == 0 {
                "seq 0: seq numbers start at 1".to_string()
            } else {
                format!("seq {seq} is not above the previous seq {last_seq} of the batch")
            };
            out.rejected.push(pb::RejectedEvent { seq, reason });
            continue;
        }
        last_seq = seq;
        let time = w.time.clone();
        // The node is checked first: a record about an event refused for its node must not
        // carry that node (it would attribute the record to a host the agent cannot speak for).
        let (node, reason) = match nodes.check(&w.node) {
            Some(reason) if !nodes.identity().is_empty() => (nodes.identity().to_string(), reason),
            Some(reason) => (w.node.clone(), reason),
            None => {
                let node = w.node.clone();
                match Event::try_from(w) {
                    Ok(mut e) => {
                        if e.bound(MAX_EVENT_BYTES).is_some() {
                            out.bounded += 1;
                        }
                        out.events.push(e);
                        continue;
                    }
                    Err(e) => (node, e.to_string()),
                }
            }
        };
        out.events.push(rejection_record(seq, node, time, &reason));
        out.rejected.push(pb::RejectedEvent { seq, reason });
    }
    out
}

/// The record stored in place of a rejected event.
fn rejection_record(seq: u64, mut node: String, time: String, reason: &str) -> Event {
    let valid_time =
        time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339).is_ok();
    let time = if valid_time && time.len() <= 64 {
        time
    } else {
        crate::store::now_rfc3339()
    };
    let mut node_end = node.len().min(256);
    while !node.is_char_boundary(node_end) {
        node_end -= 1;
    }
    node.truncate(node_end);
    let mut e = Event::new(
        seq,
        time,
        node,
        Kind::Agent,
        Action::Allowed,
        "delivery",
        Severity::High,
        format!("the collector rejected event seq {seq} of this agent: {reason}"),
    );
    e.bound(MAX_EVENT_BYTES);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(seq: u64) -> pb::Event {
        pb::Event::from(&Event::new(
            seq,
            "2026-05-01T10:00:00Z".into(),
            "n".into(),
            Kind::Exec,
            Action::Blocked,
            "drift",
            Severity::High,
            "m".into(),
        ))
    }

    struct OnlyNode(&'static str);
    impl NodePolicy for OnlyNode {
        fn check(&self, node: &str) -> Option<String> {
            (node != self.0).then(|| format!("node {node:?} is not {:?}", self.0))
        }
        fn identity(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn each_bad_event_is_rejected_alone_and_keeps_its_place_when_it_can() {
        let mut b: Vec<pb::Event> = [1, 2, 2, 0, 3, 4].into_iter().map(wire).collect();
        b[1].severity = 77;
        b[5].node = "other".into();
        let got = decode(b, &OnlyNode("n"));
        let seqs: Vec<u64> = got.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(got.events[1].control, "delivery");
        assert!(got.events[1].message.contains("severity"));
        assert_eq!(got.events[3].control, "delivery");
        assert_eq!(
            got.events[3].node, "n",
            "named after the identity, not the claimed node"
        );
        let rejected: Vec<u64> = got.rejected.iter().map(|r| r.seq).collect();
        assert_eq!(rejected, [2, 2, 0, 4]);
    }
}
