//! Seawall events as Open Cybersecurity Schema Framework 1.2.0 events (sink `format = "ocsf"`).
//!
//! | Seawall `kind` | OCSF class | `activity_id` |
//! | --- | --- | --- |
//! | `exec` | Process Activity (1007) | 1 Launch |
//! | `file` | File System Activity (1001) | 1 Create (`O_CREAT`), 3 Update (writes, `O_TRUNC`), 2 Read, 14 Open (flags unknown) |
//! | `network` | Network Activity (4001) | 1 Open (connect, accept, listen, bind), 5 Refuse (blocked), 6 Traffic (sendmsg) |
//! | `container`, `agent` | Base Event (0) | 99 Other |
//!
//! The container (and its Kubernetes pod) goes in OCSF's `container` object (container profile);
//! the node in `device`; what OCSF has no attribute for stays under `unmapped.seawall`. The full
//! mapping is documented in collector/API.md.

use seawall_proto::event::{Action, Event, Kind, Severity};
use serde_json::{json, Map, Value};

use crate::store::Record;

/// The OCSF schema version the mapping follows.
pub const OCSF_VERSION: &str = "1.2.0";

fn severity_id(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// OCSF `timestamp_t`: milliseconds since the epoch.
fn epoch_ms(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// (class_uid, class_name, category_uid, category_name, activity_id, activity_name)
fn classify(e: &Event) -> (u32, &'static str, u32, &'static str, u32, &'static str) {
    match e.kind {
        Kind::Exec => (1007, "Process Activity", 1, "System Activity", 1, "Launch"),
        Kind::File => {
            let flags = e.file.as_ref().map_or("", |f| f.flags.as_str());
            let (id, name) = if flags.contains("O_CREAT") {
                (1, "Create")
            } else if flags.contains("O_WRONLY")
                || flags.contains("O_RDWR")
                || flags.contains("O_TRUNC")
            {
                (3, "Update")
            } else if flags.contains("O_RDONLY") {
                (2, "Read")
            } else {
                (14, "Open")
            };
            (1001, "File System Activity", 1, "System Activity", id, name)
        }
        Kind::Network => {
            let op = e.network.as_ref().map_or("", |n| n.op.as_str());
            let (id, name) = match (e.action, op) {
                (Action::Blocked, _) => (5, "Refuse"),
                (_, "sendmsg") => (6, "Traffic"),
                _ => (1, "Open"),
            };
            (4001, "Network Activity", 4, "Network Activity", id, name)
        }
        Kind::Container | Kind::Agent => (0, "Base Event", 0, "Uncategorized", 99, "Other"),
    }
}

fn process_object(e: &Event) -> Option<Value> {
    let p = e.process.as_ref()?;
    let mut v = json!({
        "pid": p.pid,
        "name": p.comm,
        "user": { "uid": p.uid.to_string() },
        "parent_process": { "pid": p.ppid },
    });
    if !p.exe.is_empty() {
        v["file"] = json!({ "path": p.exe, "name": basename(&p.exe), "type_id": 1, "type": "Regular File" });
    }
    if !p.args.is_empty() {
        v["cmd_line"] = json!(p.args.join(" "));
    }
    Some(v)
}

fn container_object(e: &Event) -> Option<Value> {
    let c = e.container.as_ref()?;
    let mut v = json!({ "uid": c.id, "name": c.name });
    if !c.image.is_empty() || !c.image_id.is_empty() {
        // `image.uid` is required once there is an image: the digest, else the reference.
        let uid = if c.image_id.is_empty() {
            &c.image
        } else {
            &c.image_id
        };
        let (name, tag) = match c.image.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (c.image.as_str(), None),
        };
        v["image"] = json!({ "uid": uid, "name": name });
        if let Some(t) = tag {
            v["image"]["tag"] = json!(t);
        }
    }
    if !c.runtime.is_empty() {
        v["runtime"] = json!(c.runtime);
    }
    if let Some(k) = &c.kubernetes {
        v["orchestrator"] = json!("Kubernetes");
        if !k.pod_uid.is_empty() {
            v["pod_uuid"] = json!(k.pod_uid);
        }
    }
    Some(v)
}

fn endpoint(ip_or_host: &str, port: u16) -> Value {
    let mut v = if ip_or_host.parse::<std::net::IpAddr>().is_ok() {
        json!({ "ip": ip_or_host })
    } else {
        json!({ "hostname": ip_or_host })
    };
    if port != 0 {
        v["port"] = json!(port);
    }
    v
}

/// The event as an OCSF 1.2.0 event object.
pub fn ocsf_json(r: &Record) -> Value {
    let e = &r.event;
    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name) =
        classify(e);
    let (sev_id, sev) = severity_id(e.severity);
    let (action_id, action, disposition_id, disposition, status_id, status) = match e.action {
        Action::Blocked => (2, "Denied", 2, "Blocked", 2, "Failure"),
        Action::Audited => (1, "Allowed", 15, "Detected", 1, "Success"),
        Action::Allowed => (1, "Allowed", 1, "Allowed", 1, "Success"),
    };
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_string(), v);
    };
    put("class_uid", json!(class_uid));
    put("class_name", json!(class_name));
    put("category_uid", json!(category_uid));
    put("category_name", json!(category_name));
    put("activity_id", json!(activity_id));
    put("activity_name", json!(activity_name));
    put(
        "type_uid",
        json!(u64::from(class_uid) * 100 + u64::from(activity_id)),
    );
    put("time", json!(epoch_ms(&e.time)));
    put("severity_id", json!(sev_id));
    put("severity", json!(sev));
    put("status_id", json!(status_id));
    put("status", json!(status));
    put("action_id", json!(action_id));
    put("action", json!(action));
    put("disposition_id", json!(disposition_id));
    put("disposition", json!(disposition));
    put("message", json!(e.message));
    put(
        "metadata",
        json!({
            "version": OCSF_VERSION,
            "product": { "name": "Seawall", "vendor_name": "Seawall", "version": env!("CARGO_PKG_VERSION") },
            "uid": r.id.to_string(),
            "sequence": e.seq,
            "original_time": e.time,
            "logged_time": epoch_ms(&r.received),
            "profiles": ["host", "container", "security_control"],
        }),
    );
    put(
        "device",
        json!({ "type_id": 1, "type": "Server", "hostname": e.node, "name": e.node }),
    );
    let process = process_object(e);
    // The actor of a launch is the parent; of a file or network operation, the process itself.
    let actor_process = match (e.kind, &process) {
        (Kind::Exec, Some(p)) => Some(p["parent_process"].clone()),
        (_, Some(p)) => Some(p.clone()),
        (_, None) => None,
    };
    match actor_process {
        Some(p) => put("actor", json!({ "process": p })),
        // OCSF needs an actor for system activity; the agent itself is the one reporting.
        None => put("actor", json!({ "app_name": "seawall" })),
    }
    if let Some(c) = container_object(e) {
        put("container", c);
    }
    match e.kind {
        Kind::Exec => put("process", process.unwrap_or_else(|| json!({ "pid": 0 }))),
        Kind::File => {
            let path = e.file.as_ref().map_or("", |f| f.path.as_str());
            put(
                "file",
                json!({ "path": path, "name": basename(path), "type_id": 0, "type": "Unknown" }),
            );
        }
        Kind::Network => {
            let n = e.network.clone().unwrap_or_default();
            let peer = endpoint(&n.address, n.port);
            let node = endpoint(&e.node, 0);
            let (src, dst, direction) = match n.op.as_str() {
                "accept" => (peer, node, (1, "Inbound")),
                "bind" | "listen" => (node.clone(), peer, (0, "Unknown")),
                _ => (node, peer, (2, "Outbound")),
            };
            put("src_endpoint", src);
            put("dst_endpoint", dst);
            put(
                "connection_info",
                json!({ "protocol_name": n.protocol, "direction_id": direction.0, "direction": direction.1 }),
            );
        }
        Kind::Container | Kind::Agent => {}
    }
    let mut seawall = json!({
        "kind": e.kind.to_string(),
        "control": e.control,
        "action": e.action.to_string(),
        "seq": e.seq,
        "agent": r.agent,
    });
    if !r.instance.is_empty() {
        seawall["instance"] = json!(r.instance);
    }
    if let Some(c) = &e.container {
        if !c.labels.is_empty() {
            seawall["labels"] = json!(c.labels);
        }
        if let Some(k) = &c.kubernetes {
            seawall["kubernetes"] =
                json!({ "namespace": k.namespace, "pod": k.pod, "container": k.container });
        }
    }
    if let Some(f) = &e.file {
        seawall["file_flags"] = json!(f.flags);
    }
    if let Some(n) = &e.network {
        seawall["network_op"] = json!(n.op);
    }
    if e.process.as_ref().is_some_and(|p| p.args_truncated) {
        seawall["args_truncated"] = json!(true);
    }
    if let Some(i) = &e.intel {
        seawall["intel"] = serde_json::to_value(i).expect("intel serializes");
    }
    o.insert("unmapped".into(), json!({ "seawall": seawall }));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_proto::event::{Container, File, Kubernetes, Network, Process};

    // Required attributes of OCSF 1.2.0 (ocsf-schema tag v1.2.0), written out here so the test
    // checks the schema rather than the mapping: the base event (`metadata`, `severity_id`), its
    // classification and occurrence includes (`activity_id`, `category_uid`, `class_uid`,
    // `type_uid`, `time`), the System category (`actor`, `device`), the Network category
    // (`src_endpoint`, `dst_endpoint`) and each class's own.
    const BASE: &[&str] = &[
        "metadata",
        "severity_id",
        "activity_id",
        "category_uid",
        "class_uid",
        "type_uid",
        "time",
    ];
    const SYSTEM: &[&str] = &["actor", "device"];
    const NETWORK: &[&str] = &["src_endpoint", "dst_endpoint"];
    const PROCESS_ACTIVITY: &[&str] = &["process"];
    const FILE_SYSTEM_ACTIVITY: &[&str] = &["actor", "file"];
    // Objects: metadata {product, version}, product {vendor_name}, file {name, type_id},
    // device {type_id}, image {uid}, connection_info {direction_id}; process needs one of
    // {pid, uid}, actor one of {process, user, invoked_by, session, app_name, app_uid}, an
    // endpoint one of {ip, uid, name, hostname, svc_name, instance_uid, interface_uid,
    // interface_name}, a container one of {uid, name}.

    fn has(v: &Value, path: &str) -> bool {
        path.split('.')
            .try_fold(v, |v, k| v.get(k))
            .is_some_and(|x| !x.is_null())
    }

    fn any(v: &Value, keys: &[&str]) -> bool {
        keys.iter().any(|k| has(v, k))
    }

    /// Every required attribute of the class `v` claims, and of every object in it.
    fn validate(v: &Value) {
        let class = v["class_uid"].as_u64().expect("class_uid");
        let mut required: Vec<&str> = BASE.to_vec();
        match class {
            1007 => required.extend(SYSTEM.iter().chain(PROCESS_ACTIVITY)),
            1001 => required.extend(SYSTEM.iter().chain(FILE_SYSTEM_ACTIVITY)),
            4001 => required.extend(NETWORK),
            0 => {}
            other => panic!("unexpected class {other}"),
        }
        for r in required {
            assert!(has(v, r), "class {class}: required `{r}` missing in {v}");
        }
        assert_eq!(
            v["type_uid"].as_u64().unwrap(),
            class * 100 + v["activity_id"].as_u64().unwrap()
        );
        assert_eq!(v["category_uid"].as_u64().unwrap(), class / 1000);
        for r in [
            "metadata.product",
            "metadata.version",
            "metadata.product.vendor_name",
        ] {
            assert!(has(v, r), "{r}");
        }
        assert!((0..=6).contains(&v["severity_id"].as_u64().unwrap()) || v["severity_id"] == 99);
        assert!(v["time"].as_i64().unwrap() > 0, "time is epoch ms");
        if has(v, "device") {
            assert!(has(v, "device.type_id"));
        }
        if let Some(a) = v.get("actor") {
            assert!(
                any(
                    a,
                    &[
                        "process",
                        "user",
                        "invoked_by",
                        "session",
                        "app_name",
                        "app_uid"
                    ]
                ),
                "actor {a}"
            );
            if let Some(p) = a.get("process") {
                assert!(any(p, &["pid", "uid"]));
            }
        }
        if let Some(p) = v.get("process") {
            assert!(any(p, &["pid", "uid"]));
            if let Some(f) = p.get("file") {
                assert!(has(f, "name") && has(f, "type_id"));
            }
        }
        if let Some(f) = v.get("file") {
            assert!(has(f, "name") && has(f, "type_id"), "file {f}");
        }
        for ep in ["src_endpoint", "dst_endpoint"] {
            if let Some(e) = v.get(ep) {
                let keys = [
                    "ip",
                    "uid",
                    "name",
                    "hostname",
                    "svc_name",
                    "instance_uid",
                    "interface_uid",
                    "interface_name",
                ];
                assert!(any(e, &keys), "{ep} {e}");
            }
        }
        if let Some(c) = v.get("connection_info") {
            assert!(has(c, "direction_id"));
        }
        if let Some(c) = v.get("container") {
            assert!(any(c, &["uid", "name"]));
            if let Some(i) = c.get("image") {
                assert!(has(i, "uid"), "container.image.uid is required: {i}");
            }
        }
    }

    fn record(e: Event) -> Record {
        Record {
            id: 7,
            agent: "node-1".into(),
            instance: "i".into(),
            received: "2026-05-01T10:00:01Z".into(),
            event: e,
        }
    }

    fn events() -> Vec<Event> {
        let base = |kind, control: &str| {
            let mut e = Event::new(
                3,
                "2026-05-01T10:00:00.123456789Z".into(),
                "node-1".into(),
                kind,
                Action::Blocked,
                control,
                Severity::High,
                "m".into(),
            );
            e.process = Some(Process {
                pid: 10,
                ppid: 1,
                uid: 0,
                comm: "sh".into(),
                exe: "/bin/sh".into(),
                args: vec!["sh".into(), "-c".into()],
                args_truncated: false,
            });
            e.container = Some(Container {
                id: "abc".into(),
                name: "web".into(),
                image: "registry:5000/nginx:1.27".into(),
                image_id: String::new(),
                labels: [("app".to_string(), "web".to_string())].into(),
                runtime: "containerd".into(),
                kubernetes: Some(Kubernetes {
                    namespace: "shop".into(),
                    pod: "web-0".into(),
                    pod_uid: "0b1c".into(),
                    container: "web".into(),
                }),
            });
            e
        };
        let exec = base(Kind::Exec, "drift");
        let mut file = base(Kind::File, "file");
        file.file = Some(File {
            path: "/etc/shadow".into(),
            flags: "O_WRONLY|O_TRUNC".into(),
        });
        let mut net = base(Kind::Network, "network");
        net.network = Some(Network {
            op: "connect".into(),
            protocol: "tcp".into(),
            address: "10.0.0.1".into(),
            port: 443,
        });
        let mut accept = net.clone();
        accept.network.as_mut().unwrap().op = "accept".into();
        accept.action = Action::Allowed;
        let mut agent = Event::new(
            4,
            "2026-05-01T10:00:00Z".into(),
            "node-1".into(),
            Kind::Agent,
            Action::Allowed,
            "delivery",
            Severity::High,
            "spool full".into(),
        );
        agent.process = None;
        let mut bare_exec = Event::new(
            5,
            "2026-05-01T10:00:00Z".into(),
            "node-1".into(),
            Kind::Exec,
            Action::Audited,
            "exec",
            Severity::Medium,
            String::new(),
        );
        bare_exec.process = None;
        vec![exec, file, net, accept, agent, bare_exec]
    }

    #[test]
    fn every_event_kind_carries_its_classs_required_ocsf_fields() {
        for e in events() {
            validate(&ocsf_json(&record(e)));
        }
    }

    #[test]
    fn container_pod_and_verdict_land_in_ocsf_fields() {
        let evs = events();
        let exec = ocsf_json(&record(evs[0].clone()));
        assert_eq!(
            (exec["class_uid"].as_u64(), exec["activity_id"].as_u64()),
            (Some(1007), Some(1))
        );
        assert_eq!(exec["container"]["uid"], "abc");
        assert_eq!(exec["container"]["image"]["name"], "registry:5000/nginx");
        assert_eq!(exec["container"]["image"]["tag"], "1.27");
        assert_eq!(exec["container"]["orchestrator"], "Kubernetes");
        assert_eq!(exec["container"]["pod_uuid"], "0b1c");
        assert_eq!(
            exec["unmapped"]["seawall"]["kubernetes"]["namespace"],
            "shop"
        );
        assert_eq!(
            (exec["action_id"].as_u64(), exec["disposition_id"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(exec["process"]["cmd_line"], "sh -c");
        assert_eq!(exec["actor"]["process"]["pid"], 1, "the parent launched it");
        assert_eq!(exec["time"], 1_777_629_600_123i64);
        let file = ocsf_json(&record(evs[1].clone()));
        assert_eq!(
            (file["class_uid"].as_u64(), file["activity_id"].as_u64()),
            (Some(1001), Some(3))
        );
        assert_eq!(file["file"]["name"], "shadow");
        let net = ocsf_json(&record(evs[2].clone()));
        assert_eq!(
            (net["class_uid"].as_u64(), net["activity_id"].as_u64()),
            (Some(4001), Some(5))
        );
        assert_eq!(net["dst_endpoint"]["ip"], "10.0.0.1");
        assert_eq!(net["dst_endpoint"]["port"], 443);
        let accept = ocsf_json(&record(evs[3].clone()));
        assert_eq!(
            accept["src_endpoint"]["ip"], "10.0.0.1",
            "the peer initiated an accepted connection"
        );
        assert_eq!(accept["connection_info"]["direction_id"], 1);
    }
}
