//! Property tests of the path matchers against small reference implementations written from
//! the language reference (profiles/README.md), over paths an attacker shapes: bytes that are
//! not UTF-8, `.` and `..` components (matched as the names they are: the kernel and fanotify
//! hand over resolved paths, so a `..` that reaches a matcher is a file name, not a way up),
//! empty components, and very deep paths.

use proptest::prelude::*;
use seawall_profile::{PathGlobs, PathRule};

/// Path components an attacker might use.
fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"usr".to_vec()),
        Just(b"bin".to_vec()),
        Just(b"etc".to_vec()),
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(b"".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"a*b".to_vec()),
        proptest::collection::vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..4
        ),
    ]
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(component(), 0..8).prop_map(|c| {
        let mut p = Vec::new();
        for part in c {
            p.push(b'/');
            p.extend(part);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        p
    })
}

/// A rule in one of the three kernel forms, over plain names.
fn rule() -> impl Strategy<Value = (Vec<&'static str>, u8)> {
    (
        proptest::collection::vec(
            prop_oneof![Just("usr"), Just("bin"), Just("etc"), Just("x")],
            1..4,
        ),
        0u8..3,
    )
}

fn components(p: &[u8]) -> Vec<&[u8]> {
    p.split(|&b| b == b'/').skip(1).collect()
}

/// The reference: a rule's base directory as components; exact = same components, `dir/*` =
/// exactly one more non-empty component, `dir/**` = one or more more components (the last
/// one non-empty). The path is compared component by component, byte for byte.
fn reference(base: &[&str], form: u8, path: &[u8]) -> bool {
    let pc = components(path);
    let bc: Vec<&[u8]> = base.iter().map(|s| s.as_bytes()).collect();
    match form {
        0 => pc == bc,
        1 => pc.len() == bc.len() + 1 && pc[..bc.len()] == bc[..] && !pc[bc.len()].is_empty(),
        // Anything strictly below the directory: `/a/` alone (an empty name) is not.
        _ => {
            pc.len() > bc.len()
                && pc[..bc.len()] == bc[..]
                && (pc.len() > bc.len() + 1 || !pc[bc.len()].is_empty())
        }
    }
}

fn pattern(base: &[&str], form: u8) -> String {
    let b = format!("/{}", base.join("/"));
    match form {
        0 => b,
        1 => format!("{b}/*"),
        _ => format!("{b}/**"),
    }
}

proptest! {
    #[test]
    fn kernel_form_rules_match_like_the_reference((base, form) in rule(), p in path()) {
        let r = PathRule::parse(&pattern(&base, form)).unwrap();
        prop_assert_eq!(r.matches_bytes(&p), reference(&base, form, &p), "rule {:?} path {:?}", r, String::from_utf8_lossy(&p));
    }

    #[test]
    fn byte_and_str_matching_agree_on_utf8(( base, form) in rule(), p in path()) {
        let r = PathRule::parse(&pattern(&base, form)).unwrap();
        if let Ok(s) = std::str::from_utf8(&p) {
            prop_assert_eq!(r.matches(s), r.matches_bytes(&p));
        }
    }

    /// `*` stays inside one component, `**` crosses them, a literal never matches a byte that
    /// is not UTF-8 (the pattern cannot contain one).
    #[test]
    fn globs_match_like_the_reference((base, form) in rule(), p in path()) {
        let globs = PathGlobs::new(vec![pattern(&base, form)]).unwrap();
        let expected = match form {
            0 => components(&p) == base.iter().map(|s| s.as_bytes()).collect::<Vec<_>>(),
            // globset's `dir/*` matches one component (possibly empty), `dir/**` anything
            // below (possibly empty too): the file rules' userspace semantics.
            1 => {
                let pc = components(&p);
                pc.len() == base.len() + 1 && pc[..base.len()] == base.iter().map(|s| s.as_bytes()).collect::<Vec<_>>()[..]
            }
            _ => {
                let pc = components(&p);
                pc.len() > base.len() && pc[..base.len()] == base.iter().map(|s| s.as_bytes()).collect::<Vec<_>>()[..]
            }
        };
        prop_assert_eq!(globs.matches_bytes(&p), expected, "glob {} path {:?}", pattern(&base, form), String::from_utf8_lossy(&p));
    }
}

#[test]
fn dot_dot_is_a_name_not_a_way_up() {
    let deny = PathRule::parse("/etc/shadow").unwrap();
    assert!(!deny.matches_bytes(b"/tmp/../etc/shadow"));
    let tree = PathRule::parse("/usr/**").unwrap();
    assert!(
        tree.matches_bytes(b"/usr/../etc/shadow"),
        "a literal `..` below /usr is below /usr"
    );
    let globs = PathGlobs::new(vec!["/etc/*".into()]).unwrap();
    assert!(globs.matches_bytes(b"/etc/\xff"));
    assert!(!globs.matches_bytes(b"/etc/a/\xff"));
}
