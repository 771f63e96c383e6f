//! One feed file: which format it is, and what it yielded.

use std::path::Path;
use std::time::SystemTime;

use crate::error::{LineProblem, Problem};
use crate::indicator::Indicator;
use crate::stix::UnsupportedReason;
use crate::{csv, plain, stix};

/// How a feed file is read, chosen by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedFormat {
    /// One indicator per line, `#` comments (`*.txt`, `*.list`, no extension, anything else).
    PlainList,
    /// MalwareBazaar-style CSV export (`*.csv`).
    Csv,
    /// STIX 2.1 bundle (`*.json`).
    Stix,
}

impl FeedFormat {
    /// The format a file of this name is read as.
    pub fn for_path(path: &Path) -> FeedFormat {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => FeedFormat::Csv,
            Some("json") => FeedFormat::Stix,
            _ => FeedFormat::PlainList,
        }
    }

    /// The name `seawall status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedFormat::PlainList => "list",
            FeedFormat::Csv => "csv",
            FeedFormat::Stix => "stix",
        }
    }
}

/// One indicator as a feed listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The hash or network.
    pub indicator: Indicator,
    /// 1-based line where it was listed (for STIX, where its object starts).
    pub line: usize,
    /// The feed's name for it (malware family, campaign), when it gives one.
    pub name: Option<String>,
}

/// A STIX indicator whose pattern Seawall cannot enforce, in whole or in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// 1-based line where its object starts.
    pub line: usize,
    /// The indicator's STIX `id`.
    pub object: String,
    /// The pattern (cut and escaped for display).
    pub pattern: String,
    /// Why it is not (fully) enforced.
    pub reason: UnsupportedReason,
    /// True when the enforceable parts of the pattern were loaded and only the rest is not
    /// matched; false when nothing of it is enforced.
    pub partial: bool,
}

/// What one feed file yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// How it was read.
    pub format: FeedFormat,
    /// Every indicator it listed, in file order (duplicates kept: the set merges them).
    pub entries: Vec<Entry>,
    /// STIX indicators not (fully) enforced.
    pub unsupported: Vec<Unsupported>,
    /// STIX indicators skipped because the producer revoked them.
    pub revoked: usize,
    /// STIX indicators skipped because their `valid_until` has passed.
    pub expired: usize,
}

impl Feed {
    pub(crate) fn new(format: FeedFormat) -> Feed {
        Feed {
            format,
            entries: Vec::new(),
            unsupported: Vec::new(),
            revoked: 0,
            expired: 0,
        }
    }

    /// Parses a file's bytes. `now` decides which STIX indicators have expired.
    pub fn parse(format: FeedFormat, bytes: &[u8], now: SystemTime) -> Result<Feed, LineProblem> {
        match format {
            FeedFormat::PlainList => plain::parse(bytes),
            FeedFormat::Csv => csv::parse(bytes),
            FeedFormat::Stix => stix::parse(bytes, now),
        }
    }
}

/// The lines of a text feed, numbered from 1, without line terminators (`\n` or `\r\n`) and
/// without a leading byte-order mark. A line that is not UTF-8 is an error at that line.
pub(crate) fn text_lines(bytes: &[u8]) -> impl Iterator<Item = Result<(usize, &str), LineProblem>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    // A final newline ends the last line; it does not start an empty one.
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    bytes
        .split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            std::str::from_utf8(line)
                .map(|text| (i + 1, text))
                .map_err(|_| LineProblem::new(i + 1, Problem::NotUtf8))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_by_extension() {
        assert_eq!(FeedFormat::for_path(Path::new("a/b.CSV")), FeedFormat::Csv);
        assert_eq!(
            FeedFormat::for_path(Path::new("bundle.json")),
            FeedFormat::Stix
        );
        for plain in ["ipblocklist.txt", "full_sha256", "x.list", "x.json.txt"] {
            assert_eq!(
                FeedFormat::for_path(Path::new(plain)),
                FeedFormat::PlainList
            );
        }
    }

    #[test]
    fn lines_are_numbered_from_one_without_terminators() {
        let lines: Vec<_> = text_lines(b"\xef\xbb\xbfa\r\nb\n\nc\n")
            .map(|l| l.unwrap())
            .collect();
        assert_eq!(lines, vec![(1, "a"), (2, "b"), (3, ""), (4, "c")]);
        assert_eq!(text_lines(b"").count(), 0);
        assert_eq!(text_lines(b"\n").count(), 0);
        assert_eq!(
            text_lines(b"\n\n").map(|l| l.unwrap()).collect::<Vec<_>>(),
            vec![(1, ""), (2, "")]
        );
        let bad: Vec<_> = text_lines(b"ok\n\xff\xfe\n").collect();
        assert!(bad[0].is_ok());
        assert_eq!(bad[1].as_ref().unwrap_err().line, 2);
    }
}
