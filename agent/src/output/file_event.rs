//! A fanotify file record, plus what the tables know, as the stable JSON event.

use seawall_proto::event::{Action, Event, File, Kind, Process, Severity};

use super::{clock::Clock, event::Enricher, flags::flags_text};
use crate::{
    fanotify::FileEvent,
    kernel::decode::path_text,
    runtime::{procs::ProcessTable, table::ContainerTable},
};

/// The JSON event for a file event.
pub fn to_event(
    f: &FileEvent,
    e: &mut Enricher,
    containers: &ContainerTable,
    procs: &ProcessTable,
) -> Option<Event> {
    let known = procs.get(f.pid);
    let flags = f.flags.map(flags_text).unwrap_or_else(|| "unknown".into());
    // Bytes in, a lossless text out: invalid UTF-8 as \xHH, a backslash doubled.
    let path = path_text(&f.path);
    if let Some(why) = f.exec {
        return Some(script_drift_event(f, why, e, containers, procs));
    }
    let control = if f.rule.is_empty() {
        "visibility"
    } else {
        "file"
    };
    let severity = match f.action {
        Action::Blocked => Severity::High,
        Action::Audited => Severity::Medium,
        Action::Allowed => Severity::Info,
    };
    let message = if f.rule.is_empty() {
        format!("open {path} {flags}")
    } else {
        format!("file {}: open {path} {flags} {}", f.rule, f.action)
    };
    Some(Event {
        seq: e.next_seq(),
        time: Clock::now(),
        node: e.node.clone(),
        kind: Kind::File,
        action: f.action,
        control: control.into(),
        severity,
        message,
        process: Some(Process {
            pid: f.pid,
            ppid: known.map(|p| p.ppid).unwrap_or(0),
            uid: known.map(|p| p.uid).unwrap_or(0),
            comm: known.map(|p| p.comm.clone()).unwrap_or_default(),
            exe: known.map(|p| p.exe.clone()).unwrap_or_default(),
            args: known.map(|p| p.args.clone()).unwrap_or_default(),
            ..Default::default()
        }),
        container: containers.get(f.cgroup_id).map(|c| c.to_event()),
        file: Some(File { path, flags }),
        network: None,
        intel: None,
    })
}

fn script_drift_event(
    f: &FileEvent,
    why: &str,
    e: &mut Enricher,
    containers: &ContainerTable,
    procs: &ProcessTable,
) -> Event {
    let known = procs.get(f.pid);
    Event {
        seq: e.next_seq(),
        time: Clock::now(),
        node: e.node.clone(),
        kind: Kind::Exec,
        action: f.action,
        control: "drift".into(),
        severity: if f.action == Action::Blocked {
            Severity::Critical
        } else {
            Severity::High
        },
        message: format!(
            "drift: exec of script {} ({why}) {}",
            path_text(&f.path),
            f.action
        ),
        process: Some(Process {
            pid: f.pid,
            ppid: known.map(|p| p.ppid).unwrap_or(0),
            uid: known.map(|p| p.uid).unwrap_or(0),
            comm: known.map(|p| p.comm.clone()).unwrap_or_default(),
            exe: path_text(&f.path),
            args: Vec::new(),
            // Only scripts in the overlay's upper layer are reported here.
            exe_source: "container".into(),
            ..Default::default()
        }),
        container: containers.get(f.cgroup_id).map(|c| c.to_event()),
        file: None,
        network: None,
        intel: None,
    }
}
