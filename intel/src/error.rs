//! Why a feed, a directory or a scan report could not be loaded.
//!
//! Every message names the file and, where there is one, the line, so an operator can open the
//! file at the spot. A problem is shown once: a wrapper's message includes its problem's message
//! and does not also hand it out as `source()`.

use std::io;
use std::path::PathBuf;

use crate::indicator::IndicatorError;

/// What is wrong at one line of a feed.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A value that should be an indicator is not one.
    #[error(transparent)]
    Indicator(IndicatorError),
    /// Feeds are text; this line has bytes that are not UTF-8.
    #[error("the line is not UTF-8 text")]
    NotUtf8,
    /// A plain list holds one indicator per line.
    #[error(
        "expected one indicator per line (a SHA-256, an IP address or a CIDR), found `{text}`"
    )]
    SeveralTokens {
        /// The line as found (cut and escaped).
        text: String,
    },
    /// A CSV feed without the column that holds the hashes.
    #[error(
        "no `sha256_hash` column: a MalwareBazaar-style CSV has a header line (it may be a \
         `#` comment) naming its columns, one of them `sha256_hash`"
    )]
    NoSha256Column,
    /// A quoted CSV field that does not end on its line.
    #[error("a quoted field is not closed on this line")]
    UnclosedQuote,
    /// Text right after a closing quote of a CSV field.
    #[error(
        "text after the closing quote of field {field}; double a quote inside a field (`\"\"`)"
    )]
    TextAfterQuote {
        /// 1-based field number.
        field: usize,
    },
    /// A CSV row shorter than the header.
    #[error("the row has {found} fields; the `sha256_hash` column is field {wanted}")]
    ShortRow {
        /// Fields in the row.
        found: usize,
        /// 1-based position of the hash column.
        wanted: usize,
    },
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    /// JSON, but not a STIX bundle.
    #[error(
        "not a STIX 2.1 bundle: expected an object with `\"type\": \"bundle\"` and an `objects` \
         array (a `.json` file in the intel directory is read as STIX)"
    )]
    NotABundle,
    /// A STIX object that breaks the specification in a way that changes its meaning.
    #[error("STIX {object}: {what}")]
    Stix {
        /// The object's `id` (or its position when it has none).
        object: String,
        /// What is wrong with it.
        what: StixProblem,
    },
}

/// What is wrong with one STIX object.
#[derive(Debug, thiserror::Error)]
pub enum StixProblem {
    /// The object is not the JSON object STIX requires.
    #[error("not a valid indicator object: {0}")]
    Shape(serde_json::Error),
    /// A required property is missing.
    #[error("has no `{0}` property")]
    Missing(&'static str),
    /// A timestamp that is not RFC 3339.
    #[error("`{property}` is not an RFC 3339 timestamp (`{value}`)")]
    Timestamp {
        /// `valid_from` or `valid_until`.
        property: &'static str,
        /// The value as found (cut and escaped).
        value: String,
    },
    /// A supported comparison whose value is not an indicator: the feed is wrong, not our
    /// coverage.
    #[error("pattern value: {0}")]
    Value(IndicatorError),
}

/// Why an intel directory could not be loaded. The caller keeps its previous indicators.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory itself could not be listed.
    #[error("cannot list intel directory {}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A feed file could not be read.
    #[error("cannot read feed {}", file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A feed file has a problem at a line.
    #[error("{}:{line}: {problem}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong there.
        problem: Problem,
    },
}

/// A problem at a line of one file, before the file's name is known to the parser.
#[derive(Debug)]
pub struct LineProblem {
    /// 1-based line.
    pub line: usize,
    /// What is wrong there.
    pub problem: Problem,
}

impl LineProblem {
    pub(crate) fn new(line: usize, problem: Problem) -> LineProblem {
        LineProblem { line, problem }
    }

    /// Names the file.
    pub fn in_file(self, file: PathBuf) -> LoadError {
        LoadError::Invalid {
            file,
            line: self.line,
            problem: self.problem,
        }
    }
}
