//! The intel and assurance checks of `seawall-vmtest`: listed destinations refused by the
//! cgroup connect/sendmsg programs (attached at the test parent, never the root, as the agent
//! attaches them at `/docker`), and a container refused by image assurance unable to run any
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
    MAP_CONTAINERS, MAP_INTEL_MODE, MAP_INTEL_V4, MAP_INTEL_V6, MODE_ENFORCE, NET_OP_CONNECT,
    NET_OP_SENDMSG,
};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        HashMap, MapData,
    },
    programs::{CgroupAttachMode, CgroupSockAddr},
    Ebpf,
};

use super::{exec, expect_eperm, line, Report};

/// The cgroup of the container image assurance refused.
pub const CG_REFUSED: &str = "/sys/fs/cgroup/seawall-vmtest/refused";
/// Where the cgroup programs are attached: the containers' parent.
const CG_PARENT: &str = "/sys/fs/cgroup/seawall-vmtest";

/// Attaches the sock_addr programs at the test parent and fills the intel tries, the intel
/// default mode (enforce) and the refused container's entries.
pub fn setup(ebpf: &mut Ebpf, report: &mut Report, refused_cgroup: u64) -> Result<(), String> {
    let attached = (|| -> Result<(), String> {
        for &name in seawall::loader::SOCK_ADDR_PROGRAMS {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("no program {name}"))?
                .try_into()
                .map_err(|e| format!("{name}: {e}"))?;
            prog.load().map_err(|e| format!("loading {name}: {e}"))?;
            let parent = File::open(CG_PARENT).map_err(|e| format!("{CG_PARENT}: {e}"))?;
            prog.attach(parent, CgroupAttachMode::Single)
                .map_err(|e| format!("attaching {name} at {CG_PARENT}: {e}"))?;
        }
        Ok(())
    })();
    report.check("intel_programs_attached", attached.clone());
    attached?;

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

    let mut modes: HashMap<&mut MapData, u64, u32> =
        HashMap::try_from(ebpf.map_mut(MAP_INTEL_MODE).ok_or("no INTEL_MODE map")?)
            .map_err(|e| e.to_string())?;
    modes
        .insert(0, MODE_ENFORCE, 0)
        .map_err(|e| format!("INTEL_MODE: {e}"))?;

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
        .map_err(|e| format!("ASSURANCE: {e}"))
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

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}

/// From inside the registered container (same process as the profile checks).
pub fn container_checks() -> Vec<String> {
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
    vec![line(
        "scope_intel_outside_not_refused",
        not_refused(connect_errno(addr("127.0.0.2:9"))),
    )]
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
            "event_assurance_blocked",
            seen(self.assurance, "assurance exec of /bin/busybox"),
        );
    }
}
