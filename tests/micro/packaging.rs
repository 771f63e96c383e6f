//! deploy/micro: the carrier image built from its Dockerfile supplies seawall-micro both ways
//! the README describes — copied into an application image by the `Dockerfile.app` stanza, and
//! handed to an unchanged image through a volume the carrier fills (the Fargate sidecar) — and
//! in both the profile holds in a container with no capability.

use super::*;

/// Images and a volume made by one test, removed when it ends.
struct Built {
    images: Vec<String>,
    volume: Option<String>,
}

/// `docker ARGS` for cleaning up: what is already gone is no error.
fn quiet(args: &[&str]) {
    let _ = Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Built {
    fn drop(&mut self) {
        if let Some(v) = &self.volume {
            quiet(&["volume", "rm", "-f", v]);
        }
        for i in self.images.iter().rev() {
            quiet(&["rmi", "-f", i]);
        }
    }
}

/// The pid in a name made by `unique_name` ("sw-TAG-PID-N", TAG may hold dashes).
fn pid_in(name: &str) -> Option<u32> {
    let mut parts = name.rsplit('-');
    parts.next()?.parse::<u64>().ok()?;
    parts.next()?.parse().ok()
}

/// Removes what an earlier run of these tests left when it was killed before its guards ran
/// (`docker rm`/`rmi` of a process that no longer exists): `sw-micro-*` containers, then this
/// test's volumes and images.
fn remove_leftovers() {
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| text(&o.stdout).lines().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let dead =
        |name: &str| pid_in(name).is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
    for c in list(&[
        "ps",
        "-a",
        "--filter",
        "name=^sw-micro-",
        "--format",
        "{{.Names}}",
    ]) {
        if dead(&c) {
            quiet(&["rm", "-f", &c]);
        }
    }
    for v in list(&["volume", "ls", "-q", "--filter", "name=^sw-micro-deploy-"]) {
        if v.strip_suffix("-seawall").is_some_and(dead) {
            quiet(&["volume", "rm", "-f", &v]);
        }
    }
    for repo in ["seawall-micro-app-test", "seawall-micro-test"] {
        for tag in list(&["images", repo, "--format", "{{.Tag}}"]) {
            if tag.starts_with("sw-micro-deploy-") && dead(&tag) {
                quiet(&["rmi", "-f", &format!("{repo}:{tag}")]);
            }
        }
    }
}

const DEPLOY_PROFILE: &str = "[profile]\nname = \"deploy-test\"\nmode = \"enforce\"\n[drift]\nprevent = true\n[files]\nread_only = [\"/etc/passwd\"]\n";

/// What each delivery runs: drift refused, a read-only file kept, benign work done. The shell's
/// own complaints go to stdout: stderr carries seawall-micro's event lines, and a program that
/// writes a line in pieces (`sh: ` then the message) would otherwise split one of them.
const SCRIPT: &str = r#"
    exec 2>&1
    cp /bin/busybox /tmp/copy; /tmp/copy echo COPY-RAN; echo "copy=$?"
    echo x >> /etc/passwd; echo "write=$?"
    echo "pid1=$(cat /proc/1/comm)"
    echo benign-ok
"#;

fn docker_build(dockerfile: &Path, ctx: &Path, args: &[(&str, &str)], tag: &str) {
    let mut cmd = Command::new("docker");
    cmd.args(["build", "-q", "-t", tag, "-f"]).arg(dockerfile);
    for (k, v) in args {
        cmd.arg("--build-arg").arg(format!("{k}={v}"));
    }
    let out = cmd.arg(ctx).output().expect("docker build");
    assert!(
        out.status.success(),
        "docker build -f {}: {}",
        dockerfile.display(),
        text(&out.stderr)
    );
}

/// Runs a container with no capability (and the `-v` mount given) and returns (its output, the
/// events on its stderr).
fn run_unprivileged(
    name: &str,
    volume: Option<&str>,
    image: &str,
    cmd: &[&str],
) -> (Output, Vec<Value>) {
    let _c = Container {
        name: name.to_string(),
    };
    let mut c = Command::new("docker");
    c.args(["run", "--name", name, "--network", "none"]).args([
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]);
    if let Some(v) = volume {
        c.args(["-v", v]);
    }
    let out = c.arg(image).args(cmd).output().expect("docker run");
    let events = text(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    (out, events)
}

fn assert_held(what: &str, out: &Output, events: &[Value]) {
    let stdout = text(&out.stdout);
    let show = || format!("{what}:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{}", show());
    for line in ["copy=126", "write=1", "pid1=seawall-micro", "benign-ok"] {
        assert!(
            stdout.lines().any(|l| l.trim() == line),
            "no `{line}` in {}",
            show()
        );
    }
    assert!(!stdout.contains("COPY-RAN"), "{}", show());
    let drift = events
        .iter()
        .find(|e| is(e, "exec", "drift", "blocked") && e["process"]["exe"] == "/tmp/copy")
        .unwrap_or_else(|| panic!("no drift event: {}", show()));
    assert_eq!(drift["container"]["runtime"], "micro");
    assert!(
        events
            .iter()
            .any(|e| is(e, "file", "file", "blocked") && e["file"]["path"] == "/etc/passwd"),
        "no read-only event: {}",
        show()
    );
}

/// What ecs-task-definition.json tells Fargate, the parts this test then does with Docker: the
/// path both containers mount the volume at, and the app's entry point.
struct TaskDefinition {
    mount: String,
    entry_point: Vec<String>,
}

fn task_definition(deploy: &Path) -> TaskDefinition {
    let json = std::fs::read_to_string(deploy.join("ecs-task-definition.json")).unwrap();
    let td: Value = serde_json::from_str(&json).expect("ecs-task-definition.json is JSON");
    let defs = td["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions");
    let named = |n: &str| {
        defs.iter()
            .find(|d| d["name"] == n)
            .unwrap_or_else(|| panic!("no container {n}"))
    };
    let (carrier, app) = (named("seawall-micro"), named("app"));
    let volume = td["volumes"][0]["name"].clone();
    assert_eq!(
        carrier["essential"], false,
        "the carrier only fills the volume"
    );
    assert_eq!(
        app["dependsOn"][0],
        serde_json::json!({"containerName": "seawall-micro", "condition": "SUCCESS"})
    );
    assert_eq!(carrier["mountPoints"][0]["sourceVolume"], volume);
    assert_eq!(app["mountPoints"][0]["sourceVolume"], volume);
    assert_eq!(app["mountPoints"][0]["readOnly"], true);
    let mount = carrier["mountPoints"][0]["containerPath"].as_str().unwrap();
    // ECS copies the image's VOLUME into the volume only when the path is the same.
    assert_eq!(mount, "/seawall");
    assert_eq!(app["mountPoints"][0]["containerPath"], mount);
    assert_eq!(
        app["linuxParameters"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    let entry_point: Vec<String> = app["entryPoint"]
        .as_array()
        .expect("entryPoint")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(entry_point.last().map(String::as_str), Some("--"));
    TaskDefinition {
        mount: mount.to_string(),
        entry_point,
    }
}

#[test]
fn the_carrier_image_supplies_seawall_micro_in_an_image_and_through_a_volume() {
    if !ready() {
        return;
    }
    remove_leftovers();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/micro");
    let task = task_definition(&deploy);
    let tag = unique_name("micro-deploy");
    let carrier = format!("seawall-micro-test:{tag}");
    let app = format!("seawall-micro-app-test:{tag}");
    let volume = format!("{tag}-seawall");
    let mut built = Built {
        images: Vec::new(),
        volume: None,
    };

    // The build context laid out as the repository: the static binary and a profile under
    // deploy/micro/, with the Dockerfiles and their .dockerignore files next to each other.
    let ctx = tempfile::tempdir().unwrap();
    let bin_dir = ctx.path().join("target/x86_64-unknown-linux-musl/release");
    let ctx_deploy = ctx.path().join("deploy/micro");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&ctx_deploy).unwrap();
    std::fs::copy(micro_bin(), bin_dir.join("seawall-micro")).unwrap();
    for f in [
        "Dockerfile",
        "Dockerfile.dockerignore",
        "Dockerfile.app",
        "Dockerfile.app.dockerignore",
    ] {
        std::fs::copy(deploy.join(f), ctx_deploy.join(f)).unwrap();
    }
    std::fs::write(ctx_deploy.join("test.toml"), DEPLOY_PROFILE).unwrap();

    built.images.push(carrier.clone());
    docker_build(
        &ctx_deploy.join("Dockerfile"),
        ctx.path(),
        &[("PROFILE", "deploy/micro/test.toml")],
        &carrier,
    );
    built.images.push(app.clone());
    docker_build(
        &ctx_deploy.join("Dockerfile.app"),
        ctx.path(),
        &[("APP_IMAGE", IMAGE), ("MICRO_IMAGE", &carrier)],
        &app,
    );

    // In the image: its ENTRYPOINT is seawall-micro, the command given is what it starts.
    let (out, events) = run_unprivileged(
        &unique_name("micro-in-image"),
        None,
        &app,
        &["sh", "-c", SCRIPT],
    );
    assert_held("Dockerfile.app", &out, &events);

    // Through a volume, as the task definition does it: the carrier fills an empty volume (its
    // VOLUME /seawall) and exits 0; the unchanged image starts through the volume, read-only,
    // with the task's entry point.
    built.volume = Some(volume.clone());
    let created = Command::new("docker")
        .args(["volume", "create", &volume])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", text(&created.stderr));
    let sidecar = unique_name("micro-sidecar");
    let _s = Container {
        name: sidecar.clone(),
    };
    let filled = Command::new("docker")
        .args(["run", "--name", &sidecar, "--network", "none", "-v"])
        .arg(format!("{volume}:{}", task.mount))
        .arg(&carrier)
        .output()
        .unwrap();
    assert!(filled.status.success(), "{}", text(&filled.stderr));
    assert!(
        text(&filled.stdout).starts_with("seawall-micro "),
        "{}",
        text(&filled.stdout)
    );
    let mut cmd: Vec<&str> = task.entry_point.iter().map(String::as_str).collect();
    cmd.extend(["sh", "-c", SCRIPT]);
    let (out, events) = run_unprivileged(
        &unique_name("micro-volume"),
        Some(&format!("{volume}:{}:ro", task.mount)),
        IMAGE,
        &cmd,
    );
    assert_held("volume delivery", &out, &events);
}
