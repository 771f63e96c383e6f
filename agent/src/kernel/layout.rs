//! The layout of the pinned maps, and what a starting agent does with the pins it finds:
//! it *adopts* maps of its own layout (a restart), *migrates* maps of another layout or of no
//! recorded layout (an upgrade: they are moved aside, fresh maps are made, the earlier
//! programs keep enforcing on the old ones until this agent's are attached, then the old are
//! removed), and *refuses* maps that claim its layout but do not have it, with a message
//! naming the map. aya itself reuses any pinned map of the right name, whatever its sizes.
//!
//! The layout is [`PIN_LAYOUT_VERSION`] plus a fingerprint of every pinned map's name, type,
//! key and value size, entries and flags, as this agent's object defines them; it is stamped
//! into the `LAYOUT` map beside them.

use std::{
    io,
    path::{Path, PathBuf},
};

use agent_common::{
    fnv1a_step, LayoutStamp, FNV_OFFSET, MAP_EVENTS, MAP_LAYOUT, PIN_LAYOUT_VERSION,
};
use aya::maps::{Array, MapData, MapInfo};
use aya_obj::maps::PinningType;

/// Why pins cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("reading the kernel programs' own map definitions")]
    Object(#[source] aya_obj::ParseError),
    #[error("pinned map {path} claims this agent's layout (version {PIN_LAYOUT_VERSION}) but its {what} is {pinned}, where this agent's programs define {expected}: refusing to adopt it. Remove the pins with `seawall uninstall --bpffs {dir}` (this stops enforcement until the agent starts again)", dir = .path.parent().map(|p| p.display().to_string()).unwrap_or_default(), path = .path.display())]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        pinned: u64,
        expected: u64,
    },
    #[error("reading pinned map {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("moving pinned maps of {dir} aside")]
    Retire {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The shape of one pinned map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapShape {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// What this agent's programs expect of the pinned maps.
#[derive(Debug, Clone)]
pub struct Layout {
    pub maps: Vec<MapShape>,
    pub fingerprint: u64,
}

impl Layout {
    /// The layout of `object`'s pinned maps, with the ring buffer of `ringbuf_bytes`.
    pub fn of_object(object: &[u8], ringbuf_bytes: u32) -> Result<Layout, LayoutError> {
        let obj = aya_obj::Object::parse(object).map_err(LayoutError::Object)?;
        let mut maps: Vec<MapShape> = obj
            .maps
            .iter()
            .filter(|(_, m)| m.pinning() == PinningType::ByName)
            .map(|(name, m)| MapShape {
                name: name.clone(),
                map_type: m.map_type(),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: if name == MAP_EVENTS {
                    ringbuf_bytes
                } else {
                    m.max_entries()
                },
                flags: m.map_flags(),
            })
            .collect();
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Layout {
            fingerprint: fingerprint(&maps),
            maps,
        })
    }

    /// The stamp written into `LAYOUT`.
    pub fn stamp(&self) -> LayoutStamp {
        LayoutStamp {
            version: PIN_LAYOUT_VERSION,
            _pad: 0,
            fingerprint: self.fingerprint,
        }
    }
}

fn fingerprint(maps: &[MapShape]) -> u64 {
    let mut h = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h = fnv1a_step(h, b);
        }
    };
    feed(&PIN_LAYOUT_VERSION.to_le_bytes());
    for m in maps {
        feed(m.name.as_bytes());
        feed(&[0]);
        for v in [m.map_type, m.key_size, m.value_size, m.max_entries, m.flags] {
            feed(&v.to_le_bytes());
        }
    }
    h
}

/// What a starting agent found in its bpffs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No pinned maps: a first start.
    Nothing,
    /// Maps of this agent's layout: adopt them.
    Same,
    /// Maps of another layout (`version` when one was recorded): migrate.
    Other { version: Option<u32> },
}

/// The map pins (files, not the link directories) directly in `dir`.
fn map_pins(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn read_stamp(path: &Path) -> Option<LayoutStamp> {
    let info = MapInfo::from_pin(path).ok()?;
    if info.value_size() as usize != std::mem::size_of::<LayoutStamp>() {
        return None;
    }
    let data = MapData::from_pin(path).ok()?;
    let array: Array<MapData, LayoutStamp> = Array::try_from(aya::maps::Map::Array(data)).ok()?;
    array.get(&0, 0).ok()
}

/// Looks at the pins in `dir` against `layout`.
pub fn inspect(dir: &Path, layout: &Layout) -> Result<Found, LayoutError> {
    let pins = map_pins(dir);
    if pins.is_empty() {
        return Ok(Found::Nothing);
    }
    let stamp = read_stamp(&dir.join(MAP_LAYOUT));
    match stamp {
        Some(s) if s.version == PIN_LAYOUT_VERSION && s.fingerprint == layout.fingerprint => {}
        other => {
            return Ok(Found::Other {
                version: other.map(|s| s.version),
            })
        }
    }
    // The stamp says "ours": every pin must then be exactly what the programs define.
    for shape in &layout.maps {
        let path = dir.join(&shape.name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| LayoutError::Read {
            path: path.clone(),
            source,
        })?;
        let pinned_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
        for (what, pinned, expected) in [
            ("map type", pinned_type, shape.map_type),
            ("key size", info.key_size(), shape.key_size),
            ("value size", info.value_size(), shape.value_size),
            ("max_entries", info.max_entries(), shape.max_entries),
            ("flags", info.map_flags(), shape.flags),
        ] {
            if pinned != expected {
                return Err(LayoutError::Mismatch {
                    path,
                    what,
                    pinned: pinned as u64,
                    expected: expected as u64,
                });
            }
        }
    }
    Ok(Found::Same)
}

/// Moves every map pin of `dir` into a `retired-<pid>` directory beside them, so the loader
/// makes fresh maps; the programs still attached keep theirs (they hold them by fd). Returns
/// the directory, to remove once this agent took over (or to move back if its start fails).
pub fn retire(dir: &Path) -> Result<PathBuf, LayoutError> {
    let err = |source| LayoutError::Retire {
        dir: dir.to_owned(),
        source,
    };
    let retired = dir.join(format!("{RETIRED_PREFIX}{}", std::process::id()));
    std::fs::create_dir_all(&retired).map_err(err)?;
    for pin in map_pins(dir) {
        if let Some(name) = pin.file_name() {
            std::fs::rename(&pin, retired.join(name)).map_err(err)?;
        }
    }
    Ok(retired)
}

/// Undoes [`retire`] after a failed start: this agent's fresh pins go, the old come back.
pub fn restore(dir: &Path, retired: &Path) {
    for pin in map_pins(dir) {
        let _ = std::fs::remove_file(pin);
    }
    for pin in map_pins(retired) {
        if let Some(name) = pin.file_name() {
            let _ = std::fs::rename(&pin, dir.join(name));
        }
    }
    let _ = std::fs::remove_dir(retired);
}

/// Removes the map pins this agent's start made (a failed first start leaves nothing).
pub fn remove_fresh(dir: &Path) {
    for pin in map_pins(dir) {
        let _ = std::fs::remove_file(pin);
    }
}

/// Where retired maps wait for the take-over.
pub const RETIRED_PREFIX: &str = "retired-";

/// Removes retired map pins (the earlier programs were released; the maps go with them).
pub fn remove_retired(dir: &Path) -> usize {
    let mut n = 0;
    for d in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if d.file_name().to_string_lossy().starts_with(RETIRED_PREFIX) {
            for pin in map_pins(&d.path()) {
                if std::fs::remove_file(pin).is_ok() {
                    n += 1;
                }
            }
            let _ = std::fs::remove_dir(d.path());
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str, max_entries: u32) -> MapShape {
        MapShape {
            name: name.into(),
            map_type: 1,
            key_size: 8,
            value_size: 4,
            max_entries,
            flags: 0,
        }
    }

    #[test]
    fn any_change_of_a_pinned_map_changes_the_fingerprint() {
        let a = fingerprint(&[shape("CONTAINER_INIT", 8192)]);
        assert_eq!(a, fingerprint(&[shape("CONTAINER_INIT", 8192)]));
        assert_ne!(a, fingerprint(&[shape("CONTAINER_INIT", 16)]));
        assert_ne!(a, fingerprint(&[shape("CONTAINER_INI", 8192)]));
        let mut wider = shape("CONTAINER_INIT", 8192);
        wider.value_size = 8;
        assert_ne!(a, fingerprint(&[wider]));
        assert_ne!(
            a,
            fingerprint(&[shape("CONTAINER_INIT", 8192), shape("LAYOUT", 1)])
        );
    }
}
