//! Images of real servers, built without a registry: one `debootstrap` of Debian bookworm
//! (`--variant=minbase`) with the three servers' Debian packages into a cached rootfs, a few
//! lines of bench configuration (loopback listen address, a port the shipped profile allows, no
//! password on loopback), then one `docker import` per server with that server as `CMD` and its
//! account as `USER`. Every binary a server runs is in the image's only layer, so nothing it
//! executes is drift. (One rootfs for the three: a debootstrap takes minutes on a busy two-CPU
//! machine, and the other servers' files in an image change nothing about the one that runs.)

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::run;

/// Where rootfs trees and downloaded packages are kept between runs (outside the repository).
pub const CACHE_DIR: &str = "/var/cache/seawall-bench";

/// The Debian release every server image is built from.
pub const SUITE: &str = "bookworm";

/// Debian packages given to `debootstrap --include`.
const PACKAGES: &[&str] = &["nginx-light", "redis-server", "postgresql-15"];

/// One server image: what to install, how to configure it, how to start it.
pub struct ServerImage {
    /// Short name: the rootfs directory and the container name tag.
    pub name: &'static str,
    /// Image reference; chosen so the shipped profile's `images` globs match it.
    pub reference: &'static str,
    /// Files written into the rootfs after debootstrap: (path in the rootfs, contents).
    files: &'static [(&'static str, &'static str)],
    /// Commands run with `chroot <rootfs>` after the files are written.
    chroot_steps: &'static [&'static [&'static str]],
    /// `USER` of the image (the server's own account, as its Debian service unit runs it).
    pub user: &'static str,
    /// `CMD` of the image.
    pub cmd: &'static [&'static str],
    /// The loopback port the server listens on: one its profile's `listen_allow` allows (with
    /// `--network host` the bench checks it is free first; the profile leaves no other choice).
    pub port: u16,
}

/// nginx-light serving Debian's default page from `/var/www/html`, on 127.0.0.1:8080 (the
/// profile allows 80, 443 and 8080-8081) instead of every address's port 80.
pub const NGINX: ServerImage = ServerImage {
    name: "nginx",
    reference: "nginx:seawall-bench",
    files: &[(
        "etc/nginx/sites-available/default",
        "server {\n\
         \tlisten 127.0.0.1:8080 default_server;\n\
         \troot /var/www/html;\n\
         \tindex index.html index.htm index.nginx-debian.html;\n\
         \tserver_name _;\n\
         \tlocation / {\n\t\ttry_files $uri $uri/ =404;\n\t}\n\
         }\n",
    )],
    chroot_steps: &[],
    user: "root",
    cmd: &["/usr/sbin/nginx", "-g", "daemon off;"],
    port: 8080,
};

/// redis-server with Debian's `/etc/redis/redis.conf` (persistence as shipped), in the
/// foreground, logging to stdout, on 127.0.0.1:6379.
pub const REDIS: ServerImage = ServerImage {
    name: "redis",
    reference: "redis:seawall-bench",
    files: &[],
    chroot_steps: &[&[
        "install",
        "-d",
        "-o",
        "redis",
        "-g",
        "redis",
        "-m",
        "2755",
        "/run/redis",
    ]],
    user: "redis",
    cmd: &[
        "/usr/bin/redis-server",
        "/etc/redis/redis.conf",
        "--daemonize",
        "no",
        "--supervised",
        "no",
        "--logfile",
        "",
        "--bind",
        "127.0.0.1",
        "--port",
        "6379",
    ],
    port: 6379,
};

/// PostgreSQL 15 with the cluster Debian's package creates (`/var/lib/postgresql/15/main`,
/// configuration in `/etc/postgresql/15/main`), on 127.0.0.1:5432, trusting loopback so pgbench
/// needs no password.
pub const POSTGRES: ServerImage = ServerImage {
    name: "postgres",
    reference: "postgres:15-seawall-bench",
    files: &[(
        "etc/postgresql/15/main/pg_hba.conf",
        "local all all peer\nhost all all 127.0.0.1/32 trust\n",
    )],
    chroot_steps: &[&[
        "install",
        "-d",
        "-o",
        "postgres",
        "-g",
        "postgres",
        "-m",
        "2775",
        "/run/postgresql",
    ]],
    user: "postgres",
    cmd: &[
        "/usr/lib/postgresql/15/bin/postgres",
        "-D",
        "/var/lib/postgresql/15/main",
        "-c",
        "config_file=/etc/postgresql/15/main/postgresql.conf",
        "-c",
        "listen_addresses=127.0.0.1",
        "-p",
        "5432",
    ],
    port: 5432,
};

pub const ALL: [&ServerImage; 3] = [&NGINX, &REDIS, &POSTGRES];

/// FNV-1a: a stable fingerprint of a recipe, so a changed recipe rebuilds what it changed.
fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Fingerprint of what debootstrap installs (the rootfs cache key).
fn rootfs_key() -> String {
    let mut parts = vec![SUITE, "minbase"];
    parts.extend(PACKAGES);
    fingerprint(&parts)
}

/// Fingerprint of the whole recipe: the rootfs and every image's files, steps, user and command
/// (the images share the rootfs, so each carries the others' files too). Kept in each image's
/// environment, so a changed recipe rebuilds it.
fn recipe_key() -> String {
    let mut parts = vec![rootfs_key()];
    for image in ALL {
        parts.push(image.user.to_string());
        parts.extend(image.cmd.iter().map(|s| s.to_string()));
        for (p, c) in image.files {
            parts.push(p.to_string());
            parts.push(c.to_string());
        }
        for step in image.chroot_steps {
            parts.extend(step.iter().map(|s| s.to_string()));
        }
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    fingerprint(&refs)
}

/// The cached rootfs the images are imported from.
pub fn rootfs() -> PathBuf {
    Path::new(CACHE_DIR)
        .join("rootfs")
        .join(format!("{SUITE}-servers-{}", rootfs_key()))
}

/// The Debian mirror apt uses on this machine, from `/etc/apt/sources.list*`; Debian's own
/// when none is configured.
pub fn apt_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts
        .iter()
        .find_map(|t| mirror_in(t))
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// The first Debian archive (not the security archive) named in a one-line `deb URL SUITE …`
/// list or a deb822 `URIs:` stanza whose `Suites:` include bookworm.
fn mirror_in(text: &str) -> Option<String> {
    let is_archive = |url: &str| !url.contains("security") && url.contains("debian");
    for line in text.lines().map(str::trim) {
        let mut w = line.split_whitespace();
        if w.next() == Some("deb") {
            let mut url = w.next()?;
            if url.starts_with('[') {
                // `deb [arch=… signed-by=…] URL SUITE`: skip the options.
                if !url.ends_with(']') {
                    w.find(|x| x.ends_with(']'))?;
                }
                url = w.next()?;
            }
            if w.next().is_some_and(|s| s == SUITE) && is_archive(url) {
                return Some(url.trim_end_matches('/').to_string());
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(str::trim)
        };
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
            continue;
        };
        if suites.split_whitespace().any(|s| s == SUITE) {
            if let Some(url) = uris.split_whitespace().find(|u| is_archive(u)) {
                return Some(url.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

fn image_key_of(reference: &str) -> Option<String> {
    let o = Command::new("docker")
        .args(["image", "inspect", "-f", "{{json .Config.Env}}", reference])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let env = String::from_utf8_lossy(&o.stdout);
    let start = env.find("SEAWALL_BENCH_RECIPE=")? + "SEAWALL_BENCH_RECIPE=".len();
    Some(
        env[start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect(),
    )
}

/// Builds the server images unless images of the same recipe exist; the rootfs is cached
/// under [`CACHE_DIR`].
pub fn ensure_all() -> Result<()> {
    let key = recipe_key();
    let stale: Vec<&ServerImage> = ALL
        .into_iter()
        .filter(|i| image_key_of(i.reference).as_deref() != Some(key.as_str()))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let rootfs = rootfs();
    let done = rootfs.with_extension("complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::create_dir_all(Path::new(CACHE_DIR).join("debs"))?;
        eprintln!(
            "xtask bench: debootstrap {SUITE} with {} into {} (several minutes, once)",
            PACKAGES.join(","),
            rootfs.display()
        );
        run(Command::new("nice")
            .args(["-n", "10", "debootstrap", "--variant=minbase"])
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(format!("--cache-dir={CACHE_DIR}/debs"))
            .arg(SUITE)
            .arg(&rootfs)
            .arg(apt_mirror()))?;
        std::fs::write(&done, format!("{}\n", PACKAGES.join(" ")))?;
    }
    for image in ALL {
        for (path, contents) in image.files {
            let file = rootfs.join(path);
            if !file.parent().is_some_and(Path::exists) {
                bail!(
                    "{}: {} has no {}; did {} install what it used to?",
                    image.name,
                    rootfs.display(),
                    file.parent().unwrap_or(&file).display(),
                    PACKAGES.join(",")
                );
            }
            std::fs::write(&file, contents)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        for step in image.chroot_steps {
            run(Command::new("chroot").arg(&rootfs).args(*step))?;
        }
    }
    for image in stale {
        import(image, &rootfs, &key)?;
    }
    Ok(())
}

/// `tar` of the rootfs (without the kernel's virtual filesystems and device nodes, which the
/// container engine provides) into `docker import`.
fn import(image: &ServerImage, rootfs: &Path, key: &str) -> Result<()> {
    eprintln!("xtask bench: docker import {}", image.reference);
    let cmd_json = format!(
        "CMD [{}]",
        image
            .cmd
            .iter()
            .map(|a| format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::setup::docker_import(
        rootfs,
        &[
            "--numeric-owner",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./dev/*",
        ],
        &[
            cmd_json,
            format!("USER {}", image.user),
            format!("ENV SEAWALL_BENCH_RECIPE={key}"),
        ],
        image.reference,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror_in_a_deb822_file() {
        let t = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                 Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(t).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn finds_the_mirror_in_a_one_line_list() {
        let t =
            "# comment\ndeb http://security.debian.org/debian-security bookworm-security main\n\
                 deb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian/ bookworm main\n";
        assert_eq!(mirror_in(t).as_deref(), Some("http://ftp.example/debian"));
        assert_eq!(
            mirror_in("deb http://ftp.example/debian trixie main\n"),
            None
        );
    }

    #[test]
    fn a_changed_recipe_changes_the_key() {
        let a = fingerprint(&["bookworm", "nginx-light"]);
        assert_ne!(a, fingerprint(&["bookworm", "nginx-full"]));
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
