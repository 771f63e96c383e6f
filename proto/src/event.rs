//! The event schema: one JSON object per line, a stable interface documented in the README.
//!
//! This is the domain type every part of Seawall speaks (agent sinks, collector storage, SIEM
//! forwarding). Generated protobuf types are converted to and from it at the gRPC boundary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Exec,
    File,
    Network,
    Container,
    Agent,
}

/// What happened to the operation the event describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Seen, no control applied (visibility) or the control allowed it.
    Allowed,
    /// A control in `audit` mode matched: reported, not blocked.
    Audited,
    /// A control in `enforce` mode matched: the operation was denied or the process killed.
    Blocked,
}

/// How much a SOC should care. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// The process that did the thing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    pub args: Vec<String>,
    /// True when argv did not fit the kernel's buffer and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    /// Exec events: the process is in a `docker exec` session (it, or an ancestor, entered the
    /// container from outside after its init), whatever the profile says about sessions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exec_session: bool,
    /// Exec events: `exe` was cut (deeper or longer than the kernel assembles a path); a cut
    /// path never matches an allow list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exe_truncated: bool,
    /// Exec events: where the executed file lives, whatever the drift control says: `image`,
    /// `container` (written inside the container: the overlay's upper layer), `other_fs` (not the
    /// container's root filesystem: memfd, tmpfs, a volume), `deleted`, or `outside_root` (the
    /// process had not entered the container's root yet, as the runtime's own helper: no exec
    /// rule applies). Empty for other events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exe_source: String,
}

/// The container the process belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The engine that runs it: `docker`, `containerd`, `cri-o`, `podman`, or `micro` for a
    /// process tree under `seawall-micro`. Empty when not known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// The pod the container belongs to, from the runtime's `io.kubernetes.*` labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
}

/// Kubernetes identity of a pod's container (`io.kubernetes.pod.namespace`,
/// `io.kubernetes.pod.name`, `io.kubernetes.pod.uid`, `io.kubernetes.container.name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubernetes {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub container: String,
}

/// The threat-intelligence indicator an event matched (`control: "intel"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intel {
    /// The hash or address that matched, as the feed gave it.
    pub indicator: String,
    /// `sha256`, `ip` or `cidr`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The feed file the indicator came from.
    pub source: String,
    /// The feed's name for it (malware family, campaign), when the feed gives one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A file operation (`kind: "file"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub path: String,
    /// `open(2)` flags as the kernel saw them, decoded (`O_RDONLY`, `O_WRONLY|O_CREAT|O_TRUNC`, …).
    pub flags: String,
}

/// A network operation (`kind: "network"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// `connect`, `bind`, `listen`, `accept` or `sendmsg`.
    pub op: String,
    /// `tcp`, `udp` or `raw`.
    pub protocol: String,
    /// The peer (connect/sendmsg/accept) or local (bind) address, IPv4 or IPv6 text form.
    pub address: String,
    pub port: u16,
}

/// One event, as written to JSON lines and sent to the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Per-agent sequence number, strictly increasing, never reused: the delivery key.
    pub seq: u64,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    /// Host name of the node the agent runs on.
    pub node: String,
    pub kind: Kind,
    pub action: Action,
    /// The control that matched (`drift`, `exec`, `container_exec`, `file`, `network`), or
    /// `visibility` for plain sensor events, or an `agent`/`container` subject.
    pub control: String,
    pub severity: Severity,
    /// One human-readable line: what happened.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel: Option<Intel>,
}

/// Largest event, as a JSON line, that the agent spools and the collector stores as it is; a
/// larger one is cut by [`Event::bound`]. Well under the collector's smallest batch limit.
pub const MAX_EVENT_BYTES: usize = 64 << 10;

/// Cuts `s` to at most `max` bytes on a character boundary; true when it cut.
fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

impl Event {
    /// Makes an event whose JSON is over `max` bytes small enough to store: long strings are
    /// cut, argv is shortened (`args_truncated`), labels beyond the first few are dropped, and
    /// the message says what happened. Returns the JSON size before, when it cut anything.
    pub fn bound(&mut self, max: usize) -> Option<usize> {
        let before = self.to_json_line().len();
        if before <= max {
            return None;
        }
        // A first pass keeps what an analyst needs most; a second, tighter one guarantees the
        // bound whatever the shape (many labels, escapes that grow in JSON).
        for (field, rest, labels) in [(4096, 1024, 32), (256, 128, 0)] {
            if self.to_json_line().len() <= max {
                break;
            }
            self.cut_fields(field, rest, labels);
        }
        self.message.push_str(&format!(
            " [truncated by seawall: the event was {before} bytes]"
        ));
        Some(before)
    }

    fn cut_fields(&mut self, long: usize, short: usize, labels: usize) {
        cut(&mut self.message, long * 2);
        for s in [&mut self.time, &mut self.node, &mut self.control] {
            cut(s, short);
        }
        if let Some(p) = &mut self.process {
            cut(&mut p.comm, short);
            cut(&mut p.exe, long);
            let mut total = 0;
            let before = p.args.len();
            p.args.retain_mut(|a| {
                cut(a, long);
                // Quotes and comma: a million empty arguments are not small.
                total += a.len() + 3;
                total <= long
            });
            if p.args.len() < before || total > long {
                p.args_truncated = true;
            }
        }
        if let Some(c) = &mut self.container {
            for s in [
                &mut c.id,
                &mut c.name,
                &mut c.image,
                &mut c.image_id,
                &mut c.runtime,
            ] {
                cut(s, short);
            }
            if let Some(k) = &mut c.kubernetes {
                for s in [
                    &mut k.namespace,
                    &mut k.pod,
                    &mut k.pod_uid,
                    &mut k.container,
                ] {
                    cut(s, short);
                }
            }
            c.labels = std::mem::take(&mut c.labels)
                .into_iter()
                .take(labels)
                .map(|(mut k, mut v)| {
                    cut(&mut k, short / 4);
                    cut(&mut v, short / 2);
                    (k, v)
                })
                .collect();
        }
        if let Some(f) = &mut self.file {
            cut(&mut f.path, long);
            cut(&mut f.flags, short);
        }
        if let Some(n) = &mut self.network {
            for s in [&mut n.op, &mut n.protocol, &mut n.address] {
                cut(s, short);
            }
        }
        if let Some(i) = &mut self.intel {
            for s in [&mut i.indicator, &mut i.kind, &mut i.source, &mut i.name] {
                cut(s, short);
            }
        }
    }

    /// An event with only its required fields; the optional objects are set by the caller.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: u64,
        time: String,
        node: String,
        kind: Kind,
        action: Action,
        control: impl Into<String>,
        severity: Severity,
        message: String,
    ) -> Event {
        Event {
            seq,
            time,
            node,
            kind,
            action,
            control: control.into(),
            severity,
            message,
            process: None,
            container: None,
            file: None,
            network: None,
            intel: None,
        }
    }

    /// One JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an Event always serializes")
    }

    /// Writes the event as one JSON line, newline included, straight into `out` (no `String`
    /// of its own). Only `out`'s errors can fail it: an `Event` always serializes.
    pub fn write_json_line(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut out, self).map_err(std::io::Error::from)?;
        out.write_all(b"\n")
    }
}

impl Kind {
    /// The name the JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::File => "file",
            Kind::Network => "network",
            Kind::Container => "container",
            Kind::Agent => "agent",
        }
    }
}

impl Action {
    /// The name the JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allowed => "allowed",
            Action::Audited => "audited",
            Action::Blocked => "blocked",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                return Err(format!(
                    "unknown severity {other:?}: use info, low, medium, high or critical"
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_written_to_a_writer_is_the_line_and_a_newline() {
        let mut e = Event::new(
            7,
            "2026-12-01T00:00:00.000000000Z".into(),
            "n\"ode".into(),
            Kind::Network,
            Action::Audited,
            "network",
            Severity::Medium,
            "connect \u{1b} x".into(),
        );
        e.network = Some(Network {
            op: "connect".into(),
            protocol: "tcp".into(),
            address: "::1".into(),
            port: 80,
        });
        let mut out = b"earlier line\n".to_vec();
        e.write_json_line(&mut out).unwrap();
        let want = format!("earlier line\n{}\n", e.to_json_line());
        assert_eq!(String::from_utf8(out).unwrap(), want);
        for (k, name) in [(Kind::Exec, "exec"), (Kind::Agent, "agent")] {
            assert_eq!(k.as_str(), name);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{name}\""));
        }
        for a in [Action::Allowed, Action::Audited, Action::Blocked] {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
    }

    #[test]
    fn bound_keeps_small_events_and_cuts_huge_ones_below_the_limit() {
        let mut e = Event::new(
            1,
            "t".into(),
            "n".into(),
            Kind::Exec,
            Action::Blocked,
            "drift",
            Severity::High,
            "m".into(),
        );
        assert_eq!(e.bound(MAX_EVENT_BYTES), None);
        e.message = "\u{1}".repeat(1 << 20); // grows six-fold as JSON escapes
        e.process = Some(Process {
            args: vec!["é".repeat(1 << 19); 8],
            ..Default::default()
        });
        e.container = Some(Container {
            labels: (0..10_000)
                .map(|i| (format!("k{i}"), "v".repeat(1000)))
                .collect(),
            ..Default::default()
        });
        e.file = Some(File {
            path: "/".repeat(1 << 20),
            flags: String::new(),
        });
        let before = e.bound(MAX_EVENT_BYTES).expect("cut");
        assert!(before > MAX_EVENT_BYTES);
        assert!(
            e.to_json_line().len() <= MAX_EVENT_BYTES,
            "{} bytes",
            e.to_json_line().len()
        );
        assert!(e.process.as_ref().unwrap().args_truncated);
        assert!(e
            .message
            .ends_with(&format!("the event was {before} bytes]")));
    }

    /// Found by the collector_request fuzz target: each empty argument still costs `"",` in
    /// JSON, so counting only argument bytes let a million of them pass the bound.
    #[test]
    fn bound_counts_the_json_cost_of_empty_arguments() {
        let mut e = Event::new(
            1,
            "t".into(),
            "n".into(),
            Kind::Exec,
            Action::Allowed,
            "exec",
            Severity::Info,
            String::new(),
        );
        e.process = Some(Process {
            args: vec![String::new(); 1 << 20],
            ..Default::default()
        });
        assert!(e.bound(MAX_EVENT_BYTES).is_some());
        assert!(e.to_json_line().len() <= MAX_EVENT_BYTES);
        assert!(e.process.as_ref().unwrap().args_truncated);
    }
}
