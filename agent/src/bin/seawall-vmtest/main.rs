//! `seawall-vmtest`: the BPF LSM backend, tested end to end inside a throwaway VM
//! (`cargo xtask vm-test` builds it as a static musl binary, puts it in an initramfs with
//! busybox, a glibc loader and libc, and boots Debian's kernel with `lsm=...,bpf` under qemu).
//!
//! It builds one "container" by hand: a cgroup below a test parent (never the root), and a
//! process in a new mount namespace chrooted into an overlayfs (lower: the image, upper: tmpfs).
//! It loads the LSM programs, registers the cgroup with an enforcing policy compiled from a real
//! profile by the agent's compiler, then tries every bypass class of issue 9 from inside —
//! changed roots, code mapped without exec, ptrace and `/proc/<pid>/mem`, scripts with no usable
//! name, truncated paths, file rules through other names and other syscalls, `AF_PACKET`, ICMP,
//! kernel-chosen listen ports, loopback aliases — and checks each is refused with EPERM (the
//! process lives on), that the same operations from a sibling cgroup are not, that the files
//! are unchanged, and that the ring buffer holds the blocked events. `intel`: listed destinations
//! refused by the cgroup connect/sendmsg and egress programs, a file listed by hash refused at
//! its exec permission event, and a container image assurance refused unable to exec anything.
//!
//! Output: one `PASS name` / `FAIL name: why` line per check, then `N passed, N failed`. With
//! `--power-off` (the VM's init) it powers the machine off at the end.
//!
//! It refuses to run without `--vm`: it mounts, creates cgroups and attaches LSM programs that
//! deny operations, which is only for a machine made for the test.

mod code;
mod events;
mod files;
mod intel;
mod intel_hash;
mod net;
mod run;
mod setup;

use std::{io::Write, net::TcpListener};

use run::{in_child, Report};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--vm") {
        eprintln!("seawall-vmtest: refusing to run outside the test VM (pass --vm; `cargo xtask vm-test` does)");
        std::process::exit(2);
    }
    let mut report = Report::default();
    if let Err(e) = run(&mut report) {
        report.fail("setup", &e);
    }
    println!("{} passed, {} failed", report.passed, report.failed);
    let _ = std::io::stdout().flush();
    if args.iter().any(|a| a == "--power-off") {
        // SAFETY: plain syscalls; this is the VM's init job and the VM is disposable.
        unsafe {
            libc::sync();
            libc::reboot(libc::RB_POWER_OFF);
        }
    }
}

/// The ports the checks use: a denied listener reachable by every loopback alias (dual-stack
/// on `[::]`), and an allowed one.
pub struct Ports {
    pub denied: u16,
    pub allowed: u16,
}

fn run(report: &mut Report) -> Result<(), String> {
    setup::mount_filesystems()?;
    setup::build_image()?;
    setup::scratch()?;
    let container_cg = setup::make_cgroup(setup::CG_CONTAINER)?;
    setup::make_cgroup(setup::CG_SIBLING)?;
    let refused_cg = setup::make_cgroup(intel::CG_REFUSED)?;
    // Ping sockets for uid 0 (the VM's own sysctl; the VM is thrown away afterwards).
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0")
        .map_err(|e| format!("ping_group_range: {e}"))?;

    let denied = TcpListener::bind("[::]:0").map_err(|e| format!("listen: {e}"))?;
    let allowed = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    let ports = Ports {
        denied: denied.local_addr().map_err(|e| e.to_string())?.port(),
        allowed: allowed.local_addr().map_err(|e| e.to_string())?.port(),
    };

    let mut ebpf = setup::load()?;
    match setup::attach_lsm(&mut ebpf) {
        Ok(()) => report.pass("lsm_programs_attached"),
        Err(e) => {
            report.fail("lsm_programs_attached", &e);
            return Ok(());
        }
    }
    setup::register(&mut ebpf, container_cg, ports.denied)?;
    if let Err(e) = intel::setup(&mut ebpf, report, container_cg, refused_cg) {
        report.fail("intel_setup", &e);
    }

    // Inside the container.
    for line in in_child(|| {
        setup::enter(setup::CG_CONTAINER)?;
        setup::container_mounts()?;
        let mut out = code::checks();
        out.extend(files::checks());
        out.extend(net::checks(&ports));
        out.extend(intel::container_checks());
        Ok(out)
    })? {
        report.line(&line);
    }
    // Same filesystem, same operations, from a cgroup that is not registered: nothing denied.
    for line in in_child(|| {
        setup::enter(setup::CG_SIBLING)?;
        let mut out = code::scope_checks();
        out.extend(files::scope_checks());
        out.extend(net::scope_checks(&ports));
        out.extend(intel::scope_checks());
        Ok(out)
    })? {
        report.line(&line);
    }
    for line in in_child(|| Ok(intel::refused_checks()))? {
        report.line(&line);
    }
    files::untouched(report);
    events::checks(&mut ebpf, report, &ports);
    drop(denied);
    drop(allowed);
    Ok(())
}
