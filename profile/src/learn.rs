//! Behaviour → profile: the TOML file `seawall profile learn` writes from what the containers of
//! some images did.
//!
//! The output is for a person to review, so every entry carries a comment saying how often and
//! when it was seen, and every generalisation says what it was made from. It is stable (the same
//! behaviour gives the same bytes: everything is sorted, nothing depends on the clock) and it
//! passes `seawall profile check`: anything a container made up that the language cannot express
//! (a path with glob characters, say) is left out and listed in a comment, never written raw.
//! Whatever was left out fails closed: once enforced, it is a violation.

mod generalise;
mod sections;
pub(crate) mod text;

use self::sections::{
    write_drift, write_exec, write_files, write_header, write_network, write_profile_table,
};
use self::text::timestamp;
use super::parse::valid_name;
use super::{ImageBehaviour, ImagePattern, Mode, Seen, UnixSeconds, DEFAULT_PROFILE_NAME};

/// What to learn: which images, and how to write the profile.
#[derive(Debug, Clone)]
pub struct LearnRequest {
    /// The behaviours of images matching any of these are merged, and these become `images`.
    pub images: Vec<ImagePattern>,
    /// `[profile] name`; derived from the first image pattern when absent.
    pub name: Option<String>,
    /// `[profile] mode`: audit (the default) or enforce.
    pub mode: Mode,
    /// Only what was last seen at or after this time.
    pub since: Option<UnixSeconds>,
}

/// A learned profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedProfile {
    /// Its `[profile] name`.
    pub name: String,
    /// The TOML text.
    pub text: String,
    /// The images (reference and digest) it was learned from, sorted.
    pub learned_from: Vec<(String, Option<String>)>,
    /// Categories whose list is incomplete because the agent's limit was reached.
    pub cut: Vec<&'static str>,
    /// Events never learned because the agent fell behind (every list may be incomplete).
    pub missed: u64,
}

/// Why no profile could be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LearnError {
    /// No `--image` was given.
    #[error("no image pattern given; name the images to learn from, e.g. `--image 'nginx*'`")]
    NoImages,
    /// `--mode off`.
    #[error("a learned profile audits or enforces; `off` is only a per-control mode")]
    ModeOff,
    /// The name breaks the profile language's rules.
    #[error("profile name `{name}` may only contain letters, digits, `.`, `_` and `-`, and must start with a letter or digit; e.g. `--name nginx-web`")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// `default` is reserved for `default.toml`.
    #[error("`default` is the fallback profile, which lives in `default.toml` and matches no image; pick another `--name`")]
    DefaultName,
    /// Nothing was recorded for the images.
    #[error("nothing was recorded for images matching {patterns}{since}; run the workload while the agent runs, or widen `--image`/`--since`")]
    NothingLearned {
        /// The patterns, quoted and comma-separated.
        patterns: String,
        /// ` since <time>` when `--since` was given.
        since: String,
    },
}

/// Writes the profile for the behaviours of images matching `req.images`.
pub fn learn_profile(
    behaviours: &[ImageBehaviour],
    req: &LearnRequest,
) -> Result<LearnedProfile, LearnError> {
    if req.images.is_empty() {
        return Err(LearnError::NoImages);
    }
    if req.mode == Mode::Off {
        return Err(LearnError::ModeOff);
    }
    let name = match &req.name {
        Some(n) if n == DEFAULT_PROFILE_NAME => return Err(LearnError::DefaultName),
        Some(n) if !valid_name(n) => return Err(LearnError::InvalidName { name: n.clone() }),
        Some(n) => n.clone(),
        None => derive_name(req.images[0].as_str()),
    };

    let mut selected: Vec<ImageBehaviour> = behaviours
        .iter()
        .filter(|b| {
            req.images
                .iter()
                .any(|p| p.matches(b.image(), b.image_id()))
        })
        .map(|b| match req.since {
            Some(t) => b.since(t),
            None => b.clone(),
        })
        .collect();
    selected.sort_by(|a, b| (&a.image, &a.image_id).cmp(&(&b.image, &b.image_id)));
    selected.retain(|b| !is_empty(b));
    let Some(first) = selected.first() else {
        return Err(LearnError::NothingLearned {
            patterns: req
                .images
                .iter()
                .map(|p| format!("`{}`", p.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            since: req
                .since
                .map(|t| format!(" since {}", timestamp(t)))
                .unwrap_or_default(),
        });
    };
    let mut all = ImageBehaviour::new(first.image.clone(), first.image_id.clone());
    for b in &selected {
        all.merge(b);
    }

    let mut out = String::new();
    write_header(&mut out, &selected, &all, req);
    write_profile_table(&mut out, &name, &selected, &all, req);
    write_drift(&mut out, &all);
    write_exec(&mut out, &all);
    write_files(&mut out, &all);
    write_network(&mut out, &all);

    Ok(LearnedProfile {
        name,
        text: out,
        learned_from: selected
            .iter()
            .map(|b| (b.image.clone(), b.image_id.clone()))
            .collect(),
        cut: all.cut_categories(),
        missed: all.missed.map_or(0, |m| m.count),
    })
}

fn is_empty(b: &ImageBehaviour) -> bool {
    b.containers.is_empty()
        && b.execs.is_empty()
        && b.drift.is_empty()
        && b.container_exec.is_none()
        && b.files_read.is_empty()
        && b.write_dirs.is_empty()
        && b.egress.is_empty()
        && b.listens.is_empty()
        && b.raw_sockets.is_none()
}

/// A profile name from an image pattern: `seawall-test/busybox:latest` → `seawall-test-busybox`,
/// `nginx*` → `nginx`, a digest → `image-<12 hex>`.
pub fn derive_name(pattern: &str) -> String {
    if let Some(hex) = pattern.strip_prefix("sha256:") {
        return format!("image-{}", &hex[..hex.len().min(12)]);
    }
    let last_slash = pattern.rfind('/').map_or(0, |i| i + 1);
    let without_tag = match pattern[last_slash..].find([':', '@']) {
        Some(i) => &pattern[..last_slash + i],
        None => pattern,
    };
    let mut name = String::new();
    for c in without_tag.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            name.push(c);
        } else if !name.ends_with('-') && c == '/' {
            name.push('-');
        }
    }
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() || name == DEFAULT_PROFILE_NAME || !valid_name(name) {
        "learned".to_string()
    } else {
        name.to_string()
    }
}

/// First and last time anything of `b` was seen.
fn span_of(b: &ImageBehaviour) -> Option<(UnixSeconds, UnixSeconds)> {
    let mut all: Vec<Seen> = Vec::new();
    all.extend(b.containers.iter().map(|(_, s)| *s));
    all.extend(b.execs.iter().map(|(_, s)| *s));
    all.extend(b.egress.iter().map(|(_, s)| *s));
    all.extend(b.listens.iter().map(|(_, s)| *s));
    all.extend(b.files_read.iter().map(|(_, s)| *s));
    all.extend(b.write_dirs.iter().map(|(_, s)| *s));
    all.extend(b.drift.iter().map(|(_, s)| *s));
    all.extend(b.container_exec);
    all.extend(b.raw_sockets);
    let first = all.iter().map(|s| s.first).min()?;
    let last = all.iter().map(|s| s.last).max()?;
    Some((first, last))
}

#[cfg(test)]
mod tests;
