use std::time::{Duration, SystemTime};

use super::*;
use crate::indicator::IndicatorKind;

const H: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

fn now() -> SystemTime {
    // 2025-06-01T00:00:00Z
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}

fn bundle(objects: &[String]) -> String {
    format!(
        "{{\n  \"type\": \"bundle\",\n  \"id\": \"bundle--5d0092c5-5f74-4287-9642-33f4c354e56d\",\n  \"objects\": [\n{}\n  ]\n}}\n",
        objects.join(",\n")
    )
}

fn indicator(id: &str, pattern: &str, extra: &str) -> String {
    format!(
        "    {{\n      \"type\": \"indicator\",\n      \"spec_version\": \"2.1\",\n      \"id\": \"indicator--{id}\",\n      \"created\": \"2025-01-01T00:00:00.000Z\",\n      \"modified\": \"2025-01-01T00:00:00.000Z\",\n      \"pattern\": {},\n      \"pattern_type\": \"stix\",\n      \"valid_from\": \"2025-01-01T00:00:00Z\"{extra}\n    }}",
        serde_json::to_string(pattern).unwrap()
    )
}

fn parse_str(s: &str) -> Result<Feed, LineProblem> {
    parse(s.as_bytes(), now())
}

#[test]
fn reads_hash_and_address_indicators_with_their_lines() {
    let text = bundle(&[
        indicator(
            "1",
            &format!("[file:hashes.'SHA-256' = '{H}']"),
            ",\n      \"name\": \"Mirai dropper\"",
        ),
        indicator("2", "[ipv4-addr:value = '198.51.100.7']", ""),
        indicator("3", "[ipv6-addr:value = '2001:db8:bad::/48']", ""),
        indicator("4", "[ipv4-addr:value = '203.0.113.0/24']", ""),
    ]);
    let feed = parse_str(&text).unwrap();
    let got: Vec<_> = feed
        .entries
        .iter()
        .map(|e| {
            (
                e.line,
                e.indicator.to_string(),
                e.indicator.kind(),
                e.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                5,
                H.to_string(),
                IndicatorKind::Sha256,
                Some("Mirai dropper".to_string())
            ),
            (16, "198.51.100.7".to_string(), IndicatorKind::Ip, None),
            (
                26,
                "2001:db8:bad::/48".to_string(),
                IndicatorKind::Cidr,
                None
            ),
            (36, "203.0.113.0/24".to_string(), IndicatorKind::Cidr, None),
        ]
    );
    assert!(feed.unsupported.is_empty());
    assert_eq!(text.lines().nth(4).unwrap().trim(), "{");
}

#[test]
fn unsupported_patterns_are_listed_not_dropped() {
    let text = bundle(&[
        indicator("1", "[domain-name:value = 'evil.example']", ""),
        indicator(
            "2",
            &format!("[file:hashes.'SHA-256' = '{H}' OR file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f']"),
            "",
        ),
        "    {\"type\": \"indicator\", \"id\": \"indicator--3\", \"pattern\": \"rule x { condition: true }\", \"pattern_type\": \"yara\"}".to_string(),
        indicator("4", "[ipv4-addr:value = '192.0.2.1'", ""),
    ]);
    let feed = parse_str(&text).unwrap();
    assert_eq!(feed.entries.len(), 1, "the SHA-256 alternative is loaded");
    let listed: Vec<_> = feed
        .unsupported
        .iter()
        .map(|u| (u.object.as_str(), u.partial, u.reason.to_string()))
        .collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed[0].0, "indicator--1");
    assert!(!listed[0].1);
    assert!(
        listed[0].2.contains("domain-name:value ="),
        "{}",
        listed[0].2
    );
    assert_eq!(listed[1].0, "indicator--2");
    assert!(listed[1].1, "partial: its SHA-256 is enforced");
    assert!(listed[1].2.contains("file:hashes.MD5"), "{}", listed[1].2);
    assert!(listed[2].2.contains("yara"), "{}", listed[2].2);
    assert!(listed[3].2.contains("could not be read"), "{}", listed[3].2);
    assert_eq!(feed.unsupported[3].line, 26);
}

#[test]
fn revoked_and_expired_are_counted() {
    let text = bundle(&[
        indicator(
            "1",
            "[ipv4-addr:value = '192.0.2.1']",
            ",\n      \"revoked\": true",
        ),
        indicator(
            "2",
            "[ipv4-addr:value = '192.0.2.2']",
            ",\n      \"valid_until\": \"2025-05-31T23:59:59.999Z\"",
        ),
        indicator(
            "3",
            "[ipv4-addr:value = '192.0.2.3']",
            ",\n      \"valid_until\": \"2026-01-01T00:00:00Z\"",
        ),
    ]);
    let feed = parse_str(&text).unwrap();
    assert_eq!((feed.revoked, feed.expired), (1, 1));
    assert_eq!(feed.entries.len(), 1);
    assert_eq!(feed.entries[0].indicator.to_string(), "192.0.2.3");
}

#[test]
fn names_come_from_what_the_indicator_indicates() {
    let text = bundle(&[
        indicator("1", &format!("[file:hashes.'SHA-256' = '{H}']"), ""),
        "{\"type\": \"malware\", \"id\": \"malware--9\", \"name\": \"Kinsing\", \"is_family\": true}".into(),
        "{\"type\": \"relationship\", \"id\": \"relationship--1\", \"relationship_type\": \"indicates\", \"source_ref\": \"indicator--1\", \"target_ref\": \"malware--9\"}".into(),
    ]);
    let feed = parse_str(&text).unwrap();
    assert_eq!(feed.entries[0].name.as_deref(), Some("Kinsing"));
}

#[test]
fn taxii_envelopes_and_stix_2_0() {
    let text = "{\"more\": false, \"objects\": [{\"type\": \"indicator\", \"id\": \"indicator--1\", \"pattern\": \"[ipv4-addr:value = '192.0.2.1']\"}]}";
    assert_eq!(parse_str(text).unwrap().entries.len(), 1);
}

#[test]
fn errors_name_the_line() {
    let e = parse_str("{\n\"type\": \"bundle\",\n\"objects\": [\n}").unwrap_err();
    assert_eq!(e.line, 4);
    assert!(matches!(e.problem, Problem::Json(_)));
    let e = parse_str("[1, 2]").unwrap_err();
    assert!(matches!(e.problem, Problem::NotABundle), "{}", e.problem);
    let e = parse_str("{\"type\": \"report\", \"objects\": []}").unwrap_err();
    assert!(matches!(e.problem, Problem::NotABundle));
    let e = parse_str("{\"type\": \"bundle\"}").unwrap_err();
    assert!(matches!(e.problem, Problem::NotABundle));

    let text = bundle(&[
        indicator("1", "[ipv4-addr:value = '192.0.2.1']", ""),
        indicator("2", "[ipv4-addr:value = '192.0.2.300']", ""),
    ]);
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.line, 15);
    let msg = e.problem.to_string();
    assert!(
        msg.contains("indicator--2") && msg.contains("192.0.2.300"),
        "{msg}"
    );

    let text = bundle(&["{\"type\": \"indicator\", \"id\": \"indicator--7\"}".into()]);
    let e = parse_str(&text).unwrap_err();
    assert!(
        e.problem.to_string().contains("no `pattern`"),
        "{}",
        e.problem
    );
    let text = bundle(&[indicator(
        "1",
        "[ipv4-addr:value = '192.0.2.1']",
        ",\"valid_until\": \"tomorrow\"",
    )]);
    assert!(parse_str(&text)
        .unwrap_err()
        .problem
        .to_string()
        .contains("RFC 3339"));
    let text = bundle(&[indicator(
        "1",
        "[ipv4-addr:value = '192.0.2.1']",
        ",\"revoked\": \"yes\"",
    )]);
    assert!(matches!(
        parse_str(&text).unwrap_err().problem,
        Problem::Stix {
            what: StixProblem::Shape(_),
            ..
        }
    ));
    let text = bundle(&["{\"id\": \"x--1\"}".into()]);
    assert!(parse_str(&text)
        .unwrap_err()
        .problem
        .to_string()
        .contains("no `type`"));
    let e = parse(b"{\"type\": \"bundle\",\n \"objects\": [\xff]}", now()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(matches!(e.problem, Problem::NotUtf8));
}

#[test]
fn unrelated_objects_are_not_judged() {
    let text = bundle(&[
        "{\"type\": \"identity\", \"id\": \"identity--1\", \"name\": 42}".into(),
        "{\"type\": \"x-custom\", \"id\": \"x-custom--1\", \"whatever\": [1, {}]}".into(),
    ]);
    assert!(parse_str(&text).unwrap().entries.is_empty());
}
