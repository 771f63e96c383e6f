//! What the containers of one image did, as a bounded summary: the input of `seawall profile
//! learn`.
//!
//! The agent keeps one [`ImageBehaviour`] per image (reference and digest), fed from the events it
//! already emits; it persists them in its state directory and serves them over its local API.
//! Whatever a container does, each category keeps at most [`BehaviourLimits::per_category`]
//! distinct entries of at most [`MAX_KEY_BYTES`] bytes, and counts what it had to leave out, so
//! memory and state stay bounded and the learned profile can say that a list was cut.

use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::PathGlobs;

/// Seconds since the Unix epoch, UTC.
pub type UnixSeconds = i64;

/// Longest path (or other key) a summary records; longer ones are counted as cut. The kernel
/// assembles event paths below 512 bytes, so a real path is never refused for its length.
pub const MAX_KEY_BYTES: usize = 512;

mod observed;

use observed::{merge_opt, record_opt};
pub use observed::{Observed, Seen};

/// Transport protocol of an observed connection or bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// The spelling used in profiles and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outbound destination: the peer of a `connect` (or a reported `sendmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Destination {
    /// Peer address; IPv4-mapped IPv6 peers are recorded as IPv4, as events show them.
    pub address: IpAddr,
    /// Peer port.
    pub port: u16,
    /// Transport.
    pub protocol: Transport,
}

/// A local port a container bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ListenPort {
    /// Local port (never 0: binding port 0 asks for an ephemeral port and is not a listen).
    pub port: u16,
    /// Transport.
    pub protocol: Transport,
}

/// How much one image's summary may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BehaviourLimits {
    /// Distinct entries per category (executables, files read, destinations, ...).
    pub per_category: usize,
}

impl BehaviourLimits {
    /// Upper bound of the summary's size in bytes (keys plus bookkeeping), for the docs and for
    /// the agent's own bound across images.
    pub fn max_bytes_per_image(&self) -> usize {
        // 8 categories; each entry is a key of at most MAX_KEY_BYTES, its Seen and map overhead.
        8 * self.per_category * (MAX_KEY_BYTES + 96)
    }
}

impl Default for BehaviourLimits {
    fn default() -> Self {
        BehaviourLimits { per_category: 256 }
    }
}

/// Files a profile could protect: configuration, keys and credentials. Reads of these are worth
/// learning (they become `read_only` suggestions); other reads are not recorded.
pub const PROTECTABLE_READS: &[&str] = &[
    "/etc/**",
    "/root/**",
    "/run/secrets/**",
    "/var/run/secrets/**",
    "**/.ssh/**",
    "**/.aws/**",
    "**/.kube/**",
    "**/.docker/config.json",
    "**/.netrc",
    "**/.pgpass",
    "**/.git-credentials",
    "**/*.pem",
    "**/*.key",
    "**/*.p12",
    "**/*.pfx",
];

static PROTECTABLE: LazyLock<PathGlobs> = LazyLock::new(|| {
    PathGlobs::new(PROTECTABLE_READS.iter().map(|s| s.to_string()).collect())
        .expect("PROTECTABLE_READS are valid globs")
});

/// Whether `path` (inside the container) is configuration, a key or a credential.
pub fn is_protectable(path: &str) -> bool {
    PROTECTABLE.matches(path)
}

/// What the containers of one image did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBehaviour {
    pub(crate) image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image_id: Option<String>,
    /// Whether file opens of any of its containers were reported (`--audit-files` or a file
    /// rule): without that, "never read" and "never written" mean nothing.
    #[serde(default)]
    pub(crate) files_watched: bool,
    /// Whether raw and packet sockets of any of its containers were reported: the kernel
    /// reports them only under a profile with `block_raw_sockets`, so without it "none seen"
    /// means nothing.
    #[serde(default)]
    pub(crate) raw_sockets_watched: bool,
    /// Container ids, counted once per start.
    #[serde(default)]
    pub(crate) containers: Observed<String>,
    /// Executables run from the image, by path.
    #[serde(default)]
    pub(crate) execs: Observed<String>,
    /// Drift: executables that were not in the image, by path.
    #[serde(default)]
    pub(crate) drift: Observed<String>,
    /// Execs inside `docker exec` sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) container_exec: Option<Seen>,
    /// Protectable files opened for reading ([`is_protectable`]).
    #[serde(default)]
    pub(crate) files_read: Observed<String>,
    /// Protectable files opened for writing, creating or truncating.
    #[serde(default)]
    pub(crate) files_written: Observed<String>,
    /// Directories of every file written (any path), for review.
    #[serde(default)]
    pub(crate) write_dirs: Observed<String>,
    /// Outbound destinations.
    #[serde(default)]
    pub(crate) egress: Observed<Destination>,
    /// Ports bound.
    #[serde(default)]
    pub(crate) listens: Observed<ListenPort>,
    /// `AF_PACKET` / `SOCK_RAW` sockets opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) raw_sockets: Option<Seen>,
    /// Events of its containers that were never learned because the agent fell behind: every
    /// list may be incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) missed: Option<Seen>,
}

/// Whether a path can be a key: absolute and not longer than [`MAX_KEY_BYTES`].
fn usable_path(path: &str) -> bool {
    path.starts_with('/') && path.len() <= MAX_KEY_BYTES
}

impl ImageBehaviour {
    /// An empty summary for an image reference and, when known, its digest (`sha256:…`).
    pub fn new(image: impl Into<String>, image_id: Option<String>) -> ImageBehaviour {
        ImageBehaviour {
            image: image.into(),
            image_id,
            files_watched: false,
            raw_sockets_watched: false,
            containers: Observed::default(),
            execs: Observed::default(),
            drift: Observed::default(),
            container_exec: None,
            files_read: Observed::default(),
            files_written: Observed::default(),
            write_dirs: Observed::default(),
            egress: Observed::default(),
            listens: Observed::default(),
            raw_sockets: None,
            missed: None,
        }
    }

    /// The image reference.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The image digest, when the engine reported one.
    pub fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }

    /// Whether file opens of its containers were watched.
    pub fn files_watched(&self) -> bool {
        self.files_watched
    }

    /// The containers seen.
    pub fn containers(&self) -> &Observed<String> {
        &self.containers
    }

    /// The executables run.
    pub fn execs(&self) -> &Observed<String> {
        &self.execs
    }

    /// The outbound destinations.
    pub fn egress(&self) -> &Observed<Destination> {
        &self.egress
    }

    /// Names of the categories that were cut (incomplete), for warnings.
    pub fn cut_categories(&self) -> Vec<&'static str> {
        [
            ("containers", self.containers.cut().is_some()),
            ("executables", self.execs.cut().is_some()),
            ("drift", self.drift.cut().is_some()),
            ("files read", self.files_read.cut().is_some()),
            ("files written", self.files_written.cut().is_some()),
            ("written directories", self.write_dirs.cut().is_some()),
            ("egress destinations", self.egress.cut().is_some()),
            ("listening ports", self.listens.cut().is_some()),
        ]
        .into_iter()
        .filter_map(|(name, cut)| cut.then_some(name))
        .collect()
    }

    /// Notes that file opens of one of its containers are reported.
    pub fn mark_files_watched(&mut self) {
        self.files_watched = true;
    }

    /// Whether raw and packet sockets of its containers were reported.
    pub fn raw_sockets_watched(&self) -> bool {
        self.raw_sockets_watched
    }

    /// Notes that raw and packet sockets of one of its containers are reported.
    pub fn mark_raw_sockets_watched(&mut self) {
        self.raw_sockets_watched = true;
    }

    /// Events that were never learned because the agent fell behind, if any.
    pub fn missed(&self) -> Option<&Seen> {
        self.missed.as_ref()
    }

    /// `count` events of its containers were never learned (the agent fell behind), the first
    /// at `first` and the last at `last`.
    pub fn record_missed(&mut self, count: u64, first: UnixSeconds, last: UnixSeconds) {
        merge_opt(&mut self.missed, Some(&Seen { count, first, last }));
    }

    /// The last time anything of it was seen.
    pub fn last_seen(&self) -> Option<UnixSeconds> {
        let lists = [
            &self.containers,
            &self.execs,
            &self.drift,
            &self.files_read,
            &self.files_written,
            &self.write_dirs,
        ];
        let paths = lists.iter().flat_map(|o| o.iter().map(|(_, s)| s.last));
        let others = [self.container_exec, self.raw_sockets, self.missed]
            .into_iter()
            .flatten()
            .map(|s| s.last);
        paths
            .chain(self.egress.iter().map(|(_, s)| s.last))
            .chain(self.listens.iter().map(|(_, s)| s.last))
            .chain(others)
            .max()
    }

    /// A container of this image started (or was first seen).
    pub fn record_container(&mut self, id: &str, at: UnixSeconds, limits: &BehaviourLimits) {
        if id.len() > MAX_KEY_BYTES {
            self.containers.refuse(at);
        } else {
            self.containers.record(id, at, limits.per_category);
        }
    }

    /// An executable from the image ran (allowed, or reported by the exec control).
    pub fn record_exec(&mut self, path: &str, at: UnixSeconds, limits: &BehaviourLimits) {
        record_path(&mut self.execs, path, at, limits);
    }

    /// An executable ran whose path the kernel had to cut: it cannot be listed (a cut path
    /// never matches an allow list), so it is counted as cut.
    pub fn record_cut_exec(&mut self, at: UnixSeconds) {
        self.execs.refuse(at);
    }

    /// An exec was drift.
    pub fn record_drift(&mut self, path: &str, at: UnixSeconds, limits: &BehaviourLimits) {
        record_path(&mut self.drift, path, at, limits);
    }

    /// A process ran inside a `docker exec` session.
    pub fn record_container_exec(&mut self, at: UnixSeconds) {
        record_opt(&mut self.container_exec, at);
    }

    /// A file was opened for reading; only protectable files are kept.
    pub fn record_read(&mut self, path: &str, at: UnixSeconds, limits: &BehaviourLimits) {
        if is_protectable(path) {
            record_path(&mut self.files_read, path, at, limits);
        }
    }

    /// A file was opened for writing, creating or truncating: its directory always, the file
    /// itself when it is protectable.
    pub fn record_write(&mut self, path: &str, at: UnixSeconds, limits: &BehaviourLimits) {
        let dir = match path.rfind('/') {
            Some(0) => "/",
            Some(i) => &path[..i],
            None => path,
        };
        record_path(&mut self.write_dirs, dir, at, limits);
        if is_protectable(path) {
            record_path(&mut self.files_written, path, at, limits);
        }
    }

    /// An outbound connection.
    pub fn record_egress(&mut self, to: Destination, at: UnixSeconds, limits: &BehaviourLimits) {
        self.egress.record(&to, at, limits.per_category);
    }

    /// A bind; port 0 (an ephemeral port) is not a listen and is ignored.
    pub fn record_listen(&mut self, port: ListenPort, at: UnixSeconds, limits: &BehaviourLimits) {
        if port.port != 0 {
            self.listens.record(&port, at, limits.per_category);
        }
    }

    /// A raw or packet socket was opened.
    pub fn record_raw_socket(&mut self, at: UnixSeconds) {
        record_opt(&mut self.raw_sockets, at);
    }

    /// Everything in `other` added to this summary, without limits (for learning one profile
    /// from several images).
    pub fn merge(&mut self, other: &ImageBehaviour) {
        self.files_watched |= other.files_watched;
        self.raw_sockets_watched |= other.raw_sockets_watched;
        self.containers.merge(&other.containers);
        self.execs.merge(&other.execs);
        self.drift.merge(&other.drift);
        merge_opt(&mut self.container_exec, other.container_exec.as_ref());
        self.files_read.merge(&other.files_read);
        self.files_written.merge(&other.files_written);
        self.write_dirs.merge(&other.write_dirs);
        self.egress.merge(&other.egress);
        self.listens.merge(&other.listens);
        merge_opt(&mut self.raw_sockets, other.raw_sockets.as_ref());
        merge_opt(&mut self.missed, other.missed.as_ref());
    }

    /// Only what was last seen at or after `since` (`seawall profile learn --since`).
    pub fn since(&self, since: UnixSeconds) -> ImageBehaviour {
        let recent = |s: &Option<Seen>| s.filter(|s| s.last >= since);
        ImageBehaviour {
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            files_watched: self.files_watched,
            raw_sockets_watched: self.raw_sockets_watched,
            containers: self.containers.since(since),
            execs: self.execs.since(since),
            drift: self.drift.since(since),
            container_exec: recent(&self.container_exec),
            files_read: self.files_read.since(since),
            files_written: self.files_written.since(since),
            write_dirs: self.write_dirs.since(since),
            egress: self.egress.since(since),
            listens: self.listens.since(since),
            raw_sockets: recent(&self.raw_sockets),
            missed: recent(&self.missed),
        }
    }

    /// Brings a summary read from disk within `limits` (they may have been lowered since).
    pub fn trim(&mut self, limits: &BehaviourLimits) {
        let n = limits.per_category;
        self.containers.trim(n);
        self.execs.trim(n);
        self.drift.trim(n);
        self.files_read.trim(n);
        self.files_written.trim(n);
        self.write_dirs.trim(n);
        self.egress.trim(n);
        self.listens.trim(n);
    }
}

fn record_path(set: &mut Observed<String>, path: &str, at: UnixSeconds, limits: &BehaviourLimits) {
    if usable_path(path) {
        set.record(path, at, limits.per_category);
    } else {
        set.refuse(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BehaviourLimits = BehaviourLimits { per_category: 3 };

    #[test]
    fn counts_and_times() {
        let mut b = ImageBehaviour::new("busybox", None);
        b.record_exec("/bin/sh", 20, &LIMITS);
        b.record_exec("/bin/sh", 10, &LIMITS);
        b.record_exec("/bin/sh", 30, &LIMITS);
        let (path, seen) = b.execs().iter().next().unwrap();
        assert_eq!(path, "/bin/sh");
        assert_eq!(
            *seen,
            Seen {
                count: 3,
                first: 10,
                last: 30
            }
        );
        assert!(b.cut_categories().is_empty());
    }

    #[test]
    fn each_category_is_bounded_and_says_it_was_cut() {
        let mut b = ImageBehaviour::new("busybox", None);
        for i in 0..10_000 {
            b.record_exec(&format!("/tmp/x{i}"), i, &LIMITS);
            b.record_egress(
                Destination {
                    address: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
                    port: 80,
                    protocol: Transport::Tcp,
                },
                i,
                &LIMITS,
            );
        }
        assert_eq!(b.execs().len(), 3);
        assert_eq!(b.egress().len(), 3);
        let cut = b.execs().cut().unwrap();
        assert_eq!((cut.count, cut.first, cut.last), (9_997, 3, 9_999));
        assert_eq!(b.cut_categories(), ["executables", "egress destinations"]);
        // What was recorded before the limit still counts.
        b.record_exec("/tmp/x0", 20_000, &LIMITS);
        assert_eq!(b.execs().iter().next().unwrap().1.count, 2);
        // The bound holds on disk too: the serialised form does not grow with the attempts.
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.len() < 2_000, "{}", json.len());
    }

    #[test]
    fn unusable_paths_are_cut_not_kept() {
        let mut b = ImageBehaviour::new("busybox", None);
        b.record_exec(&format!("/{}", "a".repeat(MAX_KEY_BYTES)), 1, &LIMITS);
        b.record_exec("relative/path", 2, &LIMITS);
        assert!(b.execs().is_empty());
        assert_eq!(b.execs().cut().unwrap().count, 2);
    }

    #[test]
    fn only_protectable_reads_are_kept_and_writes_by_directory() {
        let mut b = ImageBehaviour::new("busybox", None);
        let l = BehaviourLimits::default();
        for p in [
            "/etc/passwd",
            "/root/.ssh/id_ed25519",
            "/srv/tls/server.key",
            "/usr/lib/libc.so",
            "/tmp/data",
        ] {
            b.record_read(p, 1, &l);
        }
        let read: Vec<&String> = b.files_read.iter().map(|(k, _)| k).collect();
        assert_eq!(
            read,
            [
                "/etc/passwd",
                "/root/.ssh/id_ed25519",
                "/srv/tls/server.key"
            ]
        );
        b.record_write("/tmp/a", 1, &l);
        b.record_write("/tmp/b", 2, &l);
        b.record_write("/etc/motd", 3, &l);
        b.record_write("/top", 3, &l);
        let dirs: Vec<&String> = b.write_dirs.iter().map(|(k, _)| k).collect();
        assert_eq!(dirs, ["/", "/etc", "/tmp"]);
        assert!(b.files_written.contains("/etc/motd"));
        assert!(!b.files_written.contains("/tmp/a"));
    }

    #[test]
    fn cut_exec_paths_and_missed_events_are_counted_not_kept() {
        let mut b = ImageBehaviour::new("busybox", None);
        b.record_cut_exec(5);
        assert!(b.execs().is_empty());
        assert_eq!(b.execs().cut().unwrap().count, 1);
        assert_eq!(b.cut_categories(), ["executables"]);
        b.record_missed(10, 7, 9);
        b.record_missed(1, 3, 3);
        assert_eq!(
            b.missed(),
            Some(&Seen {
                count: 11,
                first: 3,
                last: 9
            })
        );
        assert_eq!(b.last_seen(), Some(9));
        assert_eq!(b.since(10).missed(), None);
        b.record_listen(
            ListenPort {
                port: 80,
                protocol: Transport::Tcp,
            },
            42,
            &LIMITS,
        );
        assert_eq!(b.last_seen(), Some(42));
        assert_eq!(ImageBehaviour::new("x", None).last_seen(), None);
    }

    #[test]
    fn port_zero_binds_are_not_listens() {
        let mut b = ImageBehaviour::new("busybox", None);
        let l = BehaviourLimits::default();
        for port in [0, 8080] {
            b.record_listen(
                ListenPort {
                    port,
                    protocol: Transport::Tcp,
                },
                1,
                &l,
            );
        }
        assert_eq!(b.listens.len(), 1);
    }

    #[test]
    fn survives_a_round_trip_through_json() {
        let mut b = ImageBehaviour::new("nginx:1.27", Some("sha256:abc".into()));
        let l = BehaviourLimits::default();
        b.mark_files_watched();
        b.record_container("c1", 1, &l);
        b.record_exec("/usr/sbin/nginx", 1, &l);
        b.record_container_exec(5);
        b.record_egress(
            Destination {
                address: "::1".parse().unwrap(),
                port: 53,
                protocol: Transport::Udp,
            },
            2,
            &l,
        );
        b.execs.refuse(9);
        let json = serde_json::to_string(&b).unwrap();
        assert!(
            json.contains(r#"{"key":{"address":"::1","port":53,"protocol":"udp"},"count":1,"first":2,"last":2}"#),
            "{json}"
        );
        let back: ImageBehaviour = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        // An older or hand-trimmed state with missing categories still loads.
        let minimal: ImageBehaviour = serde_json::from_str(r#"{"image":"x"}"#).unwrap();
        assert_eq!(minimal, ImageBehaviour::new("x", None));
    }

    #[test]
    fn since_merge_and_trim() {
        let l = BehaviourLimits::default();
        let mut a = ImageBehaviour::new("app:1", None);
        a.record_exec("/bin/old", 10, &l);
        a.record_exec("/bin/new", 100, &l);
        a.record_container_exec(10);
        let recent = a.since(50);
        let paths: Vec<&String> = recent.execs().iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["/bin/new"]);
        assert!(recent.container_exec.is_none());

        let mut b = ImageBehaviour::new("app:2", None);
        b.record_exec("/bin/new", 200, &l);
        b.record_exec("/bin/other", 200, &l);
        a.merge(&b);
        assert_eq!(a.execs().len(), 3);
        let new = a.execs().iter().find(|(k, _)| *k == "/bin/new").unwrap().1;
        assert_eq!((new.count, new.first, new.last), (2, 100, 200));

        a.trim(&BehaviourLimits { per_category: 2 });
        let kept: Vec<&String> = a.execs().iter().map(|(k, _)| k).collect();
        assert_eq!(kept, ["/bin/new", "/bin/other"]);
        assert_eq!(a.execs().cut().unwrap().count, 1);
    }
}
