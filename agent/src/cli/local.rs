//! Clients of the local agent's API: `seawall status` and `seawall events` without a collector
//! (and the request `seawall profile learn` sends).

use std::path::PathBuf;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt;

use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::UnixStream,
};

use crate::ops::status::Status;

/// One request to the local agent; the raw answer stream.
pub(super) async fn request(
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<BufReader<UnixStream>> {
    let mut s = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach the local agent at {} (is `seawall agent` running, and are you root?)",
            path.display()
        )
    })?;
    s.write_all(format!("{what}\n").as_bytes()).await?;
    Ok(BufReader::new(s))
}

/// `seawall status`: the running agent's status, as text or raw JSON.
pub async fn status(api_socket: PathBuf, json: bool) -> anyhow::Result<()> {
    let mut r = request(&api_socket, "status").await?;
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if json {
        print!("{line}");
    } else {
        let s: Status = serde_json::from_str(&line).context("the agent's status answer")?;
        print!("{s}");
    }
    Ok(())
}

/// Events live from the local agent (they stream as they happen, so this always follows).
pub async fn events(
    args: seawall_delivery::events_cli::EventsArgs,
    api_socket: PathBuf,
) -> anyhow::Result<()> {
    let mut r = request(&api_socket, "events").await?;
    let mut header = false;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let Ok(ev) = serde_json::from_str::<seawall_proto::event::Event>(&line) else {
            continue;
        };
        if let Some(want) = &args.container {
            let hit = ev
                .container
                .as_ref()
                .is_some_and(|c| c.id.starts_with(want.as_str()) || &c.name == want);
            if !hit {
                continue;
            }
        }
        if let Some(want) = &args.image {
            if !ev
                .container
                .as_ref()
                .is_some_and(|c| c.image.contains(want.as_str()))
            {
                continue;
            }
        }
        if args.severity.is_some_and(|s| ev.severity < s) {
            continue;
        }
        if args.json {
            print!("{line}");
        } else {
            if !header {
                println!("{}", seawall_delivery::events_cli::table_header());
                header = true;
            }
            println!("{}", seawall_delivery::events_cli::table_row(&ev));
        }
    }
}
