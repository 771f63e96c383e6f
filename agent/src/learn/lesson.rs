//! What one event teaches about its image. Pure: an event in, at most one [`Lesson`] out.
//!
//! Only what happened is learned. A blocked operation did not happen, so it never becomes
//! something a learned profile allows (blocked drift is still noted: the generator lists drift
//! as violations, never as allowed). Whether an exec is drift is taken from where the kernel
//! found the file (`process.exe_source`), not from whether the drift control was on, so
//! learning under a profile without `[drift]` does not turn drift into allowed executables.

use std::net::IpAddr;

use seawall_profile::{
    BehaviourLimits, Destination, ImageBehaviour, ListenPort, Transport, UnixSeconds, MAX_KEY_BYTES,
};
use seawall_proto::event::{Action, Event, Kind};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// The image a lesson is about: its reference and, when the engine reported it, its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageKey {
    /// The image reference as the container was started with it.
    pub image: String,
    /// `sha256:…`, when known.
    pub image_id: Option<String>,
}

impl ImageKey {
    /// The key of a container's image; none when the image is not known (a container its
    /// engine could not describe) or its reference is longer than any real one.
    pub fn new(image: &str, image_id: &str) -> Option<ImageKey> {
        if image.is_empty() || image.len() > MAX_KEY_BYTES || image_id.len() > MAX_KEY_BYTES {
            return None;
        }
        Some(ImageKey {
            image: image.to_string(),
            image_id: (!image_id.is_empty()).then(|| image_id.to_string()),
        })
    }

    /// The key a summary is kept under.
    pub fn of(b: &ImageBehaviour) -> ImageKey {
        ImageKey {
            image: b.image().to_string(),
            image_id: b.image_id().map(str::to_string),
        }
    }
}

/// One thing a container of an image did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A container of the image started (or was first seen), and what of it is watched.
    Container {
        /// The container id.
        id: String,
        /// Every file open is reported (`--audit-files` and its overlay marked).
        files_watched: bool,
        /// Raw and packet sockets are reported (its profile sets `block_raw_sockets`).
        raw_sockets_watched: bool,
    },
    /// An executable of the image ran.
    Exec {
        /// Its path inside the container.
        path: String,
        /// In a `docker exec` session.
        session: bool,
    },
    /// An executable ran whose path the kernel cut.
    CutExec {
        /// In a `docker exec` session.
        session: bool,
    },
    /// A file that was not in the image was executed (or refused for it).
    Drift {
        /// Its path inside the container.
        path: String,
    },
    /// A file was opened for reading.
    Read {
        /// Its path inside the container.
        path: String,
    },
    /// A file was opened for writing, creating or truncating.
    Write {
        /// Its path inside the container.
        path: String,
    },
    /// An outbound connection (or a reported send).
    Egress(Destination),
    /// A port was bound.
    Listen(ListenPort),
    /// A raw or packet socket was opened.
    RawSocket,
}

/// What one event taught about one image, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lesson {
    /// The image.
    pub image: ImageKey,
    /// When it happened.
    pub at: UnixSeconds,
    /// What happened.
    pub fact: Fact,
}

impl Lesson {
    /// Records the fact in the image's summary, within `limits`.
    pub fn teach(self, b: &mut ImageBehaviour, limits: &BehaviourLimits) {
        let at = self.at;
        match self.fact {
            Fact::Container {
                id,
                files_watched,
                raw_sockets_watched,
            } => {
                b.record_container(&id, at, limits);
                if files_watched {
                    b.mark_files_watched();
                }
                if raw_sockets_watched {
                    b.mark_raw_sockets_watched();
                }
            }
            Fact::Exec { path, session } => {
                b.record_exec(&path, at, limits);
                if session {
                    b.record_container_exec(at);
                }
            }
            Fact::CutExec { session } => {
                b.record_cut_exec(at);
                if session {
                    b.record_container_exec(at);
                }
            }
            Fact::Drift { path } => b.record_drift(&path, at, limits),
            Fact::Read { path } => b.record_read(&path, at, limits),
            Fact::Write { path } => b.record_write(&path, at, limits),
            Fact::Egress(to) => b.record_egress(to, at, limits),
            Fact::Listen(port) => b.record_listen(port, at, limits),
            Fact::RawSocket => b.record_raw_socket(at),
        }
    }
}

/// Seconds since the epoch of an event's RFC 3339 time, or now when it does not parse.
fn event_time(time: &str) -> UnixSeconds {
    OffsetDateTime::parse(time, &Rfc3339)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .unix_timestamp()
}

/// What `ev` teaches, if anything: events of containers with a known image only.
pub fn lesson(ev: &Event) -> Option<Lesson> {
    let c = ev.container.as_ref()?;
    let image = ImageKey::new(&c.image, &c.image_id)?;
    let fact = match ev.kind {
        Kind::Exec => exec_fact(ev)?,
        Kind::Network => network_fact(ev)?,
        Kind::File => file_fact(ev)?,
        Kind::Container | Kind::Agent => return None,
    };
    Some(Lesson {
        image,
        at: event_time(&ev.time),
        fact,
    })
}

fn exec_fact(ev: &Event) -> Option<Fact> {
    let p = ev.process.as_ref()?;
    // The runtime's own helper before it entered the container's root: no exec rule applies
    // to it, and its path is the host's.
    if p.exe_source == "outside_root" {
        return None;
    }
    let drift = ev.control == "drift"
        || matches!(p.exe_source.as_str(), "container" | "other_fs" | "deleted");
    if drift {
        return Some(Fact::Drift {
            path: p.exe.clone(),
        });
    }
    if ev.action == Action::Blocked {
        return None;
    }
    let session = p.exec_session || ev.control == "container_exec";
    Some(if p.exe_truncated {
        Fact::CutExec { session }
    } else {
        Fact::Exec {
            path: p.exe.clone(),
            session,
        }
    })
}

fn network_fact(ev: &Event) -> Option<Fact> {
    if ev.action == Action::Blocked {
        return None;
    }
    let n = ev.network.as_ref()?;
    let protocol = match n.protocol.as_str() {
        "tcp" => Some(Transport::Tcp),
        "udp" => Some(Transport::Udp),
        _ => None,
    };
    match n.op.as_str() {
        "connect" | "sendmsg" => {
            let address: IpAddr = n.address.parse().ok()?;
            // A connect to port 0 or to the unspecified address goes nowhere: not a destination.
            if address.is_unspecified() || n.port == 0 {
                return None;
            }
            Some(Fact::Egress(Destination {
                address,
                port: n.port,
                protocol: protocol?,
            }))
        }
        "bind" => Some(Fact::Listen(ListenPort {
            port: n.port,
            protocol: protocol?,
        })),
        "raw_socket" => Some(Fact::RawSocket),
        // Accepted connections are inbound: what the container listens on is its binds.
        _ => None,
    }
}

fn file_fact(ev: &Event) -> Option<Fact> {
    if ev.action == Action::Blocked {
        return None;
    }
    let f = ev.file.as_ref()?;
    let flags: Vec<&str> = f.flags.split('|').collect();
    if flags.contains(&"O_DIRECTORY") {
        return None;
    }
    // Flags the agent could not read might have been a write: never suggest `read_only` for
    // a file that may be written.
    let write = f.flags == "unknown"
        || flags
            .iter()
            .any(|w| matches!(*w, "O_WRONLY" | "O_RDWR" | "O_CREAT" | "O_TRUNC"));
    let path = f.path.clone();
    Some(if write {
        Fact::Write { path }
    } else {
        Fact::Read { path }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_proto::event::{Container, File, Network, Process, Severity};

    fn event(kind: Kind, action: Action, control: &str) -> Event {
        Event {
            seq: 1,
            time: "2026-09-21T14:13:20.5Z".into(),
            node: "n".into(),
            kind,
            action,
            control: control.into(),
            severity: Severity::Info,
            message: String::new(),
            process: None,
            container: Some(Container {
                id: "c1".into(),
                image: "seawall-test/busybox:latest".into(),
                image_id: "sha256:1".into(),
                ..Default::default()
            }),
            file: None,
            network: None,
            intel: None,
        }
    }

    fn exec(action: Action, control: &str, exe: &str, source: &str) -> Event {
        let mut e = event(Kind::Exec, action, control);
        e.process = Some(Process {
            exe: exe.into(),
            exe_source: source.into(),
            ..Default::default()
        });
        e
    }

    fn fact(ev: &Event) -> Option<Fact> {
        lesson(ev).map(|l| l.fact)
    }

    #[test]
    fn execs_by_where_the_file_lives_not_by_what_the_control_said() {
        let l = lesson(&exec(Action::Allowed, "visibility", "/bin/sh", "image")).unwrap();
        assert_eq!(
            l.image,
            ImageKey {
                image: "seawall-test/busybox:latest".into(),
                image_id: Some("sha256:1".into())
            }
        );
        assert_eq!(l.at, 1_790_000_000);
        assert_eq!(
            l.fact,
            Fact::Exec {
                path: "/bin/sh".into(),
                session: false
            }
        );
        // Drift with the drift control off is still drift, and blocked drift is still noted.
        for (action, control, source) in [
            (Action::Allowed, "visibility", "container"),
            (Action::Allowed, "visibility", "other_fs"),
            (Action::Blocked, "drift", "container"),
            (Action::Audited, "drift", ""),
        ] {
            assert_eq!(
                fact(&exec(action, control, "/tmp/x", source)),
                Some(Fact::Drift {
                    path: "/tmp/x".into()
                }),
                "{action:?} {control} {source}"
            );
        }
        // What was blocked did not run; the runtime's helper is not the workload.
        assert_eq!(
            fact(&exec(Action::Blocked, "exec", "/bin/wget", "image")),
            None
        );
        assert_eq!(
            fact(&exec(
                Action::Allowed,
                "visibility",
                "/usr/bin/runc",
                "outside_root"
            )),
            None
        );
        // An audited exec ran: it is learned.
        assert!(matches!(
            fact(&exec(Action::Audited, "exec", "/bin/wget", "image")),
            Some(Fact::Exec { .. })
        ));
    }

    #[test]
    fn sessions_and_cut_paths() {
        let mut e = exec(Action::Allowed, "visibility", "/bin/cat", "image");
        e.process.as_mut().unwrap().exec_session = true;
        assert_eq!(
            fact(&e),
            Some(Fact::Exec {
                path: "/bin/cat".into(),
                session: true
            })
        );
        e.process.as_mut().unwrap().exe_truncated = true;
        assert_eq!(fact(&e), Some(Fact::CutExec { session: true }));
        let audited = exec(Action::Audited, "container_exec", "/bin/sh", "image");
        assert_eq!(
            fact(&audited),
            Some(Fact::Exec {
                path: "/bin/sh".into(),
                session: true
            })
        );
    }

    fn net(action: Action, op: &str, protocol: &str, address: &str, port: u16) -> Event {
        let mut e = event(Kind::Network, action, "visibility");
        e.network = Some(Network {
            op: op.into(),
            protocol: protocol.into(),
            address: address.into(),
            port,
        });
        e
    }

    #[test]
    fn network_destinations_binds_and_raw_sockets() {
        assert_eq!(
            fact(&net(Action::Allowed, "connect", "tcp", "127.0.0.1", 9000)),
            Some(Fact::Egress(Destination {
                address: "127.0.0.1".parse().unwrap(),
                port: 9000,
                protocol: Transport::Tcp
            }))
        );
        assert_eq!(
            fact(&net(Action::Audited, "sendmsg", "udp", "::1", 53)),
            Some(Fact::Egress(Destination {
                address: "::1".parse().unwrap(),
                port: 53,
                protocol: Transport::Udp
            }))
        );
        assert_eq!(
            fact(&net(Action::Allowed, "bind", "tcp", "0.0.0.0", 8080)),
            Some(Fact::Listen(ListenPort {
                port: 8080,
                protocol: Transport::Tcp
            }))
        );
        assert_eq!(
            fact(&net(Action::Audited, "raw_socket", "raw", "0.0.0.0", 0)),
            Some(Fact::RawSocket)
        );
        for ev in [
            net(Action::Blocked, "connect", "tcp", "10.0.0.1", 443),
            net(Action::Allowed, "connect", "tcp", "0.0.0.0", 80),
            net(Action::Allowed, "connect", "udp", "10.0.0.1", 0),
            net(Action::Allowed, "connect", "other", "10.0.0.1", 80),
            net(Action::Allowed, "accept", "tcp", "10.0.0.1", 40000),
            net(Action::Allowed, "connect", "tcp", "not an address", 80),
        ] {
            assert_eq!(fact(&ev), None, "{:?}", ev.network);
        }
    }

    fn file(action: Action, path: &str, flags: &str) -> Event {
        let mut e = event(Kind::File, action, "visibility");
        e.file = Some(File {
            path: path.into(),
            flags: flags.into(),
        });
        e
    }

    #[test]
    fn file_opens_are_reads_or_writes_and_unknown_flags_count_as_writes() {
        let read = |p: &str| Some(Fact::Read { path: p.into() });
        let write = |p: &str| Some(Fact::Write { path: p.into() });
        assert_eq!(
            fact(&file(Action::Allowed, "/etc/passwd", "O_RDONLY")),
            read("/etc/passwd")
        );
        assert_eq!(
            fact(&file(Action::Allowed, "/tmp/o", "O_WRONLY|O_CREAT|O_TRUNC")),
            write("/tmp/o")
        );
        assert_eq!(
            fact(&file(Action::Audited, "/etc/x", "O_RDWR")),
            write("/etc/x")
        );
        assert_eq!(
            fact(&file(Action::Allowed, "/etc/x", "O_RDONLY|O_TRUNC")),
            write("/etc/x"),
            "O_TRUNC truncates even read-only opens"
        );
        assert_eq!(
            fact(&file(Action::Allowed, "/etc/y", "unknown")),
            write("/etc/y")
        );
        assert_eq!(
            fact(&file(Action::Allowed, "/etc", "O_RDONLY|O_DIRECTORY")),
            None
        );
        assert_eq!(
            fact(&file(Action::Blocked, "/etc/shadow", "O_RDONLY")),
            None
        );
    }

    #[test]
    fn only_events_of_containers_with_a_known_image_teach() {
        let mut e = exec(Action::Allowed, "visibility", "/bin/sh", "image");
        e.container.as_mut().unwrap().image.clear();
        assert_eq!(lesson(&e), None);
        e.container = None;
        assert_eq!(lesson(&e), None);
        let agent = event(Kind::Agent, Action::Allowed, "agent");
        assert_eq!(lesson(&agent), None);
        let key = ImageKey::new("app:1", "").unwrap();
        assert_eq!(key.image_id, None);
        assert!(ImageKey::new(&"a".repeat(MAX_KEY_BYTES + 1), "").is_none());
    }

    #[test]
    fn a_lesson_lands_in_the_summary() {
        let limits = BehaviourLimits::default();
        let mut b = ImageBehaviour::new("seawall-test/busybox:latest", Some("sha256:1".into()));
        let mut e = exec(Action::Allowed, "visibility", "/bin/cat", "image");
        e.process.as_mut().unwrap().exec_session = true;
        lesson(&e).unwrap().teach(&mut b, &limits);
        Lesson {
            image: ImageKey::of(&b),
            at: 5,
            fact: Fact::Container {
                id: "c1".into(),
                files_watched: true,
                raw_sockets_watched: false,
            },
        }
        .teach(&mut b, &limits);
        assert!(b.execs().contains("/bin/cat"));
        assert!(b.files_watched() && !b.raw_sockets_watched());
        assert!(b.containers().contains("c1"));
        assert_eq!(ImageKey::of(&b).image_id.as_deref(), Some("sha256:1"));
    }
}
