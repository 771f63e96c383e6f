use std::fs;
use std::time::SystemTime;

use super::*;
use crate::error::Problem;

const H1: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
const H2: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sha(s: &str) -> Sha256 {
    Sha256::parse(s).unwrap()
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn stix_one(pattern: &str, name: &str) -> String {
    format!(
        r#"{{"type": "bundle", "id": "bundle--1", "objects": [
  {{"type": "indicator", "spec_version": "2.1", "id": "indicator--1", "pattern": "{pattern}",
    "pattern_type": "stix", "name": "{name}", "valid_from": "2025-01-01T00:00:00Z"}},
  {{"type": "indicator", "spec_version": "2.1", "id": "indicator--2", "pattern": "[url:value = 'http://x']",
    "pattern_type": "stix", "valid_from": "2025-01-01T00:00:00Z"}}
]}}"#
    )
}

#[test]
fn a_directory_of_every_format_merges_with_origins() {
    let dir = dir_with(&[
        (
            "abuse-ips.txt",
            "# Feodo\n192.0.2.10\n198.51.100.0/24\n2001:db8::/32\n",
        ),
        (
            "bazaar.csv",
            &format!("# \"sha256_hash\",\"signature\"\n\"{H1}\", \"Mirai\"\n"),
        ),
        ("hashes.txt", &format!("{H2}\n{H1}\n")),
        (
            "vendor.json",
            &stix_one("[ipv4-addr:value = '203.0.113.9']", "C2 of Kinsing"),
        ),
        (".hidden.txt", "not even read: 10.0.0.1/8"),
        ("abuse-ips.txt~", "10.0.0.1/8"),
    ]);
    fs::create_dir(dir.path().join("archive")).unwrap();
    let set = IntelSet::load_dir(dir.path(), SystemTime::now()).unwrap();

    assert_eq!(set.count(IndicatorKind::Sha256), 2);
    assert_eq!(set.count(IndicatorKind::Ip), 2);
    assert_eq!(set.count(IndicatorKind::Cidr), 2);

    let h1 = set.match_hash(&sha(H1)).unwrap();
    let files: Vec<&str> = h1.origins.iter().map(|o| &*o.file).collect();
    assert_eq!(files, ["bazaar.csv", "hashes.txt"]);
    assert_eq!(h1.source(), "bazaar.csv");
    assert_eq!(h1.name(), Some("Mirai"));
    assert_eq!(h1.origins[1].line, 2);
    assert!(set.match_hash(&sha(&H2.replace('e', "f"))).is_none());

    let hit = set.match_addr(ip("203.0.113.9")).unwrap();
    assert_eq!(
        (hit.source(), hit.name()),
        ("vendor.json", Some("C2 of Kinsing"))
    );
    assert_eq!(hit.indicator.kind(), IndicatorKind::Ip);

    let names: Vec<&str> = set.feeds().iter().map(|f| &*f.file).collect();
    assert_eq!(
        names,
        ["abuse-ips.txt", "bazaar.csv", "hashes.txt", "vendor.json"]
    );
    assert_eq!(set.feeds()[0].counts, [0, 1, 2]);
    assert_eq!(set.feeds()[3].unsupported.len(), 1);
    let skipped: Vec<(&str, &str)> = set
        .skipped()
        .iter()
        .map(|s| (s.file.as_str(), s.reason))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(skipped
        .iter()
        .any(|(f, r)| *f == "archive" && r.contains("directory")));
}

#[test]
fn longest_prefix_wins_and_mapped_addresses_are_ipv4() {
    let dir = dir_with(&[
        (
            "a.txt",
            "10.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n2001:db8::/32\n2001:db8:1::/48\n",
        ),
        ("b.txt", "::ffff:192.0.2.0/120\n"),
    ]);
    let set = IntelSet::load_dir(dir.path(), SystemTime::now()).unwrap();
    let net = |a: &str| set.match_addr(ip(a)).map(|l| l.indicator.to_string());
    assert_eq!(net("10.1.2.3").as_deref(), Some("10.1.2.3"));
    assert_eq!(net("10.1.2.4").as_deref(), Some("10.1.0.0/16"));
    assert_eq!(net("10.2.0.1").as_deref(), Some("10.0.0.0/8"));
    assert_eq!(net("11.0.0.1"), None);
    assert_eq!(net("::ffff:10.1.2.3").as_deref(), Some("10.1.2.3"));
    assert_eq!(net("192.0.2.77").as_deref(), Some("192.0.2.0/24"));
    assert_eq!(net("::ffff:192.0.2.77").as_deref(), Some("192.0.2.0/24"));
    assert_eq!(net("2001:db8:1::5").as_deref(), Some("2001:db8:1::/48"));
    assert_eq!(net("2001:db8:2::5").as_deref(), Some("2001:db8::/32"));
    assert_eq!(net("2001:db9::1"), None);
    // 10.1.2.3 as an IPv4-compatible (not mapped) IPv6 address is another address.
    assert_eq!(net("::10.1.2.3"), None);
}

#[test]
fn a_mapped_address_is_judged_as_ipv4_as_the_kernel_does() {
    let dir = dir_with(&[("a.txt", "::/64\n")]);
    let set = IntelSet::load_dir(dir.path(), SystemTime::now()).unwrap();
    assert!(set.match_addr(ip("::1")).is_some());
    assert!(set.match_addr(ip("::ffff:192.0.2.1")).is_none());
    assert!(set.match_addr(ip("192.0.2.1")).is_none());
}

#[test]
fn one_bad_file_fails_the_whole_load_naming_file_and_line() {
    let dir = dir_with(&[
        ("good.txt", "192.0.2.1\n"),
        ("bad.txt", "# list\n192.0.2.2\n192.0.2.256\n"),
    ]);
    let e = IntelSet::load_dir(dir.path(), SystemTime::now()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}:3: ", dir.path().join("bad.txt").display())),
        "{msg}"
    );
    assert!(msg.contains("192.0.2.256"), "{msg}");
    match e {
        LoadError::Invalid {
            line: 3,
            problem: Problem::Indicator(_),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn unreadable_inputs_are_errors() {
    let missing = std::env::temp_dir().join("seawall-intel-no-such-dir");
    assert!(matches!(
        IntelSet::load_dir(&missing, SystemTime::now()),
        Err(LoadError::ReadDir { .. })
    ));
    let dir = dir_with(&[]);
    std::os::unix::fs::symlink("/nonexistent/feed.txt", dir.path().join("dangling.txt")).unwrap();
    assert!(matches!(
        IntelSet::load_dir(dir.path(), SystemTime::now()),
        Err(LoadError::ReadFile { .. })
    ));
}

#[test]
fn an_empty_directory_is_an_empty_set() {
    let dir = dir_with(&[]);
    let set = IntelSet::load_dir(dir.path(), SystemTime::now()).unwrap();
    assert!(set.is_empty());
    assert!(set.feeds().is_empty());
}
