//! Listed hashes on the BPF LSM backend's kernel. The hash verdict is not a kernel program: it
//! is the fanotify exec permission event (`FAN_OPEN_EXEC_PERM`), answered in userspace after
//! the file is hashed, on every backend. The VM has no container engine and no agent daemon,
//! so this stands in for the daemon's fanotify thread: one group marks the overlay's
//! superblock, and a thread answers each exec of a process in the container cgroup with the
//! agent's own verdict (`seawall::intel::exec::ExecIntel::judge`: the same hashing, cache and
//! feed matching), every other exec with allow. What it shows: with the LSM programs loaded
//! (`file_open`, `bprm_check_security`, …) the kernel still hands the exec to fanotify, the
//! refusal reaches `execve` as EPERM, and an image binary that is not listed runs. What it does
//! not show: the daemon's own answerer (`fanotify/intel.rs`, which marks each mount of a
//! container through its root); the fallback's integration test covers that one.

use std::{
    fs,
    sync::{Arc, Mutex, OnceLock},
    time::SystemTime,
};

use nix::{
    fcntl::AT_FDCWD,
    sys::fanotify::{
        EventFFlags, Fanotify, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
    },
};
use seawall::intel::exec::ExecIntel;
use seawall_intel::{Feed, FeedFormat, IntelSet};
use seawall_profile::Mode;
use seawall_proto::event::Action;

use crate::{
    run::{exec, expect_eperm, expect_ran, line},
    setup::{LISTED, LOWER, MERGED},
};

/// The container's line in `/proc/<pid>/cgroup`.
const CONTAINER_CGROUP: &str = "0::/seawall-vmtest/container";

/// The indicator listed, and the indicators of the execs the answerer refused.
struct Verdicts {
    listed: String,
    refused: Mutex<Vec<String>>,
}

static VERDICTS: OnceLock<Arc<Verdicts>> = OnceLock::new();

/// Lists the SHA-256 of the image's `/bin/listed`, marks the overlay and starts the answerer.
pub fn start(container_cgroup: u64) -> Result<(), String> {
    let bytes = fs::read(format!("{LOWER}{LISTED}")).map_err(|e| format!("{LISTED}: {e}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let listed: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let feed = Feed::parse(
        FeedFormat::PlainList,
        format!("{listed}\n").as_bytes(),
        SystemTime::now(),
    )
    .map_err(|e| format!("the hash feed: {e:?}"))?;
    let (intel, _records) = ExecIntel::new();
    intel.set_indicators(Arc::new(IntelSet::from_feeds([(
        "vm-hashes.txt".to_string(),
        feed,
    )])));
    intel.set_mode(container_cgroup, Mode::Enforce);
    let group = Fanotify::init(
        InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
    )
    .map_err(|e| format!("fanotify_init: {e}"))?;
    group
        .mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
            MaskFlags::FAN_OPEN_EXEC_PERM,
            AT_FDCWD,
            Some(MERGED),
        )
        .map_err(|e| format!("fanotify_mark {MERGED}: {e}"))?;
    let verdicts = Arc::new(Verdicts {
        listed,
        refused: Mutex::new(Vec::new()),
    });
    let _ = VERDICTS.set(verdicts.clone());
    // Every exec on the overlay waits for this thread; it never stops (the VM powers off).
    std::thread::spawn(move || loop {
        let Ok(events) = group.read_events() else {
            continue;
        };
        for ev in events {
            let Some(file) = ev.fd() else { continue };
            let in_container = fs::read_to_string(format!("/proc/{}/cgroup", ev.pid()))
                .is_ok_and(|c| c.lines().any(|l| l == CONTAINER_CGROUP));
            let verdict = in_container
                .then(|| intel.judge(container_cgroup, file))
                .flatten();
            let refused = matches!(verdict, Some((Action::Blocked, _)));
            if let Some((_, i)) = verdict {
                verdicts
                    .refused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(i.indicator);
            }
            let response = if refused {
                Response::FAN_DENY
            } else {
                Response::FAN_ALLOW
            };
            let _ = group.write_response(FanotifyResponse::new(file, response));
        }
    });
    Ok(())
}

/// From inside the container: the listed file is refused, an unlisted image binary runs.
pub fn container_checks() -> Vec<String> {
    if VERDICTS.get().is_none() {
        return vec!["FAIL intel_exec_listed_hash_eperm: the answerer did not start".into()];
    }
    vec![
        line("intel_exec_listed_hash_eperm", expect_eperm(exec(LISTED))),
        line(
            "intel_exec_unlisted_hash_runs",
            expect_ran(exec("/bin/busybox")),
        ),
    ]
}

/// The answerer refused the listed file by its indicator (the event side).
pub fn verdict_check() -> Result<(), String> {
    let v = VERDICTS.get().ok_or("the answerer did not start")?;
    let refused = v.refused.lock().unwrap_or_else(|e| e.into_inner());
    if refused.iter().any(|i| *i == v.listed) {
        Ok(())
    } else {
        Err(format!("no refusal of {} recorded: {refused:?}", v.listed))
    }
}
