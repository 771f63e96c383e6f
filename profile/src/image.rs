//! Image patterns: globs on the image reference, or exact `sha256:` digests.
//!
//! References are normalised before matching so Docker Hub's implicit prefix does not matter:
//! `docker.io/library/nginx:1.27`, `library/nginx:1.27` and `nginx:1.27` are the same image, and
//! `docker.io/bitnami/redis` is `bitnami/redis`. A pattern without a tag matches every tag.

use globset::{GlobBuilder, GlobMatcher};

const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// Which images a profile applies to.
#[derive(Debug, Clone)]
pub enum ImagePattern {
    /// `sha256:<64 hex>`: the image id or a repo digest, exactly.
    Digest(String),
    /// A glob on the normalised image reference.
    Glob(ImageGlob),
}

/// A glob on the image reference (`*` does not cross `/`, `**` does).
#[derive(Debug, Clone)]
pub struct ImageGlob {
    /// As written in the profile.
    pub pattern: String,
    normalized: String,
    matcher: GlobMatcher,
}

impl PartialEq for ImagePattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ImagePattern::Digest(a), ImagePattern::Digest(b)) => a == b,
            (ImagePattern::Glob(a), ImagePattern::Glob(b)) => a.normalized == b.normalized,
            _ => false,
        }
    }
}

impl Eq for ImagePattern {}

impl ImagePattern {
    /// Parses a pattern, or explains what is wrong and what to write instead.
    pub fn parse(pattern: &str) -> Result<ImagePattern, String> {
        if pattern.is_empty() {
            return Err(
                "empty image pattern; write an image glob like `nginx*` or a digest `sha256:...`"
                    .into(),
            );
        }
        if let Some(hex) = pattern.strip_prefix("sha256:") {
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "`{pattern}` is not a full digest: write `sha256:` followed by 64 hex digits \
                     (`docker image inspect --format '{{{{.Id}}}}' IMAGE` prints it)"
                ));
            }
            return Ok(ImagePattern::Digest(pattern.to_ascii_lowercase()));
        }
        let normalized = normalize(pattern).to_string();
        let matcher = GlobBuilder::new(&normalized)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                format!("`{pattern}` is not a valid image glob ({e}); e.g. `nginx*` or `myorg/*`")
            })?
            .compile_matcher();
        Ok(ImagePattern::Glob(ImageGlob {
            pattern: pattern.to_string(),
            normalized,
            matcher,
        }))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            ImagePattern::Digest(d) => d,
            ImagePattern::Glob(g) => &g.pattern,
        }
    }

    /// The pattern after Docker Hub normalisation (used to spot two profiles claiming the same
    /// images).
    pub fn normalized(&self) -> &str {
        match self {
            ImagePattern::Digest(d) => d,
            ImagePattern::Glob(g) => &g.normalized,
        }
    }

    /// Whether this pattern matches the image. `image_digest` is the image id or a repo digest
    /// (`sha256:...` or `name@sha256:...`), when known.
    pub fn matches(&self, image_ref: &str, image_digest: Option<&str>) -> bool {
        match self {
            ImagePattern::Digest(d) => {
                digests_of(image_ref, image_digest).any(|x| x.eq_ignore_ascii_case(d))
            }
            ImagePattern::Glob(g) => ref_forms(image_ref).iter().any(|r| g.matcher.is_match(r)),
        }
    }

    /// How specific a glob is: longer literal prefix first, then a pattern with no wildcard at all.
    /// Digests are handled before any glob and return `None`.
    pub(crate) fn specificity(&self) -> Option<(usize, bool)> {
        match self {
            ImagePattern::Digest(_) => None,
            ImagePattern::Glob(g) => {
                let prefix = g.normalized.find(GLOB_CHARS).unwrap_or(g.normalized.len());
                Some((prefix, prefix == g.normalized.len()))
            }
        }
    }
}

/// Strips Docker Hub's implicit registry and `library/` namespace.
fn normalize(r: &str) -> &str {
    let r = r
        .strip_prefix("docker.io/")
        .or_else(|| r.strip_prefix("index.docker.io/"))
        .or_else(|| r.strip_prefix("registry-1.docker.io/"))
        .unwrap_or(r);
    r.strip_prefix("library/").unwrap_or(r)
}

/// The forms of a reference a glob is tried against: as given (normalised), without its digest,
/// and without its tag, so `nginx` matches `nginx:1.27` and `nginx:1.27` matches
/// `nginx:1.27@sha256:...`.
fn ref_forms(image_ref: &str) -> Vec<&str> {
    let full = normalize(image_ref);
    let mut forms = vec![full];
    if full.starts_with("sha256:") {
        return forms;
    }
    let no_digest = full.split_once('@').map_or(full, |(n, _)| n);
    if no_digest != full {
        forms.push(no_digest);
    }
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    if let Some(colon) = no_digest[last_slash..].rfind(':') {
        forms.push(&no_digest[..last_slash + colon]);
    }
    forms
}

fn digests_of<'a>(
    image_ref: &'a str,
    image_digest: Option<&'a str>,
) -> impl Iterator<Item = &'a str> {
    let from_digest = image_digest.map(|d| d.rsplit_once('@').map_or(d, |(_, d)| d));
    let from_ref = if image_ref.starts_with("sha256:") {
        Some(image_ref)
    } else {
        image_ref.rsplit_once('@').map(|(_, d)| d)
    };
    from_digest.into_iter().chain(from_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn m(p: &str, r: &str) -> bool {
        ImagePattern::parse(p).unwrap().matches(r, None)
    }

    #[test]
    fn docker_hub_prefix_is_normalised_both_ways() {
        assert!(m("nginx*", "nginx:1.27"));
        assert!(m("nginx*", "docker.io/library/nginx:1.27"));
        assert!(m("docker.io/library/nginx*", "nginx:1.27"));
        assert!(m("library/nginx:1.27", "docker.io/library/nginx:1.27"));
        assert!(m("bitnami/redis*", "docker.io/bitnami/redis:7"));
        assert!(!m("nginx*", "quay.io/nginx/nginx:1"));
        assert!(m("seawall-test/*", "seawall-test/busybox:latest"));
        assert!(!m("seawall-test/*", "other/busybox:latest"));
        assert!(m("**/busybox*", "registry.local:5000/team/busybox:1"));
    }

    #[test]
    fn untagged_pattern_matches_every_tag() {
        assert!(m("nginx", "nginx:1.27"));
        assert!(m("nginx", "nginx"));
        assert!(m("nginx", &format!("nginx@{D}")));
        assert!(!m("nginx", "nginx-exporter:1"));
        assert!(m("nginx:1.27", &format!("nginx:1.27@{D}")));
        assert!(!m("nginx:1.27", "nginx:1.28"));
        assert!(m("registry.local:5000/app", "registry.local:5000/app:v2"));
        assert!(!m("registry.local:5000/app", "registry.local:5001/app:v2"));
    }

    #[test]
    fn digests() {
        let p = ImagePattern::parse(D).unwrap();
        assert!(p.matches("nginx:1.27", Some(D)));
        assert!(p.matches("nginx:1.27", Some(&format!("nginx@{D}"))));
        assert!(p.matches(D, None));
        assert!(p.matches(&format!("nginx@{D}"), None));
        assert!(!p.matches("nginx:1.27", None));
        let e = ImagePattern::parse("sha256:abc").unwrap_err();
        assert!(e.contains("64 hex digits"), "{e}");
        assert!(e.contains("{{.Id}}"), "{e}");
    }

    #[test]
    fn specificity_prefers_longer_literal_prefix_then_exact() {
        let s = |p: &str| ImagePattern::parse(p).unwrap().specificity().unwrap();
        assert!(s("nginx:1.2*") > s("nginx*"));
        assert!(s("nginx") > s("nginx*"));
        assert!(s("docker.io/library/nginx*") == s("nginx*"));
    }
}
