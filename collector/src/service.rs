//! The `seawall.v1.Collector` gRPC service: the boundary where generated types become domain ones.

use std::sync::Arc;

use seawall_proto::pb::{self, collector_server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::filter::Filter;
use crate::store::{Record, Store};

/// Largest `Query` answer.
const QUERY_MAX: usize = 10_000;

pub struct CollectorService {
    store: Arc<Store>,
    /// Without mutual TLS the agent's claimed id is taken as its identity (`--insecure` only).
    insecure: bool,
}

impl CollectorService {
    pub fn new(store: Arc<Store>, insecure: bool) -> Self {
        CollectorService { store, insecure }
    }
}

impl From<Record> for pb::StoredEvent {
    fn from(r: Record) -> Self {
        pb::StoredEvent {
            id: r.id,
            agent: r.agent,
            received: r.received,
            event: Some(pb::Event::from(r.event)),
            instance: r.instance,
        }
    }
}

fn store_error(e: crate::store::StoreError) -> Status {
    let e = crate::ErrorChain(&e);
    tracing::error!(error = %e, "event store failed");
    Status::unavailable(format!("collector cannot store events: {e}"))
}

#[tonic::async_trait]
impl collector_server::Collector for CollectorService {
    type PublishStream = ReceiverStream<Result<pb::PublishAck, Status>>;
    type SubscribeStream = ReceiverStream<Result<pb::StoredEvent, Status>>;

    async fn publish(
        &self,
        request: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<Response<Self::PublishStream>, Status> {
        let cert_identity = request.peer_certs().and_then(|certs| {
            certs
                .first()
                .and_then(|c| crate::identity::from_certificate_der(c))
        });
        if cert_identity.is_none() && !self.insecure {
            // Unreachable with client_ca set (the handshake requires a certificate), kept so a
            // misconfiguration can never let an anonymous agent in.
            return Err(Status::unauthenticated("a client certificate is required"));
        }
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(?peer, agent = ?cert_identity, error = %status, "publish stream failed");
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let agent = match &cert_identity {
                    Some(a) => a.clone(),
                    None if !batch.agent_id.is_empty() => batch.agent_id.clone(),
                    None => {
                        let _ = tx
                            .send(Err(Status::invalid_argument(
                                "agent_id is required when the collector runs --insecure",
                            )))
                            .await;
                        break;
                    }
                };
                let intake = crate::intake::decode(batch.events, &crate::intake::AnyNode);
                for r in &intake.rejected {
                    tracing::warn!(?peer, agent, seq = r.seq, reason = %r.reason, "rejected an event");
                }
                if intake.bounded > 0 {
                    tracing::warn!(
                        ?peer,
                        agent,
                        events = intake.bounded,
                        "stored oversized events cut to size"
                    );
                }
                let (events, rejected) = (intake.events, intake.rejected);
                let s = store.clone();
                let a = agent.clone();
                let instance = batch.instance;
                let result =
                    tokio::task::spawn_blocking(move || s.append(&a, &instance, events)).await;
                let ack = match result {
                    Ok(Ok(appended)) => {
                        tracing::debug!(
                            agent,
                            acked_seq = appended.acked_seq,
                            stored = appended.stored,
                            duplicates = appended.duplicates,
                            "batch stored"
                        );
                        Ok(pb::PublishAck {
                            acked_seq: appended.acked_seq,
                            duplicates: appended.duplicates,
                            rejected,
                        })
                    }
                    Ok(Err(e)) => Err(store_error(e)),
                    Err(e) => Err(Status::internal(format!("store task failed: {e}"))),
                };
                let failed = ack.is_err();
                if tx.send(ack).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        let filter = Filter::try_from(req.filter.unwrap_or_default())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut cursor = if req.after_id > 0 {
            req.after_id
        } else if filter.since.is_some() {
            0
        } else {
            self.store.last_id()
        };
        let store = self.store.clone();
        let mut last_id = store.watch_last_id();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let s = store.clone();
                let recs =
                    match tokio::task::spawn_blocking(move || s.read_after(cursor, 512)).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(store_error(e))).await;
                            return;
                        }
                        Err(_) => return,
                    };
                if recs.is_empty() {
                    tokio::select! {
                        changed = last_id.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                for r in recs {
                    cursor = r.id;
                    if filter.matches(&r) && tx.send(Ok(r.into())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let req = request.into_inner();
        let filter = Filter::try_from(req.filter.unwrap_or_default())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(QUERY_MAX),
        };
        let store = self.store.clone();
        let recs = tokio::task::spawn_blocking(move || {
            store.newest_matching(limit, |r| filter.matches(r))
        })
        .await
        .map_err(|e| Status::internal(format!("query task failed: {e}")))?
        .map_err(store_error)?;
        Ok(Response::new(pb::QueryResponse {
            events: recs.into_iter().map(Into::into).collect(),
        }))
    }

    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(pb::HealthResponse {
            status: "serving".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            last_id: self.store.last_id(),
            agents: self.store.agent_count() as u32,
        }))
    }
}
