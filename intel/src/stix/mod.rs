//! STIX 2.1 bundles (`*.json`): the `indicator` objects, whose patterns say what to match.
//!
//! A TAXII 2.1 envelope (`{"objects": […]}` without `"type": "bundle"`) is read the same way,
//! and STIX 2.0 indicators (no `pattern_type`) count as STIX patterns. An indicator the producer
//! `revoked`, or whose `valid_until` has passed when the feed is loaded, is skipped and counted.
//! An indicator's name is its own `name`, else the name of what it `indicates` (a malware, a
//! campaign …) through a relationship in the same bundle.
//!
//! Errors (the file is refused) are for what breaks the specification: not JSON, not a bundle,
//! an indicator without a pattern, a bad timestamp, or a supported test whose value is not a
//! hash or an address. A valid pattern Seawall cannot enforce is not an error: it is listed in
//! [`Feed::unsupported`] with the reason.

mod lex;
mod pattern;

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{LineProblem, Problem, StixProblem};
use crate::feed::{Entry, Feed, FeedFormat, Unsupported};
use crate::indicator::{excerpt, Indicator, IpNet, Sha256};

pub use lex::SyntaxError;
pub use pattern::{Gap, PatternIndicators, ValueKind};

/// Why an indicator's pattern is not (fully) enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsupportedReason {
    /// `pattern_type` is not `stix` (e.g. `yara`, `sigma`, `snort`).
    PatternType(String),
    /// Part of the pattern Seawall does not match.
    Pattern(Gap),
}

impl fmt::Display for UnsupportedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsupportedReason::PatternType(t) => {
                write!(
                    f,
                    "pattern_type `{t}` is not matched (only `stix` patterns are)"
                )
            }
            UnsupportedReason::Pattern(g) => g.fmt(f),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow)]
    objects: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
struct IndicatorObject {
    pattern: Option<String>,
    pattern_type: Option<String>,
    name: Option<String>,
    #[serde(default)]
    revoked: bool,
    valid_until: Option<String>,
}

#[derive(Deserialize)]
struct RelationshipObject {
    relationship_type: Option<String>,
    source_ref: Option<String>,
    target_ref: Option<String>,
}

#[derive(Deserialize)]
struct NamedObject {
    name: Option<String>,
}

/// Types whose `name` an `indicates` relationship lends to an indicator.
const NAMED_TYPES: &[&str] = &[
    "malware",
    "campaign",
    "intrusion-set",
    "threat-actor",
    "tool",
    "attack-pattern",
    "infrastructure",
];

pub(crate) fn parse(bytes: &[u8], now: SystemTime) -> Result<Feed, LineProblem> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| LineProblem::new(line_of(bytes, e.valid_up_to()), Problem::NotUtf8))?;
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| {
        let line = e.line().max(1);
        if e.classify() == serde_json::error::Category::Data {
            LineProblem::new(line, Problem::NotABundle)
        } else {
            LineProblem::new(line, Problem::Json(e))
        }
    })?;
    let objects = match (envelope.kind.as_deref(), envelope.objects) {
        (None | Some("bundle"), Some(objects)) => objects,
        _ => return Err(LineProblem::new(1, Problem::NotABundle)),
    };

    let mut lines = LineCounter::new(text);
    let mut indicators = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut indicates: HashMap<String, String> = HashMap::new();
    for (position, raw) in objects.iter().enumerate() {
        let line = lines.line_at(raw.get());
        let bad = |object: &str, what| {
            LineProblem::new(
                line,
                Problem::Stix {
                    object: excerpt(object),
                    what,
                },
            )
        };
        let fallback_id = format!("object #{}", position + 1);
        let head: Head = serde_json::from_str(raw.get())
            .map_err(|e| bad(&fallback_id, StixProblem::Shape(e)))?;
        let id = head.id.unwrap_or(fallback_id);
        let shape = |e| bad(&id, StixProblem::Shape(e));
        match head.kind.as_deref() {
            None => return Err(bad(&id, StixProblem::Missing("type"))),
            Some("indicator") => {
                let object: IndicatorObject = serde_json::from_str(raw.get()).map_err(shape)?;
                indicators.push((line, id, object));
            }
            Some("relationship") => {
                let r: RelationshipObject = serde_json::from_str(raw.get()).map_err(shape)?;
                if let (Some("indicates"), Some(source), Some(target)) =
                    (r.relationship_type.as_deref(), r.source_ref, r.target_ref)
                {
                    indicates.entry(source).or_insert(target);
                }
            }
            Some(kind) if NAMED_TYPES.contains(&kind) => {
                let n: NamedObject = serde_json::from_str(raw.get()).map_err(shape)?;
                if let Some(name) = n.name {
                    names.insert(id, name);
                }
            }
            Some(_) => {}
        }
    }

    let now = OffsetDateTime::from(now);
    let mut feed = Feed::new(FeedFormat::Stix);
    for (line, id, object) in indicators {
        let bad = |what| {
            LineProblem::new(
                line,
                Problem::Stix {
                    object: excerpt(&id),
                    what,
                },
            )
        };
        let pattern = object
            .pattern
            .ok_or_else(|| bad(StixProblem::Missing("pattern")))?;
        if object.revoked {
            feed.revoked += 1;
            continue;
        }
        if let Some(until) = &object.valid_until {
            let until = OffsetDateTime::parse(until, &Rfc3339).map_err(|_| {
                bad(StixProblem::Timestamp {
                    property: "valid_until",
                    value: excerpt(until),
                })
            })?;
            if until <= now {
                feed.expired += 1;
                continue;
            }
        }
        let unsupported = |reason, partial| Unsupported {
            line,
            object: excerpt(&id),
            pattern: excerpt(&pattern),
            reason,
            partial,
        };
        match object.pattern_type.as_deref() {
            None | Some("stix") => {}
            Some(other) => {
                let reason = UnsupportedReason::PatternType(excerpt(other));
                feed.unsupported.push(unsupported(reason, false));
                continue;
            }
        }
        let found = PatternIndicators::of(&pattern);
        let name = object
            .name
            .clone()
            .or_else(|| indicates.get(&id).and_then(|t| names.get(t)).cloned());
        for (kind, value) in &found.values {
            let indicator = match kind {
                ValueKind::Sha256 => Sha256::parse(value).map(Indicator::Sha256),
                ValueKind::Address => IpNet::parse(value).map(Indicator::Net),
            }
            .map_err(|e| bad(StixProblem::Value(e)))?;
            feed.entries.push(Entry {
                indicator,
                line,
                name: name.clone(),
            });
        }
        if let Some(gap) = found.gaps.into_iter().next() {
            let partial = !found.values.is_empty();
            feed.unsupported
                .push(unsupported(UnsupportedReason::Pattern(gap), partial));
        }
    }
    Ok(feed)
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Line numbers of positions in one text, for positions met in increasing order (each
/// newline is counted once however many objects there are).
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> LineCounter<'a> {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The line where `part`, a slice of the text, starts.
    fn line_at(&mut self, part: &str) -> usize {
        let at = (part.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        let at = at.min(self.text.len());
        if at < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text.as_bytes()[self.offset..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = at;
        self.line
    }
}

#[cfg(test)]
mod tests;
