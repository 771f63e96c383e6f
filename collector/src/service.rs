//! The `seawall.v1.Collector` gRPC service: the boundary where generated types become domain ones.

use std::sync::Arc;

use seawall_proto::pb::{self, collector_server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::filter::Filter;
use crate::identity::{peer_from_der, Peer, Role, RolesConfig};
use crate::metrics::CollectorMetrics;
use crate::store::backend::EventStore;
use crate::store::Record;

/// Largest `Query` answer.
const QUERY_MAX: usize = 10_000;

/// Who may call what.
#[derive(Debug, Clone)]
pub enum Access {
    /// Mutual TLS: each call needs a certificate with the right role ([`crate::identity`]).
    Roles(RolesConfig),
    /// `--insecure`: no certificates; the agent's claimed id is its identity. Local trials only.
    Insecure,
}

pub struct CollectorService {
    store: Arc<dyn EventStore>,
    access: Access,
    metrics: Arc<CollectorMetrics>,
    /// What `Health` answers: the same check the systemd watchdog follows.
    health: seawall_service::health::Health,
}

impl CollectorService {
    pub fn new(
        store: Arc<dyn EventStore>,
        access: Access,
        metrics: Arc<CollectorMetrics>,
        health: seawall_service::health::Health,
    ) -> Self {
        CollectorService {
            store,
            access,
            metrics,
            health,
        }
    }

    /// The caller, with its role (`None` under `--insecure`); `PERMISSION_DENIED` for a
    /// certificate that has no role.
    fn peer<T>(&self, request: &Request<T>) -> Result<Option<Peer>, Status> {
        let Access::Roles(roles) = &self.access else {
            return Ok(None);
        };
        let certs = request.peer_certs();
        // Unreachable with client_ca set (the handshake requires a certificate), kept so a
        // misconfiguration can never let an anonymous client in.
        let der = certs
            .as_ref()
            .and_then(|c| c.first())
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        peer_from_der(der, roles).map(Some).map_err(|e| {
            tracing::warn!(peer = ?request.remote_addr(), error = %e, "refused a client certificate");
            Status::permission_denied(e.to_string())
        })
    }

    /// The caller, when its certificate has `role`; `PERMISSION_DENIED` naming what is missing.
    fn authorize<T>(&self, request: &Request<T>, role: Role) -> Result<Option<Peer>, Status> {
        let peer = self.peer(request)?;
        if let Some(p) = peer.as_ref().filter(|p| p.role != role) {
            tracing::warn!(peer = ?request.remote_addr(), identity = %p.identity, has = %p.role, needs = %role, "refused a call outside the certificate's role");
            return Err(Status::permission_denied(format!(
                "certificate {:?} is a {} certificate; this call needs a {role} certificate",
                p.identity, p.role
            )));
        }
        Ok(peer)
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
        let cert_peer = self.authorize(&request, Role::Agent)?;
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _open = metrics.publish_stream();
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(?peer, agent = ?cert_peer.as_ref().map(|p| &p.identity), error = %status, "publish stream failed");
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let agent = match &cert_peer {
                    Some(p) => p.identity.clone(),
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
                let nodes: &dyn crate::intake::NodePolicy = match &cert_peer {
                    Some(p) => p,
                    None => &crate::intake::AnyNode,
                };
                let intake = crate::intake::decode(batch.events, nodes);
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
                let result = store.append(&agent, &batch.instance, events).await;
                let ack = match result {
                    Ok(appended) => {
                        metrics.batch_stored(&agent, &appended, rejected.len(), intake.bounded);
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
                    Err(e) => {
                        metrics.store_failed();
                        Err(store_error(e))
                    }
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
        self.authorize(&request, Role::Reader)?;
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
                let recs = match store.read_after(cursor, 512).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(store_error(e))).await;
                        return;
                    }
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
        self.authorize(&request, Role::Reader)?;
        let req = request.into_inner();
        let filter = Filter::try_from(req.filter.unwrap_or_default())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(QUERY_MAX),
        };
        let recs = self
            .store
            .newest_matching(limit, Box::new(move |r| filter.matches(r)))
            .await
            .map_err(store_error)?;
        Ok(Response::new(pb::QueryResponse {
            events: recs.into_iter().map(Into::into).collect(),
        }))
    }

    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        // Any role may ask; a certificate without one may not.
        self.peer(&request)?;
        let status = match self.health.check() {
            Ok(()) => "serving".to_string(),
            Err(why) => format!("unhealthy: {why}"),
        };
        Ok(Response::new(pb::HealthResponse {
            status,
            version: env!("CARGO_PKG_VERSION").into(),
            last_id: self.store.last_id(),
            agents: self.store.agent_count() as u32,
        }))
    }
}
