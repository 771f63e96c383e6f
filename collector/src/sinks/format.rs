//! Wire formats for SIEMs: export JSON, RFC 5424 syslog, ArcSight CEF, Slack text.

use seawall_proto::event::{Event, Severity};
use serde_json::{json, Value};

use crate::config::ExportFormat;
use crate::store::Record;

/// A record in a sink's configured format.
pub fn render(f: ExportFormat, r: &Record) -> Value {
    match f {
        ExportFormat::Seawall => export_json(r),
        ExportFormat::Ocsf => super::ocsf::ocsf_json(r),
    }
}

/// [`render`] as one line, without a JSON tree for the Seawall format (the file sink's hot path).
pub fn render_line(f: ExportFormat, r: &Record) -> String {
    match f {
        ExportFormat::Seawall => export_line(r),
        ExportFormat::Ocsf => super::ocsf::ocsf_json(r).to_string(),
    }
}

/// [`export_json`] as one line, written straight from the record (no intermediate JSON tree:
/// this is the file sink's hot path). Same fields; keys in the event's own order.
pub fn export_line(r: &Record) -> String {
    let mut line = serde_json::to_string(&r.event).expect("an Event always serializes");
    // An Event is always a non-empty JSON object: replace its closing brace.
    line.pop();
    line.push_str(",\"collector\":");
    let mut c = json!({ "id": r.id, "agent": r.agent, "received": r.received });
    if !r.instance.is_empty() {
        c["instance"] = json!(r.instance);
    }
    line.push_str(&c.to_string());
    line.push('}');
    line
}

/// The event's own JSON object plus a `collector` object: `{"id", "agent", "received"}` and,
/// from agents that send one, `"instance"` (the agent's spool instance).
/// `collector.id` is unique and increasing: the key to drop a repeat after a collector crash.
pub fn export_json(r: &Record) -> Value {
    let mut v = serde_json::to_value(&r.event).expect("an Event always serializes");
    if let Value::Object(map) = &mut v {
        let mut c = json!({ "id": r.id, "agent": r.agent, "received": r.received });
        if !r.instance.is_empty() {
            c["instance"] = json!(r.instance);
        }
        map.insert("collector".into(), c);
    }
    v
}

/// RFC 5424 severity for a Seawall severity.
fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// CEF severity (0–10) for a Seawall severity.
fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 10,
        Severity::High => 8,
        Severity::Medium => 5,
        Severity::Low => 3,
        Severity::Info => 1,
    }
}

/// RFC 5424 TIMESTAMP: at most 6 fractional digits, so nanoseconds are cut to microseconds.
fn syslog_time(t: &str) -> String {
    let Some(dot) = t.find('.') else {
        return t.to_string();
    };
    let frac_end = t[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| dot + 1 + i)
        .unwrap_or(t.len());
    let digits = &t[dot + 1..frac_end];
    format!(
        "{}.{}{}",
        &t[..dot],
        &digits[..digits.len().min(6)],
        &t[frac_end..]
    )
}

/// A PRINTUSASCII token (HOSTNAME, APP-NAME…): no spaces, `-` when empty.
fn token(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// SD-PARAM value escaping: `"`, `\` and `]`.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One RFC 5424 message (without transport framing). `cef_payload` selects a CEF message body
/// instead of the export JSON. Structured data `[seawall@32473 …]` carries the delivery key
/// (32473 is the enterprise number reserved for examples, RFC 5612).
pub fn rfc5424(r: &Record, facility: u8, cef_payload: bool) -> String {
    let e = &r.event;
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(e.severity));
    let msg = if cef_payload {
        cef(r)
    } else {
        export_json(r).to_string()
    };
    format!(
        "<{pri}>1 {} {} seawall - {} [seawall@32473 agent=\"{}\" seq=\"{}\" id=\"{}\" action=\"{}\" control=\"{}\"] {msg}",
        syslog_time(&e.time),
        token(&e.node, 255),
        token(&e.kind.to_string(), 32),
        sd_escape(&r.agent),
        e.seq,
        r.id,
        e.action,
        sd_escape(&e.control),
    )
}

fn cef_header_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn cef_ext_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// A one-line summary: the event's message or what it is about.
pub fn summary(e: &Event) -> String {
    if !e.message.is_empty() {
        return e.message.clone();
    }
    let what = e
        .process
        .as_ref()
        .map(|p| p.exe.clone())
        .or_else(|| e.file.as_ref().map(|f| f.path.clone()))
        .or_else(|| {
            e.network
                .as_ref()
                .map(|n| format!("{} {}:{}", n.op, n.address, n.port))
        })
        .unwrap_or_default();
    format!("{} {} {}", e.control, e.action, what)
        .trim()
        .to_string()
}

/// ArcSight Common Event Format, version 0.
pub fn cef(r: &Record) -> String {
    let e = &r.event;
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", e.time.clone()),
        ("dvchost", e.node.clone()),
        ("act", e.action.to_string()),
        ("cat", e.kind.to_string()),
        ("msg", summary(e)),
        ("externalId", r.id.to_string()),
        ("cs1Label", "agent".into()),
        ("cs1", r.agent.clone()),
        ("cn1Label", "seq".into()),
        ("cn1", e.seq.to_string()),
    ];
    if let Some(c) = &e.container {
        ext.extend([
            ("cs2Label", "containerId".into()),
            ("cs2", c.id.clone()),
            ("cs3Label", "containerName".into()),
            ("cs3", c.name.clone()),
            ("cs4Label", "image".into()),
            ("cs4", c.image.clone()),
        ]);
    }
    if let Some(p) = &e.process {
        ext.extend([
            ("spid", p.pid.to_string()),
            ("suid", p.uid.to_string()),
            ("sproc", p.comm.clone()),
            ("filePath", p.exe.clone()),
        ]);
    }
    if let Some(f) = &e.file {
        ext.push(("fname", f.path.clone()));
    }
    if let Some(n) = &e.network {
        ext.extend([
            ("dst", n.address.clone()),
            ("dpt", n.port.to_string()),
            ("proto", n.protocol.clone()),
        ]);
    }
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_ext_escape(&v)))
        .collect();
    format!(
        "CEF:0|Seawall|seawall|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header_escape(&format!("{}:{}:{}", e.kind, e.control, e.action)),
        cef_header_escape(&summary(e)),
        cef_severity(e.severity),
        ext.join(" ")
    )
}

/// One Slack message line.
pub fn slack_text(r: &Record) -> String {
    let e = &r.event;
    let container = e
        .container
        .as_ref()
        .map(|c| format!(" in `{}` ({})", c.name, c.image))
        .unwrap_or_default();
    format!(
        "*[{}]* {} {}{container} on {}: {}",
        e.severity,
        e.control,
        e.action,
        e.node,
        summary(e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_proto::event::{Action, Container, Kind};

    fn rec() -> Record {
        Record {
            id: 42,
            agent: "host-a".into(),
            instance: String::new(),
            received: "2026-05-01T10:00:01Z".into(),
            event: Event {
                seq: 9,
                time: "2026-05-01T10:00:00.123456789Z".into(),
                node: "host a".into(),
                kind: Kind::Exec,
                action: Action::Blocked,
                control: "drift".into(),
                severity: Severity::High,
                message: "blocked /tmp/x|y=z".into(),
                process: None,
                container: Some(Container {
                    id: "c1".into(),
                    name: "web".into(),
                    image: "nginx:1".into(),
                    ..Default::default()
                }),
                file: None,
                network: None,
                intel: None,
            },
        }
    }

    #[test]
    fn rfc5424_header_is_well_formed() {
        let m = rfc5424(&rec(), 13, false);
        assert!(
            m.starts_with("<107>1 2026-05-01T10:00:00.123456Z hosta seawall - exec [seawall@32473 agent=\"host-a\" seq=\"9\" id=\"42\""),
            "{m}"
        );
        let json_part = &m[m.find("] ").unwrap() + 2..];
        let v: Value = serde_json::from_str(json_part).unwrap();
        assert_eq!(v["collector"]["id"], 42);
        let line: Value = serde_json::from_str(&export_line(&rec())).unwrap();
        assert_eq!(line, v, "the file sink's line is the export JSON");
        assert_eq!(v["seq"], 9);
    }

    #[test]
    fn cef_escapes_header_and_extension() {
        let c = cef(&rec());
        assert!(
            c.starts_with("CEF:0|Seawall|seawall|")
                && c.contains("|exec:drift:blocked|blocked /tmp/x\\|y=z|8|"),
            "{c}"
        );
        assert!(c.contains("msg=blocked /tmp/x|y\\=z"), "{c}");
        assert!(c.contains("cs4=nginx:1"), "{c}");
    }
}
