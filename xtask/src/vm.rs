//! `cargo xtask vm-test`: the BPF LSM backend on Debian's own kernel under qemu (TCG).
//!
//! Our development and CI kernel refuses BPF LSM programs (EPERM), so the LSM backend is tested
//! in a throwaway VM: Debian's `linux-image-amd64` (BPF LSM built in, enabled with
//! `lsm=lockdown,capability,bpf`), an initramfs holding busybox-static, the overlay module and
//! the static musl `seawall-vmtest` binary, which builds a container by hand, runs the checks and
//! powers the VM off. The console is streamed; the test passes only on `N passed, 0 failed` with
//! every expected check present.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

/// How long the VM may run (boot, verifier under TCG, checks) before it is stopped.
const TIMEOUT: Duration = Duration::from_secs(300);
const MUSL: &str = "x86_64-unknown-linux-musl";
const BUSYBOX: &str = "/bin/busybox";
const MODULES: &[&str] = &["overlay"];

/// Every check `seawall-vmtest` prints; each must say PASS (issue 9's classes on BPF LSM).
const EXPECTED: &[&str] = &[
    "lsm_programs_attached",
    "exec_image_binary_allowed",
    "exec_drift_upper_layer_eperm",
    "exec_drift_script_eperm",
    "exec_deny_list_eperm",
    "chroot_tmpfs_drift_eperm",
    "chroot_subdir_deny_list_eperm",
    "chroot_subdir_image_binary_allowed",
    "script_on_tmpfs_eperm",
    "script_non_utf8_name_eperm",
    "script_deleted_fd_eperm",
    "script_memfd_eperm",
    "elf_memfd_eperm",
    "mmap_exec_upper_eperm",
    "mprotect_exec_upper_eperm",
    "mmap_exec_memfd_eperm",
    "mmap_exec_image_allowed",
    "mprotect_exec_image_allowed",
    "loader_on_dropped_file_fails",
    "loader_on_image_program_runs",
    "preload_dropped_library_not_run",
    "preload_image_library_runs",
    "ptrace_attach_eperm",
    "ptrace_traceme_eperm",
    "proc_self_mem_write_eperm",
    "proc_self_mem_read_allowed",
    "truncated_path_not_allowed_eperm",
    "file_deny_read_eperm",
    "file_deny_truncate_eperm",
    "file_read_only",
    "file_unlisted_writable",
    "file_deny_on_tmpfs_eperm",
    "file_tmp_writable",
    "file_write_other_thread_eperm",
    "file_write_openat2_eperm",
    "file_write_int80_eperm",
    "file_write_under_chroot_eperm",
    "file_hard_link_read_only_eperm",
    "file_hard_link_denied_eperm",
    "file_rename_denied_away_eperm",
    "file_rename_read_only_away_eperm",
    "file_rename_onto_read_only_eperm",
    "file_rename_holding_dir_eperm",
    "file_unlink_eperm",
    "file_truncate_syscall_eperm",
    "file_chmod_eperm",
    "file_chown_eperm",
    "file_create_in_read_only_tree_eperm",
    "file_read_only_tree_readable",
    "net_connect_denied_eperm",
    "net_connect_allowed",
    "net_alias_0_eperm",
    "net_alias_1_eperm",
    "net_alias_2_eperm",
    "net_alias_3_eperm",
    "net_alias_4_eperm",
    "net_packet_socket_eperm",
    "net_raw_socket_eperm",
    "net_icmp_send_denied_eperm",
    "net_icmp_send_allowed",
    "net_listen_port_zero_eperm",
    "net_listen_unbound_eperm",
    "net_listen_allowed_port",
    "scope_exec_drift_outside_allowed",
    "scope_exec_drift_script_outside_allowed",
    "scope_exec_deny_list_outside_allowed",
    "scope_mmap_exec_outside_allowed",
    "scope_ptrace_outside_allowed",
    "scope_truncated_path_outside_allowed",
    "scope_file_outside_allowed",
    "scope_file_link_outside_allowed",
    "scope_net_outside_allowed",
    "scope_packet_socket_outside_allowed",
    "scope_listen_port_zero_outside_allowed",
    "file_untouched_secret",
    "file_untouched_readonly",
    "file_refused_create_left_nothing",
    "event_exec_drift_blocked",
    "event_exec_deny_blocked",
    "event_chroot_drift_blocked",
    "event_chroot_deny_blocked",
    "event_script_tmpfs_blocked",
    "event_script_non_utf8_blocked",
    "event_mmap_drift_blocked",
    "event_loader_mmap_blocked",
    "event_preload_mmap_blocked",
    "event_ptrace_blocked",
    "event_proc_mem_blocked",
    "event_truncated_path_blocked",
    "event_file_blocked",
    "event_file_link_blocked",
    "event_file_rename_blocked",
    "event_file_rename_dir_blocked",
    "event_file_unlink_blocked",
    "event_file_truncate_blocked",
    "event_file_chmod_blocked",
    "event_file_create_blocked",
    "event_net_blocked",
    "event_net_alias_blocked",
    "event_net_packet_blocked",
    "event_net_icmp_blocked",
    "event_net_listen_blocked",
    // agent/src/bin/seawall-vmtest/intel.rs
    "intel_hash_answerer_started",
    "intel_programs_attached",
    "intel_exec_listed_hash_eperm",
    "intel_exec_unlisted_hash_runs",
    "intel_connect_listed_ip_eperm",
    "intel_connect_listed_cidr_eperm",
    "intel_connect_ipv4_mapped_eperm",
    "intel_connect_listed_ipv6_eperm",
    "intel_sendto_listed_ip_eperm",
    "intel_icmp_send_listed_eperm",
    "intel_icmp_send_unlisted_sent",
    "intel_connect_unlisted_not_refused",
    "intel_connect_unlisted_ipv6_not_refused",
    "scope_intel_outside_not_refused",
    "scope_intel_icmp_outside_sent",
    "assurance_exec_refused_eperm",
    "assurance_exec_refused_before_chroot_eperm",
    "event_intel_blocked",
    "event_intel_sendmsg_blocked",
    "event_intel_packet_blocked",
    "event_intel_exec_hash_blocked",
    "event_assurance_blocked",
];

pub fn vm_test() -> Result<()> {
    let Some(qemu) = which("qemu-system-x86_64") else {
        println!(
            "SKIP: vm-test: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
        );
        return Ok(());
    };
    let root = workspace_root();
    let dir = root.join("target/vm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let started = Instant::now();
    let kernel = fetch_kernel(&dir)?;
    let bin = build_test_binary(&root)?;
    let initrd = dir.join("initramfs.cpio");
    build_initramfs(&initrd, &kernel, &bin)?;
    println!(
        "vm-test: kernel {} ready, booting (prepared in {:.1}s)",
        kernel.version,
        started.elapsed().as_secs_f64()
    );

    let boot = Instant::now();
    let console = boot_vm(&qemu, &kernel.vmlinuz, &initrd)?;
    println!("vm-test: VM ran for {:.1}s", boot.elapsed().as_secs_f64());
    judge(&console)
}

/// The workspace root: the nearest ancestor of this crate holding `agent-ebpf/`.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("agent-ebpf").is_dir() && d.join("Cargo.toml").is_file())
        .unwrap_or_else(|| here.parent().unwrap_or(here))
        .to_path_buf()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Kernel {
    version: String,
    vmlinuz: PathBuf,
    /// Uncompressed `.ko` files in load order (dependencies first).
    modules: Vec<(String, Vec<u8>)>,
}

/// Downloads (once; the .debs are cached in `target/vm/`) and unpacks Debian's kernel.
fn fetch_kernel(dir: &Path) -> Result<Kernel> {
    let debs = |prefix: &str| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
            })
            .collect();
        v.sort();
        Ok(v)
    };
    if debs("linux-image-amd64_")?.is_empty() {
        run(Command::new("apt-get")
            .args(["download", "linux-image-amd64"])
            .current_dir(dir))
        .context(
            "downloading Debian's kernel metapackage (is apt configured with a Debian mirror?)",
        )?;
    }
    let meta = debs("linux-image-amd64_")?.pop().ok_or_else(|| {
        anyhow!(
            "apt-get download left no linux-image-amd64 .deb in {}",
            dir.display()
        )
    })?;
    // The metapackage depends on the real image package, e.g. linux-image-6.1.0-56-amd64.
    let depends = output(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&meta)
            .arg("Depends"),
    )?;
    let image = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-") && d != &"linux-image-amd64")
        .ok_or_else(|| {
            anyhow!(
                "no linux-image-<version> in the Depends of {}: {depends}",
                meta.display()
            )
        })?
        .to_string();
    if debs(&format!("{image}_"))?.is_empty() {
        run(Command::new("apt-get")
            .args(["download", &image])
            .current_dir(dir))
        .with_context(|| format!("downloading {image}"))?;
    }
    let deb = debs(&format!("{image}_"))?
        .pop()
        .ok_or_else(|| anyhow!("apt-get download left no {image} .deb"))?;
    let tree = dir.join(&image);
    if !tree.join("boot").is_dir() {
        let tmp = dir.join(format!("{image}.partial"));
        let _ = fs::remove_dir_all(&tmp);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
        fs::rename(&tmp, &tree)?;
    }

    let version = image.trim_start_matches("linux-image-").to_string();
    let vmlinuz = tree.join(format!("boot/vmlinuz-{version}"));
    let config = fs::read_to_string(tree.join(format!("boot/config-{version}")))
        .with_context(|| format!("reading the kernel config of {image}"))?;
    for want in [
        "CONFIG_BPF_LSM=y",
        "CONFIG_DEBUG_INFO_BTF=y",
        "CONFIG_BPF_SYSCALL=y",
    ] {
        if !config.lines().any(|l| l == want) {
            bail!("{image} is not built with {want}: it cannot run the BPF LSM backend");
        }
    }
    let moddir = tree.join(format!("lib/modules/{version}"));
    let mut modules = Vec::new();
    for m in MODULES {
        add_module(&moddir, m, &mut modules)?;
    }
    Ok(Kernel {
        version,
        vmlinuz,
        modules,
    })
}

/// Adds module `name` after its dependencies (`depends=` in its `.modinfo`), decompressing
/// `.ko.xz`/`.ko.zst` on the host because busybox `insmod` takes plain `.ko`.
fn add_module(moddir: &Path, name: &str, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    if out.iter().any(|(n, _)| n == name) {
        return Ok(());
    }
    let norm = |s: &str| s.replace('-', "_");
    let file = find_file(moddir, &|p: &Path| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            let stem = n.split(".ko").next().unwrap_or("");
            n.contains(".ko") && norm(stem) == norm(name)
        })
    })
    .ok_or_else(|| anyhow!("module {name} not found under {}", moddir.display()))?;
    let fname = file.to_string_lossy().into_owned();
    let bytes = if fname.ends_with(".ko.xz") {
        Command::new("xz").arg("-dc").arg(&file).output()?.stdout
    } else if fname.ends_with(".ko.zst") {
        Command::new("zstd").arg("-dc").arg(&file).output()?.stdout
    } else {
        fs::read(&file)?
    };
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        bail!("{fname}: not an ELF module after decompression");
    }
    for dep in modinfo_depends(&bytes) {
        add_module(moddir, &dep, out)?;
    }
    out.push((name.to_string(), bytes));
    Ok(())
}

/// The `depends=a,b` string of a module's `.modinfo` (no modinfo binary needed).
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn find_file(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, pred) {
                return Some(f);
            }
        } else if pred(&p) {
            return Some(p);
        }
    }
    None
}

/// Builds the static test binary. ring (a C dependency of the TLS stack in the library) needs a
/// C compiler for the musl target; without a musl cross compiler the host gcc does.
fn build_test_binary(root: &Path) -> Result<PathBuf> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args([
        "build",
        "--release",
        "--target",
        MUSL,
        "--bin",
        "seawall-vmtest",
        "-p",
        "seawall",
    ]);
    let cc_var = "CC_x86_64_unknown_linux_musl";
    if std::env::var_os(cc_var).is_none()
        && which("x86_64-linux-musl-gcc").is_none()
        && which("musl-gcc").is_none()
    {
        cmd.env(cc_var, "gcc");
    }
    run(&mut cmd).context(
        "building seawall-vmtest for musl (rustup target add x86_64-unknown-linux-musl)",
    )?;
    Ok(root.join(format!("target/{MUSL}/release/seawall-vmtest")))
}

/// An uncompressed newc initramfs, written here so device nodes need no root and no cpio tool.
fn build_initramfs(path: &Path, kernel: &Kernel, bin: &Path) -> Result<()> {
    let busybox = fs::read(BUSYBOX).with_context(|| {
        format!("reading {BUSYBOX}: install busybox-static (the VM has no libc)")
    })?;
    if has_interp(&busybox) {
        bail!("{BUSYBOX} is dynamically linked: install busybox-static");
    }
    let test = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    if has_interp(&test) {
        bail!("{} is not static", bin.display());
    }
    let image_files = image_files(path.parent().unwrap_or(Path::new(".")))?;

    let mut init = String::from("#!/bin/busybox sh\n");
    init.push_str("/bin/busybox mount -t proc proc /proc\n");
    init.push_str("/bin/busybox mount -t sysfs sysfs /sys\n");
    init.push_str("/bin/busybox mount -t securityfs securityfs /sys/kernel/security\n");
    for (name, _) in &kernel.modules {
        init.push_str(&format!("/bin/busybox insmod /lib/modules/{name}.ko || echo 'FAIL insmod_{name}: insmod failed'\n"));
    }
    init.push_str("/bin/busybox ip link set lo up\n");
    init.push_str("echo \"vm-test: kernel $(/bin/busybox uname -r), LSMs $(/bin/busybox cat /sys/kernel/security/lsm 2>/dev/null)\"\n");
    init.push_str("/seawall-vmtest --vm --power-off\n");
    // Only reached when the test binary died before powering off.
    init.push_str("echo \"FAIL vmtest_exit: seawall-vmtest exited with $?\"\n");
    init.push_str("/bin/busybox poweroff -f\n");

    let mut c = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib/modules",
        "vm",
        "vmfiles",
    ] {
        c.dir(d);
    }
    c.node("dev/console", 0o020600, 5, 1);
    c.node("dev/null", 0o020666, 1, 3);
    c.file("bin/busybox", 0o755, &busybox);
    c.symlink("bin/sh", "busybox");
    c.file("init", 0o755, init.as_bytes());
    c.file("seawall-vmtest", 0o755, &test);
    for (name, bytes) in &image_files {
        c.file(&format!("vmfiles/{name}"), 0o755, bytes);
    }
    for (name, ko) in &kernel.modules {
        c.file(&format!("lib/modules/{name}.ko"), 0o644, ko);
    }
    fs::write(path, c.finish()).with_context(|| format!("writing {}", path.display()))
}

/// What the VM's image needs besides busybox, so the loader, `LD_PRELOAD` and executable
/// mappings can be tried there: the host's glibc loader and libc, a glibc-linked `true`, and a
/// library whose constructor prints `PRELOAD-RAN` (built from `tests/attack/evil.c`).
fn image_files(dir: &Path) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let evil = dir.join("evil.so");
    let src = workspace_root().join("tests/attack/evil.c");
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&evil)
        .arg(&src))
    .context("building the VM's preload library (gcc is needed)")?;
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
    let loader = fs::canonicalize("/lib64/ld-linux-x86-64.so.2")
        .context("the host's glibc loader /lib64/ld-linux-x86-64.so.2")?;
    let libc = fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6")
        .context("the host's libc /lib/x86_64-linux-gnu/libc.so.6")?;
    Ok(vec![
        ("ld.so", read(&loader)?),
        ("libc.so.6", read(&libc)?),
        ("dyntrue", read(Path::new("/usr/bin/true"))?),
        ("evil.so", read(&evil)?),
    ])
}

/// Whether an ELF64 file has a PT_INTERP program header (is dynamically linked).
fn has_interp(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return true;
    }
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= elf.len() && u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    })
}

/// A newc ("070701") cpio archive.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }
    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data, (0, 0));
    }
    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes(), (0, 0));
    }
    fn node(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, mode, &[], (major, minor));
    }
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

/// Boots the VM, streams its console to ours and returns it. The VM powers itself off; on
/// timeout qemu is stopped (by its pid, through the child handle).
fn boot_vm(qemu: &Path, vmlinuz: &Path, initrd: &Path) -> Result<Vec<String>> {
    let mut child = Command::new(qemu)
        .args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-smp",
            "1",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-monitor", "none", "-serial", "stdio", "-nodefaults"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 lsm=lockdown,capability,bpf quiet panic=-1 rdinit=/init",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut console = Vec::new();
    let mut stdout = std::io::stdout();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let _ = writeln!(stdout, "  vm| {line}");
                console.push(line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            bail!(
                "the VM did not power off within {}s; console above",
                TIMEOUT.as_secs()
            );
        }
    }
    let status = child.wait()?;
    let _ = reader.join();
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(console)
}

/// Passes only with the summary line saying `0 failed` and a PASS for every expected check.
fn judge(console: &[String]) -> Result<()> {
    let fails: Vec<&String> = console.iter().filter(|l| l.starts_with("FAIL ")).collect();
    let missing: Vec<&str> = EXPECTED
        .iter()
        .copied()
        .filter(|name| !console.iter().any(|l| l == &format!("PASS {name}")))
        .collect();
    let summary = console
        .iter()
        .rev()
        .find(|l| l.ends_with(" failed") && l.contains(" passed, "));
    match summary {
        Some(s) if s.ends_with(", 0 failed") && fails.is_empty() && missing.is_empty() => {
            println!("vm-test: {s}");
            Ok(())
        }
        _ => bail!(
            "vm-test failed: summary {:?}; failures: {:?}; checks that never passed: {:?}",
            summary,
            fails,
            missing
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn passes_only_with_every_check_and_zero_failed() {
        let mut ok: Vec<String> = EXPECTED.iter().map(|n| format!("PASS {n}")).collect();
        ok.push(format!("{} passed, 0 failed", EXPECTED.len()));
        assert!(judge(&ok).is_ok());

        let mut missing = ok.clone();
        missing.remove(1);
        assert!(
            judge(&missing).is_err(),
            "a check that never ran must fail the test"
        );

        let mut failed = ok.clone();
        failed.insert(
            0,
            "FAIL exec_drift_upper_layer_eperm: killed by signal 9".into(),
        );
        assert!(judge(&failed).is_err());

        assert!(
            judge(&console(&["PASS lsm_programs_attached"])).is_err(),
            "no summary line"
        );
    }

    #[test]
    fn reads_module_dependencies_from_modinfo() {
        let ko = b"\x7fELF....license=GPL\0depends=libcrc32c,crc32c_generic\0vermagic=6.1\0";
        assert_eq!(modinfo_depends(ko), vec!["libcrc32c", "crc32c_generic"]);
        assert!(modinfo_depends(b"\x7fELF depends=\0").is_empty());
    }

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
