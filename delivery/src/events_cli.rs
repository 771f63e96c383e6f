//! `seawall events`: recent (and, with `--follow`, live) events from the collector.

use std::path::PathBuf;

use anyhow::Context as _;
use seawall_proto::event::Event;
use seawall_proto::pb;
use seawall_proto::pb::collector_client::CollectorClient;

use super::CollectorConfig;

/// Show recent events from the collector as a table (or JSON lines).
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Keep running and print new events as they arrive.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Collector URL, https://HOST:PORT.
    #[arg(long, env = "SEAWALL_COLLECTOR")]
    pub collector: Option<String>,
    /// CA that signed the collector's certificate (PEM).
    #[arg(long = "collector-ca", env = "SEAWALL_COLLECTOR_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) that the collector's client CA signed.
    #[arg(long = "collector-cert", env = "SEAWALL_COLLECTOR_CERT")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long = "collector-key", env = "SEAWALL_COLLECTOR_KEY")]
    pub key: Option<PathBuf>,
    /// Plain-text connection to a collector started with --insecure (http:// URL).
    #[arg(long = "collector-insecure")]
    pub insecure: bool,
    /// Only events of this container (id, 12+ character id prefix, or name).
    #[arg(long)]
    pub container: Option<String>,
    /// Only events whose image reference contains this text.
    #[arg(long)]
    pub image: Option<String>,
    /// Only events at or above this severity (info, low, medium, high, critical).
    #[arg(long)]
    pub severity: Option<seawall_proto::event::Severity>,
    /// How many recent events to show first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// One JSON object per line (the event schema) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let Some(url) = args.collector.clone() else {
        anyhow::bail!(
            "`seawall events` reads from the collector for now: pass --collector https://HOST:PORT \
             (with --collector-ca, --collector-cert and --collector-key) or set SEAWALL_COLLECTOR"
        );
    };
    let cfg = CollectorConfig {
        url: url.clone(),
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        insecure: args.insecure,
        ..CollectorConfig::default()
    };
    let channel = super::sender::endpoint(&cfg, &url)?
        .connect()
        .await
        .with_context(|| format!("connecting to the collector {url}"))?;
    let mut client = CollectorClient::new(channel);
    let filter = pb::Filter {
        container: args.container.clone().unwrap_or_default(),
        image: args.image.clone().unwrap_or_default(),
        min_severity: args
            .severity
            .map(|s| pb::Severity::from(s) as i32)
            .unwrap_or(0),
        ..Default::default()
    };
    let recent = client
        .query(pb::QueryRequest {
            filter: Some(filter.clone()),
            limit: args.limit,
        })
        .await
        .context("querying the collector")?
        .into_inner()
        .events;
    let mut printer = Printer::new(args.json);
    let mut last_id = 0;
    for stored in recent {
        last_id = last_id.max(stored.id);
        printer.print(stored)?;
    }
    if !args.follow {
        return Ok(());
    }
    if last_id == 0 {
        last_id = client
            .health(pb::HealthRequest {})
            .await
            .context("collector health")?
            .into_inner()
            .last_id;
    }
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            filter: Some(filter),
            after_id: last_id,
        })
        .await
        .context("subscribing to the collector")?
        .into_inner();
    while let Some(stored) = stream.message().await.context("collector stream")? {
        printer.print(stored)?;
    }
    Ok(())
}

struct Printer {
    json: bool,
    header: bool,
}

const COLUMNS: [(&str, usize); 5] = [
    ("TIME", 23),
    ("CONTAINER", 16),
    ("IMAGE", 24),
    ("CONTROL", 14),
    ("ACTION", 8),
];

fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        format!("{s:<w$}")
    } else {
        let cut: String = s.chars().take(w.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

impl Printer {
    fn new(json: bool) -> Self {
        Printer {
            json,
            header: false,
        }
    }

    fn print(&mut self, stored: pb::StoredEvent) -> anyhow::Result<()> {
        let Some(wire) = stored.event else {
            return Ok(());
        };
        let event = Event::try_from(wire).context("the collector sent an invalid event")?;
        if self.json {
            println!("{}", event.to_json_line());
            return Ok(());
        }
        if !self.header {
            println!("{}", table_header());
            self.header = true;
        }
        println!("{}", table_row(&event));
        Ok(())
    }
}

/// The table's header line.
pub fn table_header() -> String {
    let mut line: String = COLUMNS.iter().map(|(h, w)| fit(h, *w) + "  ").collect();
    line.push_str("SUMMARY");
    line
}

/// One table line: time, container, image, control, action, summary.
pub fn table_row(e: &Event) -> String {
    // 2026-05-01T10:00:00.123456789Z → 2026-05-01 10:00:00.123
    let time: String = e.time.replace('T', " ").chars().take(23).collect();
    let (container, image) = e
        .container
        .as_ref()
        .map(|c| {
            let name = if c.name.is_empty() {
                c.id.chars().take(12).collect()
            } else {
                c.name.clone()
            };
            (name, c.image.clone())
        })
        .unwrap_or_else(|| ("-".into(), "-".into()));
    let cells = [
        time,
        container,
        image,
        e.control.clone(),
        e.action.to_string(),
    ];
    let mut line = String::new();
    for (cell, (_, w)) in cells.iter().zip(COLUMNS) {
        line.push_str(&fit(cell, w));
        line.push_str("  ");
    }
    line.push_str(&summary(e));
    line
}

fn summary(e: &Event) -> String {
    if !e.message.is_empty() {
        return e.message.clone();
    }
    if let Some(p) = &e.process {
        return p.exe.clone();
    }
    if let Some(f) = &e.file {
        return f.path.clone();
    }
    if let Some(n) = &e.network {
        return format!("{} {}:{}", n.op, n.address, n.port);
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_proto::event::{Action, Container, Kind, Severity};

    #[test]
    fn table_row_shows_the_columns_a_user_reads() {
        let e = Event {
            seq: 1,
            time: "2026-05-01T10:00:00.123456789Z".into(),
            node: "n".into(),
            kind: Kind::Exec,
            action: Action::Blocked,
            control: "drift".into(),
            severity: Severity::High,
            message: "blocked /tmp/evil".into(),
            process: None,
            container: Some(Container {
                id: "0123456789abcdef".into(),
                name: "web".into(),
                image: "nginx:1.27".into(),
                ..Default::default()
            }),
            file: None,
            network: None,
            intel: None,
        };
        let row = table_row(&e);
        assert!(row.starts_with("2026-05-01 10:00:00.123  web "), "{row}");
        for part in ["nginx:1.27", "drift", "blocked", "blocked /tmp/evil"] {
            assert!(row.contains(part), "{row} lacks {part}");
        }
    }

    #[tokio::test]
    async fn without_a_collector_the_error_says_what_to_pass() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: EventsArgs,
        }
        let cli = Cli::parse_from(["seawall"]);
        let err = run(cli.args).await.unwrap_err().to_string();
        assert!(err.contains("--collector"), "{err}");
    }
}
