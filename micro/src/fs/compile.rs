//! Profile file and exec controls → Landlock rules on the snapshot.
//!
//! Landlock only grants: a right reaches a file when a rule on the file or on any directory
//! above it grants it. So every "not here" in a profile becomes "grant everywhere else": a
//! directory that holds nothing forbidden below it gets one rule for its whole hierarchy; a
//! directory that does gets only the rights nothing below forbids, and its entries get the rest
//! one by one. Entries created later inherit only the hierarchy rules, which is what keeps a new
//! file from being executed (drift) or a new `read_only` match from being created.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use seawall_profile::{PathGlobs, PathRule};

use super::rights::*;
use super::scope::PatternScope;
use super::walk::{FileId, NodeKind, Snapshot};

/// What the filesystem part of a profile asks Landlock for (only controls in `enforce` mode).
#[derive(Debug, Default)]
pub struct FsIntent<'a> {
    /// Landlock ABI of the running kernel.
    pub abi: i32,
    /// Drift prevention: only files executable at start may run, and none of them is writable.
    pub drift: bool,
    /// `drift.allow`: hierarchies where written files may run anyway.
    pub drift_allow: &'a [PathRule],
    /// `exec.allow`, when present.
    pub exec_allow: Option<&'a [PathRule]>,
    /// `exec.deny`.
    pub exec_deny: &'a [PathRule],
    /// `files.deny`: no open at all.
    pub deny: Option<&'a PathGlobs>,
    /// `files.read_only`: no write, create, truncate, unlink or rename.
    pub read_only: Option<&'a PathGlobs>,
    /// W^X: no file under a procfs may be opened for writing, because `/proc/PID/mem` writes
    /// ignore page protections (code written onto code pages). Takes the write right there.
    pub shut_proc_writes: bool,
}

/// The rules to install, and what they mean for later predictions.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Rights the ruleset handles (everything else is not restricted).
    pub handled: Rights,
    /// One rule per path: open it `O_PATH` and add `PathBeneath(fd, rights)`.
    pub rules: Vec<(PathBuf, Rights)>,
    /// The same rules by file identity, to predict what Landlock will answer.
    pub by_id: HashMap<FileId, Rights>,
    /// What these rules cannot cover, in words for `--check` and the startup event.
    pub uncovered: Vec<String>,
}

/// File globs with their canonical (symlink-free) variants and their scopes.
struct Globs {
    sets: Vec<PathGlobs>,
    scopes: Vec<PatternScope>,
}

impl Globs {
    fn new(g: Option<&PathGlobs>) -> Globs {
        let mut patterns: Vec<String> = Vec::new();
        for p in g.map(|g| g.patterns()).unwrap_or_default() {
            patterns.push(p.clone());
            if let Some(c) = canonical_pattern(p) {
                patterns.push(c);
            }
        }
        let scopes = patterns.iter().map(|p| PatternScope::new(p)).collect();
        let sets = PathGlobs::new(patterns).into_iter().collect();
        Globs { sets, scopes }
    }
    fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }
    fn matches(&self, path: &str) -> bool {
        self.sets.iter().any(|s| s.matches(path))
    }
    fn could_match_child(&self, dir: &str) -> bool {
        self.scopes.iter().any(|s| s.could_match_child(dir))
    }
    fn could_match_below(&self, dir: &str) -> bool {
        self.scopes.iter().any(|s| s.could_match_below(dir))
    }
}

/// `/bin/**` when `/bin` is a symlink to `/usr/bin` → `/usr/bin/**`: the literal directory
/// prefix of a glob resolved through symlinks, when that changes it.
fn canonical_pattern(p: &str) -> Option<String> {
    let comps: Vec<&str> = p.split('/').collect();
    let literal = comps
        .iter()
        .take_while(|c| !c.contains(['*', '?', '[', '{', '\\']))
        .count();
    // Only a directory prefix, never the last component (a file pattern names that file).
    let literal = literal.min(comps.len().saturating_sub(1));
    if literal <= 1 {
        return None;
    }
    let prefix = comps[..literal].join("/");
    let canon = std::fs::canonicalize(&prefix).ok()?;
    let canon = canon.to_str()?;
    (canon != prefix).then(|| {
        format!(
            "{}/{}",
            canon.trim_end_matches('/'),
            comps[literal..].join("/")
        )
    })
}

/// Exec rules plus the same rules with symlinks in their directories resolved.
fn canonical_rules(rules: &[PathRule]) -> Vec<PathRule> {
    let mut out = rules.to_vec();
    for r in rules {
        let (base, rebuild): (&str, fn(String) -> PathRule) = match r {
            PathRule::Exact(p) => (p.as_str(), PathRule::Exact),
            PathRule::Dir(d) => (d.as_str(), PathRule::Dir),
            PathRule::Tree(t) => (t.as_str(), PathRule::Tree),
        };
        let Ok(c) = std::fs::canonicalize(base) else {
            continue;
        };
        let mut c = c.to_string_lossy().into_owned();
        if base.ends_with('/') && !c.ends_with('/') {
            c.push('/');
        }
        if c != base {
            out.push(rebuild(c));
        }
    }
    out
}

fn path_str(p: &Path) -> std::borrow::Cow<'_, str> {
    p.to_string_lossy()
}

/// Whether a directory path is the base of a `Tree` (`/d/**`) or `Dir` (`/d/*`) rule.
fn is_base_of(rule: &PathRule, dir: &str, tree: bool) -> bool {
    let base = match (rule, tree) {
        (PathRule::Tree(t), true) => t,
        (PathRule::Dir(d), false) => d,
        _ => return false,
    };
    base.trim_end_matches('/') == dir.trim_end_matches('/')
}

fn any_matches(rules: &[PathRule], path: &str) -> bool {
    rules.iter().any(|r| r.matches(path))
}

/// Compiles the intent onto the snapshot.
pub fn compile(snap: &Snapshot, intent: &FsIntent<'_>) -> Compiled {
    let known = known_by_abi(intent.abi);
    let deny = Globs::new(intent.deny);
    let read_only = Globs::new(intent.read_only);
    let exec_deny = canonical_rules(intent.exec_deny);
    let exec_allow = intent.exec_allow.map(canonical_rules);
    let drift_allow = canonical_rules(intent.drift_allow);
    let exec_handled = intent.drift || exec_allow.is_some() || !exec_deny.is_empty();
    let mut handled = 0;
    if exec_handled {
        handled |= EXECUTE;
    }
    if intent.drift || intent.shut_proc_writes || !deny.is_empty() || !read_only.is_empty() {
        handled |= WRITE_ANY;
    }
    if !deny.is_empty() {
        handled |= READ_ANY;
    }
    if handled != 0 {
        // Every ruleset refuses cross-directory renames unless REFER is granted somewhere;
        // granting it keeps them working, and Landlock still refuses any move that would give
        // a file more rights than it had.
        handled |= REFER;
    }
    handled &= known;
    let mut out = Compiled {
        handled,
        ..Compiled::default()
    };
    if handled == 0 {
        return out;
    }
    let grant_based_exec = intent.drift || exec_allow.is_some();
    let base = if grant_based_exec {
        handled & !EXECUTE
    } else {
        handled
    };

    let n = snap.nodes.len();
    let mut forbid_sub = vec![0 as Rights; n];
    let mut forbid_here = vec![0 as Rights; n];
    let mut extra_sub = vec![0 as Rights; n];
    let mut file_grant: HashMap<FileId, Rights> = HashMap::new();
    let in_drift_allow = |p: &str, is_dir: bool| {
        drift_allow
            .iter()
            .any(|r| r.matches(p) || (is_dir && is_base_of(r, p, true)))
    };

    for (i, node) in snap.nodes.iter().enumerate() {
        let p = path_str(&node.path);
        let is_dir = matches!(node.kind, NodeKind::Dir { .. });
        if deny.matches(&p) {
            forbid_sub[i] |= handled & !(REMOVE_ANY | REFER);
        }
        if read_only.matches(&p) {
            forbid_sub[i] |= if is_dir {
                WRITE_ANY & !REFER
            } else {
                WRITE_FILE | TRUNCATE
            };
        }
        let exec_ok =
            !any_matches(&exec_deny, &p) && exec_allow.as_ref().is_none_or(|a| any_matches(a, &p));
        match node.kind {
            NodeKind::File { exec } => {
                if any_matches(&exec_deny, &p) {
                    forbid_sub[i] |= EXECUTE;
                }
                let drift_ok = in_drift_allow(&p, false);
                if intent.drift && exec && !drift_ok {
                    // Nothing that may run may be written: W^X for the image's executables.
                    forbid_sub[i] |= WRITE_FILE | TRUNCATE;
                }
                let grant = if intent.drift {
                    (exec || drift_ok) && exec_ok
                } else {
                    exec_allow.as_ref().is_some_and(|a| any_matches(a, &p)) && exec_ok
                };
                if grant && grant_based_exec {
                    *file_grant.entry(node.id).or_default() |= EXECUTE;
                }
            }
            NodeKind::Dir { walked, pseudo } => {
                if exec_deny.iter().any(|r| is_base_of(r, &p, true)) {
                    forbid_sub[i] |= EXECUTE;
                }
                if !grant_based_exec && exec_deny.iter().any(|r| is_base_of(r, &p, false)) {
                    forbid_here[i] |= EXECUTE;
                }
                let tree_allowed = exec_allow
                    .as_ref()
                    .is_some_and(|a| a.iter().any(|r| is_base_of(r, &p, true)));
                if intent.drift {
                    if drift_allow.iter().any(|r| is_base_of(r, &p, true))
                        && (exec_allow.is_none() || tree_allowed)
                    {
                        extra_sub[i] |= EXECUTE;
                    }
                } else if tree_allowed {
                    extra_sub[i] |= EXECUTE;
                }
                if read_only.could_match_child(&p) {
                    forbid_here[i] |= MAKE_ANY | REMOVE_ANY;
                }
                if deny.could_match_child(&p) {
                    forbid_here[i] |= MAKE_ANY;
                }
                if !walked && !pseudo {
                    // Entries nobody listed: fail closed for whatever could match in there.
                    // (A kernel filesystem holds no file of the image; paths through its magic
                    // links, /proc/PID/root/…, resolve to the real files and their rules.)
                    if deny.could_match_below(&p) {
                        forbid_sub[i] |= handled & !(REMOVE_ANY | REFER);
                    }
                    if read_only.could_match_below(&p) {
                        forbid_sub[i] |= WRITE_ANY & !REFER;
                    }
                }
            }
            NodeKind::Special => {}
        }
    }
    if intent.shut_proc_writes {
        for &i in &snap.procfs {
            forbid_sub[i] |= WRITE_FILE | TRUNCATE;
        }
    }
    // A read-only entry must not be unlinked, renamed or replaced: its directory keeps no
    // remove right of its own (its other entries get theirs one by one).
    for (i, node) in snap.nodes.iter().enumerate() {
        if node.children.iter().any(|&c| {
            forbid_sub[c] & WRITE_FILE != 0 && read_only.matches(&path_str(&snap.nodes[c].path))
        }) {
            forbid_here[i] |= REMOVE_ANY;
        }
    }
    // An exact `exec.deny` path that does not exist yet: new entries of its directory must not
    // inherit execute.
    if !grant_based_exec {
        for r in &exec_deny {
            if let PathRule::Exact(p) = r {
                let path = Path::new(p);
                if snap.find(path).is_none() {
                    if let Some(parent) = path.parent().and_then(|d| snap.find(d)) {
                        forbid_here[parent] |= EXECUTE;
                    }
                }
            }
        }
    }
    // A file can only be refused file rights: anything else it "forbids" would needlessly take
    // rights such as listing or creating entries from the directories above it.
    for (i, node) in snap.nodes.iter().enumerate() {
        if !matches!(node.kind, NodeKind::Dir { .. }) {
            forbid_sub[i] &= FILE_RIGHTS;
        }
    }
    // Hard links: a rule attaches to the file, so what one name forbids, every name does.
    let mut by_id: HashMap<FileId, Rights> = HashMap::new();
    for (i, node) in snap.nodes.iter().enumerate() {
        if !matches!(node.kind, NodeKind::Dir { .. }) {
            *by_id.entry(node.id).or_default() |= forbid_sub[i];
        }
    }
    for (i, node) in snap.nodes.iter().enumerate() {
        if !matches!(node.kind, NodeKind::Dir { .. }) {
            forbid_sub[i] = by_id[&node.id];
        }
    }
    for g in file_grant.iter_mut() {
        *g.1 &= !by_id.get(g.0).copied().unwrap_or(0);
    }
    // Bottom-up: what is forbidden anywhere at or below each node. Children come after their
    // parent in the snapshot, so one reverse pass suffices.
    let mut below = vec![0 as Rights; n];
    for i in (0..n).rev() {
        below[i] |= forbid_sub[i] | forbid_here[i];
        for &c in &snap.nodes[i].children {
            below[i] |= below[c];
        }
    }
    let mut aliased_dirs = 0usize;
    let mut rules: HashMap<FileId, (PathBuf, Rights)> = HashMap::new();
    // Top-down: (node, rights still wanted for its subtree, rights already granted above).
    let mut stack: Vec<(usize, Rights, Rights)> = vec![(0, base, 0)];
    while let Some((i, want, inherited)) = stack.pop() {
        let node = &snap.nodes[i];
        let want = (want | extra_sub[i]) & !forbid_sub[i] & handled;
        match node.kind {
            NodeKind::Dir { walked, .. } => {
                if snap.aliases.get(&node.id).is_some_and(|a| a[0] != i) {
                    aliased_dirs += 1;
                    continue;
                }
                let mut hier = want & !below[i];
                if handled & WRITE_FILE != 0 && (hier | inherited) & WRITE_FILE == 0 {
                    // A file that could be created here could not be written: do not let it be
                    // created half-way (an empty file and EACCES).
                    hier &= !MAKE_REG;
                }
                if hier != 0 {
                    rules
                        .entry(node.id)
                        .or_insert_with(|| (node.path.clone(), 0))
                        .1 |= hier;
                }
                if walked {
                    let rest = want & !hier;
                    for &c in &node.children {
                        stack.push((c, rest, inherited | hier));
                    }
                }
            }
            NodeKind::File { .. } | NodeKind::Special => {
                let r = (want | file_grant.get(&node.id).copied().unwrap_or(0)) & FILE_RIGHTS;
                if r != 0 {
                    rules
                        .entry(node.id)
                        .or_insert_with(|| (node.path.clone(), 0))
                        .1 |= r;
                }
            }
        }
    }
    if aliased_dirs > 0 {
        out.uncovered.push(format!(
            "{aliased_dirs} directories are mounted at a second path; their rules follow the first path"
        ));
    }
    if !snap.truncated.is_empty() {
        out.uncovered.push(format!(
            "the filesystem walk stopped at its entry limit in {} directories (first: {}); \
             files there get no rules of their own (not executable under drift)",
            snap.truncated.len(),
            snap.truncated[0].display()
        ));
    }
    for (g, what) in [
        (intent.deny, "files.deny"),
        (intent.read_only, "files.read_only"),
    ] {
        for p in g.map(|g| g.patterns()).unwrap_or_default() {
            let literal_dir = !p.starts_with("**")
                && !p
                    .rsplit_once('/')
                    .is_some_and(|(dir, _)| dir.contains("**"));
            if !literal_dir {
                out.uncovered.push(format!(
                    "{what} `{p}`: a matching path created later inside a directory that did \
                     not exist at start is not covered"
                ));
            }
        }
    }
    for (id, (path, r)) in rules {
        out.by_id.insert(id, r);
        out.rules.push((path, r));
    }
    out.rules.sort();
    out
}

impl Compiled {
    /// The rights Landlock will grant on `path` (absolute, symlink-free, as this process sees
    /// it): the union of the rules on the file and on every directory above it.
    pub fn rights_at(&self, path: &Path) -> Rights {
        use std::os::unix::fs::MetadataExt;
        let mut r = 0;
        for p in path.ancestors() {
            if let Ok(m) = std::fs::metadata(p) {
                r |= self.by_id.get(&(m.dev(), m.ino())).copied().unwrap_or(0);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests;
