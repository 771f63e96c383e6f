//! Diagnostics for `seawall profile check`: `file:line:col: error: message`, collected per file.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Whether a diagnostic stops the profile set from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The set is rejected.
    Error,
    /// Worth fixing, but the set loads.
    Warning,
}

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Position { line, col }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem found in a profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or directory) the problem is in.
    pub file: PathBuf,
    /// Where in the file; `None` when the problem is the file as a whole (e.g. unreadable).
    pub position: Option<Position>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.col)?;
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {sev}: {}", self.message)
    }
}

/// The outcome of checking a profile file or directory.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Every error and warning, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// How many profiles parsed without error.
    pub profiles_ok: usize,
}

impl CheckReport {
    /// True when there is no error (warnings are allowed).
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// The summary line printed after the diagnostics.
    pub fn summary(&self) -> String {
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        let mut s = if errors > 0 {
            let files: BTreeSet<&Path> = self.errors().map(|d| d.file.as_path()).collect();
            format!(
                "{} in {}",
                plural(errors, "error", "errors"),
                plural(files.len(), "file", "files")
            )
        } else {
            format!("{} ok", plural(self.profiles_ok, "profile", "profiles"))
        };
        if warnings > 0 {
            s.push_str(&format!(", {}", plural(warnings, "warning", "warnings")));
        }
        s
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        write!(f, "{}", self.summary())
    }
}

impl std::error::Error for CheckReport {}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Collects the diagnostics of one file, turning byte spans into positions.
pub(crate) struct FileDiags<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub out: Vec<Diagnostic>,
}

impl<'a> FileDiags<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        FileDiags {
            file,
            text,
            out: Vec::new(),
        }
    }

    pub fn position(&self, span: &Option<Range<usize>>) -> Option<Position> {
        span.as_ref()
            .map(|s| Position::of_offset(self.text, s.start))
    }

    pub fn error(&mut self, span: &Option<Range<usize>>, message: impl Into<String>) {
        self.push(Severity::Error, span, message.into());
    }

    pub fn warning(&mut self, span: &Option<Range<usize>>, message: impl Into<String>) {
        self.push(Severity::Warning, span, message.into());
    }

    fn push(&mut self, severity: Severity, span: &Option<Range<usize>>, message: String) {
        // A missing span still gets a position: the top of the file is better than none.
        let position = self.position(span).or(Some(Position { line: 1, col: 1 }));
        self.out.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            position,
            message,
        });
    }

    pub fn error_count(&self) -> usize {
        self.out
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// The candidate closest to `word` when it is plausibly a typo of it.
pub(crate) fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    // An abbreviation (`proto` for `protocol`) is a typo too, whatever its edit distance.
    if word.len() >= 3 {
        if let Some(c) = candidates.iter().find(|c| c.starts_with(word.as_str())) {
            return Some(c);
        }
    }
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(&word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "ab\nçd = 1\n";
        assert_eq!(Position::of_offset(text, 0), Position { line: 1, col: 1 });
        assert_eq!(Position::of_offset(text, 3), Position { line: 2, col: 1 });
        // 'ç' is two bytes but one column.
        assert_eq!(Position::of_offset(text, 5), Position { line: 2, col: 2 });
    }

    #[test]
    fn typo_suggestions() {
        let keys = ["prevent", "allow", "mode"];
        assert_eq!(did_you_mean("prevnt", &keys), Some("prevent"));
        assert_eq!(did_you_mean("alow", &keys), Some("allow"));
        assert_eq!(did_you_mean("xyzzy", &keys), None);
    }

    #[test]
    fn summary_lines() {
        let mut r = CheckReport {
            profiles_ok: 3,
            ..Default::default()
        };
        assert_eq!(r.summary(), "3 profiles ok");
        assert!(r.is_ok());
        for _ in 0..2 {
            r.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: "a.toml".into(),
                position: Some(Position { line: 2, col: 3 }),
                message: "bad".into(),
            });
        }
        assert_eq!(r.summary(), "2 errors in 1 file");
        assert!(!r.is_ok());
        assert_eq!(
            r.to_string(),
            "a.toml:2:3: error: bad\na.toml:2:3: error: bad\n2 errors in 1 file"
        );
    }
}
