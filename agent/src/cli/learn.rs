//! `seawall profile learn` (a profile from what the running agent saw) and `seawall profile
//! diff` (what changes between two profiles).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context as _};
use seawall_profile::{
    check_path, diff_profiles, learn_profile, load_file, parse_duration, ImagePattern,
    LearnRequest, Mode,
};
use tokio::io::AsyncBufReadExt as _;

use super::local::request;
use crate::learn::store::Snapshot;

/// What `seawall profile learn` was asked.
pub struct LearnArgs {
    pub images: Vec<String>,
    pub since: Option<String>,
    pub mode: String,
    pub name: Option<String>,
    pub output: Option<PathBuf>,
    pub api_socket: PathBuf,
}

/// Asks the running agent what the images' containers did and writes the profile (to
/// `--output`, atomically, or to stdout), then says on stderr what it was learned from and
/// what is incomplete.
pub async fn learn(args: LearnArgs) -> anyhow::Result<()> {
    let mut images = Vec::new();
    for i in &args.images {
        images.push(ImagePattern::parse(i).map_err(|e| anyhow::anyhow!("--image {i:?}: {e}"))?);
    }
    let mode = match args.mode.as_str() {
        "audit" => Mode::Audit,
        "enforce" => Mode::Enforce,
        other => bail!("--mode {other:?}: a learned profile is `audit` or `enforce`"),
    };
    let since = match &args.since {
        None => None,
        Some(d) => {
            let d = parse_duration(d).with_context(|| format!("--since {d:?}"))?;
            Some(crate::learn::promotion::now().saturating_sub(d.as_secs() as i64))
        }
    };
    let snapshot = ask(&args.api_socket).await?;
    let learned = learn_profile(
        &snapshot.images,
        &LearnRequest {
            images,
            name: args.name.clone(),
            mode,
            since,
        },
    )?;
    match &args.output {
        None => print!("{}", learned.text),
        Some(path) => {
            write_atomically(path, learned.text.as_bytes())?;
            // The generator promises a profile `seawall profile check` accepts: hold it to that.
            let report = check_path(path);
            if !report.is_ok() {
                bail!(
                    "the learned profile does not pass `seawall profile check` (a bug; please report it):\n{report}"
                );
            }
        }
    }
    let from: Vec<String> = learned
        .learned_from
        .iter()
        .map(|(image, id)| match id {
            Some(id) => format!("{image} ({})", &id[..id.len().min(19)]),
            None => image.clone(),
        })
        .collect();
    eprintln!(
        "seawall: profile `{}`{} learned from {}",
        learned.name,
        args.output
            .as_ref()
            .map(|p| format!(" written to {}", p.display()))
            .unwrap_or_default(),
        from.join(", ")
    );
    if !learned.cut.is_empty() {
        eprintln!(
            "seawall: warning: the agent's limit was reached for {}: those lists are incomplete (see CUT in the file)",
            learned.cut.join(", ")
        );
    }
    if learned.missed > 0 {
        eprintln!(
            "seawall: warning: {} events were not learned because the agent fell behind (see MISSED in the file)",
            learned.missed
        );
    }
    Ok(())
}

/// The agent's `behaviour` answer.
async fn ask(api_socket: &Path) -> anyhow::Result<Snapshot> {
    let mut r = request(api_socket, "behaviour").await?;
    let mut line = String::new();
    r.read_line(&mut line)
        .await
        .context("reading the agent's answer")?;
    let value: serde_json::Value =
        serde_json::from_str(&line).context("the agent's `behaviour` answer is not JSON")?;
    if let Some(e) = value.get("error").and_then(|e| e.as_str()) {
        bail!("the agent cannot say what containers did: {e}");
    }
    serde_json::from_value(value).context(
        "the agent's `behaviour` answer is not what this `seawall` reads (are the agent and the CLI the same version?)",
    )
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so a
/// profiles directory the agent watches never holds half a profile.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("--output {}: not a file name", path.display()))?;
    // A dot file and no `.toml`: the agent's directory scan ignores it while it is written.
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// `seawall profile diff OLD NEW`: exit status 0 when they allow and enforce the same, 1 when
/// they differ (like diff(1)); an invalid file is an error.
pub fn diff(old: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let load = |p: &Path| {
        load_file(p)
            .map_err(|report| anyhow::anyhow!("{} is not a valid profile:\n{report}", p.display()))
    };
    let (a, b) = (load(old)?, load(new)?);
    let d = diff_profiles(&a, &b);
    println!("{d}");
    Ok(if d.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
