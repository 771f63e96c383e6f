//! Plain lists, the shape of abuse.ch-style blocklists: one SHA-256, IP address or CIDR per
//! line; `#` starts a comment (a whole line or the rest of one), and so does ` ;` (Spamhaus
//! DROP's `198.51.100.0/24 ; SBL123`). Hash, address and network lines may mix in one file.

use crate::error::{LineProblem, Problem};
use crate::feed::{text_lines, Entry, Feed, FeedFormat};
use crate::indicator::{excerpt, Indicator};

pub(crate) fn parse(bytes: &[u8]) -> Result<Feed, LineProblem> {
    let mut feed = Feed::new(FeedFormat::PlainList);
    for line in text_lines(bytes) {
        let (number, text) = line?;
        let text = text.split('#').next().unwrap_or_default();
        let text = text.split(';').next().unwrap_or_default().trim();
        if text.is_empty() {
            continue;
        }
        if text.split_whitespace().nth(1).is_some() {
            return Err(LineProblem::new(
                number,
                Problem::SeveralTokens {
                    text: excerpt(text),
                },
            ));
        }
        let indicator =
            Indicator::parse(text).map_err(|e| LineProblem::new(number, Problem::Indicator(e)))?;
        feed.entries.push(Entry {
            indicator,
            line: number,
            name: None,
        });
    }
    Ok(feed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::IndicatorKind;

    const FEODO: &str = "\
################################################################
# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (recommended)  #
# Last updated: 2025-01-01 00:00:00 UTC                        #
################################################################
#
# DstIP
192.0.2.10
198.51.100.0/24   # a whole network
2001:db8::66
203.0.113.5 ; SBL256894
275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f

# END 4 entries
";

    #[test]
    fn reads_an_abuse_ch_style_list() {
        let feed = parse(FEODO.as_bytes()).unwrap();
        let got: Vec<_> = feed
            .entries
            .iter()
            .map(|e| (e.line, e.indicator.to_string(), e.indicator.kind()))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, "192.0.2.10".to_string(), IndicatorKind::Ip),
                (8, "198.51.100.0/24".to_string(), IndicatorKind::Cidr),
                (9, "2001:db8::66".to_string(), IndicatorKind::Ip),
                (10, "203.0.113.5".to_string(), IndicatorKind::Ip),
                (
                    11,
                    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f".to_string(),
                    IndicatorKind::Sha256
                ),
            ]
        );
        assert!(feed.unsupported.is_empty());
    }

    #[test]
    fn crlf_and_empty_files() {
        let feed = parse(b"192.0.2.1\r\n\r\n  192.0.2.2  \r\n").unwrap();
        assert_eq!(feed.entries.len(), 2);
        assert_eq!(feed.entries[1].line, 3);
        assert!(parse(b"").unwrap().entries.is_empty());
        assert!(parse(b"# nothing listed yet\n").unwrap().entries.is_empty());
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = parse(b"192.0.2.1\n10.0.0.1/8\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.problem.to_string().contains("host bits"), "{}", e.problem);
        let e = parse(b"# hosts file\n0.0.0.0 evil.example\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(matches!(e.problem, Problem::SeveralTokens { .. }));
        let e = parse(b"44d88612fea8a8f36de82e1278abb02f\n").unwrap_err();
        assert!(e.problem.to_string().contains("MD5"), "{}", e.problem);
        let e = parse(b"192.0.2.1\n\xc3\x28\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(matches!(e.problem, Problem::NotUtf8));
    }
}
