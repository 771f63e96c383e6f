//! Prometheus metrics: a registry the daemon updates and a tiny HTTP endpoint that serves it.
//!
//! The exposition is the Prometheus text format, version 0.0.4. The endpoint is off unless
//! `--metrics ADDR` is given; it answers `GET /metrics` (and `HEAD`) and nothing else, one request per
//! connection, with bounded request size, time and concurrency. That is all a scraper needs, so we do
//! not pull in an HTTP stack.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The longest request head we read; a scraper sends a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client that has not sent its request (or read our answer) in this time is dropped.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 16;
/// How long shutdown waits for scrapes in flight before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `seawall_events_total` series, keyed kind → action → control. Nested so the hot path looks a
/// series up by `&str` without allocating a key.
type EventSeries = BTreeMap<String, BTreeMap<String, BTreeMap<String, AtomicU64>>>;

/// Every metric the agent exposes. Updates are lock-free atomics except the first sighting of a new
/// event label set and backend changes, which are rare.
#[derive(Debug)]
pub struct Metrics {
    version: &'static str,
    // std RwLock, not tokio's: it is held for a map lookup only, never across an await.
    events: RwLock<EventSeries>,
    ringbuf_drops: AtomicU64,
    containers: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    spool_depth: AtomicU64,
    spool_dropped: AtomicU64,
    /// An `f64`, stored as its bits.
    delivery_lag_seconds: AtomicU64,
    /// control → backend in use.
    backends: Mutex<BTreeMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry reporting this build's version.
    pub fn new() -> Metrics {
        Metrics {
            version: env!("CARGO_PKG_VERSION"),
            events: RwLock::new(BTreeMap::new()),
            ringbuf_drops: AtomicU64::new(0),
            containers: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
            spool_depth: AtomicU64::new(0),
            spool_dropped: AtomicU64::new(0),
            delivery_lag_seconds: AtomicU64::new(0f64.to_bits()),
            backends: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one emitted event. Labels must come from closed sets (event kinds, actions, control
    /// names), never from event data, or the number of series grows without bound.
    pub fn inc_event(&self, kind: &str, action: &str, control: &str) {
        {
            let events = self.events.read().unwrap_or_else(|e| e.into_inner());
            if let Some(counter) = events
                .get(kind)
                .and_then(|by_action| by_action.get(action))
                .and_then(|by_control| by_control.get(control))
            {
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut events = self.events.write().unwrap_or_else(|e| e.into_inner());
        events
            .entry(kind.to_owned())
            .or_default()
            .entry(action.to_owned())
            .or_default()
            .entry(control.to_owned())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Ring-buffer reservations that failed, summed over CPUs (an absolute count read from the
    /// kernel's counter map).
    pub fn set_ringbuf_drops(&self, drops: u64) {
        self.ringbuf_drops.store(drops, Ordering::Relaxed);
    }

    /// Containers currently monitored.
    pub fn set_containers(&self, count: u64) {
        self.containers.store(count, Ordering::Relaxed);
    }

    /// Counts one profile reload, successful or rejected.
    pub fn profile_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The delivery spool's state: events waiting for acknowledgement, events dropped because the
    /// spool was full (absolute count), and the age of the oldest unacknowledged event in seconds.
    pub fn set_spool(&self, depth: u64, dropped: u64, lag_secs: f64) {
        self.spool_depth.store(depth, Ordering::Relaxed);
        self.spool_dropped.store(dropped, Ordering::Relaxed);
        self.delivery_lag_seconds
            .store(lag_secs.to_bits(), Ordering::Relaxed);
    }

    /// Records the backend a control runs on (replacing any earlier one for that control).
    pub fn set_backend(&self, control: &str, backend: &str) {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.insert(control.to_owned(), backend.to_owned());
    }

    /// The whole registry in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);

        family(
            &mut out,
            "seawall_events_total",
            "counter",
            "Events emitted by the agent, by kind, action and control.",
        );
        {
            let events = self.events.read().unwrap_or_else(|e| e.into_inner());
            for (kind, by_action) in events.iter() {
                for (action, by_control) in by_action {
                    for (control, count) in by_control {
                        sample(
                            &mut out,
                            "seawall_events_total",
                            &[("kind", kind), ("action", action), ("control", control)],
                            count.load(Ordering::Relaxed),
                        );
                    }
                }
            }
        }

        family(
            &mut out,
            "seawall_ringbuf_drops_total",
            "counter",
            "Kernel events lost because the ring buffer was full.",
        );
        sample(
            &mut out,
            "seawall_ringbuf_drops_total",
            &[],
            self.ringbuf_drops.load(Ordering::Relaxed),
        );

        family(
            &mut out,
            "seawall_containers_monitored",
            "gauge",
            "Containers the agent currently monitors.",
        );
        sample(
            &mut out,
            "seawall_containers_monitored",
            &[],
            self.containers.load(Ordering::Relaxed),
        );

        family(
            &mut out,
            "seawall_profile_reloads_total",
            "counter",
            "Profile reloads, by result; on error the previous policy stays active.",
        );
        for (result, counter) in [("ok", &self.reloads_ok), ("error", &self.reloads_error)] {
            sample(
                &mut out,
                "seawall_profile_reloads_total",
                &[("result", result)],
                counter.load(Ordering::Relaxed),
            );
        }

        family(
            &mut out,
            "seawall_spool_depth_events",
            "gauge",
            "Events in the delivery spool waiting for the collector's acknowledgement.",
        );
        sample(
            &mut out,
            "seawall_spool_depth_events",
            &[],
            self.spool_depth.load(Ordering::Relaxed),
        );

        family(
            &mut out,
            "seawall_delivery_lag_seconds",
            "gauge",
            "Age of the oldest event not yet acknowledged by the collector.",
        );
        sample(
            &mut out,
            "seawall_delivery_lag_seconds",
            &[],
            Float(f64::from_bits(
                self.delivery_lag_seconds.load(Ordering::Relaxed),
            )),
        );

        family(
            &mut out,
            "seawall_spool_dropped_total",
            "counter",
            "Events dropped because the delivery spool was full.",
        );
        sample(
            &mut out,
            "seawall_spool_dropped_total",
            &[],
            self.spool_dropped.load(Ordering::Relaxed),
        );

        family(
            &mut out,
            "seawall_backend_info",
            "gauge",
            "The enforcement backend each control runs on (value 1).",
        );
        {
            let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
            for (control, backend) in backends.iter() {
                sample(
                    &mut out,
                    "seawall_backend_info",
                    &[("control", control), ("backend", backend)],
                    1,
                );
            }
        }

        family(
            &mut out,
            "seawall_build_info",
            "gauge",
            "The running agent's version (value 1).",
        );
        sample(
            &mut out,
            "seawall_build_info",
            &[("version", self.version)],
            1,
        );

        out
    }
}

/// A sample value as Prometheus spells it (`+Inf`, `NaN`), not as Rust's `Display` does.
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // HELP text escapes backslash and newline only; ours are literals without either.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and line feed (text format 0.0.4).
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes, then gives scrapes in flight a
/// short grace period. Taking the listener (not an address) lets tests bind `127.0.0.1:0`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connections so the set does not grow with every scrape.
        while connections.try_join_next().is_some() {}

        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Usually EMFILE or a connection reset before accept: transient. Back off so a
                    // persistent error does not spin, and keep serving.
                    tracing::warn!(%error, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        connections.spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, respond(stream, &metrics)).await;
        });
    }

    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!("metrics endpoint: cut scrapes still running at shutdown");
    }
    // Dropping the set aborts whatever is left.
}

/// Reads one request head and writes one response; the connection is then closed.
async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let (response, unread_input) = match read_request_head(&mut stream).await? {
        RequestHead::Complete(head) => (route(&head, metrics), false),
        RequestHead::TooLarge => (
            Response::status(431, "Request Header Fields Too Large"),
            true,
        ),
        RequestHead::Closed => return Ok(()),
    };
    stream.write_all(&response.into_bytes()).await?;
    stream.shutdown().await?;
    if unread_input {
        // Closing with unread input makes the kernel send RST, which can destroy our answer
        // before the client reads it. Discard what the client is still sending, within bounds.
        let mut discarded = 0usize;
        let mut chunk = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while discarded < 64 * MAX_REQUEST_BYTES {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => discarded += n,
                }
            }
        })
        .await;
    }
    Ok(())
}

enum RequestHead {
    Complete(String),
    TooLarge,
    Closed,
}

async fn read_request_head(stream: &mut TcpStream) -> std::io::Result<RequestHead> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(RequestHead::Closed);
        }
        // Search only the new bytes (plus 3 for a terminator split across reads).
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(from + end);
            return Ok(RequestHead::Complete(
                String::from_utf8_lossy(&buf).into_owned(),
            ));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(RequestHead::TooLarge);
        }
    }
}

fn route(head: &str, metrics: &Metrics) -> Response {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::status(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::status(400, "Bad Request");
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    if path != "/metrics" {
        return Response::status(404, "Not Found");
    }
    match method {
        "GET" => Response::metrics(metrics.render(), true),
        "HEAD" => Response::metrics(metrics.render(), false),
        _ => Response::status(405, "Method Not Allowed").header("Allow", "GET, HEAD"),
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    send_body: bool,
}

impl Response {
    fn status(status: u16, reason: &'static str) -> Response {
        Response {
            status,
            reason,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: format!("{reason}\n"),
            send_body: true,
        }
    }

    fn metrics(body: String, send_body: bool) -> Response {
        Response {
            status: 200,
            reason: "OK",
            headers: vec![("Content-Type", CONTENT_TYPE.to_owned())],
            body,
            send_body,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Response {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        // One request per connection keeps the responder trivial; scrapers reconnect cheaply.
        let _ = write!(
            head,
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        );
        let mut bytes = head.into_bytes();
        if self.send_body {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
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

    /// A strict parser for the subset of the text format we emit. It checks that every sample's
    /// family was announced with HELP then TYPE before its first sample, and that each family
    /// appears once.
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

    /// Runs the real server on an ephemeral loopback port.
    async fn start(
        metrics: Arc<Metrics>,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, async {
            let _ = stopped.await;
        }));
        (addr, stop, server)
    }

    /// Sends `request` raw and returns (status line, headers, body).
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> (String, String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may answer (and close) before it has read all of an oversized request.
        let _ = stream.write_all(request).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_owned(), headers.to_owned(), body.to_owned())
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
        metrics.set_backend(nasty, "tracepoint+signal");
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
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Float(0.25).to_string(), "0.25");
    }

    #[test]
    fn backend_is_replaced_not_added() {
        let metrics = Metrics::new();
        metrics.set_backend("exec", "lsm");
        metrics.set_backend("exec", "tracepoint+signal");
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
                ("backend".to_owned(), "tracepoint+signal".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn scrape_over_loopback() {
        let metrics = Arc::new(Metrics::new());
        for _ in 0..3 {
            metrics.inc_event("exec", "blocked", "drift");
        }
        metrics.inc_event("network", "audited", "egress");
        metrics.set_ringbuf_drops(7);
        metrics.set_containers(4);
        metrics.profile_reload(true);
        metrics.profile_reload(true);
        metrics.profile_reload(false);
        metrics.set_spool(12, 2, 1.5);
        metrics.set_backend("exec", "lsm");
        metrics.set_backend("network", "cgroup");

        let (addr, stop, server) = start(Arc::clone(&metrics)).await;
        let (status, headers, body) =
            exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains(CONTENT_TYPE), "{headers}");
        assert!(
            headers.contains(&format!("Content-Length: {}", body.len())),
            "{headers}"
        );

        let samples = parse(&body);
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
        let lsm = [("control", "exec"), ("backend", "lsm")];
        assert_eq!(get("seawall_backend_info", &lsm), Some(1.0));

        // A later scrape sees later updates: the registry is live, not a snapshot.
        metrics.set_containers(5);
        let (_, _, body) = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        let samples = parse(&body);
        assert_eq!(
            value(&samples, "seawall_containers_monitored", &[]),
            Some(5.0)
        );

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }

    #[tokio::test]
    async fn only_get_metrics_is_served() {
        let (addr, stop, server) = start(Arc::new(Metrics::new())).await;

        let (status, _, _) = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _, _) = exchange(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, headers, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert!(headers.contains("Allow: GET, HEAD"));
        let (status, headers, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains("Content-Length: "));
        assert!(body.is_empty());
        let (status, _, _) = exchange(addr, b"garbage\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");

        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while huge.len() <= MAX_REQUEST_BYTES {
            huge.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let (status, _, _) = exchange(addr, &huge).await;
        assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

        // Still serving after all that.
        let (status, _, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");

        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_client_does_not_block_other_scrapes() {
        let (addr, stop, server) = start(Arc::new(Metrics::new())).await;
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (status, _, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        stop.send(()).unwrap();
        // The silent connection is cut after the grace period rather than holding shutdown.
        tokio::time::timeout(SHUTDOWN_GRACE * 3, server)
            .await
            .expect("shutdown is bounded")
            .unwrap();
    }
}
