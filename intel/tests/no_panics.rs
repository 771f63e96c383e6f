//! Feeds and reports are input from outside: no byte sequence may panic a parser. This runs
//! every parser over random bytes and over valid samples with random mutations (a cheap,
//! deterministic stand-in for a fuzzer that needs no extra tooling; the seeds are fixed, so a
//! failure reproduces).

use std::time::SystemTime;

use seawall_intel::{Feed, FeedFormat, ScanReport};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SAMPLES: &[(FeedFormat, &str)] = &[
    (FeedFormat::PlainList, "# list\n192.0.2.1\n198.51.100.0/24 ; x\n2001:db8::/32\n275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\n"),
    (FeedFormat::Csv, "# \"first_seen_utc\",\"sha256_hash\",\"signature\"\n\"2025-01-01\", \"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\", \"Mirai\"\n"),
    (FeedFormat::Stix, r#"{"type": "bundle", "objects": [{"type": "indicator", "id": "indicator--1", "pattern": "[file:hashes.'SHA-256' = '275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f' OR ipv4-addr:value ISSUBSET '198.51.100.0/24'] WITHIN 5 SECONDS", "pattern_type": "stix", "valid_until": "2030-01-01T00:00:00Z"}, {"type": "relationship", "relationship_type": "indicates", "source_ref": "indicator--1", "target_ref": "malware--1"}, {"type": "malware", "id": "malware--1", "name": "x"}]}"#),
];

const REPORT: &str = r#"{"SchemaVersion": 2, "ArtifactName": "a", "ArtifactType": "container_image", "Metadata": {"ImageID": "sha256:00", "RepoDigests": ["a@sha256:11"]}, "Results": [{"Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "p", "Severity": "HIGH"}]}]}"#;

/// Bytes that matter to the grammars, so mutations reach deep branches.
const INTERESTING: &[u8] = b"[]()'\"\\,:;.#/*=!<>-_ \n\r\t0123456789abcdefANDORNOTINfx\xff\xc3\x80";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => {
                out.remove(at);
            }
            1 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < out.len() => out[at] = rng.next() as u8,
            _ => {
                // Duplicate a slice: builds nesting and repetition.
                let end = (at + rng.below(16)).min(out.len());
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
        }
    }
    out
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let now = SystemTime::now();
    let formats = [FeedFormat::PlainList, FeedFormat::Csv, FeedFormat::Stix];
    let mut rng = Rng(0x05ea_a111_e7e1);
    for round in 0..20_000 {
        let input: Vec<u8> = if round % 4 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            let (_, sample) = SAMPLES[rng.below(SAMPLES.len())];
            mutate(&mut rng, sample.as_bytes())
        };
        for format in formats {
            let _ = Feed::parse(format, &input, now);
        }
        let _ = ScanReport::parse("r.json", &input);
        let _ = ScanReport::parse("r.json", &mutate(&mut rng, REPORT.as_bytes()));
    }
}

#[test]
fn the_samples_themselves_parse() {
    let now = SystemTime::now();
    for (format, sample) in SAMPLES {
        let feed = Feed::parse(*format, sample.as_bytes(), now).unwrap();
        assert!(
            !feed.entries.is_empty() || !feed.unsupported.is_empty(),
            "{format:?}"
        );
    }
    assert_eq!(
        ScanReport::parse("r.json", REPORT.as_bytes())
            .unwrap()
            .findings
            .len(),
        1
    );
}
