//! [`run`]: the collector from an open store to shutdown. It starts the store's watchers, the
//! sinks, the metrics endpoint and the gRPC server, tells systemd when it is ready, feeds the
//! watchdog only while the store answers and every sink task is alive, and reloads the sinks
//! on request.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use seawall_proto::pb::collector_server::CollectorServer;
use seawall_service::health::{self, Health, Liveness};
use seawall_service::notify::{watchdog_interval, Notifier};
use seawall_service::ErrorChain;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::Config;
use crate::metrics::CollectorMetrics;
use crate::sinks::SinkSet;
use crate::store::backend::{Embedded, EventStore};
use crate::store::nats::NatsStore;
use crate::store::Store;
use crate::{service, Host, Security, Settings, DEFAULT_MAX_MESSAGE_BYTES};

/// How often the store is asked whether it works.
const STORE_PROBE_EVERY: Duration = Duration::from_secs(5);
/// A store that has not answered a probe for this long is wedged (a hung disk, a lost JetStream
/// cluster): the watchdog stops and systemd restarts the collector. Acknowledged events are
/// durable, and agents keep theirs spooled, so a restart loses nothing.
const STORE_BOUND: Duration = Duration::from_secs(60);
/// The serving loop checks the sinks this often and shows it is alive when they pass.
const SINK_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longer than a reload takes (it waits for replaced sinks to finish a request in flight) and
/// than a tick; the sinks' own bound is [`crate::sinks::SINK_STALL_BOUND`].
const SERVING_LOOP_BOUND: Duration = Duration::from_secs(60);
/// How long shutdown waits for open streams to end before cutting them: agents' publish streams
/// never end by themselves, and whatever they had in flight is still in their spools.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match &settings.nats {
        Some(nats) => NatsStore::connect(nats)
            .await
            .context("opening the NATS JetStream store")?,
        None => {
            let store_dir = settings.data.join("events");
            let dir = store_dir.clone();
            let opts = settings.store.clone();
            let store = tokio::task::spawn_blocking(move || Store::open(&dir, opts)).await??;
            tracing::info!(path = %store_dir.display(), last_id = store.last_id(), agents = store.agent_count(), "event store open");
            Arc::new(Embedded(Arc::new(store)))
        }
    })
}

/// Serves until `shutdown` completes, then stops the server (after a short grace period), the
/// sinks (each saving its position) and the background tasks.
pub async fn run(
    settings: Settings,
    host: Host,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Host {
        listener,
        metrics: metrics_listener,
        notifier,
        mut reload,
    } = host;
    let store = open_store(&settings).await?;
    let mut sinks =
        SinkSet::start(&settings.sinks, store.clone(), &settings.data).context("starting sinks")?;
    let metrics = Arc::new(CollectorMetrics::new(store.clone(), sinks.list()));
    let health = Health::new();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(watch_store(
        store.clone(),
        metrics.clone(),
        health.register("store", STORE_BOUND),
        stopped(),
    ));
    tasks.spawn(retention(store.clone(), stopped()));
    if let Some(listener) = metrics_listener {
        tracing::info!(addr = %listener.local_addr()?, "metrics endpoint listening");
        tasks.spawn(seawall_service::metrics::serve(
            listener,
            metrics.registry(),
            stopped(),
        ));
    }

    let insecure = matches!(settings.security, Security::Insecure);
    let mut builder = Server::builder();
    if let Security::MutualTls {
        cert,
        key,
        client_ca,
    } = &settings.security
    {
        let identity =
            Identity::from_pem(read(cert, "server certificate")?, read(key, "server key")?);
        // With a client CA set, tonic requires every client to present a certificate that CA
        // signed; a client without one fails the handshake and never reaches the service.
        let tls = ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read(client_ca, "client CA")?));
        builder = builder.tls_config(tls).context("TLS configuration")?;
    }
    let access = if insecure {
        service::Access::Insecure
    } else {
        service::Access::Roles(settings.roles.clone())
    };
    let service = CollectorServer::new(service::CollectorService::new(
        store.clone(),
        access,
        metrics.clone(),
        health.clone(),
    ))
    .max_decoding_message_size(settings.max_message_bytes)
    .max_encoding_message_size(settings.max_message_bytes.max(DEFAULT_MAX_MESSAGE_BYTES));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, mtls = !insecure, sinks = sinks.len(), "collector listening");
    let server = builder.add_service(service).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        stopped(),
    );
    let mut server = std::pin::pin!(server);

    let serving_loop = health.register("serving loop", SERVING_LOOP_BOUND);
    if let Some(n) = &notifier {
        n.ready(&status(&sinks, None));
        if let Some(every) = watchdog_interval() {
            tasks.spawn(health::watchdog(
                n.clone(),
                every,
                health.clone(),
                stopped(),
            ));
        }
    }

    let mut tick = tokio::time::interval(SINK_CHECK_EVERY);
    let mut sinks_failing = false;
    let mut server_done = false;
    tokio::pin!(shutdown);
    let served = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            ended = &mut server => {
                server_done = true;
                break ended.context("gRPC server");
            }
            Some(()) = reload.recv() => {
                reload_sinks(&settings, &mut sinks, &metrics, notifier.as_ref()).await;
                serving_loop.beat();
            }
            _ = tick.tick() => match sinks.check() {
                Ok(()) => {
                    if sinks_failing {
                        tracing::info!("every sink task is alive again");
                        sinks_failing = false;
                    }
                    serving_loop.beat();
                }
                Err(why) => {
                    if !sinks_failing {
                        tracing::error!(reason = %why, "a sink task is not alive: not feeding the watchdog");
                        sinks_failing = true;
                    }
                }
            },
        }
    };

    tracing::info!("collector stopping");
    if let Some(n) = &notifier {
        n.stopping();
    }
    let _ = stop_tx.send(true);
    if !server_done
        && tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
            .await
            .is_err()
    {
        tracing::info!("publish streams still open after the grace period: cut");
    }
    sinks.stop().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.shutdown().await;
    }
    served
}

/// The `STATUS=` line systemd shows.
fn status(sinks: &SinkSet, reload_error: Option<&str>) -> String {
    match reload_error {
        None => format!("serving, {} sinks", sinks.len()),
        Some(e) => format!("serving, {} sinks; reload refused: {e}", sinks.len()),
    }
}

/// Re-reads the `[[sink]]` tables of the configuration file and applies them; a file or a table
/// that does not work leaves the running sinks as they are. Other settings need a restart.
async fn reload_sinks(
    settings: &Settings,
    sinks: &mut SinkSet,
    metrics: &CollectorMetrics,
    notifier: Option<&Notifier>,
) {
    if let Some(n) = notifier {
        n.reloading();
    }
    let outcome = match &settings.config_file {
        None => Err(anyhow::anyhow!(
            "the collector was started without --config: there is nothing to reload"
        )),
        Some(path) => match Config::load(path) {
            Ok(cfg) => sinks
                .reload(&cfg.sinks)
                .await
                .map_err(|e| anyhow::anyhow!("{}", ErrorChain(&e))),
            Err(e) => Err(e),
        },
    };
    let refused = match outcome {
        Ok(done) => {
            tracing::info!(started = ?done.started, stopped = ?done.stopped, kept = done.kept, "sink configuration reloaded (other settings take effect at restart)");
            metrics.reloaded(true);
            None
        }
        Err(e) => {
            let e = format!("{e:#}");
            tracing::error!(error = %e, "reload refused: the running sinks stay as they were");
            metrics.reloaded(false);
            Some(e)
        }
    };
    if let Some(n) = notifier {
        n.ready(&status(sinks, refused.as_deref()));
    }
}

/// Probes the store every few seconds: a probe that answers shows the store is alive (and
/// gives its size for the metrics); one that fails or hangs does not.
async fn watch_store(
    store: Arc<dyn EventStore>,
    metrics: Arc<CollectorMetrics>,
    alive: Liveness,
    stopped: impl Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(STORE_PROBE_EVERY);
    let mut failing = false;
    tokio::pin!(stopped);
    loop {
        let probe = tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => tokio::select! {
                _ = &mut stopped => return,
                probe = store.probe() => probe,
            },
        };
        match probe {
            Ok(bytes) => {
                metrics.set_store_bytes(bytes);
                alive.beat();
                if failing {
                    tracing::info!("the event store answers again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %ErrorChain(&e), "the event store does not answer");
                    failing = true;
                }
            }
        }
    }
}

/// Hourly retention pass, so age-based retention applies even when nothing is written.
async fn retention(store: Arc<dyn EventStore>, stopped: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = store.apply_retention().await {
            tracing::error!(error = %ErrorChain(&e), "retention pass failed");
        }
    }
}
