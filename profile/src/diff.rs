//! `seawall profile diff OLD NEW`: what changes in what a profile allows and enforces, entry by
//! entry, for review of a new learn run (or any edit).
//!
//! Profiles are compared as the daemon reads them, not as text: comments, order, spelling
//! (`127.0.0.1:80` and `127.0.0.1/32:80`) and the free-text description do not count, and a
//! control's mode is the one in force after inheritance, so switching `[profile] mode` shows as
//! every control that follows it.

use std::collections::BTreeSet;
use std::fmt;

use super::learn::text::toml_str;
use super::{HumanDuration, Mode, Profile};

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A single value changed.
    Value {
        /// `profile`, `drift`, `exec`, `files` or `network`.
        table: &'static str,
        /// The key (or control) in that table.
        key: &'static str,
        /// As it was.
        old: String,
        /// As it is.
        new: String,
    },
    /// Entries of a list were added or removed, or the list itself appeared or went.
    List {
        /// `profile`, `drift`, `exec`, `files` or `network`.
        table: &'static str,
        /// The list's key.
        key: &'static str,
        /// What the list's absence means, for lists whose absence allows everything.
        absent_means: Option<&'static str>,
        /// Whether the old profile had the list.
        old_present: bool,
        /// Whether the new one has it.
        new_present: bool,
        /// Entries only in the new profile, sorted.
        added: Vec<String>,
        /// Entries only in the old profile, sorted.
        removed: Vec<String>,
    },
}

/// Every difference between two profiles, in file order (table, then key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileDiff {
    /// The differences.
    pub changes: Vec<Change>,
}

impl ProfileDiff {
    /// True when the two profiles allow and enforce the same.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Entries added and removed, over all lists.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut added = 0;
        let mut removed = 0;
        let mut values = 0;
        for c in &self.changes {
            match c {
                Change::Value { .. } => values += 1,
                Change::List {
                    added: a,
                    removed: r,
                    ..
                } => {
                    added += a.len();
                    removed += r.len();
                }
            }
        }
        (added, removed, values)
    }
}

/// A list as compared: `None` when the profile leaves it out.
type Entries = Option<BTreeSet<String>>;

struct Differ<'a> {
    old: &'a Profile,
    new: &'a Profile,
    out: Vec<Change>,
}

impl Differ<'_> {
    fn value(&mut self, table: &'static str, key: &'static str, f: impl Fn(&Profile) -> String) {
        let (old, new) = (f(self.old), f(self.new));
        if old != new {
            self.out.push(Change::Value {
                table,
                key,
                old,
                new,
            });
        }
    }

    fn list(
        &mut self,
        table: &'static str,
        key: &'static str,
        absent_means: Option<&'static str>,
        f: impl Fn(&Profile) -> Entries,
    ) {
        let (old, new) = (f(self.old), f(self.new));
        let empty = BTreeSet::new();
        let (o, n) = (
            old.as_ref().unwrap_or(&empty),
            new.as_ref().unwrap_or(&empty),
        );
        let added: Vec<String> = n.difference(o).cloned().collect();
        let removed: Vec<String> = o.difference(n).cloned().collect();
        if added.is_empty() && removed.is_empty() && old.is_some() == new.is_some() {
            return;
        }
        self.out.push(Change::List {
            table,
            key,
            absent_means,
            old_present: old.is_some(),
            new_present: new.is_some(),
            added,
            removed,
        });
    }
}

fn strings<T>(items: &[T], f: impl Fn(&T) -> String) -> BTreeSet<String> {
    items.iter().map(f).collect()
}

fn mode(m: Mode) -> String {
    m.as_str().to_string()
}

/// What `new` allows and enforces differently from `old`.
pub fn diff_profiles(old: &Profile, new: &Profile) -> ProfileDiff {
    let mut d = Differ {
        old,
        new,
        out: Vec::new(),
    };
    d.value("profile", "name", |p| toml_str(&p.name));
    d.list("profile", "images", None, |p| {
        Some(strings(&p.images, |i| toml_str(i.as_str())))
    });
    d.value("profile", "mode", |p| mode(p.mode));
    d.value("profile", "enforce_after", |p| {
        p.enforce_after.as_ref().map_or("none".into(), |e| {
            toml_str(&HumanDuration(e.after).to_string())
        })
    });

    d.value("drift", "mode", |p| mode(p.drift.mode));
    d.list("drift", "allow", None, |p| {
        Some(strings(&p.drift.allow, |r| toml_str(&r.pattern())))
    });

    d.value("exec", "mode", |p| mode(p.exec.mode));
    d.list(
        "exec",
        "allow",
        Some("any executable not denied may run"),
        |p| {
            p.exec
                .allow
                .as_ref()
                .map(|a| strings(a, |r| toml_str(&r.pattern())))
        },
    );
    d.list("exec", "deny", None, |p| {
        Some(strings(&p.exec.deny, |r| toml_str(&r.pattern())))
    });
    d.value("exec", "container_exec", |p| mode(p.exec.container_exec));

    d.value("files", "mode", |p| mode(p.files.mode));
    d.list("files", "deny", None, |p| {
        Some(strings(p.files.deny.patterns(), |s| toml_str(s)))
    });
    d.list("files", "read_only", None, |p| {
        Some(strings(p.files.read_only.patterns(), |s| toml_str(s)))
    });
    d.list("files", "monitor", None, |p| {
        Some(strings(p.files.monitor.patterns(), |s| toml_str(s)))
    });

    d.value("network", "mode", |p| mode(p.network.mode));
    d.list(
        "network",
        "egress_allow",
        Some("any destination not denied may be reached"),
        |p| {
            p.network
                .egress_allow
                .as_ref()
                .map(|a| strings(a, |r| toml_str(&r.to_string())))
        },
    );
    d.list("network", "egress_deny", None, |p| {
        Some(strings(&p.network.egress_deny, |r| {
            toml_str(&r.to_string())
        }))
    });
    d.list(
        "network",
        "listen_allow",
        Some("any port may be bound"),
        |p| {
            p.network.listen_allow.as_ref().map(|a| {
                strings(a, |r| {
                    if r.first == r.last {
                        r.first.to_string()
                    } else {
                        toml_str(&r.to_string())
                    }
                })
            })
        },
    );
    d.value("network", "block_raw_sockets", |p| {
        p.network.block_raw_sockets.to_string()
    });
    ProfileDiff { changes: d.out }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Value {
                table,
                key,
                old,
                new,
            } => write!(f, "[{table}] {key}: {old} -> {new}"),
            Change::List {
                table,
                key,
                absent_means,
                old_present,
                new_present,
                added,
                removed,
            } => {
                write!(f, "[{table}] {key}:")?;
                match (old_present, new_present, absent_means) {
                    (false, true, Some(_)) => {
                        write!(f, " new list: anything not listed is now a violation")?
                    }
                    (true, false, Some(means)) => write!(f, " list removed: {means}")?,
                    _ => {}
                }
                for a in added {
                    write!(f, "\n  + {a}")?;
                }
                for r in removed {
                    write!(f, "\n  - {r}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for ProfileDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no differences in what the profiles allow or enforce");
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        let (added, removed, values) = self.counts();
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{} added, {removed} removed, {} changed",
            plural(added, "entry", "entries"),
            plural(values, "value", "values")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_file;

    fn profile(text: &str) -> Profile {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.toml");
        std::fs::write(&file, text).unwrap();
        load_file(&file).unwrap()
    }

    const OLD: &str = r#"
[profile]
name = "web"
images = ["nginx*"]
[drift]
prevent = true
[exec]
allow = ["/bin/sh", "/usr/sbin/nginx"]
[network]
egress_allow = ["127.0.0.1:9000/tcp"]
listen_allow = [80]
"#;

    #[test]
    fn identical_in_meaning_is_no_difference() {
        let reworded = r#"
# a comment, other order, other spelling
[profile]
images = ["nginx*"]
name = "web"
description = "changed text does not matter"
[network]
listen_allow = [80]
egress_allow = [{ cidr = "127.0.0.1/32", ports = 9000, protocol = "tcp" }]
[exec]
allow = ["/usr/sbin/nginx", "/bin/sh"]
[drift]
prevent = true
"#;
        let d = diff_profiles(&profile(OLD), &profile(reworded));
        assert!(d.is_empty(), "{d}");
        assert_eq!(
            d.to_string(),
            "no differences in what the profiles allow or enforce"
        );
    }

    #[test]
    fn entries_added_and_removed_per_section() {
        let new = r#"
[profile]
name = "web"
images = ["nginx*"]
mode = "enforce"
[drift]
prevent = true
[exec]
allow = ["/bin/sh", "/usr/bin/env"]
block_container_exec = true
[files]
read_only = ["/etc/nginx/**"]
[network]
listen_allow = [80, "8000-8001"]
"#;
        let d = diff_profiles(&profile(OLD), &profile(new));
        assert_eq!(
            d.to_string(),
            r#"[profile] mode: audit -> enforce
[drift] mode: audit -> enforce
[exec] mode: audit -> enforce
[exec] allow:
  + "/usr/bin/env"
  - "/usr/sbin/nginx"
[exec] container_exec: off -> enforce
[files] mode: audit -> enforce
[files] read_only:
  + "/etc/nginx/**"
[network] mode: audit -> enforce
[network] egress_allow: list removed: any destination not denied may be reached
  - "127.0.0.1/32:9000/tcp"
[network] listen_allow:
  + "8000-8001"
3 entries added, 2 removed, 6 values changed"#
        );
        assert_eq!(d.counts(), (3, 2, 6));
    }

    #[test]
    fn a_new_allow_list_says_what_it_means() {
        let before = "[profile]\nname = \"web\"\nimages = [\"nginx*\"]\n";
        let after = format!("{before}enforce_after = \"7d\"\n[exec]\nallow = []\n");
        let d = diff_profiles(&profile(before), &profile(&after));
        assert_eq!(
            d.to_string(),
            "[profile] enforce_after: none -> \"7d\"\n\
             [exec] allow: new list: anything not listed is now a violation\n\
             0 entries added, 0 removed, 1 value changed"
        );
    }

    #[test]
    fn load_file_wants_one_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_file(dir.path())
            .unwrap_err()
            .to_string()
            .contains("not a file"));
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[profile]\nname = \"bad\"\nimages = [\"x\"]\nmode = 1\n",
        )
        .unwrap();
        let e = load_file(&bad).unwrap_err();
        assert!(e.to_string().contains("bad.toml:4:8: error:"), "{e}");
    }
}
