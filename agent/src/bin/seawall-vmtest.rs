//! `seawall-vmtest`: the BPF LSM backend, tested end to end inside a throwaway VM
//! (`cargo xtask vm-test` builds it as a static musl binary, puts it in an initramfs with
//! busybox and boots Debian's kernel with `lsm=...,bpf` under qemu).
//!
//! It builds one "container" by hand: a cgroup below a test parent (never the root), and a
//! process in a new mount namespace chrooted into an overlayfs (lower: busybox image, upper:
//! tmpfs). It loads the LSM programs, registers the cgroup with an enforcing policy, then checks
//! from inside that exec drift, exec deny lists, file deny/read-only rules and egress rules fail
//! with EPERM (the process lives on), and from a sibling cgroup that nothing is denied.
//!
//! Output: one `PASS name` / `FAIL name: why` line per check, then `N passed, N failed`. With
//! `--power-off` (the VM's init) it powers the machine off at the end.
//!
//! It refuses to run without `--vm`: it mounts, creates cgroups and attaches LSM programs that
//! deny operations, which is only for a machine made for the test.

use std::{
    ffi::CString,
    fs,
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::fs::{MetadataExt, PermissionsExt},
    },
    path::Path,
};

use agent_common::{
    fnv1a, ContainerPolicy, EventHeader, ExecEvent, FileEvent, NetEvent, NetRule, NetRuleKey,
    PathRuleKey, ACTION_BLOCKED, CONTROL_DRIFT, CONTROL_EXEC, CONTROL_FILE, CONTROL_NETWORK,
    EVENT_EXEC, EVENT_FILE, EVENT_NET, FAMILY_INET, FORM_EXACT, LIST_EXEC_DENY, LIST_FILE_DENY,
    LIST_FILE_READ_ONLY, MAP_CONTAINERS, MAP_EVENTS, MAP_NET_RULES, MAP_PATH_RULES, MODE_ENFORCE,
    NET_LIST_DENY, PROTO_TCP, RULES_EXEC_DENY, RULES_FILE_DENY, RULES_FILE_READ_ONLY,
};
use aya::{
    maps::{HashMap, MapData, RingBuf},
    Ebpf, EbpfLoader,
};

#[path = "vmtest/intel.rs"]
mod intel;

/// The kernel programs, embedded by `build.rs` like the agent's own copy.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/seawall"));

const VM: &str = "/vm";
const LOWER: &str = "/vm/lower";
const MERGED: &str = "/vm/merged";
const CG_CONTAINER: &str = "/sys/fs/cgroup/seawall-vmtest/container";
const CG_SIBLING: &str = "/sys/fs/cgroup/seawall-vmtest/host";
const PROFILE_ID: u32 = 7;
/// Exit status of a forked child whose `execve` failed: this base plus errno.
const EXEC_FAILED: i32 = 200;

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

#[derive(Default)]
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn pass(&mut self, name: &str) {
        self.passed += 1;
        println!("PASS {name}");
    }
    fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        println!("FAIL {name}: {why}");
    }
    fn check(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => self.pass(name),
            Err(e) => self.fail(name, &e),
        }
    }
    /// A line `PASS x` / `FAIL x: y` written by a child.
    fn line(&mut self, line: &str) {
        if let Some(name) = line.strip_prefix("PASS ") {
            self.pass(name);
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, "?"));
            self.fail(name, why);
        }
    }
}

fn run(report: &mut Report) -> Result<(), String> {
    mount_filesystems()?;
    build_image()?;
    let container_cg = make_cgroup(CG_CONTAINER)?;
    make_cgroup(CG_SIBLING)?;
    let refused_cg = make_cgroup(intel::CG_REFUSED)?;

    let denied = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    let allowed = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    let denied_port = denied.local_addr().map_err(|e| e.to_string())?.port();
    let allowed_port = allowed.local_addr().map_err(|e| e.to_string())?.port();

    let mut ebpf = load()?;
    let kbtf = aya::Btf::from_sys_fs().map_err(|e| format!("vmlinux BTF for aya: {e}"))?;
    match seawall::kernel::lsm::load_lsm(&mut ebpf, &kbtf) {
        Ok(()) => report.pass("lsm_programs_attached"),
        Err(e) => {
            report.fail(
                "lsm_programs_attached",
                &seawall_service::ErrorChain(&e).to_string(),
            );
            return Ok(());
        }
    }
    register(&mut ebpf, container_cg, denied_port)?;
    if let Err(e) = intel::setup(&mut ebpf, report, container_cg, refused_cg) {
        report.fail("intel_setup", &e);
    }

    // Inside the container.
    for line in in_child(|| {
        enter(CG_CONTAINER)?;
        let mut lines = container_checks(denied_port, allowed_port);
        lines.extend(intel::container_checks());
        Ok(lines)
    })? {
        report.line(&line);
    }
    // Same filesystem, same operations, from a cgroup that is not registered: nothing denied.
    for line in in_child(|| {
        enter(CG_SIBLING)?;
        let mut lines = scope_checks(denied_port);
        lines.extend(intel::scope_checks());
        Ok(lines)
    })? {
        report.line(&line);
    }
    for line in in_child(|| Ok(intel::refused_checks()))? {
        report.line(&line);
    }
    event_checks(&mut ebpf, report, denied_port);
    drop(denied);
    drop(allowed);
    Ok(())
}

fn mount_filesystems() -> Result<(), String> {
    for (fstype, target) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("cgroup2", "/sys/fs/cgroup"),
        ("bpf", "/sys/fs/bpf"),
        ("securityfs", "/sys/kernel/security"),
        ("tmpfs", "/tmp"),
        ("tmpfs", VM),
    ] {
        fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
        if is_mounted(target, fstype) {
            continue;
        }
        mount(fstype, target, fstype, None)?;
    }
    Ok(())
}

fn is_mounted(target: &str, fstype: &str) -> bool {
    fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 2 && f[1] == target && f[2] == fstype
        })
    })
}

fn mount(source: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<(), String> {
    let s = CString::new(source).unwrap();
    let t = CString::new(target).unwrap();
    let f = CString::new(fstype).unwrap();
    let d = data.map(|d| CString::new(d).unwrap());
    let dp = d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: valid NUL-terminated strings for the duration of the call.
    if unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, dp) } != 0 {
        return Err(format!(
            "mount {fstype} on {target}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The image (lower layer): busybox with a few names, a denied binary, two rule files.
fn build_image() -> Result<(), String> {
    let e = |what: &str, err: std::io::Error| format!("image: {what}: {err}");
    for d in [
        "lower/bin",
        "lower/etc",
        "lower/tmp",
        "upper",
        "work",
        "merged",
    ] {
        fs::create_dir_all(format!("{VM}/{d}")).map_err(|err| e(d, err))?;
    }
    fs::copy("/bin/busybox", format!("{LOWER}/bin/busybox")).map_err(|err| e("busybox", err))?;
    // A separate file with the same bytes: an image binary that the exec deny list names.
    fs::copy("/bin/busybox", format!("{LOWER}/bin/denied")).map_err(|err| e("denied", err))?;
    for f in ["busybox", "denied"] {
        fs::set_permissions(
            format!("{LOWER}/bin/{f}"),
            fs::Permissions::from_mode(0o755),
        )
        .map_err(|err| e(f, err))?;
    }
    std::os::unix::fs::symlink("busybox", format!("{LOWER}/bin/sh")).map_err(|err| e("sh", err))?;
    fs::write(format!("{LOWER}/etc/secret"), b"secret\n").map_err(|err| e("secret", err))?;
    fs::write(format!("{LOWER}/etc/readonly"), b"readonly\n").map_err(|err| e("readonly", err))?;
    fs::write(format!("{LOWER}/etc/plain"), b"plain\n").map_err(|err| e("plain", err))?;
    let opts = format!("lowerdir={LOWER},upperdir={VM}/upper,workdir={VM}/work");
    mount("overlay", MERGED, "overlay", Some(&opts))
}

/// Creates a cgroup below the test parent and returns its id (the directory's inode).
fn make_cgroup(path: &str) -> Result<u64, String> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {path}: {e}"))?;
    Ok(fs::metadata(path)
        .map_err(|e| format!("stat {path}: {e}"))?
        .ino())
}

/// Loads the object with offsets from this kernel's BTF: vmlinux plus, when overlayfs is a
/// module (as in Debian's kernel), the overlay module's split BTF for `ovl_inode`.
fn load() -> Result<Ebpf, String> {
    let base = seawall_btf::Btf::from_sys().map_err(|e| format!("vmlinux BTF: {e}"))?;
    let overlay = Path::new("/sys/kernel/btf/overlay");
    let btf = if base.has_type("ovl_inode") || !overlay.exists() {
        base
    } else {
        seawall_btf::Btf::from_file_with_base(overlay, &base)
            .map_err(|e| format!("overlay BTF: {e}"))?
    };
    let offsets =
        seawall::kernel::offsets::resolve_offsets(&btf).map_err(|e| format!("offsets: {e}"))?;
    let host: u32 = 0;
    EbpfLoader::new()
        .override_global("OFFSETS", &offsets, true)
        .override_global("HOST_EVENTS", &host, true)
        .load(OBJECT)
        .map_err(|e| format!("loading the object: {e}"))
}

/// The container's policy: drift, an exec deny rule, file deny and read-only rules and an
/// egress deny rule for 127.0.0.1:`denied_port`, all enforcing.
fn register(ebpf: &mut Ebpf, cgroup: u64, denied_port: u16) -> Result<(), String> {
    let policy = ContainerPolicy {
        profile_id: PROFILE_ID,
        drift_mode: MODE_ENFORCE,
        exec_mode: MODE_ENFORCE,
        net_mode: MODE_ENFORCE,
        file_mode: MODE_ENFORCE,
        rules: RULES_EXEC_DENY | RULES_FILE_DENY | RULES_FILE_READ_ONLY,
        net_deny_count: 1,
        ..Default::default()
    };
    let mut containers: HashMap<&mut MapData, u64, ContainerPolicy> =
        HashMap::try_from(ebpf.map_mut(MAP_CONTAINERS).ok_or("no CONTAINERS map")?)
            .map_err(|e| e.to_string())?;
    containers
        .insert(cgroup, policy, 0)
        .map_err(|e| e.to_string())?;

    let mut paths: HashMap<&mut MapData, PathRuleKey, u32> =
        HashMap::try_from(ebpf.map_mut(MAP_PATH_RULES).ok_or("no PATH_RULES map")?)
            .map_err(|e| e.to_string())?;
    for (list, path) in [
        (LIST_EXEC_DENY, "/bin/denied"),
        (LIST_FILE_DENY, "/etc/secret"),
        (LIST_FILE_READ_ONLY, "/etc/readonly"),
    ] {
        let key = PathRuleKey {
            profile_id: PROFILE_ID,
            list,
            form: FORM_EXACT,
            _pad: 0,
            hash: fnv1a(path.as_bytes()),
        };
        paths.insert(key, 1, 0).map_err(|e| e.to_string())?;
    }

    let mut nets: HashMap<&mut MapData, NetRuleKey, NetRule> =
        HashMap::try_from(ebpf.map_mut(MAP_NET_RULES).ok_or("no NET_RULES map")?)
            .map_err(|e| e.to_string())?;
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    let key = NetRuleKey {
        profile_id: PROFILE_ID,
        list: NET_LIST_DENY,
        index: 0,
        _pad: 0,
    };
    let rule = NetRule {
        addr,
        family: FAMILY_INET,
        prefix_len: 32,
        protocol: PROTO_TCP,
        port_lo: denied_port,
        port_hi: denied_port,
    };
    nets.insert(key, rule, 0).map_err(|e| e.to_string())
}

/// Runs `f` in a forked child and returns the result lines it wrote.
fn in_child(f: impl FnOnce() -> Result<Vec<String>, String>) -> Result<Vec<String>, String> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the process is single-threaded here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: the write end is ours alone in the child.
        let mut w = fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[1]) });
        let lines = f().unwrap_or_else(|e| vec![format!("FAIL child_setup: {e}")]);
        for l in lines {
            let _ = writeln!(w, "{l}");
        }
        drop(w);
        // SAFETY: leave without running the parent's destructors twice.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: fds[1] belongs to the child now; fds[0] is ours.
    unsafe { libc::close(fds[1]) };
    let r = fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    let mut lines: Vec<String> = BufReader::new(r).lines().map_while(Result::ok).collect();
    match wait(pid) {
        Outcome::Exited(0) => {}
        other => lines.push(format!("FAIL child: ended with {other:?}")),
    }
    Ok(lines)
}

/// Moves the current process into `cgroup`, a new mount namespace, and the overlay root.
fn enter(cgroup: &str) -> Result<(), String> {
    fs::write(format!("{cgroup}/cgroup.procs"), b"0")
        .map_err(|e| format!("joining {cgroup}: {e}"))?;
    // SAFETY: plain syscalls on this (single-threaded) process.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let root = CString::new(MERGED).unwrap();
        if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            return Err(format!(
                "chroot {MERGED}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Exited(i32),
    Signaled(i32),
}

fn wait(pid: libc::pid_t) -> Outcome {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        Outcome::Signaled(libc::WTERMSIG(status))
    } else {
        Outcome::Exited(libc::WEXITSTATUS(status))
    }
}

/// Runs busybox `true` from the file `path` in a child: `Exited(0)` when it ran, `Exited(200 + errno)` when
/// `execve` failed, `Signaled(9)` when the fallback backend killed it.
fn exec(path: &str) -> Outcome {
    let p = CString::new(path).unwrap();
    let a = CString::new("true").unwrap();
    // busybox picks the applet from argv[0], whatever the file is called.
    let argv = [a.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: single-threaded; the child only calls execve and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: valid NUL-terminated argv/envp arrays.
        unsafe {
            libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(EXEC_FAILED + *libc::__errno_location());
        }
    }
    wait(pid)
}

fn expect_eperm(o: Outcome) -> Result<(), String> {
    match o {
        Outcome::Exited(c) if c == EXEC_FAILED + libc::EPERM => Ok(()),
        Outcome::Exited(c) if c >= EXEC_FAILED => Err(format!(
            "execve failed with errno {}, not EPERM",
            c - EXEC_FAILED
        )),
        Outcome::Exited(c) => Err(format!("it ran (exit {c})")),
        Outcome::Signaled(s) => Err(format!("killed by signal {s} instead of EPERM")),
    }
}

fn expect_ran(o: Outcome) -> Result<(), String> {
    match o {
        Outcome::Exited(0) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn open_errno(path: &str, write: bool) -> Result<(), i32> {
    let mut o = fs::OpenOptions::new();
    if write {
        o.write(true).truncate(true);
    } else {
        o.read(true);
    }
    o.open(path)
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn expect_open_eperm(path: &str, write: bool) -> Result<(), String> {
    match open_errno(path, write) {
        Err(libc::EPERM) => Ok(()),
        Err(e) => Err(format!("open {path} failed with errno {e}, not EPERM")),
        Ok(()) => Err(format!("open {path} (write: {write}) succeeded")),
    }
}

fn expect_open_ok(path: &str, write: bool) -> Result<(), String> {
    open_errno(path, write).map_err(|e| format!("open {path} (write: {write}): errno {e}"))
}

fn connect_errno(port: u16) -> Result<(), i32> {
    TcpStream::connect(("127.0.0.1", port))
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn line(name: &str, r: Result<(), String>) -> String {
    match r {
        Ok(()) => format!("PASS {name}"),
        Err(e) => format!("FAIL {name}: {e}"),
    }
}

/// (a)–(d), from inside the container.
fn container_checks(denied_port: u16, allowed_port: u16) -> Vec<String> {
    let mut out = Vec::new();
    out.push(line(
        "exec_image_binary_allowed",
        expect_ran(exec("/bin/busybox")),
    ));
    let copied = fs::copy("/bin/busybox", "/bin/drifted")
        .map_err(|e| format!("copying into the upper layer: {e}"));
    out.push(line(
        "exec_drift_upper_layer_eperm",
        copied.and_then(|_| expect_eperm(exec("/bin/drifted"))),
    ));
    // A script written in the container runs an image interpreter: the LSM hook sees the script
    // itself (bprm_check_security runs once per binfmt stage), sched_process_exec only sees /bin/sh.
    let script = fs::write("/bin/drift.sh", b"#!/bin/sh\nexit 0\n")
        .and_then(|()| fs::set_permissions("/bin/drift.sh", fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("writing a script into the upper layer: {e}"));
    out.push(line(
        "exec_drift_script_eperm",
        script.and_then(|()| expect_eperm(exec("/bin/drift.sh"))),
    ));
    out.push(line(
        "exec_deny_list_eperm",
        expect_eperm(exec("/bin/denied")),
    ));
    out.push(line(
        "file_deny_read_eperm",
        expect_open_eperm("/etc/secret", false),
    ));
    // The bytes are checked afterwards from outside (`file_denied_untouched`).
    out.push(line(
        "file_deny_truncate_eperm",
        expect_open_eperm("/etc/secret", true),
    ));
    out.push(line(
        "file_read_only",
        expect_open_ok("/etc/readonly", false)
            .and_then(|()| expect_open_eperm("/etc/readonly", true)),
    ));
    out.push(line(
        "file_unlisted_writable",
        expect_open_ok("/etc/plain", true),
    ));
    out.push(line(
        "net_connect_denied_eperm",
        match connect_errno(denied_port) {
            Err(libc::EPERM) => Ok(()),
            Err(e) => Err(format!("errno {e}, not EPERM")),
            Ok(()) => Err("connected".into()),
        },
    ));
    out.push(line(
        "net_connect_allowed",
        connect_errno(allowed_port).map_err(|e| format!("errno {e}")),
    ));
    out
}

/// (e): the same operations from a cgroup that is not a container succeed.
fn scope_checks(denied_port: u16) -> Vec<String> {
    vec![
        line(
            "scope_exec_drift_outside_allowed",
            expect_ran(exec("/bin/drifted")),
        ),
        line(
            "scope_exec_drift_script_outside_allowed",
            expect_ran(exec("/bin/drift.sh")),
        ),
        line(
            "scope_exec_deny_list_outside_allowed",
            expect_ran(exec("/bin/denied")),
        ),
        line(
            "scope_file_outside_allowed",
            expect_open_ok("/etc/secret", false),
        ),
        line(
            "scope_net_outside_allowed",
            connect_errno(denied_port).map_err(|e| format!("errno {e}")),
        ),
    ]
}

/// The denied file's bytes survived, and the ring buffer holds the blocked events.
fn event_checks(ebpf: &mut Ebpf, report: &mut Report, denied_port: u16) {
    report.check(
        "file_denied_untouched",
        match fs::read(format!("{MERGED}/etc/secret")) {
            Ok(b) if b == b"secret\n" => Ok(()),
            Ok(b) => Err(format!("content is now {:?}", String::from_utf8_lossy(&b))),
            Err(e) => Err(e.to_string()),
        },
    );
    let (mut drift, mut listed, mut file, mut net) = (false, false, false, false);
    let mut intel_events = intel::Events::default();
    match ebpf.map_mut(MAP_EVENTS).map(RingBuf::try_from) {
        Some(Ok(mut ring)) => {
            while let Some(item) = ring.next() {
                let b: &[u8] = &item;
                if b.len() < size_of::<EventHeader>() {
                    continue;
                }
                // SAFETY: the length was checked; records are Pod and read unaligned.
                let h: EventHeader = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
                intel_events.note(&h, b);
                if h.action != ACTION_BLOCKED {
                    continue;
                }
                match h.kind {
                    EVENT_EXEC if b.len() >= size_of::<ExecEvent>() => {
                        // SAFETY: as above.
                        let e: ExecEvent = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
                        let path = &e.path[..(e.path_len as usize).min(e.path.len())];
                        drift |= h.control == CONTROL_DRIFT && path == b"/bin/drifted";
                        listed |= h.control == CONTROL_EXEC && path == b"/bin/denied";
                    }
                    EVENT_FILE if b.len() >= size_of::<FileEvent>() => {
                        // SAFETY: as above.
                        let e: FileEvent = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
                        let path = &e.path[..(e.path_len as usize).min(e.path.len())];
                        file |= h.control == CONTROL_FILE && path == b"/etc/secret";
                    }
                    EVENT_NET if b.len() >= size_of::<NetEvent>() => {
                        // SAFETY: as above.
                        let e: NetEvent = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
                        net |= h.control == CONTROL_NETWORK && e.port == denied_port;
                    }
                    _ => {}
                }
            }
        }
        Some(Err(e)) => report.fail("events", &e.to_string()),
        None => report.fail("events", "no EVENTS map"),
    }
    let seen = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("no blocked {what} event in the ring buffer"))
        }
    };
    report.check(
        "event_exec_drift_blocked",
        seen(drift, "drift exec of /bin/drifted"),
    );
    report.check(
        "event_exec_deny_blocked",
        seen(listed, "exec of /bin/denied"),
    );
    report.check("event_file_blocked", seen(file, "open of /etc/secret"));
    report.check("event_net_blocked", seen(net, "connect"));
    intel_events.report(report);
}
