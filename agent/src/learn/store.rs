//! Every image's summary, bounded: at most `per_category` entries per category in each (see
//! [`ImageBehaviour`]) and at most `max_images` images, the least recently seen going first
//! when a new one arrives. Whatever the containers do, memory and the state file stay under
//! `max_images` × [`BehaviourLimits::max_bytes_per_image`].

use std::collections::HashMap;

use seawall_profile::{BehaviourLimits, ImageBehaviour, UnixSeconds};
use serde::{Deserialize, Serialize};

use super::lesson::{ImageKey, Lesson};

/// The version of [`Snapshot`]'s layout; a state file of another version is not read.
pub const FORMAT: u32 = 1;

/// What the learner knows at one moment: the state file, and the answer to the local API's
/// `behaviour` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`FORMAT`].
    pub format: u32,
    /// The limits the summaries were kept within.
    pub limits: BehaviourLimits,
    /// Images kept at most.
    pub max_images: usize,
    /// Images dropped to make room for newer ones since the state was created.
    #[serde(default)]
    pub evicted: u64,
    /// Every image's summary, sorted by image.
    pub images: Vec<ImageBehaviour>,
}

/// The summaries in memory.
#[derive(Debug)]
pub struct BehaviourStore {
    images: HashMap<ImageKey, ImageBehaviour>,
    limits: BehaviourLimits,
    max_images: usize,
    evicted: u64,
    dirty: bool,
}

/// Why a saved state was not taken as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error("the state file has format {found}; this agent reads format {FORMAT}")]
    Format { found: u32 },
}

impl BehaviourStore {
    /// An empty store.
    pub fn new(limits: BehaviourLimits, max_images: usize) -> BehaviourStore {
        BehaviourStore {
            images: HashMap::new(),
            limits,
            max_images: max_images.max(1),
            evicted: 0,
            dirty: false,
        }
    }

    /// Takes the summaries of a saved state, within this store's limits (they may have been
    /// lowered since it was saved: what does not fit is cut, the newest kept).
    pub fn restore(&mut self, saved: Snapshot) -> Result<(), RestoreError> {
        if saved.format != FORMAT {
            return Err(RestoreError::Format {
                found: saved.format,
            });
        }
        self.evicted = self.evicted.saturating_add(saved.evicted);
        let mut images = saved.images;
        // Newest first, so that what does not fit is the least recently seen.
        images.sort_by_key(|b| std::cmp::Reverse(b.last_seen()));
        for mut b in images {
            b.trim(&self.limits);
            let key = ImageKey::of(&b);
            let room = self.images.len() < self.max_images;
            match self.images.get_mut(&key) {
                Some(mine) => mine.merge(&b),
                None if room => {
                    self.images.insert(key, b);
                }
                None => self.evicted += 1,
            }
        }
        Ok(())
    }

    /// Records what a lesson teaches, making room for a new image when needed; returns the
    /// image that was dropped for it, if one was.
    pub fn learn(&mut self, lesson: Lesson) -> Option<ImageKey> {
        self.dirty = true;
        let mut evicted = None;
        if !self.images.contains_key(&lesson.image) {
            evicted = self.make_room();
        }
        let b = self.images.entry(lesson.image.clone()).or_insert_with(|| {
            ImageBehaviour::new(lesson.image.image.clone(), lesson.image.image_id.clone())
        });
        lesson.teach(b, &self.limits);
        evicted
    }

    /// `count` events of the image's containers were never learned (the agent fell behind).
    pub fn missed(&mut self, image: ImageKey, count: u64, first: UnixSeconds, last: UnixSeconds) {
        self.dirty = true;
        if !self.images.contains_key(&image) {
            self.make_room();
        }
        self.images
            .entry(image.clone())
            .or_insert_with(|| ImageBehaviour::new(image.image, image.image_id))
            .record_missed(count, first, last);
    }

    /// Drops the least recently seen image when the store is full.
    fn make_room(&mut self) -> Option<ImageKey> {
        if self.images.len() < self.max_images {
            return None;
        }
        let oldest = self
            .images
            .iter()
            .min_by(|a, b| {
                (a.1.last_seen().unwrap_or(UnixSeconds::MIN), a.0)
                    .cmp(&(b.1.last_seen().unwrap_or(UnixSeconds::MIN), b.0))
            })
            .map(|(k, _)| k.clone())?;
        self.images.remove(&oldest);
        self.evicted += 1;
        self.dirty = true;
        Some(oldest)
    }

    /// Everything, sorted by image.
    pub fn snapshot(&self) -> Snapshot {
        let mut keys: Vec<&ImageKey> = self.images.keys().collect();
        keys.sort();
        Snapshot {
            format: FORMAT,
            limits: self.limits,
            max_images: self.max_images,
            evicted: self.evicted,
            images: keys.into_iter().map(|k| self.images[k].clone()).collect(),
        }
    }

    /// Whether anything changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Marks the store changed again (a save failed).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// How many images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether no image is known.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::lesson::Fact;

    fn key(image: &str) -> ImageKey {
        ImageKey::new(image, "").unwrap()
    }

    fn exec(image: &str, path: &str, at: UnixSeconds) -> Lesson {
        Lesson {
            image: key(image),
            at,
            fact: Fact::Exec {
                path: path.into(),
                session: false,
            },
        }
    }

    #[test]
    fn images_are_bounded_and_the_least_recently_seen_goes_first() {
        let limits = BehaviourLimits { per_category: 4 };
        let mut s = BehaviourStore::new(limits, 2);
        assert_eq!(s.learn(exec("a", "/bin/a", 10)), None);
        assert_eq!(s.learn(exec("b", "/bin/b", 5)), None);
        assert_eq!(s.learn(exec("a", "/bin/a2", 20)), None);
        assert_eq!(s.learn(exec("c", "/bin/c", 30)), Some(key("b")));
        let snap = s.snapshot();
        let images: Vec<&str> = snap.images.iter().map(|b| b.image()).collect();
        assert_eq!(images, ["a", "c"]);
        assert_eq!(snap.evicted, 1);
        // Whatever one image does, its categories stay within the limit.
        for i in 0..5_000 {
            s.learn(exec("a", &format!("/tmp/x{i}"), 40 + i));
        }
        let a = &s.snapshot().images[0];
        assert_eq!(a.execs().len(), 4);
        assert!(a.execs().cut().is_some());
        let bytes = serde_json::to_vec(&s.snapshot()).unwrap();
        assert!(
            bytes.len() < 2 * limits.max_bytes_per_image(),
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn a_saved_state_is_restored_within_the_current_limits() {
        let mut s = BehaviourStore::new(BehaviourLimits { per_category: 10 }, 8);
        for i in 0..10 {
            s.learn(exec("a", &format!("/bin/{i}"), i));
        }
        s.missed(key("b"), 3, 1, 2);
        assert!(s.take_dirty());
        assert!(!s.take_dirty());
        let saved: Snapshot =
            serde_json::from_slice(&serde_json::to_vec(&s.snapshot()).unwrap()).unwrap();
        assert_eq!(saved, s.snapshot());

        let mut smaller = BehaviourStore::new(BehaviourLimits { per_category: 3 }, 1);
        smaller.restore(saved.clone()).unwrap();
        let snap = smaller.snapshot();
        assert_eq!(snap.images.len(), 1, "one image fits");
        assert_eq!(snap.images[0].image(), "a", "the most recently seen stays");
        assert_eq!(snap.images[0].execs().len(), 3);
        assert_eq!(snap.evicted, 1);

        let mut future = saved;
        future.format = FORMAT + 1;
        assert_eq!(
            BehaviourStore::new(BehaviourLimits::default(), 8).restore(future),
            Err(RestoreError::Format { found: FORMAT + 1 })
        );
    }
}
