//! The one loop: what it waits for, in which order, and in what batches.

use super::*;

/// What the loop watches for an end: the kernel owner thread and the named tasks.
pub(super) struct Supervised<'a> {
    pub(super) owner: &'a mut crate::kernel::owner::KernelOwner,
    pub(super) tasks: &'a mut supervise::Tasks,
}

/// Resolves when the fanotify thread ends (pending without file controls).
async fn files_ended(files: &mut Option<FileGuard>) -> ThreadEnd {
    match files {
        Some(f) => f.ended().await,
        None => std::future::pending().await,
    }
}

/// The one loop. Biased towards what must not wait (shutdown, the end of a part the agent
/// cannot do without, SIGHUP, the tick, container news), and kernel and file records are taken
/// in bounded batches, so a flood of them cannot starve the rest.
pub(super) async fn event_loop(
    d: &mut Daemon,
    sup: &mut Supervised<'_>,
    kernel_rx: &mut mpsc::Receiver<RingItem>,
    source_rx: &mut mpsc::Receiver<SourceEvent>,
    notifier: Option<&Notifier>,
    health: &Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let liveness = health.register("event loop", LOOP_BOUND);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Signal)?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut stamp = profiles::stamp(&d.cfg.profiles);
    let mut file_rx = d.files.as_mut().map(|f| f.events());
    let mut listed_rx = d.intel.take_records();
    tokio::pin!(shutdown);
    loop {
        liveness.beat();
        tokio::select! {
            biased;
            _ = &mut shutdown => return Ok(()),
            how = sup.owner.exited() => {
                tracing::error!(?how, "the kernel owner thread ended: no map writes are possible any more");
                return Err(DaemonError::OwnerEnded(how));
            }
            (task, how) = sup.tasks.ended() => {
                tracing::error!(task, %how, "a task the agent cannot do without ended");
                return Err(DaemonError::TaskEnded { task, how });
            }
            how = files_ended(&mut d.files) => {
                tracing::error!(?how, "the fanotify thread ended: the agent stops, and the kernel lets watched opens through");
                // Close the group now: opens waiting on it go ahead at once.
                d.files.take();
                return Err(DaemonError::FileThreadEnded(how));
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading profiles");
                if let Some(n) = notifier {
                    n.reloading();
                }
                d.reload().await;
                stamp = profiles::stamp(&d.cfg.profiles);
                if let Some(n) = notifier {
                    n.ready("enforcing");
                }
            }
            _ = tick.tick() => {
                let now = profiles::stamp(&d.cfg.profiles);
                if now != stamp {
                    stamp = now;
                    tracing::info!("profiles directory changed: reloading");
                    d.reload().await;
                }
                d.watch_parents().await;
                d.expire_waits().await;
                d.sweep_holds(false).await;
                d.poll_intel().await;
                d.poll_counters().await;
                d.promote_due().await;
                d.collect_dead_containers(false).await;
                if let Err(e) = d.kernel.heartbeat().await {
                    tracing::error!(error = %ErrorChain(&e), "kernel heartbeat failed");
                }
                if crate::failpoint::armed("delivery_sender_exit").is_some() {
                    if let Some(dl) = &d.delivery {
                        dl.abort_sender();
                    }
                }
                if d.delivery.as_ref().is_some_and(|dl| !dl.is_running()) {
                    tracing::error!("the delivery sender ended");
                    return Err(DaemonError::DeliveryEnded);
                }
            }
            Some(news) = source_rx.recv() => {
                if matches!(news, SourceEvent::Stopped { .. }) {
                    // A short-lived container's engine can report its end before we have
                    // read what it did: take the kernel records already here while its row,
                    // which names the container and pod in them, is still in the table.
                    for _ in 0..KERNEL_BATCH {
                        match kernel_rx.try_recv() {
                            Ok(item) => d.on_ring(item).await,
                            Err(_) => break,
                        }
                    }
                }
                d.on_source(news).await
            }
            Some(listed) = listed_rx.recv() => d.on_listed_exec(listed),
            Some(first) = async { match &mut file_rx { Some(rx) => rx.recv().await, None => None } } => {
                d.on_file(first);
                for _ in 1..FILE_BATCH {
                    match file_rx.as_mut().map(|rx| rx.try_recv()) {
                        Some(Ok(fev)) => d.on_file(fev),
                        _ => break,
                    }
                }
            }
            first = kernel_rx.recv() => {
                let Some(first) = first else {
                    return Err(DaemonError::TaskEnded {
                        task: "ring reader",
                        how: supervise::TaskEnd::Returned,
                    });
                };
                d.on_ring(first).await;
                for _ in 1..KERNEL_BATCH {
                    match kernel_rx.try_recv() {
                        Ok(item) => d.on_ring(item).await,
                        Err(_) => break,
                    }
                }
            }
        }
        d.sinks.flush();
        d.record_handled().await;
    }
}
