//! A directory of profiles: loading (all-or-nothing), cross-file checks and image matching.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::diag::{CheckReport, Diagnostic, FileDiags, Position, Severity};
use super::parse::parse_profile;
use super::pod::{PodRef, PodSelector};
use super::{DriftPolicy, ExecPolicy, FilePolicy, Mode, NetworkPolicy, PathGlobs, Profile};

/// The name (and file stem) of the fallback profile.
pub const DEFAULT_PROFILE_NAME: &str = "default";

/// Where the daemon looks for profiles unless told otherwise (`--profiles DIR`).
pub const DEFAULT_PROFILES_DIR: &str = "/etc/seawall/profiles";

/// All profiles of a directory plus the default; immutable once loaded, so a reload builds a new
/// set and swaps it in whole.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    default: Profile,
    /// Non-default profiles in name order, which is also the tie-break order when matching.
    others: Vec<Profile>,
    /// Warnings found while loading (the set loaded despite them).
    warnings: Vec<Diagnostic>,
}

/// A parsed profile with the positions cross-file checks point at.
struct Loaded {
    profile: Profile,
    name_pos: Option<Position>,
    image_pos: Vec<Option<Position>>,
}

impl ProfileSet {
    /// Loads every `*.toml` file of `dir` (hidden files and other extensions are ignored). Any
    /// error rejects the whole set, so a caller reloading keeps its previous one. Without a
    /// `default.toml`, [`ProfileSet::builtin_default`]'s default applies.
    pub fn load_dir(dir: &Path) -> Result<ProfileSet, CheckReport> {
        if !dir.is_dir() {
            return Err(whole_path_error(
                dir,
                "not a directory; `--profiles` takes a directory of `*.toml` profiles",
            ));
        }
        let (loaded, report) = analyze(dir);
        if !report.is_ok() {
            return Err(report);
        }
        let mut default = None;
        let mut others = Vec::new();
        for l in loaded {
            if l.profile.is_default() {
                default = Some(l.profile);
            } else {
                others.push(l.profile);
            }
        }
        others.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ProfileSet {
            default: default.unwrap_or_else(builtin_default_profile),
            others,
            warnings: report.diagnostics,
        })
    }

    /// The set used when there is no `default.toml`: drift in audit mode, nothing else.
    pub fn builtin_default() -> ProfileSet {
        ProfileSet {
            default: builtin_default_profile(),
            others: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The profile for a container of image `image_ref` outside any pod. Same as
    /// [`ProfileSet::for_container`] with no pod.
    pub fn for_image(&self, image_ref: &str, image_digest: Option<&str>) -> &Profile {
        self.for_container(image_ref, image_digest, None)
    }

    /// The profile for a container. Precedence (`profiles/README.md`, "Which profile applies"):
    /// 1. a profile with a Kubernetes selector (`namespaces`, `pod_labels`) that selects the
    ///    container's pod, and whose `images`, if it has any, match: the most `pod_labels`
    ///    first, then one that also names images, then an exactly named namespace over a glob,
    ///    then profile name order;
    /// 2. an image digest match;
    /// 3. the most specific image glob (longest literal prefix, then a pattern without
    ///    wildcards, then profile name order);
    /// 4. the default.
    ///
    /// A profile with a selector never applies outside the pods it selects, whatever its
    /// images.
    pub fn for_container(
        &self,
        image_ref: &str,
        image_digest: Option<&str>,
        pod: Option<PodRef<'_>>,
    ) -> &Profile {
        if let Some(pod) = pod {
            let mut best: Option<(SelectorRank, &Profile)> = None;
            for p in &self.others {
                let Some(fit) = p.pods.fit(&pod) else {
                    continue;
                };
                let images_fit = p.images.iter().any(|i| i.matches(image_ref, image_digest));
                if !p.images.is_empty() && !images_fit {
                    continue;
                }
                let rank = SelectorRank {
                    pod_labels: fit.labels,
                    names_images: !p.images.is_empty(),
                    exact_namespace: fit.exact_namespace,
                    namespace: fit.namespace,
                };
                if best.is_none_or(|(b, _)| rank > b) {
                    best = Some((rank, p));
                }
            }
            if let Some((_, p)) = best {
                return p;
            }
        }
        let by_image = || self.others.iter().filter(|p| p.pods.is_empty());
        let by_digest = by_image().find(|p| {
            p.images
                .iter()
                .any(|i| i.specificity().is_none() && i.matches(image_ref, image_digest))
        });
        if let Some(p) = by_digest {
            return p;
        }
        let mut best: Option<((usize, bool), &Profile)> = None;
        for p in by_image() {
            for i in &p.images {
                let Some(spec) = i.specificity() else {
                    continue;
                };
                if best.is_some_and(|(b, _)| b >= spec) || !i.matches(image_ref, image_digest) {
                    continue;
                }
                best = Some((spec, p));
            }
        }
        best.map_or(&self.default, |(_, p)| p)
    }

    /// The default profile first, then the others in name order.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        std::iter::once(&self.default).chain(self.others.iter())
    }

    /// The fallback profile.
    pub fn default_profile(&self) -> &Profile {
        &self.default
    }

    /// Warnings found while loading; the set loaded despite them.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The set with every profile `promote` names (by its `enforce_after` having fired) in its
    /// promoted form ([`Profile::promoted`]); profiles without `enforce_after` stay as they are.
    pub fn with_promoted(&self, promote: impl Fn(&Profile) -> bool) -> ProfileSet {
        let swap = |p: &Profile| {
            if promote(p) {
                p.promoted().unwrap_or_else(|| p.clone())
            } else {
                p.clone()
            }
        };
        ProfileSet {
            default: swap(&self.default),
            others: self.others.iter().map(swap).collect(),
            warnings: self.warnings.clone(),
        }
    }
}

/// How specifically a profile's Kubernetes selector picks a container; fields compare in
/// order, larger wins (the precedence of [`ProfileSet::for_container`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SelectorRank {
    pod_labels: usize,
    names_images: bool,
    exact_namespace: bool,
    namespace: bool,
}

fn builtin_default_profile() -> Profile {
    Profile {
        name: DEFAULT_PROFILE_NAME.to_string(),
        source: PathBuf::from("<builtin>"),
        description: Some("built-in default: report drift, nothing else".into()),
        mode: Mode::Audit,
        images: Vec::new(),
        pods: PodSelector::default(),
        drift: DriftPolicy {
            mode: Mode::Audit,
            allow: Vec::new(),
            allow_anonymous_exec: false,
        },
        exec: ExecPolicy {
            mode: Mode::Audit,
            allow: None,
            deny: Vec::new(),
            container_exec: Mode::Off,
        },
        files: FilePolicy {
            mode: Mode::Audit,
            deny: PathGlobs::default(),
            read_only: PathGlobs::default(),
            monitor: PathGlobs::default(),
        },
        network: NetworkPolicy {
            mode: Mode::Audit,
            egress_allow: None,
            egress_deny: Vec::new(),
            listen_allow: None,
            block_raw_sockets: false,
        },
        intel: None,
        enforce_after: None,
    }
}

/// Checks a profile file, or every `*.toml` file of a directory together (duplicate names and
/// overlapping image patterns are only visible across files). This is `seawall profile check`.
pub fn check_path(path: &Path) -> CheckReport {
    analyze(path).1
}

/// Loads one profile file on its own (`seawall profile diff`): the profile, or every problem
/// with it, as `seawall profile check` would print them.
pub fn load_file(path: &Path) -> Result<Profile, CheckReport> {
    load_file_with_warnings(path).map(|(profile, _)| profile)
}

/// [`load_file`] that also returns the file's warnings, for a caller that shows them
/// (`seawall-micro --profile FILE`, where `images` may be absent: the profile applies to the
/// process tree, not to images).
pub fn load_file_with_warnings(path: &Path) -> Result<(Profile, Vec<Diagnostic>), CheckReport> {
    if !path.is_file() {
        return Err(whole_path_error(
            path,
            "not a file; pass one profile file (`*.toml`)",
        ));
    }
    let (mut loaded, report) = analyze(path);
    match loaded.pop() {
        Some(l) if report.is_ok() => Ok((l.profile, report.diagnostics)),
        _ => Err(report),
    }
}

/// A report of one error about a path as a whole (no position in it).
fn whole_path_error(path: &Path, message: &str) -> CheckReport {
    let mut report = CheckReport::default();
    report.diagnostics.push(Diagnostic {
        severity: Severity::Error,
        file: path.to_path_buf(),
        position: None,
        message: message.into(),
    });
    report
}

fn analyze(path: &Path) -> (Vec<Loaded>, CheckReport) {
    let mut report = CheckReport::default();
    let files = match profile_files(path) {
        Ok(f) => f,
        Err(message) => {
            report.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: path.to_path_buf(),
                position: None,
                message,
            });
            return (Vec::new(), report);
        }
    };
    if files.is_empty() {
        report.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            file: path.to_path_buf(),
            position: None,
            message: "no `*.toml` profiles here; the built-in default (drift audit) applies to every container".into(),
        });
    }
    let mut loaded = Vec::new();
    for file in files {
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                report.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    file: file.clone(),
                    position: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let mut d = FileDiags::new(&file, &text);
        if let Some(p) = parse_profile(&file, &mut d) {
            loaded.push(Loaded {
                name_pos: d.position(&p.name_span),
                image_pos: p.image_spans.iter().map(|s| d.position(s)).collect(),
                profile: p.profile,
            });
        }
        report.diagnostics.append(&mut d.out);
    }
    cross_file_checks(&loaded, &mut report);
    // File order, then position within the file, whichever check found the problem.
    report
        .diagnostics
        .sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
    let failed: Vec<&Path> = report.errors().map(|d| d.file.as_path()).collect();
    report.profiles_ok = loaded
        .iter()
        .filter(|l| !failed.contains(&l.profile.source.as_path()))
        .count();
    (loaded, report)
}

fn profile_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = fs::metadata(path).map_err(|e| {
        format!("cannot open: {e}; pass a profile file or a directory of `*.toml` profiles")
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = fs::read_dir(path).map_err(|e| format!("cannot list directory: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".toml") && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

fn located(file: &Path, pos: Option<Position>) -> String {
    match pos {
        Some(p) => format!("{}:{}:{}", file.display(), p.line, p.col),
        None => file.display().to_string(),
    }
}

fn cross_file_checks(loaded: &[Loaded], report: &mut CheckReport) {
    let mut names: HashMap<&str, &Loaded> = HashMap::new();
    let mut images: HashMap<&str, (&Loaded, Option<Position>)> = HashMap::new();
    for l in loaded {
        let p = &l.profile;
        if let Some(first) = names.get(p.name.as_str()) {
            report.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: p.source.clone(),
                position: l.name_pos,
                message: format!(
                    "profile name `{}` is already used by {}; each profile needs its own name",
                    p.name,
                    located(&first.profile.source, first.name_pos)
                ),
            });
            continue;
        }
        names.insert(&p.name, l);
        if p.is_default() {
            continue;
        }
        for (img, pos) in p.images.iter().zip(&l.image_pos) {
            match images.get(img.normalized()) {
                Some((first, first_pos)) if first.profile.name != p.name => {
                    report.diagnostics.push(Diagnostic {
                        severity: Severity::Warning,
                        file: p.source.clone(),
                        position: *pos,
                        message: format!(
                            "image pattern `{}` is also claimed by profile `{}` at {}; only `{}` \
                             applies to those images (first by name); make one pattern more \
                             specific or merge the profiles",
                            img.as_str(),
                            first.profile.name,
                            located(&first.profile.source, *first_pos),
                            first.profile.name.as_str().min(p.name.as_str()),
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    images.insert(img.normalized(), (l, *pos));
                }
            }
        }
    }
}
