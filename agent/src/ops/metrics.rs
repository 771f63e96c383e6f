//! The agent's Prometheus metrics, in a `prometheus-client` registry that
//! `seawall_service::metrics::serve` exposes on `--metrics ADDR`.
//!
//! Label values come from closed sets (event kinds, actions, control and backend names), never
//! from event data, so the number of series stays bounded.

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::kernel::programs::{Backend, Control};

/// Label text: borrowed for the known names (no allocation per event), owned otherwise.
type Label = Cow<'static, str>;

/// The names events use for kind, action and control, interned so counting an event does not
/// allocate.
const KNOWN: &[&str] = &[
    "exec",
    "file",
    "network",
    "container",
    "agent",
    "allowed",
    "audited",
    "blocked",
    "drift",
    "container_exec",
    "visibility",
    "lifecycle",
    "delivery",
];

fn label(text: &str) -> Label {
    match KNOWN.iter().find(|k| **k == text) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(text.to_owned()),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    kind: Label,
    action: Label,
    control: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    control: Label,
    backend: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: Label,
}

/// A counter fed with absolute totals read elsewhere (the kernel's per-CPU counters, the
/// spool's drop count): it advances by the difference, never backwards.
#[derive(Debug, Default)]
struct AbsoluteCounter {
    counter: Counter,
    seen: AtomicU64,
}

impl AbsoluteCounter {
    fn set(&self, total: u64) {
        let before = self.seen.fetch_max(total, Ordering::Relaxed);
        if total > before {
            self.counter.inc_by(total - before);
        }
    }
}

/// Every metric the agent exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    events: Family<EventLabels, Counter>,
    ringbuf_drops: AbsoluteCounter,
    containers: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    spool_depth: Gauge,
    spool_dropped: AbsoluteCounter,
    delivery_lag_seconds: Gauge<f64, AtomicU64>,
    backends: Family<BackendLabels, Gauge>,
    records_lost: Counter,
    records_suppressed: AbsoluteCounter,
    map_full: Family<MapLabels, Counter>,
    map_entries: Family<MapLabels, Gauge>,
    map_capacity: Family<MapLabels, Gauge>,
    file_unreported: Counter,
    /// control → backend label now set, so a change replaces the series instead of adding one.
    // A std Mutex: held for a map update at start or on a backend change, never across await.
    backend_of: Mutex<std::collections::BTreeMap<Label, Label>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family, reporting this build's version.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "seawall_events",
            "Events emitted by the agent, by kind, action and control",
            events.clone(),
        );
        let ringbuf_drops = AbsoluteCounter::default();
        registry.register(
            "seawall_ringbuf_drops",
            "Kernel events lost because the ring buffer was full",
            ringbuf_drops.counter.clone(),
        );
        let containers = Gauge::default();
        registry.register(
            "seawall_containers_monitored",
            "Containers the agent currently monitors",
            containers.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        // Both results exist from the start, so a dashboard sees zero, not no data.
        for result in ["ok", "error"] {
            reloads.get_or_create(&ReloadLabels { result }).inc_by(0);
        }
        registry.register(
            "seawall_profile_reloads",
            "Profile reloads, by result; on error the previous policy stays active",
            reloads.clone(),
        );
        let spool_depth = Gauge::default();
        registry.register(
            "seawall_spool_depth_events",
            "Events in the delivery spool waiting for the collector's acknowledgement",
            spool_depth.clone(),
        );
        let delivery_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "seawall_delivery_lag_seconds",
            "Age of the oldest event not yet acknowledged by the collector",
            delivery_lag_seconds.clone(),
        );
        let spool_dropped = AbsoluteCounter::default();
        registry.register(
            "seawall_spool_dropped",
            "Events dropped because the delivery spool was full",
            spool_dropped.counter.clone(),
        );
        let backends = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "seawall_backend_info",
            "The enforcement backend each control runs on (value 1)",
            backends.clone(),
        );
        let records_lost = Counter::default();
        registry.register(
            "seawall_kernel_records_lost",
            "Kernel records an agent read from the ring and never wrote out (it died first), counted by the next agent",
            records_lost.clone(),
        );
        let records_suppressed = AbsoluteCounter::default();
        registry.register(
            "seawall_kernel_records_suppressed",
            "Allowed kernel records counted but not sent one by one: a container over its event budget, or the ring over half full",
            records_suppressed.counter.clone(),
        );
        let map_full = Family::<MapLabels, Counter>::default();
        registry.register(
            "seawall_kernel_map_full",
            "Kernel map insertions that failed because the map was full, by map",
            map_full.clone(),
        );
        let map_entries = Family::<MapLabels, Gauge>::default();
        registry.register(
            "seawall_kernel_map_entries",
            "Entries in the kernel maps a flood or a leak could fill",
            map_entries.clone(),
        );
        let map_capacity = Family::<MapLabels, Gauge>::default();
        registry.register(
            "seawall_kernel_map_capacity",
            "Capacity of those maps",
            map_capacity.clone(),
        );
        let file_unreported = Counter::default();
        registry.register(
            "seawall_file_events_unreported",
            "fanotify permission events answered but not reported because the pipeline was full",
            file_unreported.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "seawall_build_info",
            "The running agent's version (value 1)",
            build,
        );
        Metrics {
            registry: Arc::new(registry),
            events,
            ringbuf_drops,
            containers,
            reloads,
            spool_depth,
            spool_dropped,
            delivery_lag_seconds,
            backends,
            records_lost,
            records_suppressed,
            map_full,
            map_entries,
            map_capacity,
            file_unreported,
            backend_of: Mutex::default(),
        }
    }

    /// Kernel records found lost (read by an earlier agent and never written out).
    pub fn add_records_lost(&self, n: u64) {
        self.records_lost.inc_by(n);
    }

    /// Allowed kernel records held back, summed over CPUs (absolute).
    pub fn set_records_suppressed(&self, total: u64) {
        self.records_suppressed.set(total);
    }

    /// Failed insertions into a full kernel map.
    pub fn add_map_full(&self, map: &str, n: u64) {
        self.map_full
            .get_or_create(&MapLabels {
                map: Cow::Owned(map.to_owned()),
            })
            .inc_by(n);
    }

    /// How full a kernel map is.
    pub fn set_map_usage(&self, map: &str, entries: u64, capacity: u64) {
        let labels = MapLabels {
            map: Cow::Owned(map.to_owned()),
        };
        self.map_entries.get_or_create(&labels).set(entries as i64);
        self.map_capacity
            .get_or_create(&labels)
            .set(capacity as i64);
    }

    /// fanotify events answered and not reported.
    pub fn add_file_unreported(&self, n: u64) {
        self.file_unreported.inc_by(n);
    }

    /// The registry, for the endpoint.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Counts one emitted event.
    pub fn inc_event(&self, kind: &str, action: &str, control: &str) {
        self.events
            .get_or_create(&EventLabels {
                kind: label(kind),
                action: label(action),
                control: label(control),
            })
            .inc();
    }

    /// Ring-buffer reservations that failed, summed over CPUs (an absolute count read from the
    /// kernel's counter map).
    pub fn set_ringbuf_drops(&self, drops: u64) {
        self.ringbuf_drops.set(drops);
    }

    /// Containers currently monitored.
    pub fn set_containers(&self, count: u64) {
        self.containers.set(count as i64);
    }

    /// Counts one profile reload, successful or rejected.
    pub fn profile_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// The delivery spool's state: events waiting for acknowledgement, events dropped because
    /// the spool was full (absolute count), and the age of the oldest unacknowledged event.
    pub fn set_spool(&self, depth: u64, dropped: u64, lag_secs: f64) {
        self.spool_depth.set(depth as i64);
        self.spool_dropped.set(dropped);
        self.delivery_lag_seconds.set(lag_secs);
    }

    /// Records the backend a control runs on.
    pub fn set_backend(&self, control: Control, backend: Backend) {
        self.set_backend_labels(control.name(), backend.name());
    }

    /// Replaces any earlier backend series of `control`.
    fn set_backend_labels(&self, control: &str, backend: &str) {
        let mut now = self.backend_of.lock().unwrap_or_else(|e| e.into_inner());
        let control: Label = Cow::Owned(control.to_owned());
        if let Some(old) = now.insert(control.clone(), Cow::Owned(backend.to_owned())) {
            self.backends.remove(&BackendLabels {
                control: control.clone(),
                backend: old,
            });
        }
        self.backends
            .get_or_create(&BackendLabels {
                control,
                backend: Cow::Owned(backend.to_owned()),
            })
            .set(1);
    }

    /// The whole registry in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        seawall_service::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// One parsed sample line.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict parser for the subset of the text format we emit. It checks that every
    /// sample's family was announced with HELP then TYPE before its first sample, and that
    /// each family appears once.
    fn parse(text: &str) -> Vec<Sample> {
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        let mut helped = HashSet::new();
        let mut typed = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has text");
                assert!(!help.is_empty());
                assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(["counter", "gauge"].contains(&kind), "{kind}");
                assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none());
            } else {
                let sample = parse_sample(line);
                assert!(typed.contains_key(&sample.name), "no TYPE for {line}");
                if typed[&sample.name] == "counter" {
                    assert!(sample.name.ends_with("_total"), "{}", sample.name);
                }
                samples.push(sample);
            }
        }
        samples
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = &line[..name_end];
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            loop {
                let (start, _) = *chars.peek().unwrap();
                let eq = after[start..].find('=').unwrap() + start;
                let label = after[start..eq].to_owned();
                for _ in start..=eq {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
                let mut value = String::new();
                loop {
                    match chars.next().unwrap().1 {
                        '\\' => match chars.next().unwrap().1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other} in {line}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline in label value"),
                        c => value.push(c),
                    }
                }
                labels.push((label, value));
                match chars.next().unwrap() {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &after[i + 1..];
                        break;
                    }
                    (_, c) => panic!("unexpected {c:?} in {line}"),
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("space before value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}")),
        };
        Sample {
            name: name.to_owned(),
            labels,
            value,
        }
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn empty_registry_renders_every_family() {
        let samples = parse(&Metrics::new().render());
        let families: HashSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "seawall_ringbuf_drops_total",
            "seawall_containers_monitored",
            "seawall_profile_reloads_total",
            "seawall_spool_depth_events",
            "seawall_delivery_lag_seconds",
            "seawall_spool_dropped_total",
            "seawall_build_info",
        ] {
            assert!(families.contains(name), "{name} missing");
        }
        assert_eq!(
            value(
                &samples,
                "seawall_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        let nasty = "a\\b\"c\nd";
        metrics.inc_event("exec", nasty, "drift");
        metrics.set_backend_labels(nasty, "tracepoint+signal");
        let text = metrics.render();
        assert!(text.contains(r#"action="a\\b\"c\nd""#), "{text}");
        let samples = parse(&text);
        assert_eq!(
            value(
                &samples,
                "seawall_events_total",
                &[("kind", "exec"), ("action", nasty), ("control", "drift")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &samples,
                "seawall_backend_info",
                &[("control", nasty), ("backend", "tracepoint+signal")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn floats_are_spelled_the_prometheus_way() {
        let metrics = Metrics::new();
        metrics.set_spool(0, 0, f64::INFINITY);
        assert!(metrics
            .render()
            .contains("\nseawall_delivery_lag_seconds +Inf\n"));
        metrics.set_spool(0, 0, 0.25);
        assert!(metrics
            .render()
            .contains("\nseawall_delivery_lag_seconds 0.25\n"));
    }

    #[test]
    fn backend_is_replaced_not_added() {
        let metrics = Metrics::new();
        metrics.set_backend(Control::Exec, Backend::BpfLsm);
        metrics.set_backend(Control::Exec, Backend::ExecSignal);
        let samples = parse(&metrics.render());
        let exec: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "seawall_backend_info")
            .collect();
        assert_eq!(exec.len(), 1);
        assert_eq!(
            exec[0].labels,
            vec![
                ("control".to_owned(), "exec".to_owned()),
                ("backend".to_owned(), "exec_signal".to_owned())
            ]
        );
    }

    #[test]
    fn every_update_shows_in_the_next_render() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.inc_event("exec", "blocked", "drift");
        }
        metrics.inc_event("network", "audited", "egress");
        metrics.set_ringbuf_drops(7);
        metrics.set_ringbuf_drops(5); // an absolute total never goes backwards
        metrics.set_containers(4);
        metrics.profile_reload(true);
        metrics.profile_reload(true);
        metrics.profile_reload(false);
        metrics.set_spool(12, 2, 1.5);
        metrics.set_backend(Control::Exec, Backend::BpfLsm);
        metrics.set_backend(Control::Network, Backend::CgroupSock);

        let samples = parse(&metrics.render());
        let get = |name, labels: &[(&str, &str)]| value(&samples, name, labels);
        let event = [
            ("kind", "exec"),
            ("action", "blocked"),
            ("control", "drift"),
        ];
        assert_eq!(get("seawall_events_total", &event), Some(3.0));
        let event = [
            ("kind", "network"),
            ("action", "audited"),
            ("control", "egress"),
        ];
        assert_eq!(get("seawall_events_total", &event), Some(1.0));
        assert_eq!(get("seawall_ringbuf_drops_total", &[]), Some(7.0));
        assert_eq!(get("seawall_containers_monitored", &[]), Some(4.0));
        let ok = [("result", "ok")];
        assert_eq!(get("seawall_profile_reloads_total", &ok), Some(2.0));
        let error = [("result", "error")];
        assert_eq!(get("seawall_profile_reloads_total", &error), Some(1.0));
        assert_eq!(get("seawall_spool_depth_events", &[]), Some(12.0));
        assert_eq!(get("seawall_spool_dropped_total", &[]), Some(2.0));
        assert_eq!(get("seawall_delivery_lag_seconds", &[]), Some(1.5));
        let lsm = [("control", "exec"), ("backend", "bpf_lsm")];
        assert_eq!(get("seawall_backend_info", &lsm), Some(1.0));
    }
}
