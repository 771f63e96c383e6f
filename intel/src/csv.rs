//! MalwareBazaar-style CSV exports: the hashes are in the `sha256_hash` column, the malware
//! family (when known) in `signature`.
//!
//! Real exports start with a block of `#` comments, and the header line naming the columns is
//! itself one of them (`# "first_seen_utc","sha256_hash",…`); fields are quoted and separated by
//! `", "`. A plain header line (no `#`) works as well. A quoted field must close on its line:
//! these exports never break a field across lines, and a stray quote is an error rather than a
//! reason to swallow the rest of the file into one field.

use crate::error::{LineProblem, Problem};
use crate::feed::{text_lines, Entry, Feed, FeedFormat};
use crate::indicator::{Indicator, Sha256};

const HASH_COLUMN: &str = "sha256_hash";
const NAME_COLUMN: &str = "signature";

struct Columns {
    hash: usize,
    name: Option<usize>,
}

impl Columns {
    fn from_header(fields: &[String]) -> Option<Columns> {
        let find = |name: &str| {
            fields
                .iter()
                .position(|f| f.trim().eq_ignore_ascii_case(name))
        };
        Some(Columns {
            hash: find(HASH_COLUMN)?,
            name: find(NAME_COLUMN),
        })
    }
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Feed, LineProblem> {
    let mut feed = Feed::new(FeedFormat::Csv);
    let mut columns: Option<Columns> = None;
    for line in text_lines(bytes) {
        let (number, text) = line?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            // Only a header before the data counts: a comment after it is just a comment.
            if columns.is_none() && feed.entries.is_empty() {
                if let Ok(fields) = split_fields(comment) {
                    columns = Columns::from_header(&fields);
                }
            }
            continue;
        }
        let fields = split_fields(text).map_err(|p| LineProblem::new(number, p))?;
        let Some(cols) = &columns else {
            columns = Some(
                Columns::from_header(&fields)
                    .ok_or_else(|| LineProblem::new(number, Problem::NoSha256Column))?,
            );
            continue;
        };
        let hash = fields.get(cols.hash).ok_or_else(|| {
            LineProblem::new(
                number,
                Problem::ShortRow {
                    found: fields.len(),
                    wanted: cols.hash + 1,
                },
            )
        })?;
        let hash = Sha256::parse(hash.trim())
            .map_err(|e| LineProblem::new(number, Problem::Indicator(e)))?;
        let name = cols
            .name
            .and_then(|i| fields.get(i))
            .map(|n| n.trim())
            .filter(|n| {
                !n.is_empty() && !n.eq_ignore_ascii_case("n/a") && !n.eq_ignore_ascii_case("null")
            })
            .map(str::to_string);
        feed.entries.push(Entry {
            indicator: Indicator::Sha256(hash),
            line: number,
            name,
        });
    }
    Ok(feed)
}

/// Splits one CSV line: `,`-separated, blanks around fields ignored, `"…"` quoting with `""`
/// for a quote inside.
fn split_fields(line: &str) -> Result<Vec<String>, Problem> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        let field;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(Problem::UnclosedQuote),
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            };
            field = value;
            rest = quoted[end..].trim_start_matches([' ', '\t']);
            if !(rest.is_empty() || rest.starts_with(',')) {
                return Err(Problem::TextAfterQuote {
                    field: fields.len() + 1,
                });
            }
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            field = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        fields.push(field);
        match rest.strip_prefix(',') {
            Some(r) => rest = r,
            None => return Ok(fields),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "4ba2cd2d2a0c2a0e8f0b7a6c2b0f5e5b2d6e3e1f0a9b8c7d6e5f4a3b2c1d0e9f";
    const H2: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn export() -> String {
        format!(
            "################################################################\n\
             # MalwareBazaar recent malware samples (CSV)                   #\n\
             # Terms Of Use: https://bazaar.abuse.ch/faq/#tos               #\n\
             ################################################################\n\
             #\n\
             # \"first_seen_utc\",\"sha256_hash\",\"md5_hash\",\"sha1_hash\",\"reporter\",\"file_name\",\"file_type_guess\",\"mime_type\",\"signature\",\"clamav\"\n\
             \"2025-01-01 08:24:04\", \"{H1}\", \"8f1c0e4d1bd0e5d0b0b0a0a0a0a0a0a0\", \"f6a2\", \"zbetcheckin\", \"in, voice.exe\", \"exe\", \"application/x-dosexec\", \"AgentTesla\", \"n/a\"\n\
             \"2025-01-01 08:25:04\", \"{}\", \"\", \"\", \"anonymous\", \"say \"\"hi\"\".sh\", \"sh\", \"text/x-shellscript\", \"n/a\", \"n/a\"\n\
             # Number of entries: 2\n",
            H2.to_uppercase()
        )
    }

    #[test]
    fn reads_a_malwarebazaar_export() {
        let feed = parse(export().as_bytes()).unwrap();
        let got: Vec<_> = feed
            .entries
            .iter()
            .map(|e| (e.line, e.indicator.to_string(), e.name.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, H1.to_string(), Some("AgentTesla".to_string())),
                (8, H2.to_string(), None),
            ]
        );
    }

    #[test]
    fn plain_header_line() {
        let csv = format!("sha256_hash,signature\n{H1},Mirai\n\n{H2},\n");
        let feed = parse(csv.as_bytes()).unwrap();
        assert_eq!(feed.entries.len(), 2);
        assert_eq!(feed.entries[0].name.as_deref(), Some("Mirai"));
        assert_eq!(feed.entries[1].line, 4);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(format!("md5_hash,name\n{H1},x\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(matches!(e.problem, Problem::NoSha256Column));
        let e = parse(format!("# \"a\",\"sha256_hash\"\n\"x\", \"{H1}\"\n\"y\"\n").as_bytes())
            .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.problem.to_string().contains("field 2"), "{}", e.problem);
        let e = parse(b"sha256_hash\n\"abc\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(matches!(e.problem, Problem::UnclosedQuote));
        let e = parse(b"sha256_hash\n\"abc\"x\n").unwrap_err();
        assert!(matches!(e.problem, Problem::TextAfterQuote { field: 1 }));
        let e = parse(b"sha256_hash\nnot-a-hash\n").unwrap_err();
        assert!(
            e.problem.to_string().contains("64 hex digits"),
            "{}",
            e.problem
        );
    }

    #[test]
    fn fields() {
        assert_eq!(
            split_fields("a, \"b,c\" ,,\"\"").unwrap(),
            ["a", "b,c", "", ""]
        );
        assert_eq!(split_fields("").unwrap(), [""]);
        assert_eq!(split_fields("\"é\"\"\"").unwrap(), ["é\""]);
    }
}
