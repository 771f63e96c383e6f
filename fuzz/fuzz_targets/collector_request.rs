//! Decoding what a peer sends the collector: `PublishRequest` through the intake (per-event
//! rejection, size bounds) and the `Subscribe`/`Query` filters. Never a panic; the intake's output
//! is always storable (strictly increasing seqs, each event within the size bound).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use seawall_collector::filter::Filter;
use seawall_collector::intake::{self, AnyNode, NodePolicy};
use seawall_proto::event::MAX_EVENT_BYTES;
use seawall_proto::pb;

/// Allows one node, like an agent certificate naming one host.
struct OneNode;
impl NodePolicy for OneNode {
    fn check(&self, node: &str) -> Option<String> {
        (node != "node-1").then(|| format!("node {node:?}"))
    }
    fn identity(&self) -> &str {
        "node-1"
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let Ok(req) = pb::PublishRequest::decode(body) else {
                return;
            };
            let wire = req.events.len();
            for policy in [&AnyNode as &dyn NodePolicy, &OneNode] {
                let got = intake::decode(req.events.clone(), policy);
                assert!(got.events.windows(2).all(|w| w[0].seq < w[1].seq));
                assert!(got.events.iter().all(|e| e.seq > 0));
                assert!(got
                    .events
                    .iter()
                    .all(|e| e.to_json_line().len() <= MAX_EVENT_BYTES));
                assert!(got.events.len() <= wire && got.rejected.len() <= wire);
            }
        }
        1 => {
            if let Ok(req) = pb::SubscribeRequest::decode(body) {
                let _ = Filter::try_from(req.filter.unwrap_or_default());
            }
        }
        _ => {
            if let Ok(req) = pb::QueryRequest::decode(body) {
                let _ = Filter::try_from(req.filter.unwrap_or_default());
            }
        }
    }
});
