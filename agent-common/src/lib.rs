//! The kernel/user ABI of Seawall: event records, map keys and values, constants and map names.
//!
//! Rules (DESIGN.md): `#[repr(C)]`, fixed size, explicit padding, `u32` flags instead of `bool`
//! (a Pod type must have no hidden padding), discriminants are explicit and never reused. No logic
//! here beyond encoding.
#![no_std]

mod cgroup_name;
mod offsets;
pub use cgroup_name::names_a_container;
pub use offsets::KernelOffsets;

// ---------------------------------------------------------------------------------------------
// Map names, used by both sides.
// ---------------------------------------------------------------------------------------------

/// Array of one u64: `bpf_ktime_get_boot_ns()` of the agent's last heartbeat. The kernel holds
/// a new container's execs for the agent only while the agent is alive.
pub const MAP_AGENT_HEARTBEAT: &str = "AGENT_HEARTBEAT";
/// A heartbeat older than this (ns) means no agent is there to release held processes.
pub const HEARTBEAT_FRESH_NS: u64 = 2_000_000_000;

/// Ring buffer every event goes through.
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU counters (`COUNTER_*` indexes), e.g. failed ring-buffer reservations.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Cgroup id → `PARENT_*` kind: the cgroups containers live below (e.g. `/docker`, `/kubepods`).
pub const MAP_CONTAINER_PARENTS: &str = "CONTAINER_PARENTS";
/// Cgroup id → 1: cgroups the kernel recognised as containers by their runtime's naming when
/// they were made below a [`PARENT_NESTED`] parent, so the default policy holds from their first
/// exec, before the agent has written their own. Written by the kernel only (LRU: a removed
/// cgroup's id is never reused, so old entries are harmless and age out).
pub const MAP_CONTAINER_CGROUPS: &str = "CONTAINER_CGROUPS";
/// Container cgroup id → [`ContainerPolicy`]; key 0 holds the default policy.
pub const MAP_CONTAINERS: &str = "CONTAINERS";
/// Container cgroup id → tgid of the container's init (first process that entered it).
pub const MAP_CONTAINER_INIT: &str = "CONTAINER_INIT";
/// tgid → [`ORIGIN_INIT`] or [`ORIGIN_EXEC_SESSION`]: how the process came into its container.
pub const MAP_TASK_ORIGIN: &str = "TASK_ORIGIN";
/// [`PathRuleKey`] → 1: compiled exec/drift path rules of every profile.
pub const MAP_PATH_RULES: &str = "PATH_RULES";
/// [`NetRuleKey`] → [`NetRule`]: compiled network rules of every profile.
pub const MAP_NET_RULES: &str = "NET_RULES";
/// LPM trie of the IPv4 networks the intel feeds list: key `{ prefix_len: u32, data: [u8; 4] }`
/// (the address in network byte order) → [`INTEL_LISTED`].
pub const MAP_INTEL_V4: &str = "INTEL_V4";
/// LPM trie of the IPv6 networks the intel feeds list: key `{ prefix_len: u32, data: [u8; 16] }`
/// → [`INTEL_LISTED`]. IPv4-mapped networks are in [`MAP_INTEL_V4`].
pub const MAP_INTEL_V6: &str = "INTEL_V6";
/// Container cgroup id → [`ASSURANCE_REFUSED`]: image assurance refused the container in
/// enforce mode, so every exec in it is refused.
pub const MAP_ASSURANCE: &str = "ASSURANCE";
/// Container cgroup id → [`ContainerRoot`]: the root filesystem and root mount the container's
/// init entered, against which every exec path and drift decision is taken.
pub const MAP_CONTAINER_ROOTS: &str = "CONTAINER_ROOTS";
/// Array of one u32, `BACKEND_*` bits: which enforcement backend is live, written by the agent
/// after it attached (or failed to attach) the BPF LSM programs.
pub const MAP_BACKEND: &str = "BACKEND";

/// [`MAP_BACKEND`] bit: the BPF LSM programs are attached and decide exec, mmap, ptrace, file
/// and socket operations; the fallback-only heuristics at exec (loader, `LD_*`) stand down.
pub const BACKEND_LSM: u32 = 1 << 0;
/// tgid → [`ExecEvent`]: execs the kernel stopped (SIGSTOP) for the agent to decide. Written
/// before the stop, so a hold is never lost with its ring record; removed by the agent once
/// decided, and by the kernel when the process exits.
pub const MAP_HELD_EXECS: &str = "HELD_EXECS";
/// Per-CPU array of two u64: [`SEQ_ASSIGNED`] (the count of the CPU's last
/// [`EventHeader::seq`]) and [`SEQ_HANDLED`] (the agent's: every record of that CPU up to it
/// was written to its outputs).
pub const MAP_EVENT_SEQ: &str = "EVENT_SEQ";
/// Container cgroup id → [`EventBudget`]: how many allowed records it wrote this second.
pub const MAP_BUDGETS: &str = "BUDGETS";
/// [`SuppressedKey`] → u64: allowed records held back, by container, kind and command.
pub const MAP_SUPPRESSED: &str = "SUPPRESSED";
/// Array of one [`LayoutStamp`]: what layout the pinned maps beside it have.
pub const MAP_LAYOUT: &str = "LAYOUT";

// ---------------------------------------------------------------------------------------------
// Sizes.
// ---------------------------------------------------------------------------------------------

/// Bytes of the path buffer in events; paths are assembled at offsets `< PATH_MAX_OFF`, each
/// component at most `NAME_MAX + 1` bytes, so the buffer is their sum.
pub const PATH_BUF: usize = 1024;
/// Highest offset at which a path component may start (power of two, for the verifier's mask).
pub const PATH_MAX_OFF: usize = 512;
/// Longest file name component the kernel allows, plus its NUL.
pub const NAME_BUF: usize = 256;
/// Bytes of argv kept per exec (NUL-separated, as in `/proc/pid/cmdline`).
pub const ARGS_BUF: usize = 512;
/// Bytes of a cgroup path in [`CgroupEvent`].
pub const CGROUP_PATH_BUF: usize = 256;
/// Deepest directory nesting the kernel walks when it builds a path; deeper paths are flagged
/// truncated and never match an allow list (a path of `PATH_MAX_OFF` bytes has at most 256
/// components, so this bound and the byte bound cut at about the same place).
pub const MAX_PATH_DEPTH: usize = 160;
/// Bytes of one environment string (or piece of one) the exec hook reads at a time when it
/// looks for `LD_PRELOAD`, `LD_AUDIT` and `LD_LIBRARY_PATH`.
pub const ENV_CHUNK: usize = 512;
/// Most environment pieces the exec hook reads; a larger environment is flagged
/// [`EXEC_ENV_UNSCANNED`] and treated as if it preloaded a library (fail closed).
pub const MAX_ENV_CHUNKS: u32 = 8192;
/// Most network rules per list (allow, deny, listen) per profile.
pub const MAX_NET_RULES: u32 = 32;
/// Deepest cgroup level at which a container parent is looked for.
pub const MAX_CGROUP_LEVEL: u32 = 8;
/// Most IPv4 networks [`MAP_INTEL_V4`] holds (an LPM trie allocates per entry, so an unused
/// capacity costs nothing).
pub const INTEL_V4_MAX_ENTRIES: u32 = 1 << 20;
/// Most IPv6 networks [`MAP_INTEL_V6`] holds.
pub const INTEL_V6_MAX_ENTRIES: u32 = 1 << 18;
/// Most containers with an assurance refusal.
pub const INTEL_CONTAINERS_MAX: u32 = 8192;

/// Hex digits of the container id in a container cgroup's name: Docker, containerd's CRI
/// plugin, CRI-O and podman all make 64-digit ids.
pub const CONTAINER_ID_HEX: usize = 64;
/// Execs held at once, machine-wide (a full map means no hold, never a lost one).
pub const HELD_EXECS_ENTRIES: u32 = 1024;
/// Containers whose allowed-record budget is tracked at once (LRU beyond).
pub const BUDGETS_ENTRIES: u32 = 8192;
/// (container, kind, command) suppression counters kept at once (LRU beyond; the total in
/// [`COUNTER_SUPPRESSED`] is exact).
pub const SUPPRESSED_ENTRIES: u32 = 4096;

// ---------------------------------------------------------------------------------------------
// Container parent kinds (values of `CONTAINER_PARENTS`).
// ---------------------------------------------------------------------------------------------

/// Every direct child of the parent is a container (`/docker/<id>`). Any value other than
/// [`PARENT_NESTED`] means this, so parents an earlier agent pinned with `1` keep their meaning.
pub const PARENT_CHILDREN: u32 = 1;
/// Containers sit at any depth below the parent beside cgroups that are not containers (QoS and
/// pod levels, the runtimes' monitors, host services), and are recognised by name when their
/// cgroup is made: `<prefix><64 hex>.scope` for `cri-containerd-`, `crio-`, `docker-`, `libpod-`;
/// `<64 hex>` or `crio-<64 hex>` in a `pod<uid>` directory; `libpod-<64 hex>`.
pub const PARENT_NESTED: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Counters (indexes into `COUNTERS`).
// ---------------------------------------------------------------------------------------------

/// Events lost because the ring buffer was full.
pub const COUNTER_RINGBUF_DROPS: u32 = 0;
/// Processes killed by a control in enforce mode.
pub const COUNTER_KILLS: u32 = 1;
/// Operations denied with EPERM by a control in enforce mode.
pub const COUNTER_DENIES: u32 = 2;
/// Decisions taken on kernel memory that could not be read (fail closed: counted as drift or
/// as a rule match, never as allowed).
pub const COUNTER_UNREADABLE: u32 = 3;
/// A held exec could not be recorded in [`MAP_HELD_EXECS`] (map full): it ran on under the
/// default policy instead of waiting for the container's own.
pub const COUNTER_HELD_FULL: u32 = 4;
/// A process's origin could not be recorded in `TASK_ORIGIN` (map full).
pub const COUNTER_ORIGIN_FULL: u32 = 5;
/// A container's init could not be recorded in `CONTAINER_INIT` (map full): its processes'
/// origin is unknown ([`ORIGIN_UNKNOWN`]) and none is judged a `docker exec` session.
pub const COUNTER_INIT_FULL: u32 = 6;
/// Allowed records not written to the ring because their container spent its budget or the
/// ring was over half full (blocked and audited records are never held back).
pub const COUNTER_SUPPRESSED: u32 = 7;
/// Number of counters (room for more without a layout change of `COUNTERS`' users).
pub const COUNTER_COUNT: u32 = 16;

// ---------------------------------------------------------------------------------------------
// Event kinds, controls and actions.
// ---------------------------------------------------------------------------------------------

/// `EventHeader::kind`: a process image was replaced ([`ExecEvent`]).
pub const EVENT_EXEC: u32 = 1;
/// `EventHeader::kind`: a process was created ([`ForkEvent`]).
pub const EVENT_FORK: u32 = 2;
/// `EventHeader::kind`: a process exited ([`ExitEvent`]).
pub const EVENT_EXIT: u32 = 3;
/// `EventHeader::kind`: a socket operation ([`NetEvent`]).
pub const EVENT_NET: u32 = 4;
/// `EventHeader::kind`: a cgroup was created under a container parent ([`CgroupEvent`]).
pub const EVENT_CGROUP_MKDIR: u32 = 5;
/// `EventHeader::kind`: a file open a file rule matched ([`FileEvent`], BPF LSM backend).
pub const EVENT_FILE: u32 = 6;

/// No control matched (plain visibility event).
pub const CONTROL_NONE: u32 = 0;
/// The executed file was not part of the container's image.
pub const CONTROL_DRIFT: u32 = 1;
/// Exec allow/deny lists.
pub const CONTROL_EXEC: u32 = 2;
/// A process entered with `docker exec` ran something.
pub const CONTROL_CONTAINER_EXEC: u32 = 3;
/// Network egress/listen rules.
pub const CONTROL_NETWORK: u32 = 4;
/// File deny/read-only/monitor rules.
pub const CONTROL_FILE: u32 = 5;
/// A destination (or, decided by the agent, an executed file) listed by an intel feed.
pub const CONTROL_INTEL: u32 = 6;
/// The container's image is not approved (`[assurance]`).
pub const CONTROL_ASSURANCE: u32 = 7;

/// The operation went ahead; no control applied.
pub const ACTION_ALLOWED: u32 = 0;
/// A control in audit mode matched; the operation went ahead.
pub const ACTION_AUDITED: u32 = 1;
/// A control in enforce mode matched; the operation was denied or the process killed.
pub const ACTION_BLOCKED: u32 = 2;

/// [`NetEvent::op`]: `connect(2)`.
pub const NET_OP_CONNECT: u32 = 1;
/// [`NetEvent::op`]: `bind(2)`.
pub const NET_OP_BIND: u32 = 2;
/// [`NetEvent::op`]: `sendmsg(2)`/`sendto(2)` to an address (unconnected UDP).
pub const NET_OP_SENDMSG: u32 = 3;
/// [`NetEvent::op`]: `socket(2)` of a raw or packet socket.
pub const NET_OP_RAW_SOCKET: u32 = 4;
/// [`NetEvent::op`]: an inbound TCP connection was established on a container's listener
/// (the peer's address and port; the accepting process is not known yet).
pub const NET_OP_ACCEPT: u32 = 5;
/// [`NetEvent::op`]: `listen(2)` (BPF LSM), or a connection request reaching a container's TCP
/// listener on a port `listen_allow` does not name (fallback: the request is dropped, so a
/// listener on a kernel-chosen port gets nothing); `port` is the listener's local port.
pub const NET_OP_LISTEN: u32 = 6;
/// [`NetEvent::op`]: an ICMP datagram ("ping") socket was created, or sent to `addr`.
pub const NET_OP_ICMP: u32 = 7;
/// [`NetEvent::op`]: an outgoing packet to `addr`, judged in the kernel whichever socket sent
/// it (raw, ICMP datagram, any protocol): the intel egress program.
pub const NET_OP_PACKET: u32 = 8;

/// `AF_INET`.
pub const FAMILY_INET: u32 = 2;
/// `AF_INET6`.
pub const FAMILY_INET6: u32 = 10;
/// `AF_PACKET`.
pub const FAMILY_PACKET: u32 = 17;

/// Protocol wildcard in [`NetRule::protocol`].
pub const PROTO_ANY: u32 = 0;
/// TCP (`SOCK_STREAM`).
pub const PROTO_TCP: u32 = 6;
/// UDP (`SOCK_DGRAM`).
pub const PROTO_UDP: u32 = 17;
/// Raw socket.
pub const PROTO_RAW: u32 = 255;
/// ICMP (an `IPPROTO_ICMP` datagram socket).
pub const PROTO_ICMP: u32 = 1;
/// ICMPv6 (an `IPPROTO_ICMPV6` datagram socket).
pub const PROTO_ICMPV6: u32 = 58;

/// `TASK_ORIGIN` value: descended from the container's init.
pub const ORIGIN_INIT: u32 = 1;
/// `TASK_ORIGIN` value: entered the container from outside after init (`docker exec`).
pub const ORIGIN_EXEC_SESSION: u32 = 2;
/// `TASK_ORIGIN` value: not known, because `CONTAINER_INIT` was full when the process entered
/// its container. Never judged a `docker exec` session (fail open, counted and flagged).
pub const ORIGIN_UNKNOWN: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Exec-event flags.
// ---------------------------------------------------------------------------------------------

/// argv did not fit [`ARGS_BUF`] and was cut.
pub const EXEC_ARGS_TRUNCATED: u32 = 1 << 0;
/// The path was deeper than [`MAX_PATH_DEPTH`] or longer than the buffer and was cut.
pub const EXEC_PATH_TRUNCATED: u32 = 1 << 1;
/// The executed file is in the overlay upper layer (written inside the container).
pub const EXEC_UPPER_LAYER: u32 = 1 << 2;
/// The executed file is not on the container's root filesystem (memfd, tmpfs, volume …).
pub const EXEC_FOREIGN_FS: u32 = 1 << 3;
/// The executed file has no link left (deleted, or memfd).
pub const EXEC_UNLINKED: u32 = 1 << 4;
/// The process was entered with `docker exec` (or its descendant).
pub const EXEC_FROM_EXEC_SESSION: u32 = 1 << 5;
/// The container has not started yet (no root recorded, no init) and the process's root is not
/// an overlay: a runtime helper joining the cgroup before it enters the container's mount
/// namespace. Drift and exec rules were not evaluated. Once the container has started this flag
/// is never set; [`EXEC_ROOT_UNKNOWN`] is.
pub const EXEC_ROOT_NOT_OVERLAY: u32 = 1 << 6;
/// The container's own policy was not written yet, or the agent makes kernel-enforced mounts in
/// its namespace at its first exec: the process was stopped (SIGSTOP) before its first
/// instruction, and the agent decides (SIGKILL or SIGCONT) once it is done.
pub const EXEC_HELD: u32 = 1 << 7;
/// The container has started but its root filesystem is not known (no overlay root was seen):
/// drift cannot be judged, so it counts as drift (fail closed).
pub const EXEC_ROOT_UNKNOWN: u32 = 1 << 8;
/// The file is not below the container's root at all (walking up never met it): memfd, pipe, or
/// a file reached through a descriptor from outside. Drift; its path matches no allow list.
pub const EXEC_OUTSIDE_ROOT: u32 = 1 << 9;
/// Kernel memory the decision needed could not be read: drift, and the path matches no allow
/// list (fail closed).
pub const EXEC_UNREADABLE: u32 = 1 << 10;
/// Not an exec: a file mapped executable (`mmap`/`mprotect` with `PROT_EXEC`, BPF LSM).
pub const EXEC_VIA_MMAP: u32 = 1 << 11;
/// Not an exec: `ptrace` attach (or `PTRACE_TRACEME`), `/proc/<pid>/mem` or
/// `process_vm_writev` access to another process (BPF LSM); `target_tgid` is the tracee.
pub const EXEC_VIA_PTRACE: u32 = 1 << 12;
/// Not an exec: an open of `/proc/<pid>/mem` for writing (BPF LSM `file_open`).
pub const EXEC_VIA_PROC_MEM: u32 = 1 << 13;
/// The new image's environment sets `LD_PRELOAD`, `LD_AUDIT` or `LD_LIBRARY_PATH` to something
/// the drift allow list does not name (fallback backend: the loader would map it unseen).
pub const EXEC_PRELOAD_ENV: u32 = 1 << 14;
/// The executed file is the dynamic loader run as a program (`ld.so /path`): on the fallback
/// the files it maps are unseen, so it is drift unless the drift allow list names it.
pub const EXEC_LOADER: u32 = 1 << 15;
/// A script (`#!`) was executed through a descriptor path (`/proc/self/fd/N`, `/dev/fd/N`):
/// on the fallback the script's file is unseen (memfd, deleted), so it is drift.
pub const EXEC_SCRIPT_VIA_FD: u32 = 1 << 16;
/// The environment was too large to scan for `LD_*` variables: treated as
/// [`EXEC_PRELOAD_ENV`] (fail closed).
pub const EXEC_ENV_UNSCANNED: u32 = 1 << 17;
/// The process's root is not the container's root (it called `chroot`): the path is still
/// the file's path from the container's root (informational).
pub const EXEC_CHROOTED: u32 = 1 << 18;

/// Flags that make an exec (or an executable mapping) drift.
pub const EXEC_DRIFT_FLAGS: u32 = EXEC_UPPER_LAYER
    | EXEC_FOREIGN_FS
    | EXEC_UNLINKED
    | EXEC_ROOT_UNKNOWN
    | EXEC_OUTSIDE_ROOT
    | EXEC_UNREADABLE
    | EXEC_PRELOAD_ENV
    | EXEC_LOADER
    | EXEC_SCRIPT_VIA_FD
    | EXEC_ENV_UNSCANNED;
/// Flags under which a path is not trustworthy: it never matches an allow list, and counts as
/// matching a deny list that has directory rules (fail closed).
pub const EXEC_PATH_UNTRUSTED: u32 =
    EXEC_PATH_TRUNCATED | EXEC_OUTSIDE_ROOT | EXEC_UNREADABLE | EXEC_ROOT_UNKNOWN;
/// Drift flags that come from the executed file; a drift allow list can exempt its path.
pub const EXEC_FILE_DRIFT_FLAGS: u32 = EXEC_UPPER_LAYER
    | EXEC_FOREIGN_FS
    | EXEC_UNLINKED
    | EXEC_ROOT_UNKNOWN
    | EXEC_OUTSIDE_ROOT
    | EXEC_UNREADABLE
    | EXEC_SCRIPT_VIA_FD;
/// The process's origin is unknown ([`ORIGIN_UNKNOWN`]): `container_exec` was not judged.
pub const EXEC_ORIGIN_UNKNOWN: u32 = 1 << 28;

// ---------------------------------------------------------------------------------------------
// Policy.
// ---------------------------------------------------------------------------------------------

/// Control is on and reports.
pub const MODE_AUDIT: u32 = 1;
/// Control is on and blocks.
pub const MODE_ENFORCE: u32 = 2;

/// What the kernel enforces for one container (or, at key 0, for containers with no entry yet).
///
/// Each `*_mode` is 0 (off), [`MODE_AUDIT`] or [`MODE_ENFORCE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerPolicy {
    /// Identifies the compiled profile whose rules (`PATH_RULES`, `NET_RULES`) apply.
    pub profile_id: u32,
    /// Drift prevention.
    pub drift_mode: u32,
    /// Exec allow/deny lists.
    pub exec_mode: u32,
    /// `docker exec` sessions.
    pub container_exec_mode: u32,
    /// Network rules.
    pub net_mode: u32,
    /// `RULES_*` bits: which rule lists this profile has.
    pub rules: u32,
    /// Number of rules in each network list.
    pub net_allow_count: u32,
    /// Number of egress deny rules.
    pub net_deny_count: u32,
    /// Number of listen rules.
    pub net_listen_count: u32,
    /// 1 when raw and packet sockets are refused.
    pub block_raw_sockets: u32,
    /// File deny / read-only rules (`LIST_FILE_*`); enforced only by the BPF LSM backend
    /// (`file_open`) in the kernel, by fanotify in userspace otherwise.
    pub file_mode: u32,
    /// Intel feeds: destinations in `INTEL_V4`/`INTEL_V6` (the profile's `[intel] mode`, else
    /// the agent's `intel_mode`; at key 0, the agent's).
    pub intel_mode: u32,
}

/// [`ContainerPolicy::rules`]: an exec allow list exists (anything not on it is denied).
pub const RULES_EXEC_ALLOW: u32 = 1 << 0;
/// [`ContainerPolicy::rules`]: an exec deny list exists.
pub const RULES_EXEC_DENY: u32 = 1 << 1;
/// [`ContainerPolicy::rules`]: drift has allowed paths.
pub const RULES_DRIFT_ALLOW: u32 = 1 << 2;
/// [`ContainerPolicy::rules`]: an egress allow list exists (anything not on it is denied).
pub const RULES_NET_ALLOW: u32 = 1 << 3;
/// [`ContainerPolicy::rules`]: a listen allow list exists (binding other ports is denied).
pub const RULES_NET_LISTEN: u32 = 1 << 4;
/// [`ContainerPolicy::rules`]: a file deny list ([`LIST_FILE_DENY`]) exists.
pub const RULES_FILE_DENY: u32 = 1 << 5;
/// [`ContainerPolicy::rules`]: a file read-only list ([`LIST_FILE_READ_ONLY`]) exists.
pub const RULES_FILE_READ_ONLY: u32 = 1 << 6;
/// [`ContainerPolicy::rules`]: the agent prepares the container at its first exec — marks its
/// mounts for fanotify and makes the kernel-enforced mounts of its file rules inside its mount
/// namespace — so that exec is held (SIGSTOP) until the agent is done (fallback backend).
pub const RULES_HOLD_FIRST_EXEC: u32 = 1 << 7;
/// [`ContainerPolicy::rules`]: the exec deny list has `dir/*` or `dir/**` rules, which a path
/// the kernel could not build whole might fall under (an exact rule cannot: it is shorter).
pub const RULES_EXEC_DENY_TREES: u32 = 1 << 8;
/// [`ContainerPolicy::rules`]: the file deny list has `dir/*` or `dir/**` rules.
pub const RULES_FILE_DENY_TREES: u32 = 1 << 9;
/// [`ContainerPolicy::rules`]: the file read-only list has `dir/*` or `dir/**` rules.
pub const RULES_FILE_READ_ONLY_TREES: u32 = 1 << 10;

/// Value of [`MAP_INTEL_V4`] and [`MAP_INTEL_V6`] entries.
pub const INTEL_LISTED: u32 = 1;
/// Value of [`MAP_ASSURANCE`] entries.
pub const ASSURANCE_REFUSED: u32 = 1;

/// [`PathRuleKey::list`]: exec allow list.
pub const LIST_EXEC_ALLOW: u32 = 1;
/// [`PathRuleKey::list`]: exec deny list.
pub const LIST_EXEC_DENY: u32 = 2;
/// [`PathRuleKey::list`]: paths drift prevention lets run.
pub const LIST_DRIFT_ALLOW: u32 = 3;
/// [`PathRuleKey::list`]: files no process of the container may open at all.
pub const LIST_FILE_DENY: u32 = 4;
/// [`PathRuleKey::list`]: files the container may open only for reading (an open with write
/// access, `O_CREAT`, `O_TRUNC` or `O_APPEND` is denied), and may not unlink, rename, link,
/// truncate, chmod or chown.
pub const LIST_FILE_READ_ONLY: u32 = 5;
/// [`PathRuleKey::list`]: directories that hold a file rule ([`FORM_EXACT`] hashes of every
/// ancestor of a deny or read-only path): renaming one would move ruled files to other names.
pub const LIST_FILE_RULE_DIRS: u32 = 6;

/// [`PathRuleKey::form`]: the whole path equals the rule.
pub const FORM_EXACT: u32 = 1;
/// [`PathRuleKey::form`]: the file is directly inside the directory (hash of `"/dir/"`).
pub const FORM_DIR: u32 = 2;
/// [`PathRuleKey::form`]: the file is anywhere below the directory (hash of `"/dir/"`).
pub const FORM_TREE: u32 = 3;

/// Key of one compiled path rule: the FNV-1a 64 hash ([`fnv1a`]) of the path or directory
/// prefix (with its trailing `/`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathRuleKey {
    /// [`ContainerPolicy::profile_id`].
    pub profile_id: u32,
    /// `LIST_*`.
    pub list: u32,
    /// `FORM_*`.
    pub form: u32,
    /// Explicit padding (always 0).
    pub _pad: u32,
    /// [`fnv1a`] of the bytes.
    pub hash: u64,
}

/// [`NetRuleKey::list`]: egress allow.
pub const NET_LIST_ALLOW: u32 = 1;
/// [`NetRuleKey::list`]: egress deny.
pub const NET_LIST_DENY: u32 = 2;
/// [`NetRuleKey::list`]: ports a container may bind.
pub const NET_LIST_LISTEN: u32 = 3;

/// Key of one network rule: rules of a list are numbered `0..count`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NetRuleKey {
    /// [`ContainerPolicy::profile_id`].
    pub profile_id: u32,
    /// `NET_LIST_*`.
    pub list: u32,
    /// Position in the list.
    pub index: u32,
    /// Explicit padding (always 0).
    pub _pad: u32,
}

/// One network rule: address prefix, port range and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetRule {
    /// Address in network byte order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// [`FAMILY_INET`], [`FAMILY_INET6`] or 0 for "any address of any family".
    pub family: u32,
    /// Prefix length in bits.
    pub prefix_len: u32,
    /// `PROTO_*`.
    pub protocol: u32,
    /// First port, host byte order.
    pub port_lo: u16,
    /// Last port, host byte order (inclusive).
    pub port_hi: u16,
}

// ---------------------------------------------------------------------------------------------
// Events.
// ---------------------------------------------------------------------------------------------

/// Common head of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// `EVENT_*`.
    pub kind: u32,
    /// `CONTROL_*` that matched, or [`CONTROL_NONE`].
    pub control: u32,
    /// `ACTION_*`.
    pub action: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    /// Parent's thread group id.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// `bpf_ktime_get_boot_ns()` at the event.
    pub ktime_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Container cgroup id (the task's own cgroup or an ancestor), 0 on the host.
    pub container_cgroup_id: u64,
    /// Task command name, NUL-padded.
    pub comm: [u8; 16],
    /// Kernel sequence number, stamped as the record enters the ring: the CPU in the top 16
    /// bits ([`SEQ_CPU_SHIFT`]) and that CPU's count ([`MAP_EVENT_SEQ`]) below, one per record
    /// written, from 1, with no gaps, so the agent can count what it read and never handled.
    pub seq: u64,
}

/// A process image was replaced (`sched_process_exec`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    /// Common head.
    pub header: EventHeader,
    /// `EXEC_*` flags.
    pub flags: u32,
    /// Bytes of `path` in use (no NUL).
    pub path_len: u32,
    /// Bytes of `args` in use.
    pub args_len: u32,
    /// [`EXEC_VIA_PTRACE`]: the traced process's tgid (0 otherwise).
    pub target_tgid: u32,
    /// Path of the executed (or mapped) file from the container's root (bytes, not always
    /// UTF-8).
    pub path: [u8; PATH_BUF],
    /// argv, NUL-separated.
    pub args: [u8; ARGS_BUF],
}

/// A new process (`sched_process_fork`, thread creation excluded).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    /// Common head (the parent).
    pub header: EventHeader,
    /// The child's tgid.
    pub child_tgid: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// A process exited (`sched_process_exit` of the thread-group leader).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    /// Common head.
    pub header: EventHeader,
    /// `task_struct::exit_code` (wait status encoding).
    pub exit_code: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// A socket operation in a container (cgroup sock_addr / sock_create programs).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetEvent {
    /// Common head.
    pub header: EventHeader,
    /// `NET_OP_*`.
    pub op: u32,
    /// `FAMILY_*`.
    pub family: u32,
    /// `PROTO_*`.
    pub protocol: u32,
    /// Port, host byte order.
    pub port: u16,
    /// Explicit padding.
    pub _pad: u16,
    /// Address in network byte order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

/// [`FileEvent::op`]: `open(2)` and friends (`open_flags` says how).
pub const FILE_OP_OPEN: u32 = 1;
/// [`FileEvent::op`]: `unlink(2)` / `rmdir(2)`.
pub const FILE_OP_UNLINK: u32 = 2;
/// [`FileEvent::op`]: `rename(2)` from or onto the path.
pub const FILE_OP_RENAME: u32 = 3;
/// [`FileEvent::op`]: `link(2)` of the path, or a new link at it.
pub const FILE_OP_LINK: u32 = 4;
/// [`FileEvent::op`]: `truncate(2)`.
pub const FILE_OP_TRUNCATE: u32 = 5;
/// [`FileEvent::op`]: `chmod(2)`.
pub const FILE_OP_CHMOD: u32 = 6;
/// [`FileEvent::op`]: `chown(2)`.
pub const FILE_OP_CHOWN: u32 = 7;
/// [`FileEvent::op`]: creating the path (`O_CREAT`, `mknod`, `mkdir`, `symlink`).
pub const FILE_OP_CREATE: u32 = 8;

/// An operation on a file that matched a file rule (BPF LSM `file_open` and `path_*` hooks).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileEvent {
    /// Common head.
    pub header: EventHeader,
    /// `file.f_flags` of the open (`O_*`); 0 for other operations.
    pub open_flags: u32,
    /// Bytes of `path` in use (no NUL).
    pub path_len: u32,
    /// `FILE_OP_*`.
    pub op: u32,
    /// `EXEC_PATH_TRUNCATED` / `EXEC_UNREADABLE` when the path is not trustworthy.
    pub flags: u32,
    /// Path of the file from the container's root (bytes, not always UTF-8).
    pub path: [u8; PATH_BUF],
}

/// A container cgroup was created: a child of a [`PARENT_CHILDREN`] parent, or one recognised
/// by name below a [`PARENT_NESTED`] parent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupEvent {
    /// Common head (of the task that created it).
    pub header: EventHeader,
    /// The new cgroup's id.
    pub id: u64,
    /// Bytes of `path` in use.
    pub path_len: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Path relative to the cgroup v2 root, e.g. `/docker/<id>`.
    pub path: [u8; CGROUP_PATH_BUF],
}

/// The root a container's init entered, recorded at its first exec whose root is the root of an
/// overlay mount. The pointers are compared, never dereferenced (the container may be gone).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerRoot {
    /// `super_block *` of the container's root filesystem.
    pub sb: u64,
    /// `vfsmount *` of the container's root mount.
    pub mnt: u64,
    /// `dentry *` of the container's root directory.
    pub dentry: u64,
}

// ---------------------------------------------------------------------------------------------
// Faults: the kernel's sequence, flood budgets, the pinned maps' layout.
// ---------------------------------------------------------------------------------------------

/// [`MAP_EVENT_SEQ`] index: the last sequence number the kernel stamped.
pub const SEQ_ASSIGNED: u32 = 0;
/// [`MAP_EVENT_SEQ`] index: the agent's high-water mark of records it wrote out.
pub const SEQ_HANDLED: u32 = 1;
/// [`EventHeader::seq`] keeps the CPU above this bit, the CPU's count below.
pub const SEQ_CPU_SHIFT: u32 = 48;

/// One container's allowed-record budget for the current one-second window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBudget {
    /// `bpf_ktime_get_boot_ns()` at the start of the window.
    pub window_start_ns: u64,
    /// Allowed records written in this window.
    pub used: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Allowed records held back, since the entry was created.
    pub suppressed: u64,
}

/// What suppressed records are counted by.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SuppressedKey {
    /// Container cgroup id (0: host).
    pub cgroup_id: u64,
    /// `EVENT_*`.
    pub kind: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Command of the task (zero in softirq context), NUL-padded.
    pub comm: [u8; 16],
}

/// The version of the pinned maps' layout: raise it whenever a pinned map's key, value or
/// meaning changes (its size alone is caught by [`LayoutStamp::fingerprint`] too). A new
/// agent meeting pins of another layout migrates them (fresh maps, take-over, old pins
/// removed) instead of adopting them.
pub const PIN_LAYOUT_VERSION: u32 = 1;

/// What the [`MAP_LAYOUT`] map holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayoutStamp {
    /// [`PIN_LAYOUT_VERSION`] of the agent that created the maps.
    pub version: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// FNV-1a of every pinned map's name, type, key and value size, entries and flags.
    pub fingerprint: u64,
}

// ---------------------------------------------------------------------------------------------
// Magic numbers and the path-rule hash.
// ---------------------------------------------------------------------------------------------

/// `OVERLAYFS_SUPER_MAGIC`.
pub const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// FNV-1a 64, the hash both sides use for path rules.
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h = fnv1a_step(h, bytes[i]);
        i += 1;
    }
    h
}

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One FNV-1a 64 step.
#[inline(always)]
pub const fn fnv1a_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

// Compile-time size checks: a change here is an ABI change on both sides.

const _: () = assert!(core::mem::size_of::<EventHeader>() == 72);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 72 + 16 + PATH_BUF + ARGS_BUF);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 80);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 80);
const _: () = assert!(core::mem::size_of::<NetEvent>() == 72 + 16 + 16);
const _: () = assert!(core::mem::size_of::<FileEvent>() == 72 + 16 + PATH_BUF);
const _: () = assert!(core::mem::size_of::<ContainerRoot>() == 24);
const _: () = assert!(core::mem::size_of::<CgroupEvent>() == 72 + 16 + CGROUP_PATH_BUF);
const _: () = assert!(core::mem::size_of::<LayoutStamp>() == 16);
const _: () = assert!(core::mem::size_of::<EventBudget>() == 24);
const _: () = assert!(core::mem::size_of::<SuppressedKey>() == 32);
const _: () = assert!(core::mem::size_of::<ContainerPolicy>() == 48);
const _: () = assert!(core::mem::size_of::<PathRuleKey>() == 24);
const _: () = assert!(core::mem::size_of::<NetRuleKey>() == 16);
const _: () = assert!(core::mem::size_of::<NetRule>() == 32);
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 62 * 4);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are `#[repr(C)]`, made of integers and byte arrays, with explicit padding.
    unsafe impl aya::Pod for ContainerPolicy {}
    unsafe impl aya::Pod for PathRuleKey {}
    unsafe impl aya::Pod for NetRuleKey {}
    unsafe impl aya::Pod for NetRule {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for ContainerRoot {}
    unsafe impl aya::Pod for ExecEvent {}
    unsafe impl aya::Pod for LayoutStamp {}
    unsafe impl aya::Pod for EventBudget {}
    unsafe impl aya::Pod for SuppressedKey {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn header_fields_sit_where_the_kernel_writes_them() {
        assert_eq!(core::mem::offset_of!(EventHeader, ktime_ns), 24);
        assert_eq!(core::mem::offset_of!(EventHeader, cgroup_id), 32);
        assert_eq!(core::mem::offset_of!(EventHeader, comm), 48);
        assert_eq!(core::mem::offset_of!(EventHeader, seq), 64);
        assert_eq!(core::mem::offset_of!(ExecEvent, path), 88);
        assert_eq!(core::mem::align_of::<ExecEvent>(), 8);
    }
}
