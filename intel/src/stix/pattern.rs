//! STIX 2.1 patterning: enough of the grammar to read any pattern, so that what Seawall cannot
//! enforce is named precisely rather than mistaken for what it can.
//!
//! The whole grammar is parsed (observation expressions with `AND`, `OR`, `FOLLOWEDBY` and
//! qualifiers; comparisons with every operator, `NOT`, `EXISTS`, sets and typed literals), then
//! [`PatternIndicators::of`] decides what of it is enforceable: a disjunction of
//! `file:hashes.'SHA-256' =`, `ipv4-addr:value =` / `ISSUBSET` and `ipv6-addr:value =` /
//! `ISSUBSET` tests (and `IN` sets of them). `AND` of hash tests on the one file counts as its
//! SHA-256 test, since the other hashes describe the same content. Anything else is unsupported
//! or, when only some alternatives of an `OR` are, partial.

use std::fmt;

use super::lex::{lex, SyntaxError, Token};

/// Deepest nesting of parentheses and brackets read; a deeper pattern is refused rather than
/// risk the stack on hostile input.
const MAX_DEPTH: usize = 32;

/// One property test, e.g. `file:hashes.'SHA-256' = '…'`.
#[derive(Debug, Clone, PartialEq)]
struct Test {
    object_type: String,
    /// Path components after the `:`, index steps as `[n]` / `[*]`.
    path: Vec<String>,
    negated: bool,
    /// `=`, `!=`, `<`, `IN`, `LIKE`, `MATCHES`, `ISSUBSET`, `EXISTS` …
    op: String,
    values: Vec<Token>,
}

impl Test {
    fn path_text(&self) -> String {
        let mut s = format!("{}:", self.object_type);
        for (i, p) in self.path.iter().enumerate() {
            if !p.starts_with('[') && i > 0 {
                s.push('.');
            }
            s.push_str(p);
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Comparison {
    Test(Test),
    And(Vec<Comparison>),
    Or(Vec<Comparison>),
}

#[derive(Debug, Clone, PartialEq)]
enum Observation {
    Brackets(Comparison),
    And(Vec<Observation>),
    Or(Vec<Observation>),
    FollowedBy(Vec<Observation>),
    /// `START … STOP …`, `WITHIN n SECONDS`, `REPEATS n TIMES`.
    Qualified(Box<Observation>, &'static str),
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(a, _)| *a)
    }

    fn fail<T>(&self, expected: &'static str) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            at: self.at(),
            expected,
        })
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(s)) if s == kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char, expected: &'static str) -> Result<(), SyntaxError> {
        if self.punct(c) {
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("less deeply nested parentheses");
        }
        Ok(())
    }

    fn list<T>(
        &mut self,
        kw: &str,
        item: fn(&mut Parser) -> Result<T, SyntaxError>,
        wrap: fn(Vec<T>) -> T,
    ) -> Result<T, SyntaxError> {
        let mut items = vec![item(self)?];
        while self.keyword(kw) {
            items.push(item(self)?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            wrap(items)
        })
    }

    fn followed_by(&mut self) -> Result<Observation, SyntaxError> {
        self.list("FOLLOWEDBY", Parser::obs_or, Observation::FollowedBy)
    }

    fn obs_or(&mut self) -> Result<Observation, SyntaxError> {
        self.list("OR", Parser::obs_and, Observation::Or)
    }

    fn obs_and(&mut self) -> Result<Observation, SyntaxError> {
        self.list("AND", Parser::obs_unit, Observation::And)
    }

    fn obs_unit(&mut self) -> Result<Observation, SyntaxError> {
        self.enter()?;
        let mut obs = if self.punct('[') {
            let c = self.comp_or()?;
            self.expect(']', "`]` closing the observation")?;
            Observation::Brackets(c)
        } else if self.punct('(') {
            let o = self.followed_by()?;
            self.expect(')', "`)`")?;
            o
        } else {
            return self.fail("`[` or `(` starting an observation");
        };
        loop {
            let qualifier = if self.keyword("START") {
                self.typed_literal()?;
                if !self.keyword("STOP") {
                    return self.fail("`STOP` after `START t'…'`");
                }
                self.typed_literal()?;
                "START/STOP"
            } else if self.keyword("WITHIN") {
                self.number()?;
                if !self.keyword("SECONDS") {
                    return self.fail("`SECONDS`");
                }
                "WITHIN"
            } else if self.keyword("REPEATS") {
                self.number()?;
                if !self.keyword("TIMES") {
                    return self.fail("`TIMES`");
                }
                "REPEATS"
            } else {
                break;
            };
            obs = Observation::Qualified(Box::new(obs), qualifier);
        }
        self.depth -= 1;
        Ok(obs)
    }

    fn typed_literal(&mut self) -> Result<(), SyntaxError> {
        match self.next() {
            Some(Token::Typed('t', _)) => Ok(()),
            _ => {
                self.pos -= 1;
                self.fail("a timestamp `t'…'`")
            }
        }
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        match self.next() {
            Some(Token::Number(_)) => Ok(()),
            _ => {
                self.pos -= 1;
                self.fail("a number")
            }
        }
    }

    fn comp_or(&mut self) -> Result<Comparison, SyntaxError> {
        self.list("OR", Parser::comp_and, Comparison::Or)
    }

    fn comp_and(&mut self) -> Result<Comparison, SyntaxError> {
        self.list("AND", Parser::comp_unit, Comparison::And)
    }

    fn comp_unit(&mut self) -> Result<Comparison, SyntaxError> {
        self.enter()?;
        let c = if self.punct('(') {
            let c = self.comp_or()?;
            self.expect(')', "`)`")?;
            c
        } else if self.keyword("EXISTS") {
            let (object_type, path) = self.object_path()?;
            Comparison::Test(Test {
                object_type,
                path,
                negated: false,
                op: "EXISTS".into(),
                values: Vec::new(),
            })
        } else {
            let (object_type, path) = self.object_path()?;
            let negated = self.keyword("NOT");
            let op = match self.next() {
                Some(Token::Op(o)) => o.to_string(),
                Some(Token::Ident(k))
                    if matches!(
                        k.as_str(),
                        "IN" | "LIKE" | "MATCHES" | "ISSUBSET" | "ISSUPERSET"
                    ) =>
                {
                    k
                }
                _ => {
                    self.pos -= 1;
                    return self.fail("a comparison operator");
                }
            };
            let values = if op == "IN" {
                self.expect('(', "`(` opening the set of `IN`")?;
                let mut v = vec![self.literal()?];
                while self.punct(',') {
                    v.push(self.literal()?);
                }
                self.expect(')', "`)` closing the set")?;
                v
            } else {
                vec![self.literal()?]
            };
            Comparison::Test(Test {
                object_type,
                path,
                negated,
                op,
                values,
            })
        };
        self.depth -= 1;
        Ok(c)
    }

    fn literal(&mut self) -> Result<Token, SyntaxError> {
        match self.next() {
            Some(t @ (Token::Str(_) | Token::Number(_) | Token::Typed(..))) => Ok(t),
            Some(Token::Ident(b)) if b == "true" || b == "false" => Ok(Token::Ident(b)),
            _ => {
                self.pos -= 1;
                self.fail("a literal value")
            }
        }
    }

    fn object_path(&mut self) -> Result<(String, Vec<String>), SyntaxError> {
        let Some(Token::Ident(object_type)) = self.next() else {
            self.pos -= 1;
            return self.fail("an object type such as `file` or `ipv4-addr`");
        };
        self.expect(':', "`:` after the object type")?;
        let mut path = vec![self.component()?];
        loop {
            if self.punct('.') {
                path.push(self.component()?);
            } else if self.punct('[') {
                let step = match self.next() {
                    Some(Token::Number(n)) => n,
                    Some(Token::Punct('*')) => "*".into(),
                    _ => {
                        self.pos -= 1;
                        return self.fail("a list index or `*`");
                    }
                };
                self.expect(']', "`]` closing the list index")?;
                path.push(format!("[{step}]"));
            } else {
                return Ok((object_type, path));
            }
        }
    }

    fn component(&mut self) -> Result<String, SyntaxError> {
        match self.next() {
            Some(Token::Ident(s) | Token::Str(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                self.fail("a property name")
            }
        }
    }
}

fn parse(pattern: &str) -> Result<Observation, SyntaxError> {
    let tokens = lex(pattern)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: pattern.chars().count(),
        depth: 0,
    };
    let obs = p.followed_by()?;
    if p.pos < p.tokens.len() {
        return p.fail("`AND`, `OR`, `FOLLOWEDBY` or the end of the pattern");
    }
    Ok(obs)
}

/// What kind of value an enforceable test names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A file's SHA-256.
    Sha256,
    /// An address or network (`ipv4-addr:value`, `ipv6-addr:value`).
    Address,
}

/// Why (part of) a pattern is not enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// The pattern could not be read.
    Syntax(SyntaxError),
    /// A property test Seawall does not match, e.g. `file:name LIKE`.
    Test {
        /// `object:path`.
        path: String,
        /// The operator (with `NOT` when negated).
        op: String,
    },
    /// A combination that one lookup cannot decide (`AND` of different objects, `FOLLOWEDBY`,
    /// a qualifier).
    Combination(&'static str),
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gap::Syntax(e) => write!(f, "the pattern could not be read: {e}"),
            Gap::Test { path, op } => write!(
                f,
                "`{path} {op}` is not matched (Seawall matches `file:hashes.'SHA-256' =` and \
                 `ipv4-addr:value`/`ipv6-addr:value` `=` or `ISSUBSET`)"
            ),
            Gap::Combination(what) => write!(f, "{what} is not matched"),
        }
    }
}

/// What of one pattern Seawall enforces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatternIndicators {
    /// The values to match, as written, with their kind. Any one matching is a match.
    pub values: Vec<(ValueKind, String)>,
    /// What is not matched; empty when the pattern is enforced in full.
    pub gaps: Vec<Gap>,
}

impl PatternIndicators {
    /// Reads a STIX pattern and splits it into enforceable values and gaps.
    pub fn of(pattern: &str) -> PatternIndicators {
        let mut out = PatternIndicators::default();
        match parse(pattern) {
            Ok(obs) => out.observation(&obs),
            Err(e) => out.gaps.push(Gap::Syntax(e)),
        }
        out
    }

    fn observation(&mut self, obs: &Observation) {
        match obs {
            Observation::Brackets(c) => self.comparison(c),
            Observation::Or(items) => items.iter().for_each(|o| self.observation(o)),
            Observation::And(_) => self
                .gaps
                .push(Gap::Combination("`AND` of observations ([…] AND […])")),
            Observation::FollowedBy(_) => self.gaps.push(Gap::Combination("`FOLLOWEDBY`")),
            Observation::Qualified(_, q) => self.gaps.push(Gap::Combination(match *q {
                "WITHIN" => "the `WITHIN` qualifier",
                "REPEATS" => "the `REPEATS` qualifier",
                _ => "the `START`/`STOP` qualifier",
            })),
        }
    }

    fn comparison(&mut self, c: &Comparison) {
        match c {
            Comparison::Test(t) => match enforceable(t) {
                Some(kind) => self.values.extend(t.values.iter().filter_map(|v| match v {
                    Token::Str(s) => Some((kind, s.clone())),
                    _ => None,
                })),
                None => self.gaps.push(Gap::Test {
                    path: t.path_text(),
                    op: if t.negated {
                        format!("NOT {}", t.op)
                    } else {
                        t.op.clone()
                    },
                }),
            },
            Comparison::Or(items) => items.iter().for_each(|c| self.comparison(c)),
            Comparison::And(items) => self.conjunction(items),
        }
    }

    /// `AND` of tests on one file's hashes is its SHA-256 test; any other `AND` is a gap.
    fn conjunction(&mut self, items: &[Comparison]) {
        let mut sha = Vec::new();
        for item in items {
            match item {
                Comparison::Test(t) if is_sha256_path(t) && enforceable(t).is_some() => {
                    sha.extend(t.values.iter().filter_map(|v| match v {
                        Token::Str(s) => Some(s.to_ascii_lowercase()),
                        _ => None,
                    }))
                }
                Comparison::Test(t)
                    if t.object_type == "file"
                        && t.path.first().is_some_and(|p| p == "hashes")
                        && t.op == "="
                        && !t.negated => {}
                _ => {
                    return self.gaps.push(Gap::Combination(
                        "`AND` of tests other than the file's hashes",
                    ))
                }
            }
        }
        sha.sort();
        sha.dedup();
        match sha.as_slice() {
            [one]
                if !items
                    .iter()
                    .any(|i| matches!(i, Comparison::Test(t) if t.op == "IN")) =>
            {
                self.values.push((ValueKind::Sha256, one.clone()))
            }
            _ => self.gaps.push(Gap::Combination(
                "`AND` of hash tests without exactly one SHA-256",
            )),
        }
    }
}

fn is_sha256_path(t: &Test) -> bool {
    t.object_type == "file"
        && t.path.len() == 2
        && t.path[0] == "hashes"
        && matches!(
            t.path[1].to_ascii_uppercase().as_str(),
            "SHA-256" | "SHA256"
        )
}

fn enforceable(t: &Test) -> Option<ValueKind> {
    if t.negated || !t.values.iter().all(|v| matches!(v, Token::Str(_))) {
        return None;
    }
    let address =
        matches!(t.object_type.as_str(), "ipv4-addr" | "ipv6-addr") && t.path == ["value"];
    match t.op.as_str() {
        "=" | "IN" if is_sha256_path(t) => Some(ValueKind::Sha256),
        "=" | "IN" | "ISSUBSET" if address => Some(ValueKind::Address),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn of(p: &str) -> PatternIndicators {
        PatternIndicators::of(p)
    }

    fn values(p: &str) -> Vec<String> {
        let r = of(p);
        assert!(r.gaps.is_empty(), "{p}: {:?}", r.gaps);
        r.values.into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn the_three_documented_patterns() {
        assert_eq!(values(&format!("[file:hashes.'SHA-256' = '{H}']")), [H]);
        assert_eq!(
            values("[ipv4-addr:value = '198.51.100.1/32']"),
            ["198.51.100.1/32"]
        );
        assert_eq!(
            values("[ipv6-addr:value = '2001:db8::/32']"),
            ["2001:db8::/32"]
        );
        assert_eq!(
            of("[ipv4-addr:value = '203.0.113.1']").values[0].0,
            ValueKind::Address
        );
        assert_eq!(
            of(&format!("[file:hashes.SHA256 = '{H}']")).values[0].0,
            ValueKind::Sha256
        );
    }

    #[test]
    fn disjunctions_sets_and_subsets() {
        assert_eq!(
            values("[ipv4-addr:value = '198.51.100.1/32' OR ipv4-addr:value = '203.0.113.33/32']"),
            ["198.51.100.1/32", "203.0.113.33/32"]
        );
        assert_eq!(
            values(
                "[ipv4-addr:value = '192.0.2.1'] OR ([ipv6-addr:value ISSUBSET '2001:db8::/32'])"
            ),
            ["192.0.2.1", "2001:db8::/32"]
        );
        assert_eq!(
            values("[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]"),
            ["192.0.2.1", "192.0.2.2"]
        );
    }

    #[test]
    fn and_of_the_same_files_hashes_is_its_sha256() {
        let p = format!(
            "[file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f' AND file:hashes.'SHA-256' = '{H}']"
        );
        assert_eq!(values(&p), [H]);
        let r = of(&format!(
            "[file:hashes.'SHA-256' = '{H}' AND file:name = 'a.exe']"
        ));
        assert!(r.values.is_empty());
        assert!(matches!(r.gaps[0], Gap::Combination(_)));
    }

    #[test]
    fn partial_and_unsupported_are_named() {
        let r = of(&format!(
            "[file:hashes.'SHA-256' = '{H}' OR file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f']"
        ));
        assert_eq!(r.values.len(), 1);
        assert_eq!(
            r.gaps,
            [Gap::Test {
                path: "file:hashes.MD5".into(),
                op: "=".into()
            }]
        );
        let gap = |p: &str| {
            let r = of(p);
            assert!(r.values.is_empty(), "{p}");
            r.gaps[0].to_string()
        };
        assert!(gap("[domain-name:value = 'evil.example']").contains("domain-name:value ="));
        assert!(gap("[ipv4-addr:value != '192.0.2.1']").contains("!="));
        assert!(gap("[ipv4-addr:value NOT = '192.0.2.1']").contains("NOT ="));
        assert!(gap("[url:value MATCHES '^http']").contains("MATCHES"));
        assert!(gap("[file:name LIKE '%.exe']").contains("file:name LIKE"));
        assert!(gap("[process:command_line EXISTS]").contains("comparison operator"));
        assert!(gap("[network-traffic:dst_ref.value = '192.0.2.1']")
            .contains("network-traffic:dst_ref.value"));
        assert!(gap("[ipv4-addr:value = '192.0.2.1'] AND [file:name = 'x']").contains("AND"));
        assert!(
            gap("[ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [file:name = 'x']")
                .contains("FOLLOWEDBY")
        );
        assert!(gap("[ipv4-addr:value = '192.0.2.1'] WITHIN 300 SECONDS").contains("WITHIN"));
        assert!(gap("[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES").contains("REPEATS"));
        assert!(gap("[ipv4-addr:value = '192.0.2.1'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'")
            .contains("START"));
        assert!(gap("[windows-registry-key:values[*].name = 'x']")
            .contains("windows-registry-key:values[*].name"));
        assert!(gap("[file:size > 1024]").contains("file:size >"));
        assert!(gap("[file:hashes.'SHA-256' = h'00']").contains("SHA-256"));
    }

    #[test]
    fn syntax_errors_say_where() {
        for (p, at) in [
            ("ipv4-addr:value = '1.2.3.4'", 0),
            ("[ipv4-addr:value = '1.2.3.4'", 28),
            ("[ipv4-addr:value = '1.2.3.4]", 19),
            ("[ipv4-addr:value = '1.2.3.4'] OR", 32),
            ("[ipv4-addr:value ~ '1']", 17),
            ("[a:b = 'x'] [c:d = 'y']", 12),
            ("[a:b IN ()]", 9),
        ] {
            match &of(p).gaps[..] {
                [Gap::Syntax(e)] => assert_eq!(e.at, at, "{p}: {e}"),
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn escapes_in_strings() {
        let r = of(r"[file:name = 'it\'s \\ here' OR ipv4-addr:value = '192.0.2.9']");
        assert_eq!(r.values, [(ValueKind::Address, "192.0.2.9".to_string())]);
        assert!(matches!(of(r"[file:name = 'a\x']").gaps[0], Gap::Syntax(_)));
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        let deep = format!("{}[a:b = 'x']{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(of(&deep).gaps[0], Gap::Syntax(_)));
        let deep = format!("[{}a:b = 'x'{}]", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(of(&deep).gaps[0], Gap::Syntax(_)));
    }
}
