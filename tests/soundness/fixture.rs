//! What the soundness tests share: the attacker's static helper (`tests/attack/attack.c`, built
//! with `gcc -static`), a test image that holds it and a glibc dynamic loader (so the loader,
//! `LD_PRELOAD` and image-tool doors exist), and `docker run` with the extra flags these attacks
//! need (`--tmpfs`, volumes, environment). The image is built once per test process and removed
//! at exit; containers carry unique names and are removed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use seawall_integration::{unique_name, Container, IMAGE};

/// The helper's path inside the test image (an image file: running it is not drift).
pub const ATTACK: &str = "/usr/local/bin/attack";
/// A library the attacker drops, kept in the image under a name nothing loads, copied out to
/// `/tmp` by the tests (where it is the container's own, not the image's).
pub const EVIL_SO: &str = "/usr/share/attack/evil.so";
/// A glibc-linked program of the image (the host's `true`).
pub const DYN_TRUE: &str = "/usr/bin/dyntrue";
/// The image's dynamic loader.
pub const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
/// A `#!` script of the image (running it is not drift).
pub const IMAGE_SCRIPT: &str = "/usr/local/bin/image-script.sh";

/// Built artefacts, or why they could not be built.
struct Built {
    image: String,
    dir: PathBuf,
}

static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();

extern "C" fn remove_image() {
    if let Some(Ok(b)) = BUILT.get() {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &b.image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&b.dir);
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn build() -> Result<Built, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("attack");
    let dir = std::env::temp_dir().join(unique_name("attack-image"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run(Command::new("gcc")
        .args(["-static", "-no-pie", "-O2", "-o"])
        .arg(dir.join("attack"))
        .arg(src.join("attack.c"))
        .arg("-lpthread"))
    .map_err(|e| format!("building the attack helper (gcc with static glibc needed): {e}"))?;
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(dir.join("evil.so"))
        .arg(src.join("evil.c")))?;
    let loader = std::fs::canonicalize(LOADER).map_err(|e| format!("{LOADER}: {e}"))?;
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6")
        .map_err(|e| format!("host libc: {e}"))?;
    for (from, to) in [
        (loader.as_path(), "ld.so"),
        (libc.as_path(), "libc.so.6"),
        (Path::new("/usr/bin/true"), "dyntrue"),
    ] {
        std::fs::copy(from, dir.join(to)).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    let loader_name = loader
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("loader name")?
        .to_string();
    let dockerfile = format!(
        "FROM {IMAGE}\n\
         COPY attack {ATTACK}\n\
         COPY evil.so {EVIL_SO}\n\
         COPY dyntrue {DYN_TRUE}\n\
         COPY ld.so /lib/x86_64-linux-gnu/{loader_name}\n\
         COPY libc.so.6 /lib/x86_64-linux-gnu/libc.so.6\n\
         RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/lib64\"]\n\
         RUN [\"/bin/busybox\", \"ln\", \"-s\", \"/lib/x86_64-linux-gnu/{loader_name}\", \"{LOADER}\"]\n"
    );
    std::fs::write(
        dir.join("image-script.sh"),
        "#!/bin/sh\necho IMAGE-SCRIPT-RAN\n",
    )
    .map_err(|e| e.to_string())?;
    for (f, text) in [("app.conf", "app\n"), ("key", "secret key\n")] {
        std::fs::write(dir.join(f), text).map_err(|e| e.to_string())?;
    }
    let dockerfile = format!(
        "{dockerfile}COPY image-script.sh {IMAGE_SCRIPT}\n\
         RUN [\"/bin/busybox\", \"chmod\", \"755\", \"{IMAGE_SCRIPT}\"]\n\
         COPY app.conf /etc/app/app.conf\n\
         COPY key /etc/secrets/key\n"
    );
    std::fs::write(dir.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
    let image = format!("{}:latest", unique_name("seawall-test/busybox-attack"))
        .replace("sw-seawall-test/", "seawall-test/");
    run(Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", &image])
        .arg(&dir))?;
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(remove_image) };
    Ok(Built { image, dir })
}

/// The test image (built on first use), or `SKIP: why` when it cannot be built. On CI a missing
/// compiler is a failure, like every other missing capability.
pub fn attack_image() -> Option<String> {
    match BUILT.get_or_init(build) {
        Ok(b) => Some(b.image.clone()),
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("soundness test cannot run on CI: {why}");
            }
            eprintln!("SKIP: {why}");
            None
        }
    }
}

/// The helper on the host (for host processes doing what the attacker does), once the image
/// is built.
pub fn attack_helper() -> Option<PathBuf> {
    attack_image()?;
    BUILT.get()?.as_ref().ok().map(|b| b.dir.join("attack"))
}

/// The dropped library on the host (see [`attack_helper`]).
pub fn attack_library() -> Option<PathBuf> {
    attack_image()?;
    BUILT.get()?.as_ref().ok().map(|b| b.dir.join("evil.so"))
}

/// `docker run` (foreground) of `sh -c script` in `image` with `extra` flags before the image.
pub fn run_in(image: &str, tag: &str, extra: &[&str], script: &str) -> (Container, Output) {
    let name = unique_name(tag);
    let out = Command::new("docker")
        .args(["run", "--name", &name])
        .args(extra)
        .args([image, "sh", "-c", script])
        .output()
        .expect("docker run");
    (Container { name }, out)
}

/// `docker run -d` of `sh -c script`.
pub fn start_in(image: &str, tag: &str, extra: &[&str], script: &str) -> Container {
    let name = unique_name(tag);
    let out = Command::new("docker")
        .args(["run", "-d", "--name", &name])
        .args(extra)
        .args([image, "sh", "-c", script])
        .output()
        .expect("docker run -d");
    assert!(
        out.status.success(),
        "docker run -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Container { name }
}

/// `n` nested directories `a/a/…` (the shell builds them with one `mkdir -p`).
pub fn nested(n: usize) -> String {
    vec!["a"; n].join("/")
}

/// `seawall status --json` of `agent`.
pub fn status_json(agent: &seawall_integration::Agent) -> serde_json::Value {
    let out = Command::new(seawall_integration::agent_bin())
        .args(["status", "--json", "--api-socket"])
        .arg(&agent.api)
        .output()
        .expect("seawall status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}
