//! The events of the intel and assurance controls: the `intel` object (indicator, type, source,
//! name) on what the kernel or the fanotify sensor refused, and the container event naming the
//! image, its digest and the assurance rule that refused it.

use std::net::IpAddr;

use seawall_intel::IntelSet;
use seawall_proto::event::{Action, Event, Intel, Kind, Process, Severity};

use super::event::Enricher;
use crate::{
    intel::exec::{intel_object, ListedExec},
    runtime::{
        procs::ProcessTable,
        table::{ContainerInfo, ContainerTable},
    },
};

/// Critical when refused: a known-bad file or destination was reached for.
fn severity(action: Action) -> Severity {
    match action {
        Action::Blocked => Severity::Critical,
        Action::Audited => Severity::High,
        Action::Allowed => Severity::Info,
    }
}

fn describe(intel: &Intel) -> String {
    match intel.name.as_str() {
        "" => format!("listed by {}", intel.source),
        name => format!("{name}, listed by {}", intel.source),
    }
}

/// A connection or datagram the kernel decided as intel: the listing that matched its address
/// in the indicators in force. (A reload between the kernel's lookup and this one can leave
/// none: the event then names the address alone.)
pub fn network(out: &mut Event, addr: IpAddr, set: &IntelSet) {
    let intel = set.match_addr(addr).map_or_else(
        || Intel {
            indicator: addr.to_string(),
            kind: "ip".into(),
            source: String::new(),
            name: String::new(),
        },
        |l| intel_object(&l),
    );
    out.severity = severity(out.action);
    if let Some(n) = &out.network {
        out.message = format!(
            "intel: {} {} {} port {} {} ({})",
            n.op,
            n.protocol,
            n.address,
            n.port,
            out.action,
            describe(&intel)
        );
    }
    out.intel = Some(intel);
}

/// A held exec the daemon refused (or audited) by the hash of its file.
pub fn held_exec(out: &mut Event, intel: Intel) {
    out.severity = severity(out.action);
    let exe = out.process.as_ref().map(|p| p.exe.as_str()).unwrap_or("");
    out.message = format!("intel: exec {exe} {} ({})", out.action, describe(&intel));
    out.intel = Some(intel);
}

/// An exec the kernel refused because the container's image is not approved.
pub fn assurance_exec(out: &mut Event, info: Option<&ContainerInfo>, rule: &str) {
    out.severity = Severity::Critical;
    let exe = out.process.as_ref().map(|p| p.exe.as_str()).unwrap_or("");
    let image = info.map(|c| c.image.as_str()).unwrap_or("");
    out.message = format!("assurance: exec {exe} blocked: image {image} is not approved ({rule})");
}

/// An exec of a listed file, as the fanotify sensor answered it.
pub fn listed_exec(
    r: &ListedExec,
    e: &mut Enricher,
    containers: &ContainerTable,
    procs: &ProcessTable,
) -> Event {
    let known = procs.get(r.pid);
    let mut ev = e.event(
        Kind::Exec,
        r.action,
        "intel",
        severity(r.action),
        format!(
            "intel: exec {} {} ({})",
            r.path,
            r.action,
            describe(&r.intel)
        ),
    );
    ev.process = Some(Process {
        pid: r.pid,
        ppid: known.map(|p| p.ppid).unwrap_or(0),
        uid: known.map(|p| p.uid).unwrap_or(0),
        comm: known.map(|p| p.comm.clone()).unwrap_or_default(),
        exe: r.path.clone(),
        args: Vec::new(),
        args_truncated: false,
        // Judged by content at the permission event: where the file lies is not recorded.
        ..Default::default()
    });
    ev.container = containers.get(r.cgroup_id).map(|c| c.to_event());
    ev.intel = Some(r.intel.clone());
    ev
}

/// The one event about a container whose image is not approved.
pub fn refused_container(
    e: &mut Enricher,
    info: &ContainerInfo,
    action: Action,
    rule: &str,
) -> Event {
    let digest = info
        .image_digests
        .first()
        .map(String::as_str)
        .unwrap_or(info.image_id.as_str());
    let then = match action {
        Action::Blocked => "none of its execs may run",
        _ => "it runs (audit)",
    };
    let mut ev = e.event(
        Kind::Container,
        action,
        "assurance",
        match action {
            Action::Blocked => Severity::Critical,
            _ => Severity::High,
        },
        format!(
            "assurance: container {} image {} ({digest}) is not approved: {rule}; {then}",
            info.name, info.image
        ),
    );
    ev.container = Some(info.to_event());
    ev
}

#[cfg(test)]
mod tests {
    use seawall_intel::{Feed, FeedFormat};
    use seawall_proto::event::Network;

    use super::*;

    #[test]
    fn a_refused_connection_names_the_indicator_its_file_and_its_name() {
        let feed = Feed::parse(
            FeedFormat::PlainList,
            b"# feodo\n198.51.100.0/24\n",
            std::time::SystemTime::now(),
        )
        .unwrap();
        let set = IntelSet::from_feeds([("feodo.txt".to_string(), feed)]);
        let mut e = Enricher::new("n".into(), 1);
        let mut out = e.event(
            Kind::Network,
            Action::Blocked,
            "intel",
            Severity::High,
            String::new(),
        );
        out.network = Some(Network {
            op: "connect".into(),
            protocol: "tcp".into(),
            address: "198.51.100.7".into(),
            port: 443,
        });
        network(&mut out, "198.51.100.7".parse().unwrap(), &set);
        let json: serde_json::Value = serde_json::from_str(&out.to_json_line()).unwrap();
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["intel"]["indicator"], "198.51.100.0/24");
        assert_eq!(json["intel"]["type"], "cidr");
        assert_eq!(json["intel"]["source"], "feodo.txt");
        assert!(json["intel"].get("name").is_none(), "no name: omitted");
        assert!(
            out.message
                .contains("198.51.100.7 port 443 blocked (listed by feodo.txt)"),
            "{}",
            out.message
        );
    }

    #[test]
    fn the_refused_container_event_names_image_digest_and_rule() {
        let info = ContainerInfo {
            id: "c1".into(),
            name: "web".into(),
            image: "registry.example:5000/web:1".into(),
            image_id: "sha256:abc".into(),
            ..Default::default()
        };
        let mut e = Enricher::new("n".into(), 1);
        let ev = refused_container(&mut e, &info, Action::Blocked, "no allow entry matches");
        assert_eq!(ev.kind, Kind::Container);
        assert_eq!(ev.control, "assurance");
        assert_eq!(ev.severity, Severity::Critical);
        for part in [
            "registry.example:5000/web:1",
            "sha256:abc",
            "no allow entry matches",
        ] {
            assert!(ev.message.contains(part), "{}", ev.message);
        }
        assert_eq!(ev.container.unwrap().image_id, "sha256:abc");
    }
}
