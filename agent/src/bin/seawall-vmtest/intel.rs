//! The intel and assurance checks of `seawall-vmtest`: listed destinations refused by the
//! cgroup connect/sendmsg programs and, for an ICMP datagram socket's `sendto` (which no
//! sock_addr program sees), by the cgroup_skb egress program (all attached at the test parent,
//! never the root, as the agent attaches them at `/docker`), and a container refused by image assurance unable to run any
//! exec under the BPF LSM backend (EPERM at `bprm_check_security`).
//!
//! Listed: 127.0.0.2, 127.0.3.0/24, fd00:5ea::/32. Unlisted: 127.0.4.1 and fd00:5eb::1. Nothing
//! listens on those addresses, so an unlisted connect fails with ECONNREFUSED (or, for IPv6
//! without a route, ENETUNREACH): only EPERM means the kernel refused it.

use std::{
    fs::{self, File},
    net::{Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use agent_common::{
    ContainerPolicy, EventHeader, ExecEvent, NetEvent, ACTION_BLOCKED, ASSURANCE_REFUSED,
    CONTROL_ASSURANCE, CONTROL_INTEL, EVENT_EXEC, EVENT_NET, INTEL_LISTED, MAP_ASSURANCE,
    MAP_CONTAINERS, MAP_INTEL_V4, MAP_INTEL_V6, MODE_ENFORCE, NET_OP_CONNECT, NET_OP_PACKET,
    NET_OP_SENDMSG,
};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        HashMap, MapData,
    },
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr},
    Ebpf,
};

use seawall::kernel::programs::Hook;

use crate::{
    net::ping,
    run::{errno, exec, expect_eperm, line, Report},
};

/// The cgroup of the container image assurance refused.
pub const CG_REFUSED: &str = "/sys/fs/cgroup/seawall-vmtest/refused";
/// Where the cgroup programs are attached: the containers' parent.
const CG_PARENT: &str = "/sys/fs/cgroup/seawall-vmtest";

/// Fills the intel tries, turns intel on (enforce) in the container's policy, writes the
/// refused container's entries, then attaches the sock_addr programs at the test parent.
pub fn setup(
    ebpf: &mut Ebpf,
    report: &mut Report,
    container_cgroup: u64,
    refused_cgroup: u64,
) -> Result<(), String> {
    let mut v4: LpmTrie<&mut MapData, [u8; 4], u32> =
        LpmTrie::try_from(ebpf.map_mut(MAP_INTEL_V4).ok_or("no INTEL_V4 map")?)
            .map_err(|e| e.to_string())?;
    for (prefix, addr) in [(32, [127, 0, 0, 2]), (24, [127, 0, 3, 0])] {
        v4.insert(&Key::new(prefix, addr), INTEL_LISTED, 0)
            .map_err(|e| format!("INTEL_V4: {e}"))?;
    }
    let mut v6: LpmTrie<&mut MapData, [u8; 16], u32> =
        LpmTrie::try_from(ebpf.map_mut(MAP_INTEL_V6).ok_or("no INTEL_V6 map")?)
            .map_err(|e| e.to_string())?;
    let net6 = "fd00:5ea::".parse::<Ipv6Addr>().expect("literal").octets();
    v6.insert(&Key::new(32, net6), INTEL_LISTED, 0)
        .map_err(|e| format!("INTEL_V6: {e}"))?;

    // The container's own policy, as the agent compiles it with intel enforcing.
    let mut containers: HashMap<&mut MapData, u64, ContainerPolicy> =
        HashMap::try_from(ebpf.map_mut(MAP_CONTAINERS).ok_or("no CONTAINERS map")?)
            .map_err(|e| e.to_string())?;
    let mut policy = containers
        .get(&container_cgroup, 0)
        .map_err(|e| format!("the container's policy: {e}"))?;
    policy.intel_mode = MODE_ENFORCE;
    containers
        .insert(container_cgroup, policy, 0)
        .map_err(|e| format!("CONTAINERS: {e}"))?;

    // The refused container is a member with every profile control off: only assurance acts.
    let mut containers: HashMap<&mut MapData, u64, ContainerPolicy> =
        HashMap::try_from(ebpf.map_mut(MAP_CONTAINERS).ok_or("no CONTAINERS map")?)
            .map_err(|e| e.to_string())?;
    containers
        .insert(refused_cgroup, ContainerPolicy::default(), 0)
        .map_err(|e| format!("CONTAINERS: {e}"))?;
    let mut refused: HashMap<&mut MapData, u64, u32> =
        HashMap::try_from(ebpf.map_mut(MAP_ASSURANCE).ok_or("no ASSURANCE map")?)
            .map_err(|e| e.to_string())?;
    refused
        .insert(refused_cgroup, ASSURANCE_REFUSED, 0)
        .map_err(|e| format!("ASSURANCE: {e}"))?;

    // Each program on its own, so one the verifier refuses does not hide the others.
    let mut failed = Vec::new();
    let sock_addr = seawall::kernel::programs::PROGRAMS
        .iter()
        .filter(|p| matches!(p.hook, Hook::CgroupSockAddr(_)));
    for name in sock_addr.map(|p| p.name) {
        let attached = (|| -> Result<(), String> {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or("missing from the object")?
                .try_into()
                .map_err(|e| format!("{e}"))?;
            // The verifier's log can run to megabytes: its last lines say why.
            prog.load()
                .map_err(|e| format!("loading: {}", tail(&e.to_string())))?;
            let parent = File::open(CG_PARENT).map_err(|e| format!("{CG_PARENT}: {e}"))?;
            prog.attach(parent, CgroupAttachMode::Single)
                .map_err(|e| format!("attaching at {CG_PARENT}: {e}"))?;
            Ok(())
        })();
        if let Err(e) = attached {
            failed.push(format!("{name}: {e}"));
        }
    }
    let egress = seawall::kernel::programs::PROGRAMS
        .iter()
        .filter(|p| p.hook == Hook::CgroupSkbEgress);
    for name in egress.map(|p| p.name) {
        let attached = (|| -> Result<(), String> {
            let prog: &mut CgroupSkb = ebpf
                .program_mut(name)
                .ok_or("missing from the object")?
                .try_into()
                .map_err(|e| format!("{e}"))?;
            prog.load()
                .map_err(|e| format!("loading: {}", tail(&e.to_string())))?;
            let parent = File::open(CG_PARENT).map_err(|e| format!("{CG_PARENT}: {e}"))?;
            prog.attach(
                parent,
                CgroupSkbAttachType::Egress,
                CgroupAttachMode::Single,
            )
            .map_err(|e| format!("attaching at {CG_PARENT}: {e}"))?;
            Ok(())
        })();
        if let Err(e) = attached {
            failed.push(format!("{name}: {e}"));
        }
    }
    report.check(
        "intel_hash_answerer_started",
        crate::intel_hash::start(container_cgroup),
    );
    report.check(
        "intel_programs_attached",
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        },
    );
    // A failure leaves the listed-destination checks to fail on their own; the others run.
    Ok(())
}

/// The first line of an error and its last three (a verifier log's verdict).
fn tail(e: &str) -> String {
    let lines: Vec<&str> = e.lines().collect();
    if lines.len() <= 4 {
        return lines.join(" | ");
    }
    format!(
        "{} | … | {}",
        lines[0],
        lines[lines.len() - 3..].join(" | ")
    )
}

fn connect_errno(addr: SocketAddr) -> Result<(), i32> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn refused(r: Result<(), i32>) -> Result<(), String> {
    match r {
        Err(libc::EPERM) => Ok(()),
        Err(e) => Err(format!("errno {e}, not EPERM")),
        Ok(()) => Err("it went through".into()),
    }
}

fn not_refused(r: Result<(), i32>) -> Result<(), String> {
    match r {
        Err(libc::EPERM) => Err("refused with EPERM".into()),
        _ => Ok(()),
    }
}

/// An ICMP datagram socket's `sendto` to `dst`, as errno.
fn ping_errno(dst: [u8; 4]) -> Result<(), i32> {
    if ping(dst) < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}

/// From inside the registered container (same process as the profile checks).
pub fn container_checks() -> Vec<String> {
    let mut out = crate::intel_hash::container_checks();
    out.extend(address_checks());
    out
}

/// Listed and unlisted destinations, every way out.
fn address_checks() -> Vec<String> {
    let sendto = || -> Result<(), i32> {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.raw_os_error().unwrap_or(-1))?;
        s.send_to(b"x", "127.0.0.2:9")
            .map(drop)
            .map_err(|e| e.raw_os_error().unwrap_or(-1))
    };
    let mapped = || -> Result<(), i32> {
        // An IPv6 socket to ::ffff:127.0.0.2: the same destination by the other family.
        connect_errno(addr("[::ffff:127.0.0.2]:9"))
    };
    vec![
        line(
            "intel_connect_listed_ip_eperm",
            refused(connect_errno(addr("127.0.0.2:9"))),
        ),
        line(
            "intel_connect_listed_cidr_eperm",
            refused(connect_errno(addr("127.0.3.77:9"))),
        ),
        line("intel_connect_ipv4_mapped_eperm", refused(mapped())),
        line(
            "intel_connect_listed_ipv6_eperm",
            refused(connect_errno(addr("[fd00:5ea::1]:9"))),
        ),
        line("intel_sendto_listed_ip_eperm", refused(sendto())),
        // The profile does not deny 127.0.0.2: only the egress program can refuse this send.
        line(
            "intel_icmp_send_listed_eperm",
            refused(ping_errno([127, 0, 0, 2])),
        ),
        line(
            "intel_icmp_send_unlisted_sent",
            ping_errno([127, 0, 4, 1]).map_err(|e| format!("sendto: errno {e}")),
        ),
        line(
            "intel_connect_unlisted_not_refused",
            not_refused(connect_errno(addr("127.0.4.1:9"))),
        ),
        line(
            "intel_connect_unlisted_ipv6_not_refused",
            not_refused(connect_errno(addr("[fd00:5eb::1]:9"))),
        ),
    ]
}

/// From the unregistered sibling cgroup: the host is never refused.
pub fn scope_checks() -> Vec<String> {
    vec![
        line(
            "scope_intel_outside_not_refused",
            not_refused(connect_errno(addr("127.0.0.2:9"))),
        ),
        line(
            "scope_intel_icmp_outside_sent",
            ping_errno([127, 0, 0, 2]).map_err(|e| format!("sendto: errno {e}")),
        ),
    ]
}

/// From inside the refused container: no exec at all, whatever the root. The image binary
/// `/bin/busybox` runs in the approved container (`exec_image_binary_allowed`).
pub fn refused_checks() -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = fs::write(format!("{CG_REFUSED}/cgroup.procs"), b"0") {
        return vec![format!("FAIL refused_setup: joining {CG_REFUSED}: {e}")];
    }
    // Still on the VM's own root, like a runtime helper before it pivots.
    out.push(line(
        "assurance_exec_refused_before_chroot_eperm",
        expect_eperm(exec("/bin/busybox")),
    ));
    // SAFETY: plain syscalls on this single-threaded child.
    let entered = unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::chroot(c"/vm/merged".as_ptr()) == 0
            && libc::chdir(c"/".as_ptr()) == 0
    };
    out.push(line(
        "assurance_exec_refused_eperm",
        if entered {
            expect_eperm(exec("/bin/busybox"))
        } else {
            Err(format!(
                "entering the overlay root: {}",
                std::io::Error::last_os_error()
            ))
        },
    ));
    out
}

/// What the ring buffer must hold from these checks.
#[derive(Default)]
pub struct Events {
    intel_connect: bool,
    intel_sendmsg: bool,
    intel_packet: bool,
    assurance: bool,
}

impl Events {
    /// Looks at one ring buffer record.
    pub fn note(&mut self, h: &EventHeader, b: &[u8]) {
        if h.action != ACTION_BLOCKED {
            return;
        }
        match h.kind {
            EVENT_NET if h.control == CONTROL_INTEL && b.len() >= size_of::<NetEvent>() => {
                // SAFETY: the length was checked; records are Pod and read unaligned.
                let e: NetEvent = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
                let to_listed = e.addr[..4] == [127, 0, 0, 2];
                self.intel_connect |= to_listed && e.op == NET_OP_CONNECT;
                self.intel_sendmsg |= to_listed && e.op == NET_OP_SENDMSG;
                self.intel_packet |= to_listed && e.op == NET_OP_PACKET;
            }
            EVENT_EXEC if h.control == CONTROL_ASSURANCE && b.len() >= size_of::<ExecEvent>() => {
                // SAFETY: as above.
                let e: ExecEvent = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
                let path = &e.path[..(e.path_len as usize).min(e.path.len())];
                self.assurance |= path == b"/bin/busybox";
            }
            _ => {}
        }
    }

    /// One check per expected event.
    pub fn report(&self, report: &mut Report) {
        let seen = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("no blocked {what} event in the ring buffer"))
            }
        };
        report.check(
            "event_intel_blocked",
            seen(self.intel_connect, "intel connect to 127.0.0.2"),
        );
        report.check(
            "event_intel_sendmsg_blocked",
            seen(self.intel_sendmsg, "intel sendmsg to 127.0.0.2"),
        );
        report.check(
            "event_intel_packet_blocked",
            seen(self.intel_packet, "intel egress packet to 127.0.0.2"),
        );
        report.check(
            "event_intel_exec_hash_blocked",
            crate::intel_hash::verdict_check(),
        );
        report.check(
            "event_assurance_blocked",
            seen(self.assurance, "assurance exec of /bin/busybox"),
        );
    }
}
