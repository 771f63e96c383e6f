//! Where a file glob could match paths that do not exist yet. Landlock rules attach to files
//! that exist when the ruleset is built; to keep a `read_only` or `deny` pattern from being
//! side-stepped by creating a new matching file, the directories where a new entry could match
//! must not allow creating entries at all. This answers "could a direct child of this directory
//! match?" and "could anything below it match?" component by component.

use globset::{Glob, GlobMatcher};

/// One pattern split into `/`-separated components.
#[derive(Debug, Clone)]
pub struct PatternScope {
    parts: Vec<Part>,
    /// The pattern has a brace or class that may span `/`: answer "yes" everywhere.
    opaque: bool,
}

#[derive(Debug, Clone)]
enum Part {
    /// `**`: any number of components, including none.
    AnyDepth,
    /// One component.
    One(GlobMatcher),
}

/// A stand-in for "some name not yet created": matches any one-component glob.
const ANY_NAME: Option<&str> = None;

impl PatternScope {
    pub fn new(pattern: &str) -> PatternScope {
        let mut opaque = false;
        let mut parts = Vec::new();
        // `{a,b/c}` or `[/]` could cross a separator: not worth splitting precisely.
        let mut depth = 0i32;
        for c in pattern.chars() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                '/' if depth > 0 => opaque = true,
                _ => {}
            }
        }
        for comp in pattern.split('/').filter(|c| !c.is_empty()) {
            if comp == "**" {
                parts.push(Part::AnyDepth);
                continue;
            }
            match Glob::new(comp) {
                Ok(g) => parts.push(Part::One(g.compile_matcher())),
                Err(_) => opaque = true,
            }
        }
        PatternScope { parts, opaque }
    }

    /// Whether `dir/NAME` could match for some name not known now.
    pub fn could_match_child(&self, dir: &str) -> bool {
        if self.opaque {
            return true;
        }
        let mut comps: Vec<Option<&str>> = components(dir).map(Some).collect();
        comps.push(ANY_NAME);
        self.matches_from(0, &comps)
    }

    /// Whether some path strictly below `dir`, at any depth, could match.
    pub fn could_match_below(&self, dir: &str) -> bool {
        if self.opaque {
            return true;
        }
        let comps: Vec<&str> = components(dir).collect();
        self.prefix_alive(0, &comps, 0)
    }

    /// Whether the pattern from part `i` matches exactly the components `comps` (with `None`
    /// as any single name).
    fn matches_from(&self, i: usize, comps: &[Option<&str>]) -> bool {
        match (self.parts.get(i), comps.split_first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            // A trailing `**` is "everything inside": at least one component (globset's rule).
            (Some(Part::AnyDepth), _) if i + 1 == self.parts.len() => !comps.is_empty(),
            (Some(Part::AnyDepth), _) => {
                self.matches_from(i + 1, comps)
                    || comps
                        .split_first()
                        .is_some_and(|(_, rest)| self.matches_from(i, rest))
            }
            (Some(Part::One(_)), None) => false,
            (Some(Part::One(g)), Some((c, rest))) => {
                c.is_none_or(|c| g.is_match(c)) && self.matches_from(i + 1, rest)
            }
        }
    }

    /// Whether, after consuming `comps[j..]`, some non-empty continuation could still match.
    fn prefix_alive(&self, i: usize, comps: &[&str], j: usize) -> bool {
        if j == comps.len() {
            // At least one more component must be matched by what is left.
            return self.parts[i..]
                .iter()
                .any(|p| matches!(p, Part::One(_) | Part::AnyDepth));
        }
        match self.parts.get(i) {
            None => false,
            Some(Part::AnyDepth) => {
                self.prefix_alive(i + 1, comps, j) || self.prefix_alive(i, comps, j + 1)
            }
            Some(Part::One(g)) => g.is_match(comps[j]) && self.prefix_alive(i + 1, comps, j + 1),
        }
    }
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_and_below() {
        let p = PatternScope::new("/etc/nginx/**");
        assert!(p.could_match_child("/etc/nginx"));
        assert!(p.could_match_child("/etc/nginx/conf.d"));
        assert!(!p.could_match_child("/etc"));
        assert!(p.could_match_below("/etc"));
        assert!(p.could_match_below("/"));
        assert!(!p.could_match_below("/var"));

        let p = PatternScope::new("/etc/*.conf");
        assert!(p.could_match_child("/etc"));
        assert!(!p.could_match_child("/etc/sub"));
        assert!(!p.could_match_below("/etc/sub"));

        let p = PatternScope::new("/etc/passwd");
        assert!(p.could_match_child("/etc"));
        assert!(!p.could_match_child("/"));
        assert!(p.could_match_below("/"));
        assert!(!p.could_match_below("/etc/passwd"));

        let p = PatternScope::new("**/.ssh/**");
        assert!(p.could_match_child("/root/.ssh"));
        assert!(!p.could_match_child("/root"));
        assert!(p.could_match_below("/anything"));

        assert!(PatternScope::new("/a/{b,c/d}").could_match_child("/x"));
    }
}
