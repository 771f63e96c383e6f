//! The VM's stage: filesystems, the image (lower layer), the container and sibling cgroups, the
//! kernel object loaded with this kernel's offsets, and the container's policy compiled from a
//! profile by the agent's own compiler. The agent-facing calls (BTF, offsets, LSM attach,
//! compiler) are all here, so a change of the agent's layout touches this file only.

use std::{ffi::CString, fs, os::unix::fs::MetadataExt, os::unix::fs::PermissionsExt, path::Path};

use agent_common::{
    ContainerPolicy, NetRule, NetRuleKey, PathRuleKey, MAP_CONTAINERS, MAP_NET_RULES,
    MAP_PATH_RULES,
};
use aya::{
    maps::{HashMap, MapData},
    Ebpf, EbpfLoader,
};

/// The kernel programs, embedded by `build.rs` like the agent's own copy.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/seawall"));

pub const VM: &str = "/vm";
pub const LOWER: &str = "/vm/lower";
pub const MERGED: &str = "/vm/merged";
/// An image binary of its own bytes (busybox and a trailer) that intel lists by its SHA-256.
pub const LISTED: &str = "/bin/listed";
pub const CG_CONTAINER: &str = "/sys/fs/cgroup/seawall-vmtest/container";
pub const CG_SIBLING: &str = "/sys/fs/cgroup/seawall-vmtest/host";
const PROFILE_ID: u32 = 7;
/// Files `cargo xtask vm-test` puts in the initramfs for the image: glibc's loader and libc,
/// a glibc-linked `true`, and a library whose constructor prints `PRELOAD-RAN`.
const VMFILES: &str = "/vmfiles";
/// The glibc-linked program in the image.
pub const DYN_TRUE: &str = "/usr/bin/dyntrue";
/// The image's dynamic loader.
pub const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
/// A library kept in the image (preloading it is allowed: it is the image's).
pub const IMAGE_SO: &str = "/usr/share/attack/evil.so";
/// An image binary one component deeper than the kernel walks: the deepest components it keeps
/// read `/usr/local/a/…/true`, which an allow list of `/usr/local/**` must not take for real.
pub fn deep_path() -> String {
    let levels = agent_common::MAX_PATH_DEPTH - 3;
    format!("/deep/usr/local/{}/true", vec!["a"; levels].join("/"))
}

pub fn mount_filesystems() -> Result<(), String> {
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

pub fn mount(source: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<(), String> {
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

/// The image (lower layer): busybox with a few names, a denied binary, rule files, glibc's
/// loader and libc with a dynamic program, and an image binary below a path deeper than the
/// kernel walks.
pub fn build_image() -> Result<(), String> {
    let e = |what: &str, err: std::io::Error| format!("image: {what}: {err}");
    let deep_file = deep_path();
    let deep = format!("lower{}", deep_file.trim_end_matches("/true"));
    for d in [
        "lower/bin",
        "lower/etc/ro.d",
        "lower/tmp",
        "lower/proc",
        "lower/scratch",
        "lower/lib64",
        "lower/lib/x86_64-linux-gnu",
        "lower/usr/bin",
        "lower/usr/share/attack",
        deep.as_str(),
        "upper",
        "work",
        "merged",
    ] {
        fs::create_dir_all(format!("{VM}/{d}")).map_err(|err| e(d, err))?;
    }
    let exe = |from: &str, to: &str| -> Result<(), String> {
        fs::copy(from, format!("{LOWER}{to}")).map_err(|err| e(to, err))?;
        fs::set_permissions(format!("{LOWER}{to}"), fs::Permissions::from_mode(0o755))
            .map_err(|err| e(to, err))
    };
    exe("/bin/busybox", "/bin/busybox")?;
    // A separate file with the same bytes: an image binary that the exec deny list names.
    exe("/bin/busybox", "/bin/denied")?;
    exe("/bin/busybox", &deep_file)?;
    exe("/bin/busybox", LISTED)?;
    fs::OpenOptions::new()
        .append(true)
        .open(format!("{LOWER}{LISTED}"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"listed by intel\n"))
        .map_err(|err| e(LISTED, err))?;
    exe(
        &format!("{VMFILES}/ld.so"),
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    )?;
    exe(
        &format!("{VMFILES}/libc.so.6"),
        "/lib/x86_64-linux-gnu/libc.so.6",
    )?;
    exe(&format!("{VMFILES}/dyntrue"), DYN_TRUE)?;
    exe(&format!("{VMFILES}/evil.so"), IMAGE_SO)?;
    std::os::unix::fs::symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        format!("{LOWER}{LOADER}"),
    )
    .map_err(|err| e("loader link", err))?;
    std::os::unix::fs::symlink("busybox", format!("{LOWER}/bin/sh")).map_err(|err| e("sh", err))?;
    for (f, text) in [
        ("/etc/secret", "secret\n"),
        ("/etc/readonly", "readonly\n"),
        ("/etc/plain", "plain\n"),
        ("/etc/ro.d/conf", "conf\n"),
    ] {
        fs::write(format!("{LOWER}{f}"), text).map_err(|err| e(f, err))?;
    }
    let opts = format!("lowerdir={LOWER},upperdir={VM}/upper,workdir={VM}/work");
    mount("overlay", MERGED, "overlay", Some(&opts))
}

/// Creates a cgroup below the test parent and returns its id (the directory's inode).
pub fn make_cgroup(path: &str) -> Result<u64, String> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {path}: {e}"))?;
    Ok(fs::metadata(path)
        .map_err(|e| format!("stat {path}: {e}"))?
        .ino())
}

/// Loads the object with offsets from this kernel's BTF: vmlinux plus, when overlayfs is a
/// module (as in Debian's kernel), the overlay module's split BTF for `ovl_inode`.
pub fn load() -> Result<Ebpf, String> {
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

/// Attaches every LSM program of the agent's table (and tells the exec hook LSM is live).
pub fn attach_lsm(ebpf: &mut Ebpf) -> Result<(), String> {
    let kbtf = aya::Btf::from_sys_fs().map_err(|e| format!("vmlinux BTF for aya: {e}"))?;
    seawall::kernel::lsm::load_lsm(ebpf, &kbtf)
        .map_err(|e| seawall_service::ErrorChain(&e).to_string())
}

/// The container's profile: everything enforcing. `denied_port` is the TCP port of 127.0.0.1
/// that egress may not reach; 127.0.0.3 may not be reached at all (ICMP included).
fn profile_text(denied_port: u16) -> String {
    format!(
        "[profile]\nname = \"vm\"\nimages = [\"vm\"]\nmode = \"enforce\"\n\
         [drift]\nprevent = true\n\
         [exec]\ndeny = [\"/bin/denied\"]\n\
         allow = [\"/bin/*\", \"/usr/bin/*\", \"/usr/local/**\", \"/lib/**\", \"/lib64/*\"]\n\
         [files]\ndeny = [\"/etc/secret\", \"/scratch/secret\"]\nread_only = [\"/etc/readonly\", \"/etc/ro.d/**\"]\n\
         [network]\negress_deny = [\"127.0.0.1:{denied_port}/tcp\", \"127.0.0.3/32\"]\n\
         listen_allow = [8080]\nblock_raw_sockets = true\n"
    )
}

/// Compiles the profile with the agent's compiler and writes the container's maps.
pub fn register(ebpf: &mut Ebpf, cgroup: u64, denied_port: u16) -> Result<(), String> {
    let dir = "/tmp/vm-profiles";
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    fs::write(format!("{dir}/vm.toml"), profile_text(denied_port)).map_err(|e| e.to_string())?;
    let set = seawall_profile::ProfileSet::load_dir(Path::new(dir))
        .map_err(|report| format!("the VM profile is invalid: {report}"))?;
    let profile = set.for_image("vm", None);
    let compiled = seawall::policy::compile::compile_profile(profile, PROFILE_ID)
        .map_err(|e| format!("compiling the VM profile: {e}"))?;

    let mut containers: HashMap<&mut MapData, u64, ContainerPolicy> =
        HashMap::try_from(ebpf.map_mut(MAP_CONTAINERS).ok_or("no CONTAINERS map")?)
            .map_err(|e| e.to_string())?;
    containers
        .insert(cgroup, compiled.policy, 0)
        .map_err(|e| e.to_string())?;
    let mut paths: HashMap<&mut MapData, PathRuleKey, u32> =
        HashMap::try_from(ebpf.map_mut(MAP_PATH_RULES).ok_or("no PATH_RULES map")?)
            .map_err(|e| e.to_string())?;
    for key in &compiled.path_rules {
        paths.insert(key, 1, 0).map_err(|e| e.to_string())?;
    }
    let mut nets: HashMap<&mut MapData, NetRuleKey, NetRule> =
        HashMap::try_from(ebpf.map_mut(MAP_NET_RULES).ok_or("no NET_RULES map")?)
            .map_err(|e| e.to_string())?;
    for (k, v) in &compiled.net_rules {
        nets.insert(k, v, 0).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Moves the current process into `cgroup`, a new mount namespace, and the overlay root.
pub fn enter(cgroup: &str) -> Result<(), String> {
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

/// A tmpfs the container can write and exec from (as Docker's `/dev` and `--tmpfs` mounts
/// are), mounted before the container's namespace is made, with a denied file already on it.
pub fn scratch() -> Result<(), String> {
    let dir = format!("{MERGED}/scratch");
    mount("tmpfs", &dir, "tmpfs", None)?;
    fs::write(format!("{dir}/secret"), "on a tmpfs\n").map_err(|e| format!("{dir}/secret: {e}"))
}

/// What a container has besides its root and its tmpfs: its own `/proc`.
pub fn container_mounts() -> Result<(), String> {
    mount("proc", "/proc", "proc", None)
}
