//! Durations as operators write them: `7d`, `12h`, `1d12h`, `90s`, `2w`. Used by
//! `[profile] enforce_after` and by `seawall profile learn --since`.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration; write a number and a unit, e.g. `7d`, `12h`, `30m`, `1d12h`")]
    Empty,
    /// A unit without a number before it, or a number without a unit after it.
    #[error("`{text}` is not a duration: every number needs a unit (s, m, h, d or w), e.g. `7d`, `12h`, `1d12h`")]
    Malformed {
        /// The whole string as written.
        text: String,
    },
    /// A letter that is not one of the units.
    #[error("`{text}`: unknown unit `{unit}`; units are s (seconds), m (minutes), h (hours), d (days) and w (weeks)")]
    UnknownUnit {
        /// The whole string as written.
        text: String,
        /// The offending unit.
        unit: char,
    },
    /// Zero is never what anyone means by "after".
    #[error("`{text}` is zero; write a positive duration such as `1h`")]
    Zero {
        /// The whole string as written.
        text: String,
    },
    /// More than a century: almost certainly a typo.
    #[error("`{text}` is longer than 100 years; write a shorter duration")]
    TooLong {
        /// The whole string as written.
        text: String,
    },
}

const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

const MAX_SECS: u64 = 100 * 365 * 86_400;

/// Parses `<number><unit>` groups (`7d`, `1d12h`, `90s`); units s, m, h, d, w. Whole seconds only.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed {
        text: text.to_string(),
    };
    let too_long = || DurationError::TooLong {
        text: text.to_string(),
    };
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(too_long)?,
            );
            continue;
        }
        let Some(&(_, secs)) = UNITS.iter().find(|(u, _)| *u == c) else {
            if c.is_ascii_alphabetic() {
                return Err(DurationError::UnknownUnit {
                    text: text.to_string(),
                    unit: c,
                });
            }
            return Err(malformed());
        };
        let n = number.take().ok_or_else(malformed)?;
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_long)?;
    }
    if number.is_some() {
        return Err(malformed());
    }
    if total == 0 {
        return Err(DurationError::Zero {
            text: text.to_string(),
        });
    }
    if total > MAX_SECS {
        return Err(too_long());
    }
    Ok(Duration::from_secs(total))
}

/// A duration in the form [`parse_duration`] reads, largest units first (`1d12h`), in days at
/// most (`7d` stays `7d`, not `1w`); sub-second parts are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        if rest == 0 {
            return f.write_str("0s");
        }
        for (unit, secs) in UNITS.into_iter().filter(|(u, _)| *u != 'w') {
            if rest >= secs {
                write!(f, "{}{unit}", rest / secs)?;
                rest %= secs;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_groups() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("7d"), Ok(7 * 86_400));
        assert_eq!(secs("12h"), Ok(12 * 3_600));
        assert_eq!(secs("1d12h"), Ok(86_400 + 12 * 3_600));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs(" 2w "), Ok(14 * 86_400));
        assert_eq!(secs("1h30m5s"), Ok(3_600 + 1_800 + 5));
    }

    #[test]
    fn errors_say_what_to_write() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        let e = parse_duration("7").unwrap_err();
        assert!(e.to_string().contains("every number needs a unit"), "{e}");
        let e = parse_duration("d").unwrap_err();
        assert!(matches!(e, DurationError::Malformed { .. }), "{e}");
        let e = parse_duration("7days").unwrap_err();
        assert_eq!(
            e,
            DurationError::UnknownUnit {
                text: "7days".into(),
                unit: 'a'
            }
        );
        let e = parse_duration("1.5h").unwrap_err();
        assert!(matches!(e, DurationError::Malformed { .. }), "{e}");
        assert!(matches!(
            parse_duration("0d"),
            Err(DurationError::Zero { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::TooLong { .. })
        ));
        assert!(matches!(
            parse_duration("6000w"),
            Err(DurationError::TooLong { .. })
        ));
    }

    #[test]
    fn displays_what_it_parses() {
        for s in ["7d", "12h", "1d12h", "90s", "2w", "1w1d1h1m1s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&HumanDuration(d).to_string()), Ok(d), "{s}");
        }
        assert_eq!(
            HumanDuration(parse_duration("90s").unwrap()).to_string(),
            "1m30s"
        );
        assert_eq!(HumanDuration(Duration::ZERO).to_string(), "0s");
        assert_eq!(
            HumanDuration(parse_duration("1w").unwrap()).to_string(),
            "7d"
        );
    }
}
