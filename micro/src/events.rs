//! Events in the agent's schema (`seawall_proto::event::Event`, `container.runtime = "micro"`):
//! JSON lines to `--output` (stderr by default) and, with `--collector`, the same events through
//! `seawall-delivery`'s spool and acknowledged stream.
//!
//! Handlers hand events to one writer thread over a bounded queue and never wait on it: a flood
//! of violations cannot slow down the calls being decided, and what does not fit is counted and
//! reported as one `agent` event.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use seawall_delivery::{CollectorConfig, Delivery};
use seawall_proto::event::{Action, Container, Event, File, Kind, Network, Process, Severity};

/// Where JSON lines go.
#[derive(Debug, Clone)]
pub enum Output {
    Stderr,
    Stdout,
    File(PathBuf),
}

impl Output {
    /// `-` is stdout (as for the agent), no value is stderr.
    pub fn parse(v: Option<&str>) -> Output {
        match v {
            None => Output::Stderr,
            Some("-") => Output::Stdout,
            Some(p) => Output::File(PathBuf::from(p)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("opening the event output {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the collector runtime")]
    Runtime(#[source] std::io::Error),
    #[error("starting delivery to the collector")]
    Delivery(#[source] seawall_delivery::DeliveryError),
}

/// Events waiting for the writer; past this they are dropped and counted.
const QUEUE: usize = 65_536;

/// What a handler knows about an event; the writer numbers it.
pub struct Draft {
    pub kind: Kind,
    pub action: Action,
    pub control: &'static str,
    pub message: String,
    pub process: Option<Process>,
    pub file: Option<File>,
    pub network: Option<Network>,
}

/// The agent's severities: drift blocked is critical, other blocks high, audits medium (drift
/// audited high), plain reports info.
pub fn severity(control: &str, action: Action) -> Severity {
    match (action, control) {
        (Action::Allowed, _) => Severity::Info,
        (Action::Blocked, "drift") => Severity::Critical,
        (Action::Blocked, _) => Severity::High,
        (Action::Audited, "drift") => Severity::High,
        (Action::Audited, _) => Severity::Medium,
    }
}

/// What the writer thread receives.
enum Msg {
    Event(String, Box<Draft>),
    /// Write everything before this, flush the spool, and stop.
    Finish,
}

/// Handle for emitting events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

/// The writer thread, to be joined at exit so nothing queued is lost.
pub struct Writer {
    thread: std::thread::JoinHandle<()>,
}

/// Identity of the wrapped tree in every event.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub container: Container,
}

impl Events {
    pub fn start(
        output: Output,
        collector: Option<CollectorConfig>,
        who: Identity,
    ) -> Result<(Events, Writer), EventsError> {
        let mut out: Box<dyn Write + Send> = match &output {
            Output::Stderr => Box::new(std::io::stderr()),
            Output::Stdout => Box::new(std::io::stdout()),
            Output::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| EventsError::Open {
                        path: p.clone(),
                        source,
                    })?,
            ),
        };
        let mut delivery = None;
        let mut next_seq = 1;
        if let Some(cfg) = collector {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("seawall-delivery")
                .enable_all()
                .build()
                .map_err(EventsError::Runtime)?;
            let (d, last) = rt
                .block_on(Delivery::start(cfg))
                .map_err(EventsError::Delivery)?;
            next_seq = last + 1;
            delivery = Some((rt, d));
        }
        let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("seawall-events".into())
            .spawn(move || {
                let mut seq = next_seq;
                let mut write = |time: String, d: Draft| {
                    let mut ev = Event::new(
                        seq,
                        time,
                        who.node.clone(),
                        d.kind,
                        d.action,
                        d.control,
                        severity(d.control, d.action),
                        d.message,
                    );
                    seq += 1;
                    ev.process = d.process;
                    ev.container = Some(who.container.clone());
                    ev.file = d.file;
                    ev.network = d.network;
                    // One write per line: stderr is shared with the tree, and a pipe keeps a
                    // write of up to PIPE_BUF bytes whole among other writers.
                    let mut line = ev.to_json_line();
                    line.push('\n');
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.flush();
                    if let Some((_, d)) = &delivery {
                        if let Err(e) = d.publish(&ev) {
                            tracing::error!(error = %e, seq = ev.seq, "spooling an event for the collector failed");
                        }
                        let lost = d.take_dropped();
                        if lost > 0 {
                            tracing::warn!(lost, "the delivery spool was full");
                        }
                    }
                };
                loop {
                    match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(Msg::Event(time, d)) => write(time, *d),
                        Ok(Msg::Finish) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    let lost = counted.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        write(
                            now_rfc3339(),
                            agent_draft(
                                Action::Allowed,
                                format!("{lost} events were dropped: more violations than the event queue holds"),
                            ),
                        );
                    }
                }
                let lost = counted.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    write(
                        now_rfc3339(),
                        agent_draft(Action::Allowed, format!("{lost} events were dropped: more violations than the event queue holds")),
                    );
                }
                if let Some((rt, d)) = delivery {
                    rt.block_on(d.shutdown());
                }
            })
            .map_err(EventsError::Runtime)?;
        Ok((Events { tx, dropped }, Writer { thread }))
    }

    /// Queues an event; never blocks.
    pub fn emit(&self, d: Draft) {
        if self
            .tx
            .try_send(Msg::Event(now_rfc3339(), Box::new(d)))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An `agent` event (start, degraded controls, stop).
    pub fn agent(&self, action: Action, message: String) {
        self.emit(agent_draft(action, message));
    }
}

fn agent_draft(action: Action, message: String) -> Draft {
    Draft {
        kind: Kind::Agent,
        action,
        control: "agent",
        message,
        process: None,
        file: None,
        network: None,
    }
}

impl Writer {
    /// Waits for everything queued so far to be written and spooled. Other handles (held by
    /// threads that never end, such as the notification loop) may still exist: what they
    /// emit from now on is not written.
    pub fn finish(self, events: Events) {
        let _ = events.tx.send(Msg::Finish);
        let _ = self.thread.join();
    }
}

/// RFC 3339, UTC, nine fractional digits (the schema's `time`).
pub fn now_rfc3339() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_in_order_with_the_micro_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        let who = Identity {
            node: "n1".into(),
            container: Container {
                id: "abc".into(),
                runtime: "micro".into(),
                ..Container::default()
            },
        };
        let (ev, w) = Events::start(Output::File(path.clone()), None, who).unwrap();
        ev.agent(Action::Allowed, "started".into());
        ev.emit(Draft {
            kind: Kind::Exec,
            action: Action::Blocked,
            control: "drift",
            message: "drift: exec /tmp/x blocked".into(),
            process: None,
            file: None,
            network: None,
        });
        w.finish(ev);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[1]["seq"], 2);
        assert_eq!(lines[1]["severity"], "critical");
        assert_eq!(lines[1]["container"]["runtime"], "micro");
        assert_eq!(lines[1]["node"], "n1");
        let t = lines[1]["time"].as_str().unwrap();
        assert!(
            t.ends_with('Z') && t.len() == "2026-01-01T00:00:00.000000000Z".len(),
            "{t}"
        );
    }
}
