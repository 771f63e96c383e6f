//! The exec/drift/file path matcher as the kernel runs it (`agent-ebpf/src/walk.rs`:
//! FNV-1a of the whole path and of every prefix ending in `/`, looked up as the keys the
//! profile compiler writes), mirrored here step for step and property-tested against the
//! profile language's own matcher, over paths the kernel can hand over (absolute, no empty
//! components, no trailing `/`) made of attacker-shaped names: bytes that are not UTF-8,
//! `..`, `.`, glob characters, and paths longer than the kernel hashes.
//!
//! Also the fail-closed rule of the decision: a path the kernel flags untrusted (truncated,
//! outside the root, unreadable) is never on an allow list.

use std::collections::HashSet;

use agent_common::{
    fnv1a_step, PathRuleKey, FNV_OFFSET, FORM_DIR, FORM_EXACT, FORM_TREE, LIST_EXEC_ALLOW,
    PATH_MAX_OFF,
};
use proptest::prelude::*;
use seawall::policy::compile::path_key;
use seawall_profile::PathRule;

const PROFILE: u32 = 9;
const LIST: u32 = LIST_EXEC_ALLOW;

/// `walk::path_listed`, in Rust: the same steps, the same bounds.
fn kernel_listed(path: &[u8], keys: &HashSet<PathRuleKey>) -> bool {
    if path.len() >= PATH_MAX_OFF {
        return false;
    }
    let key = |form, hash| PathRuleKey {
        profile_id: PROFILE,
        list: LIST,
        form,
        _pad: 0,
        hash,
    };
    let mut h = FNV_OFFSET;
    let mut last_dir = 0;
    for &b in path {
        h = fnv1a_step(h, b);
        if b == b'/' {
            if keys.contains(&key(FORM_TREE, h)) {
                return true;
            }
            last_dir = h;
        }
    }
    keys.contains(&key(FORM_EXACT, h)) || keys.contains(&key(FORM_DIR, last_dir))
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"usr".to_vec()),
        Just(b"bin".to_vec()),
        Just(b"local".to_vec()),
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"*".to_vec()),
        proptest::collection::vec(
            any::<u8>().prop_filter("a name byte", |b| *b != b'/' && *b != 0),
            1..6
        ),
    ]
}

/// A path as the kernel builds it: `/` + names joined by `/`.
fn kernel_path(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(name(), 1..max).prop_map(|names| {
        let mut p = Vec::new();
        for n in names {
            p.push(b'/');
            p.extend(n);
        }
        p
    })
}

fn rule() -> impl Strategy<Value = PathRule> {
    (
        proptest::collection::vec(
            prop_oneof![Just("usr"), Just("bin"), Just("local"), Just("x")],
            1..4,
        ),
        0u8..3,
    )
        .prop_map(|(names, form)| {
            let base = format!("/{}", names.join("/"));
            let pattern = match form {
                0 => base,
                1 => format!("{base}/*"),
                _ => format!("{base}/**"),
            };
            PathRule::parse(&pattern).expect("a valid kernel form")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_kernel_matcher_agrees_with_the_rules(rules in proptest::collection::vec(rule(), 1..5), p in kernel_path(8)) {
        let keys: HashSet<PathRuleKey> = rules.iter().map(|r| path_key(PROFILE, LIST, r)).collect();
        let want = rules.iter().any(|r| r.matches_bytes(&p));
        prop_assert_eq!(kernel_listed(&p, &keys), want, "rules {:?} path {:?}", rules, String::from_utf8_lossy(&p));
    }

    /// Longer than the kernel hashes: never on a list, whatever its bytes spell.
    #[test]
    fn a_path_too_long_to_hash_is_never_listed(rules in proptest::collection::vec(rule(), 1..5), tail in kernel_path(4)) {
        let keys: HashSet<PathRuleKey> = rules.iter().map(|r| path_key(PROFILE, LIST, r)).collect();
        let mut p = b"/usr/local".to_vec();
        while p.len() < PATH_MAX_OFF {
            p.extend_from_slice(b"/a");
        }
        p.extend(tail);
        prop_assert!(!kernel_listed(&p, &keys));
    }

    /// The userspace copy of the kernel's decision (for held execs) never allows an untrusted
    /// path through an allow list, and never lets door drift through the drift allow list.
    #[test]
    fn untrusted_paths_are_never_allowed(p in kernel_path(6), flag in prop_oneof![
        Just(agent_common::EXEC_PATH_TRUNCATED),
        Just(agent_common::EXEC_OUTSIDE_ROOT),
        Just(agent_common::EXEC_UNREADABLE),
        Just(agent_common::EXEC_ROOT_UNKNOWN),
    ]) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.toml"),
            "[profile]\nname = \"p\"\nimages = [\"x\"]\nmode = \"enforce\"\n[exec]\nallow = [\"/**\"]\n",
        )
        .unwrap();
        let set = seawall_profile::ProfileSet::load_dir(dir.path()).unwrap();
        let profile = set.for_image("x", None);
        let path = String::from_utf8_lossy(&p).into_owned();
        let (control, action) = seawall::policy::verdict::exec_verdict(profile, flag, &path);
        prop_assert_eq!((control, action), (agent_common::CONTROL_EXEC, agent_common::ACTION_BLOCKED));
    }
}

#[test]
fn where_the_two_differ_the_kernel_never_produces_the_path() {
    // A trailing `/` (a directory) is on `/usr/*` to the hash, not to the language; the kernel
    // builds paths of files it executes or opens, which never end in `/` (the root alone is
    // `/`, and a walk that stops there is flagged untrusted).
    let keys: HashSet<PathRuleKey> =
        [path_key(PROFILE, LIST, &PathRule::parse("/usr/*").unwrap())].into();
    assert!(kernel_listed(b"/usr/", &keys));
    assert!(!PathRule::parse("/usr/*").unwrap().matches_bytes(b"/usr/"));
}
