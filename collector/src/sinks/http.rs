//! HTTP sinks: Splunk HTTP Event Collector, a generic JSON webhook, and Slack incoming webhooks.

use std::time::Duration;

use serde_json::json;

use super::{format, SinkError};
use crate::config::{ExportFormat, SinkKind};
use crate::store::Record;

enum Flavor {
    Splunk {
        token: String,
        index: Option<String>,
        sourcetype: String,
        format: ExportFormat,
    },
    Webhook {
        authorization: Option<String>,
        format: ExportFormat,
    },
    Slack,
}

pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    flavor: Flavor,
}

fn client(ca: Option<&std::path::Path>) -> Result<reqwest::Client, SinkError> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|source| SinkError::ReadCa {
            path: ca.to_path_buf(),
            source,
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|source| SinkError::BadCa {
            path: ca.to_path_buf(),
            source,
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(SinkError::Client)
}

impl HttpSink {
    /// An HTTP sink for a `splunk_hec`, `webhook` or `slack` table (`None` for other kinds).
    pub fn new(kind: &SinkKind) -> Option<Result<Self, SinkError>> {
        let (url, ca, flavor) = match kind {
            SinkKind::SplunkHec {
                url,
                token,
                ca,
                index,
                sourcetype,
                format,
            } => (
                url,
                ca,
                Flavor::Splunk {
                    token: token.clone(),
                    index: index.clone(),
                    sourcetype: sourcetype.clone(),
                    format: *format,
                },
            ),
            SinkKind::Webhook {
                url,
                ca,
                authorization,
                format,
            } => (
                url,
                ca,
                Flavor::Webhook {
                    authorization: authorization.clone(),
                    format: *format,
                },
            ),
            SinkKind::Slack { url, ca } => (url, ca, Flavor::Slack),
            SinkKind::File { .. } | SinkKind::Syslog { .. } => return None,
        };
        Some(client(ca.as_deref()).map(|client| HttpSink {
            client,
            url: url.clone(),
            flavor,
        }))
    }

    async fn post(&self, req: reqwest::RequestBuilder) -> Result<(), SinkError> {
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect();
        Err(SinkError::Status {
            status: status.as_u16(),
            body,
        })
    }

    /// Most events in one call of [`HttpSink::deliver`]: Slack takes one message per event,
    /// so a batch would be one request per event, each up to the request timeout.
    pub fn max_request(&self) -> usize {
        match self.flavor {
            Flavor::Slack => 1,
            _ => 256,
        }
    }

    pub async fn deliver(&mut self, records: &[Record]) -> Result<(), SinkError> {
        match &self.flavor {
            Flavor::Splunk {
                token,
                index,
                sourcetype,
                format,
            } => {
                // HEC takes several event objects concatenated in one body.
                let mut body = String::new();
                for r in records {
                    let mut v = json!({
                        "time": epoch_seconds(&r.event.time),
                        "host": r.event.node,
                        "source": "seawall",
                        "sourcetype": sourcetype,
                        "event": format::render(*format, r),
                    });
                    if let Some(i) = index {
                        v["index"] = json!(i);
                    }
                    body.push_str(&v.to_string());
                    body.push('\n');
                }
                let req = self
                    .client
                    .post(&self.url)
                    .header("Authorization", format!("Splunk {token}"))
                    .header("Content-Type", "application/json")
                    .body(body);
                self.post(req).await
            }
            Flavor::Webhook {
                authorization,
                format,
            } => {
                let events: Vec<_> = records.iter().map(|r| format::render(*format, r)).collect();
                let mut req = self
                    .client
                    .post(&self.url)
                    .json(&json!({ "events": events }));
                if let Some(a) = authorization {
                    req = req.header("Authorization", a);
                }
                self.post(req).await
            }
            Flavor::Slack => {
                for r in records {
                    let req = self
                        .client
                        .post(&self.url)
                        .json(&json!({ "text": format::slack_text(r) }));
                    self.post(req).await?;
                }
                Ok(())
            }
        }
    }
}

/// HEC's `time`: seconds since the epoch, with a fraction.
fn epoch_seconds(t: &str) -> f64 {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or(0.0)
}
