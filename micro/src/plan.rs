//! Each profile control mapped onto what this kernel offers an unprivileged process: Landlock
//! for everything the kernel can decide on its own, seccomp user notification for the rest and
//! for events. What cannot be had is written down here, once: `--check` prints it, the startup
//! event carries it, and a control in `enforce` mode that the kernel cannot enforce stops the
//! start (set that control to `audit` to run without it).

use seawall_profile::{Mode, NetRule, PortRange, Profile, Protocol};

use crate::confine::ruleset::{Scopes, TcpPorts};
use crate::probe::Features;

/// Which file syscalls the supervisor looks at (for events; Landlock decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileWatch {
    None,
    /// Opens that can change a file, and unlink/rename/truncate/link.
    Changes,
    /// Every open as well (`files.deny` reports reads).
    All,
}

/// One control's line in `--check` and in the startup event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlReport {
    pub control: &'static str,
    pub mode: Mode,
    /// Which mechanism enforces or observes it.
    pub backend: String,
    /// Missing because of this kernel: refuses the start when `mode` is `enforce`.
    pub degraded: Vec<String>,
    /// Not covered by design, on any kernel.
    pub not_covered: Vec<String>,
}

/// What to install and watch for one profile on one kernel.
#[derive(Debug, Clone)]
pub struct Plan {
    pub features: Features,
    /// Modes as the profile gives them.
    pub drift: Mode,
    pub network: Mode,
    /// Landlock enforces drift (W^X and the start snapshot).
    pub landlock_drift: bool,
    /// Landlock enforces exec allow/deny.
    pub landlock_exec: bool,
    /// Landlock enforces files deny/read_only.
    pub landlock_files: bool,
    /// execve/execveat are reported (drift or exec not off).
    pub watch_exec: bool,
    /// memfd_create is done by the supervisor, always with `MFD_NOEXEC_SEAL`.
    pub memfd_noexec: bool,
    /// mmap(PROT_EXEC) of a file and mprotect/pkey_mprotect adding PROT_EXEC go to the
    /// supervisor, which refuses code that was not in the filesystem at start (drift not off).
    pub watch_code_maps: bool,
    /// `drift.allow_anonymous_exec`: anonymous and written memory may become executable, so
    /// anonymous mappings stay in the kernel. Otherwise (W^X) they are refused too.
    pub anonymous_exec: bool,
    pub watch_files: FileWatch,
    /// Sockets are created, connected, bound and sent on by the supervisor.
    pub net_on_behalf: bool,
    /// connect/bind/sendto/sendmsg are reported and let through (audit).
    pub net_watch: bool,
    /// `egress_allow` or `egress_deny` is given: connect and sends with an address matter.
    pub egress_rules: bool,
    /// `listen_allow` is given: bind matters.
    pub listen_rules: bool,
    /// `block_raw_sockets` with its mode (`Off` when not asked for).
    pub raw_sockets: Mode,
    pub tcp: TcpPorts,
    pub scopes: Scopes,
    /// Without Landlock signal scoping, the filter refuses signals and ptrace aimed at the
    /// supervisor's pid.
    pub guard_pid_in_filter: bool,
    pub reports: Vec<ControlReport>,
}

/// What observes a control in `audit` mode.
const AUDIT_BACKEND: &str = "seccomp notification: reported, let through (audit)";

/// More ports than this in `listen_allow`/`egress_allow` and Landlock's port rules are skipped
/// (the supervisor still checks every call).
const MAX_LANDLOCK_PORTS: usize = 4096;

fn ports_of(ranges: &[PortRange]) -> Option<Vec<u16>> {
    let mut out: Vec<u16> = Vec::new();
    for r in ranges {
        if usize::from(r.last - r.first) + out.len() >= MAX_LANDLOCK_PORTS {
            return None;
        }
        out.extend(r.first..=r.last);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// TCP ports an egress allow list reduces to, when every TCP-capable rule names ports.
fn connect_ports(allow: &[NetRule]) -> Option<Vec<u16>> {
    let tcp: Vec<PortRange> = allow
        .iter()
        .filter(|r| r.protocol != Protocol::Udp)
        .map(|r| r.ports)
        .collect();
    if tcp.iter().any(PortRange::is_any) {
        return None;
    }
    ports_of(&tcp)
}

impl Plan {
    pub fn new(p: &Profile, f: Features) -> Plan {
        let ll = f.landlock_abi;
        let enforce = |m: Mode| m == Mode::Enforce;
        let net = &p.network;
        let exec_lists = p.exec.allow.is_some() || !p.exec.deny.is_empty();
        let file_lists = !p.files.deny.is_empty() || !p.files.read_only.is_empty();
        let net_rules =
            net.egress_allow.is_some() || !net.egress_deny.is_empty() || net.listen_allow.is_some();

        let landlock_drift = enforce(p.drift.mode) && ll >= 1;
        let landlock_exec = enforce(p.exec.mode) && exec_lists && ll >= 1;
        let landlock_files = enforce(p.files.mode) && file_lists && ll >= 1;
        let watch_exec =
            f.user_notif && (p.drift.mode != Mode::Off || (p.exec.mode != Mode::Off && exec_lists));
        let memfd_noexec = enforce(p.drift.mode) && f.memfd_noexec && f.on_behalf();
        let watch_code_maps = f.user_notif && p.drift.mode != Mode::Off;
        let watch_files = if !f.user_notif || p.files.mode == Mode::Off {
            FileWatch::None
        } else if !p.files.deny.is_empty() {
            FileWatch::All
        } else if !p.files.read_only.is_empty() || !p.files.monitor.is_empty() {
            FileWatch::Changes
        } else {
            FileWatch::None
        };
        let net_on_behalf = enforce(net.mode) && net_rules && f.on_behalf();
        let net_watch = net.mode == Mode::Audit && net_rules && f.user_notif;
        let raw_sockets = if net.block_raw_sockets {
            net.mode
        } else {
            Mode::Off
        };
        let mut tcp = TcpPorts::default();
        if ll >= 4 && enforce(net.mode) {
            tcp.bind = net.listen_allow.as_deref().and_then(ports_of).map(|mut v| {
                // Port 0 asks for an ephemeral port: not a listening decision.
                v.insert(0, 0);
                v
            });
            tcp.connect = net.egress_allow.as_deref().and_then(connect_ports);
        }
        let scopes = Scopes {
            signal: ll >= 6,
            abstract_unix: ll >= 6 && enforce(net.mode) && net.egress_allow.is_some(),
        };

        let mut reports = Vec::new();
        let no_events = "no events: seccomp user notification is unavailable".to_string();

        // drift
        let mut r = ControlReport {
            control: "drift",
            mode: p.drift.mode,
            backend: String::new(),
            degraded: Vec::new(),
            not_covered: vec![
                if p.drift.allow_anonymous_exec {
                    "code written into memory and made executable runs \
                     (drift.allow_anonymous_exec = true, as JITs need): a process can copy any \
                     file's code there, so the mapping checks stop the loader (LD_PRELOAD, \
                     dlopen), not a program of its own"
                } else {
                    "code a process writes with its own stores or process_vm_writev can never \
                     become executable (W^X); the two doors that ignore page protections are \
                     shut by the backend below, not by W^X itself"
                }
                .into(),
                "a multi-threaded process can swap the file behind an fd (dup2) or the mapping \
                 at an address (mmap MAP_FIXED) between the supervisor's check and the kernel's \
                 mmap/mprotect: the check is race-free only for a single-threaded caller; for a \
                 multi-threaded one the race is NOT closed (issue 16)"
                    .into(),
                "a file of the image without an execute bit (a library) on a writable mount \
                 that is not an overlay (a volume) can be rewritten in place after it was \
                 mapped: W^X keeps only the files executable at start unwritable"
                    .into(),
                "a process the supervisor may not look at (running as another user than \
                 seawall-micro, or not dumpable) has every PROT_EXEC file mapping refused under \
                 enforce: run seawall-micro as the application's user"
                    .into(),
                "a script given to an interpreter (`sh FILE`) is read, not executed".into(),
                "directories holding executables at start take no new files and their \
                 executables are not writable (W^X); `drift.allow` trees must exist at start"
                    .into(),
            ],
        };
        if p.drift.mode != Mode::Off {
            r.backend = if enforce(p.drift.mode) {
                "Landlock execute right on the files executable at start; seccomp \
                 notification for memfd_create, mmap/mprotect PROT_EXEC of files and events"
            } else {
                AUDIT_BACKEND
            }
            .into();
            if !p.drift.allow_anonymous_exec {
                r.backend
                    .push_str("; W^X: anonymous or written memory never becomes executable");
                if enforce(p.drift.mode) {
                    r.backend.push_str(
                        "; nothing under /proc is writable (Landlock: /proc/PID/mem), \
                         ptrace POKETEXT/POKEDATA refused (seccomp)",
                    );
                }
            }
            if ll < 1 {
                r.degraded
                    .push("files written after start can be executed: no Landlock".into());
                if !p.drift.allow_anonymous_exec {
                    r.degraded.push(
                        "code can be written onto code pages through /proc/PID/mem: no Landlock"
                            .into(),
                    );
                }
            }
            if !(f.memfd_noexec && f.on_behalf()) {
                r.degraded.push(
                    "memfd exec is not refused: needs MFD_NOEXEC_SEAL (Linux 6.3) and \
                     seccomp addfd (5.14) with killable waits (5.19)"
                        .into(),
                );
            }
            if !f.user_notif {
                r.degraded.push(
                    "code not in the image can be mapped executable (LD_PRELOAD, dlopen, \
                     `ld.so FILE`, mmap/mprotect PROT_EXEC): needs seccomp user notification"
                        .into(),
                );
                r.degraded.push(no_events.clone());
            }
        }
        reports.push(r);

        // exec
        let mut r = ControlReport {
            control: "exec",
            mode: if exec_lists { p.exec.mode } else { Mode::Off },
            backend: String::new(),
            degraded: Vec::new(),
            not_covered: vec![
                "rules resolve to files at start: a denied file is denied under every name \
                 (hard links, symlinks, busybox applets of one binary); `DIR/*` allows the \
                 files in DIR at start"
                    .into(),
            ],
        };
        if exec_lists && p.exec.mode != Mode::Off {
            r.backend = if enforce(p.exec.mode) {
                "Landlock execute right; seccomp notification for events"
            } else {
                AUDIT_BACKEND
            }
            .into();
            if ll < 1 {
                r.degraded
                    .push("exec allow/deny is not enforced: no Landlock".into());
            }
            if !f.user_notif {
                r.degraded.push(no_events.clone());
            }
        }
        reports.push(r);

        // container_exec
        reports.push(ControlReport {
            control: "container_exec",
            mode: p.exec.container_exec,
            backend: "not applicable".into(),
            degraded: Vec::new(),
            not_covered: vec![
                "a process entered from outside (`docker exec`, `kubectl exec`) is not a \
                 descendant of seawall-micro: no control applies to it"
                    .into(),
            ],
        });

        // file
        let mut r = ControlReport {
            control: "file",
            mode: if file_lists || !p.files.monitor.is_empty() {
                p.files.mode
            } else {
                Mode::Off
            },
            backend: String::new(),
            degraded: Vec::new(),
            not_covered: vec![
                "patterns resolve at start: a read-only file's directory keeps its entries \
                 (none can be unlinked or renamed), and `files.monitor` reports what the call \
                 asked for, read from the caller's memory"
                    .into(),
            ],
        };
        if r.mode != Mode::Off {
            r.backend = if enforce(p.files.mode) && file_lists {
                "Landlock rights on the paths matched at start; seccomp notification for events"
            } else {
                AUDIT_BACKEND
            }
            .into();
            if file_lists && ll < 1 {
                r.degraded
                    .push("files deny/read_only are not enforced: no Landlock".into());
            }
            if !p.files.read_only.is_empty() && (1..3).contains(&ll) {
                r.degraded.push(
                    "truncating a read-only file (truncate(2), O_TRUNC) is not refused: \
                     Landlock ABI 3 needed"
                        .into(),
                );
            }
            if !f.user_notif {
                r.degraded.push(no_events.clone());
            }
        }
        reports.push(r);

        // network
        let mut r = ControlReport {
            control: "network",
            mode: if net_rules || net.block_raw_sockets {
                net.mode
            } else {
                Mode::Off
            },
            backend: String::new(),
            degraded: Vec::new(),
            not_covered: vec![
                "sockets are created, connected, bound and sent on by the supervisor for the \
                 tree: their peers see the supervisor's pid (SO_PEERCRED, SCM_CREDENTIALS)"
                    .into(),
                "a multi-threaded process cannot sendmsg (or sendto an address) on a socket \
                 the supervisor did not create, such as an accepted connection, nor pass fds \
                 with sendmsg on an inet socket: EPERM, because what such a call reaches cannot \
                 be checked race-free"
                    .into(),
                "unix sockets by path (a mounted /var/run/docker.sock, say) are not egress: \
                 the profile has no rule for them, Landlock does not mediate connecting to \
                 one, and only the socket file's permissions apply; abstract ones are scoped to the tree (Landlock ABI 6, \
                 with egress_allow)"
                    .into(),
            ],
        };
        if r.mode != Mode::Off {
            r.backend = if enforce(net.mode) {
                "seccomp notification: sockets made and used by the supervisor; seccomp \
                 filter for raw sockets; Landlock TCP ports and scopes as a floor"
            } else {
                AUDIT_BACKEND
            }
            .into();
            if net_rules && !f.on_behalf() {
                r.degraded.push(
                    "egress and listen rules are not enforced: needs seccomp user \
                     notification with addfd (5.14) and killable waits (5.19)"
                        .into(),
                );
            }
            if net.block_raw_sockets && !f.user_notif {
                r.degraded
                    .push("raw sockets are refused without events".into());
            }
            if net.egress_allow.is_some() && ll < 6 {
                r.degraded.push(
                    "abstract unix sockets outside the tree are not refused: Landlock ABI 6 \
                     needed"
                        .into(),
                );
            }
        }
        reports.push(r);

        // The supervisor itself.
        let mut r = ControlReport {
            control: "supervisor",
            mode: Mode::Enforce,
            backend: "Landlock domain (no ptrace, /proc/PID/mem or pidfd_getfd of the \
                      supervisor); no_new_privs; one seccomp listener per tree"
                .into(),
            degraded: Vec::new(),
            not_covered: vec![
                "without Landlock's signal scope (ABI 6) and when it is not PID 1, the \
                 supervisor can be killed through one of its threads (tkill, a thread pidfd: \
                 the filter guards its pid, not its threads' ids); the tree then fails closed \
                 (notified calls return ENOSYS)"
                    .into(),
            ],
        };
        if ll >= 6 {
            r.backend.push_str(
                "; Landlock signal scope, the tree one layer below the supervisor's threads",
            );
        } else {
            r.backend
                .push_str("; signals and ptrace aimed at its pid refused by the filter");
        }
        reports.push(r);

        Plan {
            features: f,
            drift: p.drift.mode,
            network: net.mode,
            landlock_drift,
            landlock_exec,
            landlock_files,
            watch_exec,
            memfd_noexec,
            watch_code_maps,
            anonymous_exec: p.drift.allow_anonymous_exec,
            watch_files,
            net_on_behalf,
            net_watch,
            egress_rules: net.egress_allow.is_some() || !net.egress_deny.is_empty(),
            listen_rules: net.listen_allow.is_some(),
            raw_sockets,
            tcp,
            scopes,
            guard_pid_in_filter: ll < 6,
            reports,
        }
    }

    /// Why the start must be refused: every degraded item of a control in `enforce` mode.
    pub fn refusals(&self) -> Vec<String> {
        self.reports
            .iter()
            .filter(|r| r.mode == Mode::Enforce)
            .flat_map(|r| {
                r.degraded
                    .iter()
                    .map(move |d| format!("{}: {d}", r.control))
            })
            .collect()
    }

    /// One block of text per control, for `--check` and the startup log.
    pub fn describe(&self) -> String {
        let mut s = format!("kernel: {}\n", self.features);
        for r in &self.reports {
            s.push_str(&format!(
                "{} ({}): {}\n",
                r.control,
                r.mode,
                if r.backend.is_empty() {
                    "off"
                } else {
                    &r.backend
                }
            ));
            for d in &r.degraded {
                s.push_str(&format!("  degraded: {d}\n"));
            }
            if r.mode != Mode::Off {
                for n in &r.not_covered {
                    s.push_str(&format!("  not covered: {n}\n"));
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests;
