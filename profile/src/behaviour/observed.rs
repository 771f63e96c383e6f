//! Counted, bounded sets of what was seen: the building block of an image's behaviour summary.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::UnixSeconds;

/// How often and when something was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// How many times.
    pub count: u64,
    /// First time.
    pub first: UnixSeconds,
    /// Last time.
    pub last: UnixSeconds,
}

impl Seen {
    /// Seen once, at `at`.
    pub fn at(at: UnixSeconds) -> Seen {
        Seen {
            count: 1,
            first: at,
            last: at,
        }
    }

    /// Seen once more, at `at` (events may arrive slightly out of order).
    pub fn record(&mut self, at: UnixSeconds) {
        self.count = self.count.saturating_add(1);
        self.first = self.first.min(at);
        self.last = self.last.max(at);
    }

    /// Both histories as one.
    pub fn merge(&mut self, other: &Seen) {
        self.count = self.count.saturating_add(other.count);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

pub(super) fn record_opt(slot: &mut Option<Seen>, at: UnixSeconds) {
    match slot {
        Some(s) => s.record(at),
        None => *slot = Some(Seen::at(at)),
    }
}

pub(super) fn merge_opt(slot: &mut Option<Seen>, other: Option<&Seen>) {
    match (slot.as_mut(), other) {
        (Some(s), Some(o)) => s.merge(o),
        (None, Some(o)) => *slot = Some(*o),
        (_, None) => {}
    }
}

/// A bounded set of distinct things seen, each with its [`Seen`], plus what was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Ord",
    deserialize = "K: Deserialize<'de> + Ord"
))]
pub struct Observed<K: Ord> {
    #[serde(with = "entry_list")]
    entries: BTreeMap<K, Seen>,
    /// Observations that were not recorded: the category was full, or the key was unusable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cut: Option<Seen>,
}

impl<K: Ord> Default for Observed<K> {
    fn default() -> Self {
        Observed {
            entries: BTreeMap::new(),
            cut: None,
        }
    }
}

impl<K: Ord + Clone> Observed<K> {
    /// Counts `key` once more, or adds it if there is room for another distinct entry; otherwise
    /// counts it as cut. Returns whether it was recorded.
    pub fn record<Q>(&mut self, key: &Q, at: UnixSeconds, limit: usize) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(seen) = self.entries.get_mut(key) {
            seen.record(at);
            return true;
        }
        if self.entries.len() >= limit {
            self.refuse(at);
            return false;
        }
        self.entries.insert(key.to_owned(), Seen::at(at));
        true
    }

    /// Counts an observation that could not be recorded.
    pub fn refuse(&mut self, at: UnixSeconds) {
        record_opt(&mut self.cut, at);
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Seen)> {
        self.entries.iter()
    }

    /// How many distinct entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What was left out, if anything: the list is incomplete.
    pub fn cut(&self) -> Option<&Seen> {
        self.cut.as_ref()
    }

    /// Whether `key` was recorded.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.contains_key(key)
    }

    /// Both as one, without a limit (used to merge the images one profile is learned from).
    pub fn merge(&mut self, other: &Observed<K>) {
        for (k, s) in &other.entries {
            match self.entries.get_mut(k) {
                Some(mine) => mine.merge(s),
                None => {
                    self.entries.insert(k.clone(), *s);
                }
            }
        }
        merge_opt(&mut self.cut, other.cut.as_ref());
    }

    /// Only what was last seen at or after `since`.
    pub fn since(&self, since: UnixSeconds) -> Observed<K> {
        Observed {
            entries: self
                .entries
                .iter()
                .filter(|(_, s)| s.last >= since)
                .map(|(k, s)| (k.clone(), *s))
                .collect(),
            cut: self.cut.filter(|c| c.last >= since),
        }
    }

    /// Shrinks to `limit` entries (after a restart with a lower limit), keeping the most recently
    /// seen; what goes is counted as cut.
    pub fn trim(&mut self, limit: usize) {
        if self.entries.len() <= limit {
            return;
        }
        let mut by_recency: Vec<(&K, &Seen)> = self.entries.iter().collect();
        by_recency.sort_by(|a, b| b.1.last.cmp(&a.1.last).then_with(|| a.0.cmp(b.0)));
        let dropped: Vec<(K, Seen)> = by_recency[limit..]
            .iter()
            .map(|(k, s)| ((*k).clone(), **s))
            .collect();
        for (k, s) in dropped {
            self.entries.remove(&k);
            merge_opt(&mut self.cut, Some(&s));
        }
    }
}

/// `entries` as a JSON array of `{key, count, first, last}`: map keys that are not strings
/// (destinations) cannot be JSON object keys.
mod entry_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize)]
    struct EntryRef<'a, K> {
        key: &'a K,
        count: u64,
        first: UnixSeconds,
        last: UnixSeconds,
    }

    #[derive(Deserialize)]
    struct Entry<K> {
        key: K,
        count: u64,
        first: UnixSeconds,
        last: UnixSeconds,
    }

    pub fn serialize<K: Serialize, S: Serializer>(
        map: &BTreeMap<K, Seen>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(key, seen)| EntryRef {
            key,
            count: seen.count,
            first: seen.first,
            last: seen.last,
        }))
    }

    pub fn deserialize<'de, K, D>(d: D) -> Result<BTreeMap<K, Seen>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        D: Deserializer<'de>,
    {
        let list: Vec<Entry<K>> = Vec::deserialize(d)?;
        let mut map = BTreeMap::new();
        for e in list {
            let seen = Seen {
                count: e.count,
                first: e.first,
                last: e.last,
            };
            // A duplicate in a hand-edited file adds up rather than failing the whole state.
            map.entry(e.key)
                .and_modify(|s: &mut Seen| s.merge(&seen))
                .or_insert(seen);
        }
        Ok(map)
    }
}
