//! Path patterns: the three forms the kernel can enforce for exec, and full globs for files.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// An exec/drift path pattern in one of the three forms the kernel can match without a regex engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathRule {
    /// `/usr/bin/nginx`: this path only.
    Exact(String),
    /// `/usr/bin/*`: stored as the directory with its trailing slash (`/usr/bin/`); matches one
    /// more path component, not deeper.
    Dir(String),
    /// `/opt/app/**`: stored as the prefix with its trailing slash (`/opt/app/`); matches anything
    /// below it at any depth.
    Tree(String),
}

const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

const FORMS: &str = "exec and drift paths are enforced in the kernel, so they must be an exact \
                     path (`/usr/bin/nginx`), one directory level (`/usr/bin/*`) or a whole tree \
                     (`/opt/app/**`)";

impl PathRule {
    /// Parses a pattern, or explains what is wrong and what to write instead.
    pub fn parse(pattern: &str) -> Result<PathRule, String> {
        if !pattern.starts_with('/') {
            return Err(format!(
                "`{pattern}` is not an absolute path; paths are as seen inside the container, \
                 write `/{}`",
                pattern.trim_start_matches("./")
            ));
        }
        #[derive(PartialEq)]
        enum Form {
            Exact,
            Dir,
            Tree,
        }
        let (base, form) = if let Some(base) = pattern.strip_suffix("/**") {
            (base, Form::Tree)
        } else if let Some(base) = pattern.strip_suffix("/*") {
            (base, Form::Dir)
        } else {
            (pattern, Form::Exact)
        };
        if base.contains(GLOB_CHARS) {
            return Err(format!(
                "`{pattern}` is not a form the kernel can enforce: {FORMS}; {}",
                suggest_form(pattern)
            ));
        }
        if form == Form::Exact && pattern.len() > 1 && pattern.ends_with('/') {
            return Err(format!(
                "`{pattern}` ends with `/`: for everything in that directory write `{pattern}*`, \
                 for the whole tree `{pattern}**`"
            ));
        }
        if let Some(bad) = base
            .split('/')
            .skip(1)
            .find(|c| c.is_empty() || *c == "." || *c == "..")
        {
            let what = if bad.is_empty() { "`//`" } else { bad };
            return Err(format!(
                "`{pattern}` contains {what}; write the path without it, as the kernel resolves \
                 it (e.g. `/usr/bin/nginx`)"
            ));
        }
        Ok(match form {
            Form::Exact => PathRule::Exact(base.to_string()),
            Form::Dir => PathRule::Dir(format!("{base}/")),
            Form::Tree => PathRule::Tree(format!("{base}/")),
        })
    }

    /// Whether `path` (absolute, as seen inside the container) matches this rule.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_bytes(path.as_bytes())
    }

    /// [`PathRule::matches`] on the path's bytes, which need not be UTF-8 (file names are
    /// bytes to the kernel). The rule is compared byte for byte, as the kernel hashes it.
    pub fn matches_bytes(&self, path: &[u8]) -> bool {
        match self {
            PathRule::Exact(p) => path == p.as_bytes(),
            PathRule::Dir(d) => path
                .strip_prefix(d.as_bytes())
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(&b'/')),
            PathRule::Tree(t) => path
                .strip_prefix(t.as_bytes())
                .is_some_and(|rest| !rest.is_empty()),
        }
    }

    /// The pattern as written in a profile.
    pub fn pattern(&self) -> String {
        match self {
            PathRule::Exact(p) => p.clone(),
            PathRule::Dir(d) => format!("{d}*"),
            PathRule::Tree(t) => format!("{t}**"),
        }
    }
}

/// The nearest enforceable form(s) for a glob the kernel cannot match.
fn suggest_form(pattern: &str) -> String {
    // `/usr/bin/{nginx,redis}`: a brace of literal names is just several exact paths.
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.rfind('}')) {
        let (head, inner, tail) = (
            &pattern[..open],
            &pattern[open + 1..close],
            &pattern[close + 1..],
        );
        let literal = |s: &str| !s.contains(GLOB_CHARS);
        if open < close && literal(head) && literal(inner) && literal(tail) {
            let list: Vec<String> = inner
                .split(',')
                .map(|alt| format!("\"{head}{alt}{tail}\""))
                .collect();
            return format!("list each path instead: {}", list.join(", "));
        }
    }
    let comps: Vec<&str> = pattern.split('/').collect();
    let first_glob = comps
        .iter()
        .position(|c| c.contains(GLOB_CHARS))
        .unwrap_or(comps.len() - 1);
    let dir = comps[..first_glob].join("/");
    if first_glob == comps.len() - 1 {
        format!("the nearest allowed form is `{dir}/*` (every file in `{dir}/`)")
    } else {
        format!("the nearest allowed form is `{dir}/**` (everything below `{dir}/`)")
    }
}

/// A set of full globs (globset syntax) over paths as seen inside the container; `*` stays within
/// one path component, `**` crosses them. Matched in userspace.
#[derive(Debug, Clone)]
pub struct PathGlobs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Default for PathGlobs {
    fn default() -> Self {
        PathGlobs {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl PathGlobs {
    /// Checks one pattern, returning the reason it is invalid and what to write instead.
    pub fn check_pattern(pattern: &str) -> Result<(), String> {
        if !pattern.starts_with('/') && !pattern.starts_with("**") {
            return Err(format!(
                "`{pattern}` is not an absolute path; file paths are as seen inside the container, \
                 write `/{pattern}` (or `**/{pattern}` for that name in any directory)"
            ));
        }
        Self::glob(pattern).map(|_| ()).map_err(|e| {
            format!("`{pattern}` is not a valid glob ({e}); e.g. `/etc/*.conf` or `/var/log/**`")
        })
    }

    fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
        GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
    }

    /// Builds the set; every pattern must have passed [`PathGlobs::check_pattern`].
    pub fn new(patterns: Vec<String>) -> Result<PathGlobs, String> {
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            Self::check_pattern(p)?;
            b.add(Self::glob(p).map_err(|e| e.to_string())?);
        }
        let set = b.build().map_err(|e| e.to_string())?;
        Ok(PathGlobs { patterns, set })
    }

    /// Whether `path` matches any pattern.
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }

    /// [`PathGlobs::matches`] on the path's bytes, which need not be UTF-8: a byte that is not
    /// UTF-8 is matched by `*` and `?` like any other, never by a literal in a pattern.
    pub fn matches_bytes(&self, path: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.set
            .is_match(std::path::Path::new(std::ffi::OsStr::from_bytes(path)))
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl PartialEq for PathGlobs {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for PathGlobs {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_forms_parse() {
        assert_eq!(
            PathRule::parse("/usr/bin/nginx"),
            Ok(PathRule::Exact("/usr/bin/nginx".into()))
        );
        assert_eq!(
            PathRule::parse("/usr/bin/*"),
            Ok(PathRule::Dir("/usr/bin/".into()))
        );
        assert_eq!(
            PathRule::parse("/opt/app/**"),
            Ok(PathRule::Tree("/opt/app/".into()))
        );
        assert_eq!(PathRule::parse("/**"), Ok(PathRule::Tree("/".into())));
        assert_eq!(PathRule::parse("/*"), Ok(PathRule::Dir("/".into())));
        for p in ["/usr/bin/nginx", "/usr/bin/*", "/opt/app/**", "/**"] {
            assert_eq!(PathRule::parse(p).unwrap().pattern(), p);
        }
    }

    #[test]
    fn matching() {
        let exact = PathRule::parse("/usr/bin/nginx").unwrap();
        assert!(exact.matches("/usr/bin/nginx"));
        assert!(!exact.matches("/usr/bin/nginx2"));
        assert!(!exact.matches("/usr/bin/ngin"));

        let dir = PathRule::parse("/usr/bin/*").unwrap();
        assert!(dir.matches("/usr/bin/ls"));
        assert!(!dir.matches("/usr/bin/"));
        assert!(!dir.matches("/usr/bin/sub/ls"));
        assert!(!dir.matches("/usr/binx/ls"));
        assert!(!dir.matches("/usr/bin"));

        let tree = PathRule::parse("/opt/app/**").unwrap();
        assert!(tree.matches("/opt/app/bin/run"));
        assert!(tree.matches("/opt/app/run"));
        assert!(!tree.matches("/opt/app"));
        assert!(!tree.matches("/opt/application/run"));

        assert!(PathRule::parse("/**").unwrap().matches("/anything/at/all"));
    }

    #[test]
    fn rejected_globs_say_the_forms_and_the_nearest_one() {
        let e = PathRule::parse("/usr/bin/ngin*").unwrap_err();
        assert!(e.contains("exact path (`/usr/bin/nginx`), one directory level (`/usr/bin/*`) or a whole tree (`/opt/app/**`)"), "{e}");
        assert!(e.contains("nearest allowed form is `/usr/bin/*`"), "{e}");

        let e = PathRule::parse("/usr/lib/python3*/bin/*").unwrap_err();
        assert!(e.contains("nearest allowed form is `/usr/lib/**`"), "{e}");

        let e = PathRule::parse("/opt/**/bin").unwrap_err();
        assert!(e.contains("nearest allowed form is `/opt/**`"), "{e}");

        let e = PathRule::parse("/usr/bin/{nginx,redis}").unwrap_err();
        assert!(
            e.contains(r#"list each path instead: "/usr/bin/nginx", "/usr/bin/redis""#),
            "{e}"
        );

        let e = PathRule::parse("usr/bin/nginx").unwrap_err();
        assert!(e.contains("write `/usr/bin/nginx`"), "{e}");

        assert!(PathRule::parse("/usr/bin/")
            .unwrap_err()
            .contains("`/usr/bin/*`"));
        assert!(PathRule::parse("/usr//bin/x").unwrap_err().contains("`//`"));
        assert!(PathRule::parse("/usr/../bin/x").unwrap_err().contains(".."));
    }

    #[test]
    fn file_globs() {
        let g = PathGlobs::new(vec![
            "/etc/*.conf".into(),
            "/var/lib/app/**".into(),
            "**/.ssh/**".into(),
        ])
        .unwrap();
        assert!(g.matches("/etc/nginx.conf"));
        assert!(!g.matches("/etc/nginx/nginx.conf"));
        assert!(g.matches("/var/lib/app/a/b"));
        assert!(g.matches("/root/.ssh/id_rsa"));
        assert!(!g.matches("/tmp/x"));
        assert!(PathGlobs::check_pattern("etc/passwd")
            .unwrap_err()
            .contains("write `/etc/passwd`"));
        assert!(PathGlobs::check_pattern("/etc/[a")
            .unwrap_err()
            .contains("not a valid glob"));
    }
}
