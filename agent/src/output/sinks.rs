//! Where events go: JSON lines on stdout or a file, local API subscribers, the collector
//! (through the spool) and the metrics.

use std::{
    io::{BufWriter, Write},
    sync::Arc,
};

use seawall_proto::event::Event;
use tokio::sync::broadcast;

use crate::ops::metrics::Metrics;

/// A consumer of every event, in order (e.g. the collector spool).
pub type Forward = Box<dyn FnMut(&Event) + Send>;

pub struct Sinks {
    writer: BufWriter<Box<dyn Write + Send>>,
    /// Local API subscribers (`seawall events`).
    pub bus: broadcast::Sender<Arc<str>>,
    pub metrics: Arc<Metrics>,
    /// Further consumers (the collector spool): each gets every event, in order.
    pub forward: Vec<Forward>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("opening output {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Sinks {
    /// `-` is stdout; anything else a file appended to (created 0600).
    pub fn open(output: &str, metrics: Arc<Metrics>) -> Result<Self, OutputError> {
        let w: Box<dyn Write + Send> = if output == "-" {
            Box::new(std::io::stdout())
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(output)
                    .map_err(|source| OutputError::Open {
                        path: output.into(),
                        source,
                    })?,
            )
        };
        let (bus, _) = broadcast::channel(4096);
        Ok(Self {
            writer: BufWriter::with_capacity(64 << 10, w),
            bus,
            metrics,
            forward: Vec::new(),
        })
    }

    /// Writes the event, publishes it to local subscribers, forwards it, counts it. The JSON
    /// is serialized straight into the output buffer unless someone subscribes to the local
    /// bus, which needs a line of its own.
    pub fn emit(&mut self, ev: &Event) {
        let written = if self.bus.receiver_count() == 0 {
            ev.write_json_line(&mut self.writer)
        } else {
            let line = ev.to_json_line();
            let written = self
                .writer
                .write_all(line.as_bytes())
                .and_then(|()| self.writer.write_all(b"\n"));
            let _ = self.bus.send(Arc::from(line));
            written
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "writing an event to the output failed");
        }
        for f in &mut self.forward {
            f(ev);
        }
        self.metrics
            .inc_event(ev.kind.as_str(), ev.action.as_str(), &ev.control);
    }

    /// Every event from now on also goes to the collector's spool, in order.
    pub fn forward_to(&mut self, delivery: seawall_delivery::Delivery) {
        self.forward.push(Box::new(move |ev| {
            if let Err(e) = delivery.publish(ev) {
                tracing::error!(error = %seawall_service::ErrorChain(&e), seq = ev.seq, "spooling an event for the collector failed");
            }
        }));
    }

    /// Called when the pipeline has nothing more queued: one write for a burst of events.
    pub fn flush(&mut self) {
        if let Err(e) = self.writer.flush() {
            tracing::error!(error = %e, "flushing the event output failed");
        }
    }
}
