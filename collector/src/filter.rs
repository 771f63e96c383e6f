//! Event filters shared by `Subscribe`, `Query` and the sinks' severity thresholds.

use seawall_proto::event::{Action, Kind, Severity};
use seawall_proto::pb;
use time::OffsetDateTime;

use crate::store::Record;

/// A filter in domain terms. Every set condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub container: Option<String>,
    pub image: Option<String>,
    pub kinds: Vec<Kind>,
    pub actions: Vec<Action>,
    pub min_severity: Option<Severity>,
    pub since: Option<OffsetDateTime>,
    pub agent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter: unknown {field} value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("filter: `since` {value:?} is not an RFC 3339 time (e.g. 2026-05-01T10:00:00Z)")]
    Since { value: String },
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl TryFrom<pb::Filter> for Filter {
    type Error = FilterError;

    fn try_from(f: pb::Filter) -> Result<Self, Self::Error> {
        let kinds = f
            .kinds
            .iter()
            .map(|&v| {
                pb::kind_from_wire(v).ok_or(FilterError::UnknownEnum {
                    field: "kind",
                    value: v,
                })
            })
            .collect::<Result<_, _>>()?;
        let actions = f
            .actions
            .iter()
            .map(|&v| {
                pb::action_from_wire(v).ok_or(FilterError::UnknownEnum {
                    field: "action",
                    value: v,
                })
            })
            .collect::<Result<_, _>>()?;
        let min_severity = match f.min_severity {
            0 => None,
            v => Some(pb::severity_from_wire(v).ok_or(FilterError::UnknownEnum {
                field: "severity",
                value: v,
            })?),
        };
        let since = match non_empty(f.since) {
            None => None,
            Some(s) => Some(
                OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| FilterError::Since { value: s })?,
            ),
        };
        Ok(Filter {
            container: non_empty(f.container),
            image: non_empty(f.image),
            kinds,
            actions,
            min_severity,
            since,
            agent: non_empty(f.agent),
        })
    }
}

impl Filter {
    /// True when the record passes every condition.
    pub fn matches(&self, r: &Record) -> bool {
        let e = &r.event;
        if let Some(want) = &self.container {
            let Some(c) = &e.container else { return false };
            let by_id = c.id == *want || (want.len() >= 12 && c.id.starts_with(want.as_str()));
            if !by_id && c.name != *want {
                return false;
            }
        }
        if let Some(want) = &self.image {
            match &e.container {
                Some(c) if c.image.contains(want.as_str()) => {}
                _ => return false,
            }
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&e.kind) {
            return false;
        }
        if !self.actions.is_empty() && !self.actions.contains(&e.action) {
            return false;
        }
        if self.min_severity.is_some_and(|min| e.severity < min) {
            return false;
        }
        if let Some(since) = self.since {
            match OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339) {
                Ok(t) if t >= since => {}
                _ => return false,
            }
        }
        if self.agent.as_ref().is_some_and(|a| *a != r.agent) {
            return false;
        }
        true
    }
}
