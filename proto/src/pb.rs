//! The generated `seawall.v1` types and their conversions to and from the domain [`crate::event::Event`].
//!
//! Only the gRPC edges (the collector's service, the agent's delivery client) touch this module;
//! everything else speaks [`crate::event`]. Conversions from the wire are `TryFrom` because a
//! peer can send enum values or ports that the domain type cannot hold.

use crate::event::{
    self, Action as DomainAction, Event as DomainEvent, Kind as DomainKind,
    Severity as DomainSeverity,
};

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    tonic::include_proto!("seawall.v1");
}

pub use generated::*;

/// A message from the wire that cannot become a domain type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConversionError {
    #[error("event seq {seq}: field `{field}` has unknown value {value}")]
    UnknownEnum {
        seq: u64,
        field: &'static str,
        value: i32,
    },
    #[error("event seq {seq}: network port {port} is larger than 65535")]
    PortOutOfRange { seq: u64, port: u32 },
}

impl From<DomainKind> for generated::Kind {
    fn from(k: DomainKind) -> Self {
        match k {
            DomainKind::Exec => Self::Exec,
            DomainKind::File => Self::File,
            DomainKind::Network => Self::Network,
            DomainKind::Container => Self::Container,
            DomainKind::Agent => Self::Agent,
        }
    }
}

impl From<DomainAction> for generated::Action {
    fn from(a: DomainAction) -> Self {
        match a {
            DomainAction::Allowed => Self::Allowed,
            DomainAction::Audited => Self::Audited,
            DomainAction::Blocked => Self::Blocked,
        }
    }
}

impl From<DomainSeverity> for generated::Severity {
    fn from(s: DomainSeverity) -> Self {
        match s {
            DomainSeverity::Info => Self::Info,
            DomainSeverity::Low => Self::Low,
            DomainSeverity::Medium => Self::Medium,
            DomainSeverity::High => Self::High,
            DomainSeverity::Critical => Self::Critical,
        }
    }
}

/// Wire value of a kind to the domain kind; `None` for unspecified or unknown values.
pub fn kind_from_wire(v: i32) -> Option<DomainKind> {
    match generated::Kind::try_from(v).ok()? {
        generated::Kind::Unspecified => None,
        generated::Kind::Exec => Some(DomainKind::Exec),
        generated::Kind::File => Some(DomainKind::File),
        generated::Kind::Network => Some(DomainKind::Network),
        generated::Kind::Container => Some(DomainKind::Container),
        generated::Kind::Agent => Some(DomainKind::Agent),
    }
}

/// Wire value of an action to the domain action; `None` for unspecified or unknown values.
pub fn action_from_wire(v: i32) -> Option<DomainAction> {
    match generated::Action::try_from(v).ok()? {
        generated::Action::Unspecified => None,
        generated::Action::Allowed => Some(DomainAction::Allowed),
        generated::Action::Audited => Some(DomainAction::Audited),
        generated::Action::Blocked => Some(DomainAction::Blocked),
    }
}

/// Wire value of a severity to the domain severity; `None` for unspecified or unknown values.
pub fn severity_from_wire(v: i32) -> Option<DomainSeverity> {
    match generated::Severity::try_from(v).ok()? {
        generated::Severity::Unspecified => None,
        generated::Severity::Info => Some(DomainSeverity::Info),
        generated::Severity::Low => Some(DomainSeverity::Low),
        generated::Severity::Medium => Some(DomainSeverity::Medium),
        generated::Severity::High => Some(DomainSeverity::High),
        generated::Severity::Critical => Some(DomainSeverity::Critical),
    }
}

impl From<&DomainEvent> for generated::Event {
    fn from(e: &DomainEvent) -> Self {
        generated::Event {
            seq: e.seq,
            time: e.time.clone(),
            node: e.node.clone(),
            kind: generated::Kind::from(e.kind) as i32,
            action: generated::Action::from(e.action) as i32,
            control: e.control.clone(),
            severity: generated::Severity::from(e.severity) as i32,
            message: e.message.clone(),
            process: e.process.as_ref().map(|p| generated::Process {
                pid: p.pid,
                ppid: p.ppid,
                uid: p.uid,
                comm: p.comm.clone(),
                exe: p.exe.clone(),
                args: p.args.clone(),
                args_truncated: p.args_truncated,
                exec_session: p.exec_session,
                exe_truncated: p.exe_truncated,
                exe_source: p.exe_source.clone(),
            }),
            container: e.container.as_ref().map(|c| generated::Container {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                image_id: c.image_id.clone(),
                labels: c.labels.clone().into_iter().collect(),
                runtime: c.runtime.clone(),
                kubernetes: c.kubernetes.as_ref().map(|k| generated::Kubernetes {
                    namespace: k.namespace.clone(),
                    pod: k.pod.clone(),
                    pod_uid: k.pod_uid.clone(),
                    container: k.container.clone(),
                }),
            }),
            file: e.file.as_ref().map(|f| generated::File {
                path: f.path.clone(),
                flags: f.flags.clone(),
            }),
            network: e.network.as_ref().map(|n| generated::Network {
                op: n.op.clone(),
                protocol: n.protocol.clone(),
                address: n.address.clone(),
                port: u32::from(n.port),
            }),
            intel: e.intel.as_ref().map(|i| generated::Intel {
                indicator: i.indicator.clone(),
                r#type: i.kind.clone(),
                source: i.source.clone(),
                name: i.name.clone(),
            }),
        }
    }
}

impl From<DomainEvent> for generated::Event {
    fn from(e: DomainEvent) -> Self {
        generated::Event::from(&e)
    }
}

impl TryFrom<generated::Event> for DomainEvent {
    type Error = ConversionError;

    fn try_from(e: generated::Event) -> Result<Self, Self::Error> {
        let seq = e.seq;
        let unknown = |field, value| ConversionError::UnknownEnum { seq, field, value };
        let network = match e.network {
            Some(n) => Some(event::Network {
                port: u16::try_from(n.port)
                    .map_err(|_| ConversionError::PortOutOfRange { seq, port: n.port })?,
                op: n.op,
                protocol: n.protocol,
                address: n.address,
            }),
            None => None,
        };
        Ok(DomainEvent {
            seq,
            kind: kind_from_wire(e.kind).ok_or_else(|| unknown("kind", e.kind))?,
            action: action_from_wire(e.action).ok_or_else(|| unknown("action", e.action))?,
            severity: severity_from_wire(e.severity)
                .ok_or_else(|| unknown("severity", e.severity))?,
            time: e.time,
            node: e.node,
            control: e.control,
            message: e.message,
            process: e.process.map(|p| event::Process {
                pid: p.pid,
                ppid: p.ppid,
                uid: p.uid,
                comm: p.comm,
                exe: p.exe,
                args: p.args,
                args_truncated: p.args_truncated,
                exec_session: p.exec_session,
                exe_truncated: p.exe_truncated,
                exe_source: p.exe_source,
            }),
            container: e.container.map(|c| event::Container {
                id: c.id,
                name: c.name,
                image: c.image,
                image_id: c.image_id,
                labels: c.labels.into_iter().collect(),
                runtime: c.runtime,
                kubernetes: c.kubernetes.map(|k| event::Kubernetes {
                    namespace: k.namespace,
                    pod: k.pod,
                    pod_uid: k.pod_uid,
                    container: k.container,
                }),
            }),
            file: e.file.map(|f| event::File {
                path: f.path,
                flags: f.flags,
            }),
            network,
            intel: e.intel.map(|i| event::Intel {
                indicator: i.indicator,
                kind: i.r#type,
                source: i.source,
                name: i.name,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DomainEvent {
        DomainEvent {
            seq: 7,
            time: "2026-05-01T10:00:00.123456789Z".into(),
            node: "host-a".into(),
            kind: DomainKind::Network,
            action: DomainAction::Blocked,
            control: "network".into(),
            severity: DomainSeverity::High,
            message: "connect to 10.0.0.1:443 blocked".into(),
            process: Some(event::Process {
                pid: 10,
                ppid: 1,
                uid: 0,
                comm: "curl".into(),
                exe: "/usr/bin/curl".into(),
                args: vec!["curl".into(), "x".into()],
                args_truncated: true,
                exec_session: true,
                exe_truncated: false,
                exe_source: "image".into(),
            }),
            container: Some(event::Container {
                id: "abc".into(),
                name: "web".into(),
                image: "nginx:1".into(),
                image_id: "sha256:1".into(),
                labels: [("a".to_string(), "b".to_string())].into(),
                runtime: "containerd".into(),
                kubernetes: Some(event::Kubernetes {
                    namespace: "shop".into(),
                    pod: "web-0".into(),
                    pod_uid: "0b1c".into(),
                    container: "web".into(),
                }),
            }),
            file: None,
            network: Some(event::Network {
                op: "connect".into(),
                protocol: "tcp".into(),
                address: "10.0.0.1".into(),
                port: 443,
            }),
            intel: Some(event::Intel {
                indicator: "10.0.0.0/8".into(),
                kind: "cidr".into(),
                source: "feeds/bad.txt".into(),
                name: String::new(),
            }),
        }
    }

    #[test]
    fn event_round_trips_through_the_wire_type() {
        let e = sample();
        assert_eq!(DomainEvent::try_from(generated::Event::from(&e)), Ok(e));
    }

    #[test]
    fn unknown_enum_values_and_ports_are_rejected() {
        let mut wire = generated::Event::from(&sample());
        wire.kind = 99;
        assert_eq!(
            DomainEvent::try_from(wire.clone()),
            Err(ConversionError::UnknownEnum {
                seq: 7,
                field: "kind",
                value: 99
            })
        );
        wire.kind = 0;
        assert!(
            DomainEvent::try_from(wire).is_err(),
            "unspecified kind is rejected"
        );
        let mut wire = generated::Event::from(&sample());
        wire.network.as_mut().unwrap().port = 70000;
        assert_eq!(
            DomainEvent::try_from(wire),
            Err(ConversionError::PortOutOfRange {
                seq: 7,
                port: 70000
            })
        );
    }
}
