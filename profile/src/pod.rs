//! Kubernetes selectors: `[profile] namespaces` (globs on the pod's namespace) and
//! `[profile] pod_labels` (labels the pod must carry, with these values). A profile with a
//! selector applies only to containers of pods it selects; see `ProfileSet::for_container` for
//! how it ranks against image matches.

use std::collections::BTreeMap;

use globset::{Glob, GlobMatcher};
use toml_edit::TableLike;

use super::diag::FileDiags;
use super::parse::{get_str_array, type_name};

/// The pod a container belongs to, as the container runtime reports it.
#[derive(Debug, Clone, Copy)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    /// The pod's own labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// One `namespaces` entry.
#[derive(Debug, Clone)]
pub struct NamespacePattern {
    text: String,
    matcher: GlobMatcher,
}

impl NamespacePattern {
    /// A namespace name (`shop`) or a glob of them (`team-*`).
    pub fn parse(text: &str) -> Result<NamespacePattern, String> {
        if text.is_empty() {
            return Err("an empty namespace matches no pod; write a name like `shop` or a glob like `team-*`".into());
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-*?[]".contains(*c)))
        {
            return Err(format!(
                "`{text}`: Kubernetes namespaces are lowercase letters, digits and `-` (globs may add `*`, `?`, `[...]`); `{c}` cannot match any"
            ));
        }
        let matcher = Glob::new(text)
            .map_err(|e| format!("`{text}` is not a valid glob: {e}"))?
            .compile_matcher();
        Ok(NamespacePattern {
            text: text.to_string(),
            matcher,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it names one namespace exactly (no wildcard).
    pub fn is_exact(&self) -> bool {
        !self.text.contains(['*', '?', '['])
    }

    pub fn matches(&self, namespace: &str) -> bool {
        self.matcher.is_match(namespace)
    }
}

/// Which pods a profile applies to. Empty: it selects by image only.
#[derive(Debug, Clone, Default)]
pub struct PodSelector {
    /// Any of these namespaces; empty means any namespace.
    pub namespaces: Vec<NamespacePattern>,
    /// Every one of these labels, with exactly this value.
    pub labels: BTreeMap<String, String>,
}

/// How well a selector fits a pod: compared field by field, larger is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodMatch {
    /// How many `pod_labels` the pod carries (all of them, or the selector did not match).
    pub labels: usize,
    /// The pod's namespace is named exactly (not only by a glob).
    pub exact_namespace: bool,
    /// Some namespace was required at all.
    pub namespace: bool,
}

impl PodSelector {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.labels.is_empty()
    }

    /// How this selector fits `pod`, or `None` if it does not select it. An empty selector
    /// selects no pod (it is not a Kubernetes selector at all).
    pub fn fit(&self, pod: &PodRef<'_>) -> Option<PodMatch> {
        if self.is_empty() {
            return None;
        }
        let in_namespace = self.namespaces.iter().filter(|n| n.matches(pod.namespace));
        let exact_namespace = in_namespace.clone().any(NamespacePattern::is_exact);
        if !self.namespaces.is_empty() && in_namespace.count() == 0 {
            return None;
        }
        if !self
            .labels
            .iter()
            .all(|(k, v)| pod.labels.get(k) == Some(v))
        {
            return None;
        }
        Some(PodMatch {
            labels: self.labels.len(),
            exact_namespace,
            namespace: !self.namespaces.is_empty(),
        })
    }
}

/// `[profile] namespaces` and `[profile] pod_labels`.
pub(crate) fn parse_pod_selector(d: &mut FileDiags<'_>, t: &dyn TableLike) -> PodSelector {
    let mut sel = PodSelector::default();
    for (text, span) in get_str_array(d, t, "profile", "namespaces")
        .into_iter()
        .flatten()
    {
        match NamespacePattern::parse(&text) {
            Ok(p) => sel.namespaces.push(p),
            Err(e) => d.error(&span, format!("profile.namespaces: {e}")),
        }
    }
    if let Some(item) = t.get("pod_labels") {
        match item.as_table_like() {
            None => d.error(
                &item.span(),
                format!(
                    "`profile.pod_labels` must be a table, e.g. `pod_labels = {{ app = \"web\" }}`; found {}",
                    type_name(item)
                ),
            ),
            Some(labels) => {
                for (k, v) in labels.iter() {
                    match v.as_str() {
                        Some(s) if !k.is_empty() => {
                            sel.labels.insert(k.to_string(), s.to_string());
                        }
                        _ => d.error(
                            &v.span().or(item.span()),
                            format!(
                                "`profile.pod_labels.{k}` must be a string (label values are strings: `{k} = \"...\"`), found {}",
                                type_name(v)
                            ),
                        ),
                    }
                }
                if labels.is_empty() {
                    d.warning(
                        &item.span(),
                        "`profile.pod_labels` is empty, so it requires nothing; remove it or add labels",
                    );
                }
            }
        }
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(ns: &[&str], l: &[(&str, &str)]) -> PodSelector {
        PodSelector {
            namespaces: ns
                .iter()
                .map(|n| NamespacePattern::parse(n).unwrap())
                .collect(),
            labels: labels(l),
        }
    }

    #[test]
    fn namespaces_and_labels_must_all_fit() {
        let pod_labels = labels(&[("app", "web"), ("tier", "front")]);
        let pod = PodRef {
            namespace: "shop",
            labels: &pod_labels,
        };
        assert!(sel(&["shop"], &[]).fit(&pod).is_some());
        assert!(sel(&["sh*"], &[("app", "web")]).fit(&pod).is_some());
        assert!(sel(&["other", "shop"], &[]).fit(&pod).is_some());
        assert!(sel(&[], &[("app", "web"), ("tier", "front")])
            .fit(&pod)
            .is_some());
        assert!(sel(&["other"], &[]).fit(&pod).is_none());
        assert!(sel(&["shop"], &[("app", "api")]).fit(&pod).is_none());
        assert!(sel(&[], &[("missing", "x")]).fit(&pod).is_none());
        assert!(
            sel(&[], &[]).fit(&pod).is_none(),
            "no selector selects no pod"
        );
    }

    #[test]
    fn more_labels_then_exact_namespace_is_more_specific() {
        let pod_labels = labels(&[("app", "web"), ("tier", "front")]);
        let pod = PodRef {
            namespace: "shop",
            labels: &pod_labels,
        };
        let fit = |s: PodSelector| s.fit(&pod).unwrap();
        assert!(
            fit(sel(&[], &[("app", "web"), ("tier", "front")]))
                > fit(sel(&["shop"], &[("app", "web")]))
        );
        assert!(fit(sel(&["shop"], &[("app", "web")])) > fit(sel(&["sh*"], &[("app", "web")])));
        assert!(fit(sel(&["shop"], &[])) > fit(sel(&["s*"], &[])));
    }

    #[test]
    fn namespace_patterns_are_checked() {
        assert!(NamespacePattern::parse("team-*").unwrap().matches("team-a"));
        assert!(NamespacePattern::parse("shop").unwrap().is_exact());
        assert!(!NamespacePattern::parse("te?m").unwrap().is_exact());
        assert!(NamespacePattern::parse("").is_err());
        assert!(
            NamespacePattern::parse("Shop").is_err(),
            "uppercase matches no namespace"
        );
        assert!(NamespacePattern::parse("kube/system").is_err());
    }
}
