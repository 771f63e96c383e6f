//! The profile compiler: validated profiles → the map entries the kernel programs read.
//!
//! Every compile gets fresh profile ids, so a reload is: write the new rules, point every
//! container (and the default, key 0) at the new ids, then delete the old rules. At no moment is
//! a container without a complete policy.

use std::{collections::HashMap, net::IpAddr};

use agent_common::{
    fnv1a, ContainerPolicy, NetRule as KNetRule, NetRuleKey, PathRuleKey, FAMILY_INET,
    FAMILY_INET6, FORM_DIR, FORM_EXACT, FORM_TREE, LIST_DRIFT_ALLOW, LIST_EXEC_ALLOW,
    LIST_EXEC_DENY, LIST_FILE_DENY, LIST_FILE_READ_ONLY, LIST_FILE_RULE_DIRS, MAX_NET_RULES,
    MODE_AUDIT, MODE_ENFORCE, NET_LIST_ALLOW, NET_LIST_DENY, NET_LIST_LISTEN, PROTO_ANY, PROTO_TCP,
    PROTO_UDP, RULES_DRIFT_ALLOW, RULES_EXEC_ALLOW, RULES_EXEC_DENY, RULES_FILE_DENY,
    RULES_FILE_READ_ONLY, RULES_NET_ALLOW, RULES_NET_LISTEN,
};

use seawall_profile::{Mode, NetRule, PathRule, Profile, ProfileSet, Protocol};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error(
        "profile {profile}: {list} has {count} rules; the kernel takes at most {max} per list"
    )]
    TooManyNetRules {
        profile: String,
        list: &'static str,
        count: usize,
        max: u32,
    },
}

/// One profile as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledProfile {
    pub name: String,
    pub policy: ContainerPolicy,
    pub path_rules: Vec<PathRuleKey>,
    pub net_rules: Vec<(NetRuleKey, KNetRule)>,
}

/// A whole profile set, compiled.
#[derive(Debug, Clone, Default)]
pub struct CompiledSet {
    pub by_name: HashMap<String, CompiledProfile>,
    pub default_name: String,
}

impl CompiledSet {
    pub fn default_policy(&self) -> ContainerPolicy {
        self.by_name
            .get(&self.default_name)
            .map(|p| p.policy)
            .unwrap_or_default()
    }

    pub fn all_path_rules(&self) -> Vec<PathRuleKey> {
        self.by_name
            .values()
            .flat_map(|p| p.path_rules.iter().copied())
            .collect()
    }

    pub fn all_net_rules(&self) -> Vec<(NetRuleKey, KNetRule)> {
        self.by_name
            .values()
            .flat_map(|p| p.net_rules.iter().copied())
            .collect()
    }
}

fn mode(m: Mode) -> u32 {
    match m {
        Mode::Off => 0,
        Mode::Audit => MODE_AUDIT,
        Mode::Enforce => MODE_ENFORCE,
    }
}

/// The kernel key of a path rule: hash of the exact path, or of the directory with its `/`.
pub fn path_key(profile_id: u32, list: u32, rule: &PathRule) -> PathRuleKey {
    let (form, text) = match rule {
        PathRule::Exact(p) => (FORM_EXACT, p.as_str()),
        PathRule::Dir(d) => (FORM_DIR, d.as_str()),
        PathRule::Tree(d) => (FORM_TREE, d.as_str()),
    };
    PathRuleKey {
        profile_id,
        list,
        form,
        _pad: 0,
        hash: fnv1a(text.as_bytes()),
    }
}

fn net_rule(r: &NetRule) -> KNetRule {
    let mut addr = [0u8; 16];
    let family = match r.net {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            FAMILY_INET
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            FAMILY_INET6
        }
    };
    KNetRule {
        addr,
        family,
        prefix_len: r.prefix_len.into(),
        protocol: match r.protocol {
            Protocol::Any => PROTO_ANY,
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        port_lo: r.ports.first,
        port_hi: r.ports.last,
    }
}

/// Compiles one profile under `profile_id`.
pub fn compile_profile(p: &Profile, profile_id: u32) -> Result<CompiledProfile, CompileError> {
    let mut policy = ContainerPolicy {
        profile_id,
        drift_mode: mode(p.drift.mode),
        exec_mode: mode(p.exec.mode),
        container_exec_mode: mode(p.exec.container_exec),
        net_mode: mode(p.network.mode),
        block_raw_sockets: p.network.block_raw_sockets.into(),
        file_mode: mode(p.files.mode),
        ..Default::default()
    };
    let mut path_rules = Vec::new();
    if !p.drift.allow.is_empty() {
        policy.rules |= RULES_DRIFT_ALLOW;
        path_rules.extend(
            p.drift
                .allow
                .iter()
                .map(|r| path_key(profile_id, LIST_DRIFT_ALLOW, r)),
        );
    }
    if let Some(allow) = &p.exec.allow {
        policy.rules |= RULES_EXEC_ALLOW;
        path_rules.extend(
            allow
                .iter()
                .map(|r| path_key(profile_id, LIST_EXEC_ALLOW, r)),
        );
    }
    if !p.exec.deny.is_empty() {
        policy.rules |= RULES_EXEC_DENY;
        if p.exec.deny.iter().any(|r| !matches!(r, PathRule::Exact(_))) {
            policy.rules |= agent_common::RULES_EXEC_DENY_TREES;
        }
        path_rules.extend(
            p.exec
                .deny
                .iter()
                .map(|r| path_key(profile_id, LIST_EXEC_DENY, r)),
        );
    }

    // File rules the kernel can match (BPF LSM file_open and path hooks); full globs stay with
    // fanotify. Every directory that holds a ruled path is listed too: renaming one of them
    // would give the ruled files other names.
    let mut rule_dirs = std::collections::BTreeSet::new();
    for (list, bit, trees, globs) in [
        (
            LIST_FILE_DENY,
            RULES_FILE_DENY,
            agent_common::RULES_FILE_DENY_TREES,
            &p.files.deny,
        ),
        (
            LIST_FILE_READ_ONLY,
            RULES_FILE_READ_ONLY,
            agent_common::RULES_FILE_READ_ONLY_TREES,
            &p.files.read_only,
        ),
    ] {
        for pattern in globs.patterns() {
            if let Ok(rule) = PathRule::parse(pattern) {
                policy.rules |= bit;
                if !matches!(rule, PathRule::Exact(_)) {
                    policy.rules |= trees;
                }
                path_rules.push(path_key(profile_id, list, &rule));
                rule_dirs.extend(holding_dirs(&rule));
            }
        }
    }
    path_rules.extend(rule_dirs.iter().map(|d| PathRuleKey {
        profile_id,
        list: LIST_FILE_RULE_DIRS,
        form: FORM_EXACT,
        _pad: 0,
        hash: fnv1a(d.as_bytes()),
    }));

    let mut net_rules = Vec::new();
    let mut push_list =
        |list: u32, name: &'static str, rules: Vec<KNetRule>| -> Result<u32, CompileError> {
            if rules.len() > MAX_NET_RULES as usize {
                return Err(CompileError::TooManyNetRules {
                    profile: p.name.clone(),
                    list: name,
                    count: rules.len(),
                    max: MAX_NET_RULES,
                });
            }
            for (i, r) in rules.iter().enumerate() {
                net_rules.push((
                    NetRuleKey {
                        profile_id,
                        list,
                        index: i as u32,
                        _pad: 0,
                    },
                    *r,
                ));
            }
            Ok(rules.len() as u32)
        };
    if let Some(allow) = &p.network.egress_allow {
        policy.rules |= RULES_NET_ALLOW;
        policy.net_allow_count = push_list(
            NET_LIST_ALLOW,
            "egress_allow",
            allow.iter().map(net_rule).collect(),
        )?;
    }
    policy.net_deny_count = push_list(
        NET_LIST_DENY,
        "egress_deny",
        p.network.egress_deny.iter().map(net_rule).collect(),
    )?;
    if let Some(listen) = &p.network.listen_allow {
        policy.rules |= RULES_NET_LISTEN;
        let rules = listen
            .iter()
            .map(|ports| KNetRule {
                addr: [0; 16],
                family: 0,
                prefix_len: 0,
                protocol: PROTO_ANY,
                port_lo: ports.first,
                port_hi: ports.last,
            })
            .collect();
        policy.net_listen_count = push_list(NET_LIST_LISTEN, "listen_allow", rules)?;
    }
    Ok(CompiledProfile {
        name: p.name.clone(),
        policy,
        path_rules,
        net_rules,
    })
}

/// The directories whose rename would move a path `rule` names: every ancestor of the path
/// (below `/`), and for `dir/*` and `dir/**` the directory itself.
pub fn holding_dirs(rule: &PathRule) -> Vec<String> {
    let base = match rule {
        PathRule::Exact(p) => p.rsplit_once('/').map(|(d, _)| d).unwrap_or(""),
        PathRule::Dir(d) | PathRule::Tree(d) => d.trim_end_matches('/'),
    };
    let mut out = Vec::new();
    let mut cur = base;
    while !cur.is_empty() {
        out.push(cur.to_string());
        cur = cur.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    }
    out
}

/// Compiles a set; ids are taken from `next_id` onwards (and it is advanced).
pub fn compile_set(set: &ProfileSet, next_id: &mut u32) -> Result<CompiledSet, CompileError> {
    let mut out = CompiledSet {
        default_name: set.default_profile().name.clone(),
        ..Default::default()
    };
    for p in set.profiles() {
        *next_id = next_id.wrapping_add(1).max(1);
        out.by_name
            .insert(p.name.clone(), compile_profile(p, *next_id)?);
    }
    if !out.by_name.contains_key(&out.default_name) {
        *next_id = next_id.wrapping_add(1).max(1);
        let d = set.default_profile();
        out.by_name
            .insert(d.name.clone(), compile_profile(d, *next_id)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::fnv1a;

    fn set_from(dir: &std::path::Path) -> ProfileSet {
        ProfileSet::load_dir(dir).unwrap_or_else(|r| panic!("{r}"))
    }

    #[test]
    fn directories_holding_a_ruled_path_are_listed() {
        let dirs = |p: &str| holding_dirs(&PathRule::parse(p).unwrap());
        assert_eq!(dirs("/etc/shadow"), vec!["/etc"]);
        assert_eq!(
            dirs("/var/lib/app/**"),
            vec!["/var/lib/app", "/var/lib", "/var"]
        );
        assert_eq!(dirs("/etc/ssl/*"), vec!["/etc/ssl", "/etc"]);
        assert!(dirs("/x").is_empty(), "renaming / is not a thing");
    }

    #[test]
    fn the_shipped_profiles_compile() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let set = set_from(&dir);
        let mut id = 0;
        let compiled = compile_set(&set, &mut id).unwrap();
        assert!(compiled.by_name.contains_key("default"));
        assert_ne!(
            compiled.default_policy().drift_mode,
            0,
            "default.toml turns drift on"
        );
    }

    #[test]
    fn rules_hash_exactly_what_the_kernel_hashes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("app.toml"),
            r#"
[profile]
name = "app"
images = ["app:*"]
mode = "enforce"
[drift]
prevent = true
allow = ["/tmp/jit/**"]
[exec]
allow = ["/bin/*", "/usr/local/bin/app"]
deny = ["/bin/nc"]
block_container_exec = true
[network]
egress_allow = ["127.0.0.1:8080/tcp"]
egress_deny = ["10.0.0.0/8"]
listen_allow = [8080]
block_raw_sockets = true
"#,
        )
        .unwrap();
        let set = set_from(d.path());
        let mut id = 10;
        let c = compile_set(&set, &mut id).unwrap();
        let app = &c.by_name["app"];
        let pid = app.policy.profile_id;
        assert!(pid > 10);
        assert_eq!(app.policy.drift_mode, MODE_ENFORCE);
        assert_eq!(app.policy.container_exec_mode, MODE_ENFORCE);
        assert_eq!(app.policy.block_raw_sockets, 1);
        let has = |list, form, text: &str| {
            app.path_rules.contains(&PathRuleKey {
                profile_id: pid,
                list,
                form,
                _pad: 0,
                hash: fnv1a(text.as_bytes()),
            })
        };
        assert!(has(LIST_DRIFT_ALLOW, FORM_TREE, "/tmp/jit/"));
        assert!(has(LIST_EXEC_ALLOW, FORM_DIR, "/bin/"));
        assert!(has(LIST_EXEC_ALLOW, FORM_EXACT, "/usr/local/bin/app"));
        assert!(has(LIST_EXEC_DENY, FORM_EXACT, "/bin/nc"));
        assert_eq!(
            app.policy.rules,
            RULES_DRIFT_ALLOW
                | RULES_EXEC_ALLOW
                | RULES_EXEC_DENY
                | RULES_NET_ALLOW
                | RULES_NET_LISTEN
        );
        assert_eq!(
            (
                app.policy.net_allow_count,
                app.policy.net_deny_count,
                app.policy.net_listen_count
            ),
            (1, 1, 1)
        );
        let allow = app
            .net_rules
            .iter()
            .find(|(k, _)| k.list == NET_LIST_ALLOW)
            .unwrap()
            .1;
        assert_eq!(&allow.addr[..4], &[127, 0, 0, 1]);
        assert_eq!(
            (
                allow.prefix_len,
                allow.port_lo,
                allow.port_hi,
                allow.protocol
            ),
            (32, 8080, 8080, PROTO_TCP)
        );
        // A recompile never reuses ids: old and new rules can coexist during a swap.
        let again = compile_set(&set, &mut id).unwrap();
        assert_ne!(again.by_name["app"].policy.profile_id, pid);
    }
}
