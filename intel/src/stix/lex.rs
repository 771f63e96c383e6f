//! The tokens of STIX patterning: object paths, operators, keywords, and `'…'` strings with
//! their `\'` and `\\` escapes.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Ident(String),
    Str(String),
    Number(String),
    /// `t'…'`, `h'…'`, `b'…'`.
    Typed(char, String),
    Op(&'static str),
    Punct(char),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) | Token::Number(s) => f.write_str(s),
            Token::Str(s) => write!(f, "'{s}'"),
            Token::Typed(t, s) => write!(f, "{t}'{s}'"),
            Token::Op(s) => f.write_str(s),
            Token::Punct(c) => write!(f, "{c}"),
        }
    }
}

/// A pattern that could not be read, at a character position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 0-based character offset in the pattern.
    pub at: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {} at character {}", self.expected, self.at + 1)
    }
}

pub(super) fn lex(pattern: &str) -> Result<Vec<(usize, Token)>, SyntaxError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at, expected| SyntaxError { at, expected };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let quoted = |i: &mut usize| -> Result<String, SyntaxError> {
            // `*i` is at the opening quote.
            let mut s = String::new();
            *i += 1;
            loop {
                match chars.get(*i) {
                    None => return Err(err(start, "a closing `'`")),
                    Some('\\') => match chars.get(*i + 1) {
                        Some(&e @ ('\'' | '\\')) => {
                            s.push(e);
                            *i += 2;
                        }
                        _ => return Err(err(*i, "`\\'` or `\\\\` after a backslash")),
                    },
                    Some('\'') => {
                        *i += 1;
                        return Ok(s);
                    }
                    Some(&c) => {
                        s.push(c);
                        *i += 1;
                    }
                }
            }
        };
        let token = match c {
            '\'' => Token::Str(quoted(&mut i)?),
            't' | 'h' | 'b' if chars.get(i + 1) == Some(&'\'') => {
                i += 1;
                Token::Typed(c, quoted(&mut i)?)
            }
            '[' | ']' | '(' | ')' | ',' | ':' | '.' | '*' => {
                i += 1;
                Token::Punct(c)
            }
            '=' => {
                i += 1;
                Token::Op("=")
            }
            '!' | '<' | '>' => {
                let two = chars.get(i + 1) == Some(&'=');
                i += if two { 2 } else { 1 };
                Token::Op(match (c, two) {
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => return Err(err(start, "`!=`")),
                })
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.')
                {
                    i += 1;
                }
                Token::Number(chars[start..i].iter().collect())
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                {
                    i += 1;
                }
                Token::Ident(chars[start..i].iter().collect())
            }
            _ => return Err(err(start, "a STIX pattern token")),
        };
        out.push((start, token));
    }
    Ok(out)
}
