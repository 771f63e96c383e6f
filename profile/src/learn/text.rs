//! Wording and escaping: everything a container controls reaches the file through
//! [`toml_str`] or [`comment_safe`].

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{Seen, UnixSeconds};

/// A TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe inside a TOML comment: no line breaks or other control characters.
pub(super) fn comment_safe(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

pub(super) fn timestamp(t: UnixSeconds) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{t}"))
}

pub(super) fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `3 runs, first …, last …` (or `at …` when seen once).
pub(super) fn seen_text(seen: &Seen, one: &str, many: &str) -> String {
    let times = if seen.first == seen.last {
        format!("at {}", timestamp(seen.first))
    } else {
        format!(
            "first {}, last {}",
            timestamp(seen.first),
            timestamp(seen.last)
        )
    };
    format!("{}, {times}", plural(seen.count, one, many))
}

/// A few members of a generalised entry, for its comment.
pub(super) fn examples(members: &[String], strip: &str) -> String {
    const SHOWN: usize = 6;
    let mut list: Vec<String> = members
        .iter()
        .take(SHOWN)
        .map(|m| comment_safe(m.strip_prefix(strip).unwrap_or(m)))
        .collect();
    if members.len() > SHOWN {
        list.push(format!("and {} more", members.len() - SHOWN));
    }
    list.join(", ")
}

/// One array element with its comment.
pub(super) fn element(out: &mut String, value: &str, comment: &str) {
    let _ = writeln!(out, "    {value},  # {comment}");
}

/// The comment lines saying a list was cut, when it was.
pub(super) fn cut_note(out: &mut String, what: &str, of_paths: bool, cut: Option<&Seen>) {
    if let Some(c) = cut {
        let _ = writeln!(
            out,
            "# CUT: {} of further {what} were not recorded (the agent's per-image limit was \
             reached{}), {}.\n# This list is incomplete: once enforced, what was left out is a \
             violation.",
            plural(c.count, "observation", "observations"),
            if of_paths {
                ", or the path was too long"
            } else {
                ""
            },
            if c.first == c.last {
                format!("at {}", timestamp(c.first))
            } else {
                format!("from {} to {}", timestamp(c.first), timestamp(c.last))
            }
        );
    }
}
