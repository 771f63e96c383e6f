//! One profile file → [`Profile`], walking the TOML with spans so every problem gets a position,
//! and carrying on after a problem so a file's errors are all reported at once.

use std::ops::Range;
use std::path::Path;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::diag::{did_you_mean, FileDiags};
use super::duration::parse_duration;
use super::net::{parse_cidr, NET_RULE_SYNTAX};
use super::{
    DriftPolicy, ExecPolicy, FilePolicy, ImagePattern, Mode, NetRule, NetworkPolicy, PathGlobs,
    PathRule, PortRange, Profile, Promotion, Protocol, DEFAULT_PROFILE_NAME,
};

type Span = Option<Range<usize>>;

const ROOT_KEYS: &[&str] = &["profile", "drift", "exec", "files", "network", "intel"];
const PROFILE_KEYS: &[&str] = &[
    "name",
    "images",
    "namespaces",
    "pod_labels",
    "mode",
    "description",
    "enforce_after",
];
const DRIFT_KEYS: &[&str] = &["prevent", "allow", "mode", "allow_anonymous_exec"];
const EXEC_KEYS: &[&str] = &["allow", "deny", "block_container_exec", "mode"];
const FILES_KEYS: &[&str] = &["deny", "read_only", "monitor", "mode"];
const NETWORK_KEYS: &[&str] = &[
    "egress_allow",
    "egress_deny",
    "listen_allow",
    "block_raw_sockets",
    "mode",
];
const INTEL_KEYS: &[&str] = &["mode"];
const NET_RULE_KEYS: &[&str] = &["cidr", "ports", "protocol"];

/// A parsed profile plus the spans the cross-file checks report against.
pub(crate) struct ParsedProfile {
    pub profile: Profile,
    pub name_span: Span,
    pub image_spans: Vec<Span>,
}

/// Parses one file's text. Returns `None` when any error was reported for it.
pub(crate) fn parse_profile(path: &Path, d: &mut FileDiags<'_>) -> Option<ParsedProfile> {
    let errors_before = d.error_count();
    let doc = match ImDocument::parse(d.text) {
        Ok(doc) => doc,
        Err(e) => {
            let msg = e.message().trim().replace('\n', "; ");
            d.error(&e.span(), format!("invalid TOML: {msg}"));
            return None;
        }
    };
    let root = doc.as_table();
    check_keys(d, root, "the top level", ROOT_KEYS);

    let Some(pt) = section(d, root, "profile") else {
        d.error(
            &Some(0..0),
            "missing the `[profile]` table; start the file with `[profile]`, \
             `name = \"web\"`, `images = [\"nginx*\"]`, `mode = \"audit\"`",
        );
        return None;
    };
    check_keys(d, pt.table, "[profile]", PROFILE_KEYS);

    let name_span = pt.table.get("name").and_then(Item::span);
    let name = match get_str(d, pt.table, "profile", "name") {
        Some(n) => n,
        None => {
            if pt.table.get("name").is_none() {
                d.error(
                    &pt.span,
                    "`[profile]` has no `name`; add `name = \"...\"` (letters, digits, `.`, `_`, `-`)",
                );
            }
            String::new()
        }
    };
    if !name.is_empty() && !valid_name(&name) {
        d.error(
            &name_span,
            format!(
                "profile name `{name}` may only contain letters, digits, `.`, `_` and `-`, and \
                 must start with a letter or digit; e.g. `nginx-web`"
            ),
        );
    }
    let is_default_file = path.file_name().is_some_and(|f| f == "default.toml");
    if is_default_file && !name.is_empty() && name != DEFAULT_PROFILE_NAME {
        d.error(
            &name_span,
            format!("`default.toml` holds the default profile; write `name = \"default\"` (found `{name}`), or rename the file"),
        );
    }
    if !is_default_file && name == DEFAULT_PROFILE_NAME {
        d.error(
            &name_span,
            "the profile named `default` must live in `default.toml`; rename the file or pick another name",
        );
    }

    let mode = get_mode(d, pt.table, "profile", false).unwrap_or(Mode::Audit);
    let description = get_str(d, pt.table, "profile", "description");

    let mut images = Vec::new();
    let mut image_spans = Vec::new();
    let image_list = get_str_array(d, pt.table, "profile", "images");
    for (pattern, span) in image_list.iter().flatten() {
        match ImagePattern::parse(pattern) {
            Ok(p) => {
                images.push(p);
                image_spans.push(span.clone());
            }
            Err(e) => d.error(span, e),
        }
    }
    let pods = super::pod::parse_pod_selector(d, pt.table);
    let is_default = name == DEFAULT_PROFILE_NAME || is_default_file;
    let pod_selector = !pods.is_empty()
        || pt.table.get("namespaces").is_some()
        || pt.table.get("pod_labels").is_some();
    match &image_list {
        // No `images` and no pod selector: a profile for `seawall-micro`, which applies it to the
        // process tree it wraps. The host agent loads it but matches it to no container, so say so.
        None if !is_default && !pod_selector && pt.table.get("images").is_none() => d.warning(
            &pt.span,
            "no `images`: this profile is for seawall-micro (`seawall-micro --profile FILE -- \
             CMD`), which applies it to the processes it starts; the host agent matches it to no \
             container. For the agent, add `images = [\"nginx*\"]`, `images = [\"sha256:...\"]` \
             or a Kubernetes selector `namespaces = [\"shop\"]` / `pod_labels = { app = \"web\" }`",
        ),
        Some(list) if list.is_empty() && images.is_empty() && !pod_selector && !is_default => d.error(
            &pt.table.get("images").and_then(Item::span),
            "this profile matches no container; add `images = [\"nginx*\"]` (globs on the image \
             reference), `images = [\"sha256:...\"]` (digests), or a Kubernetes selector \
             `namespaces = [\"shop\"]` / `pod_labels = { app = \"web\" }`; or remove `images` for a \
             seawall-micro profile",
        ),
        _ => {}
    }

    if (is_default_file || name == DEFAULT_PROFILE_NAME) && !images.is_empty() {
        d.warning(
            &pt.table.get("images").and_then(Item::span),
            "the default profile applies to every container no other profile matches, so its \
             `images` are ignored; remove the line, or move these images to a profile of their own",
        );
    }

    if (is_default_file || name == DEFAULT_PROFILE_NAME) && !pods.is_empty() {
        d.warning(
            &pt.table
                .get("namespaces")
                .or(pt.table.get("pod_labels"))
                .and_then(Item::span),
            "the default profile applies to every container no other profile matches, so its \
             `namespaces` and `pod_labels` are ignored; move them to a profile of their own",
        );
    }

    let drift = parse_drift(d, root, mode);
    let exec = parse_exec(d, root, mode);
    let files = parse_files(d, root, mode);
    let network = parse_network(d, root, mode);
    let intel = parse_intel(d, root);
    let enforce_after = parse_enforce_after(d, pt.table, mode).map(|after| {
        // Each control resolves "inherit the profile's mode" while it is parsed, so the promoted
        // controls are the same tables read again with `enforce` as the profile's mode. Their
        // problems were reported just above; the second reading's go nowhere.
        let mut again = FileDiags::new(path, d.text);
        Promotion {
            after,
            drift: parse_drift(&mut again, root, Mode::Enforce),
            exec: parse_exec(&mut again, root, Mode::Enforce),
            files: parse_files(&mut again, root, Mode::Enforce),
            network: parse_network(&mut again, root, Mode::Enforce),
        }
    });

    if d.error_count() > errors_before {
        return None;
    }
    Some(ParsedProfile {
        profile: Profile {
            name,
            source: path.to_path_buf(),
            description,
            mode,
            images,
            pods,
            drift,
            exec,
            files,
            network,
            intel,
            enforce_after,
        },
        name_span,
        image_spans,
    })
}

/// `[profile] enforce_after`: only meaningful for a profile that audits.
fn parse_enforce_after(
    d: &mut FileDiags<'_>,
    t: &dyn TableLike,
    profile_mode: Mode,
) -> Option<std::time::Duration> {
    let span = t.get("enforce_after").and_then(Item::span);
    let text = get_str(d, t, "profile", "enforce_after")?;
    let after = match parse_duration(&text) {
        Ok(after) => after,
        Err(e) => {
            d.error(&span, format!("`profile.enforce_after`: {e}"));
            return None;
        }
    };
    if profile_mode == Mode::Enforce {
        d.error(
            &span,
            "`enforce_after` switches an audit profile to enforce, but this profile already has \
             `mode = \"enforce\"`; write `mode = \"audit\"` to have it promoted, or remove \
             `enforce_after`",
        );
        return None;
    }
    Some(after)
}

pub(crate) fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn parse_drift(d: &mut FileDiags<'_>, root: &dyn TableLike, profile_mode: Mode) -> DriftPolicy {
    let Some(s) = section(d, root, "drift") else {
        return DriftPolicy {
            mode: Mode::Off,
            allow: Vec::new(),
            allow_anonymous_exec: false,
        };
    };
    check_keys(d, s.table, "[drift]", DRIFT_KEYS);
    let prevent = get_bool(d, s.table, "drift", "prevent").unwrap_or(false);
    let mode = get_mode(d, s.table, "drift", true).unwrap_or(profile_mode);
    let allow = path_rules(d, s.table, "drift", "allow").unwrap_or_default();
    let allow_anonymous_exec =
        get_bool(d, s.table, "drift", "allow_anonymous_exec").unwrap_or(false);
    if allow_anonymous_exec && !prevent {
        let span = s.table.get("allow_anonymous_exec").and_then(Item::span);
        d.warning(
            &span,
            "`drift.allow_anonymous_exec` has no effect without `prevent = true`: anonymous \
             memory is only judged under drift prevention",
        );
    }
    DriftPolicy {
        mode: if prevent { mode } else { Mode::Off },
        allow,
        allow_anonymous_exec,
    }
}

fn parse_exec(d: &mut FileDiags<'_>, root: &dyn TableLike, profile_mode: Mode) -> ExecPolicy {
    let Some(s) = section(d, root, "exec") else {
        return ExecPolicy {
            mode: profile_mode,
            allow: None,
            deny: Vec::new(),
            container_exec: Mode::Off,
        };
    };
    check_keys(d, s.table, "[exec]", EXEC_KEYS);
    let mode = get_mode(d, s.table, "exec", true).unwrap_or(profile_mode);
    let allow = path_rules(d, s.table, "exec", "allow");
    let raw_allow_empty = s
        .table
        .get("allow")
        .and_then(Item::as_array)
        .is_some_and(|a| a.is_empty());
    if raw_allow_empty {
        let span = s.table.get("allow").and_then(Item::span);
        d.warning(
            &span,
            "`exec.allow = []` allows no executable at all, so every exec is a violation; list the \
             programs this image runs, or remove `allow` to allow everything not denied",
        );
    }
    let deny = path_rules(d, s.table, "exec", "deny").unwrap_or_default();
    let block = get_bool(d, s.table, "exec", "block_container_exec").unwrap_or(false);
    ExecPolicy {
        mode,
        allow,
        deny,
        container_exec: if block { mode } else { Mode::Off },
    }
}

fn parse_files(d: &mut FileDiags<'_>, root: &dyn TableLike, profile_mode: Mode) -> FilePolicy {
    let Some(s) = section(d, root, "files") else {
        return FilePolicy {
            mode: profile_mode,
            deny: PathGlobs::default(),
            read_only: PathGlobs::default(),
            monitor: PathGlobs::default(),
        };
    };
    check_keys(d, s.table, "[files]", FILES_KEYS);
    let mode = get_mode(d, s.table, "files", true).unwrap_or(profile_mode);
    let mut globs = |key: &str| {
        let mut ok = Vec::new();
        for (p, span) in get_str_array(d, s.table, "files", key)
            .into_iter()
            .flatten()
        {
            match PathGlobs::check_pattern(&p) {
                Ok(()) => ok.push(p),
                Err(e) => d.error(&span, format!("files.{key}: {e}")),
            }
        }
        // Every pattern was checked above, so building the set cannot fail.
        PathGlobs::new(ok).unwrap_or_default()
    };
    FilePolicy {
        mode,
        deny: globs("deny"),
        read_only: globs("read_only"),
        monitor: globs("monitor"),
    }
}

fn parse_network(d: &mut FileDiags<'_>, root: &dyn TableLike, profile_mode: Mode) -> NetworkPolicy {
    let Some(s) = section(d, root, "network") else {
        return NetworkPolicy {
            mode: profile_mode,
            egress_allow: None,
            egress_deny: Vec::new(),
            listen_allow: None,
            block_raw_sockets: false,
        };
    };
    check_keys(d, s.table, "[network]", NETWORK_KEYS);
    let mode = get_mode(d, s.table, "network", true).unwrap_or(profile_mode);
    NetworkPolicy {
        mode,
        egress_allow: net_rules(d, s.table, "egress_allow"),
        egress_deny: net_rules(d, s.table, "egress_deny").unwrap_or_default(),
        listen_allow: listen_ports(d, s.table),
        block_raw_sockets: get_bool(d, s.table, "network", "block_raw_sockets").unwrap_or(false),
    }
}

/// `[intel] mode`: unlike the other controls it does not inherit the profile's mode, because
/// its default is the agent's `intel_mode` (the feeds are the operator's, not the profile's).
fn parse_intel(d: &mut FileDiags<'_>, root: &dyn TableLike) -> Option<Mode> {
    let s = section(d, root, "intel")?;
    check_keys(d, s.table, "[intel]", INTEL_KEYS);
    get_mode(d, s.table, "intel", true)
}

/// A sub-table and the span to report "something missing in it" against.
struct Section<'t> {
    table: &'t dyn TableLike,
    span: Span,
}

fn section<'t>(d: &mut FileDiags<'_>, root: &'t dyn TableLike, key: &str) -> Option<Section<'t>> {
    let item = root.get(key)?;
    match item.as_table_like() {
        Some(table) => Some(Section {
            table,
            span: item.span().or_else(|| root.key(key).and_then(|k| k.span())),
        }),
        None => {
            d.error(
                &item.span(),
                format!("`{key}` must be a table: write `[{key}]` on its own line followed by its keys, found {}", type_name(item)),
            );
            None
        }
    }
}

fn check_keys(d: &mut FileDiags<'_>, table: &dyn TableLike, where_: &str, known: &[&str]) {
    for (k, _) in table.iter() {
        if known.contains(&k) {
            continue;
        }
        let span = table.key(k).and_then(|k| k.span());
        let hint = match did_you_mean(k, known) {
            Some(s) => format!("did you mean `{s}`? "),
            None => String::new(),
        };
        d.error(
            &span,
            format!(
                "unknown key `{k}` in {where_}; {hint}known keys: {}",
                known.join(", ")
            ),
        );
    }
}

pub(crate) fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) | Item::Value(Value::InlineTable(_)) => "a table",
        Item::ArrayOfTables(_) | Item::Value(Value::Array(_)) => "an array",
        Item::Value(v) => value_type_name(v),
    }
}

fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

fn get_bool(d: &mut FileDiags<'_>, t: &dyn TableLike, section: &str, key: &str) -> Option<bool> {
    let item = t.get(key)?;
    match item.as_bool() {
        Some(b) => Some(b),
        None => {
            d.error(
                &item.span(),
                format!(
                    "`{section}.{key}` must be `true` or `false` (no quotes), found {}",
                    type_name(item)
                ),
            );
            None
        }
    }
}

fn get_str(d: &mut FileDiags<'_>, t: &dyn TableLike, section: &str, key: &str) -> Option<String> {
    let item = t.get(key)?;
    match item.as_str() {
        Some(s) => Some(s.to_string()),
        None => {
            d.error(
                &item.span(),
                format!(
                    "`{section}.{key}` must be a string in double quotes, found {}",
                    type_name(item)
                ),
            );
            None
        }
    }
}

fn get_mode(
    d: &mut FileDiags<'_>,
    t: &dyn TableLike,
    section: &str,
    allow_off: bool,
) -> Option<Mode> {
    let item = t.get("mode")?;
    let allowed = if allow_off {
        "\"audit\", \"enforce\", \"off\""
    } else {
        "\"audit\", \"enforce\""
    };
    let parsed = match item.as_str() {
        Some("audit") => Some(Mode::Audit),
        Some("enforce") => Some(Mode::Enforce),
        Some("off") if allow_off => Some(Mode::Off),
        _ => None,
    };
    if parsed.is_none() {
        let found = match item.as_str() {
            Some(s) => format!("`\"{s}\"`"),
            None => type_name(item).to_string(),
        };
        let extra = if !allow_off && item.as_str() == Some("off") {
            " (to switch a single control off, set `mode = \"off\"` in its own table)"
        } else {
            ""
        };
        d.error(
            &item.span(),
            format!("`{section}.mode` must be one of {allowed}, found {found}{extra}"),
        );
    }
    parsed
}

/// The strings of an array, each with its span; `None` when the key is absent or not an array.
pub(crate) fn get_str_array(
    d: &mut FileDiags<'_>,
    t: &dyn TableLike,
    section: &str,
    key: &str,
) -> Option<Vec<(String, Span)>> {
    let item = t.get(key)?;
    let Some(arr) = item.as_array() else {
        let example = match item.as_str() {
            Some(s) => format!("`{key} = [\"{s}\"]`"),
            None => format!("`{key} = [\"...\"]`"),
        };
        d.error(
            &item.span(),
            format!(
                "`{section}.{key}` must be an array of strings, e.g. {example}; found {}",
                type_name(item)
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    for v in arr.iter() {
        match v.as_str() {
            Some(s) => out.push((s.to_string(), v.span())),
            None => d.error(
                &v.span(),
                format!(
                    "`{section}.{key}` entries must be strings in double quotes, found {}",
                    value_type_name(v)
                ),
            ),
        }
    }
    Some(out)
}

fn path_rules(
    d: &mut FileDiags<'_>,
    t: &dyn TableLike,
    section: &str,
    key: &str,
) -> Option<Vec<PathRule>> {
    let list = get_str_array(d, t, section, key)?;
    let mut out = Vec::new();
    for (p, span) in list {
        match PathRule::parse(&p) {
            Ok(r) => out.push(r),
            Err(e) => d.error(&span, format!("{section}.{key}: {e}")),
        }
    }
    Some(out)
}

fn net_rules(d: &mut FileDiags<'_>, t: &dyn TableLike, key: &str) -> Option<Vec<NetRule>> {
    let item = t.get(key)?;
    let mut out = Vec::new();
    let mut one = |d: &mut FileDiags<'_>, v: &Value| {
        match v {
        Value::String(s) => match NetRule::parse(s.value()) {
            Ok(r) => out.push(r),
            Err(e) => d.error(&v.span(), format!("network.{key}: {e}")),
        },
        Value::InlineTable(tbl) => {
            if let Some(r) = net_rule_table(d, tbl, v.span(), key) {
                out.push(r);
            }
        }
        other => d.error(
            &other.span(),
            format!("network.{key}: entries must be strings or inline tables, found {}; {NET_RULE_SYNTAX}", value_type_name(other)),
        ),
    }
    };
    match item {
        Item::Value(Value::Array(arr)) => arr.iter().for_each(|v| one(d, v)),
        Item::ArrayOfTables(arr) => {
            for tbl in arr.iter() {
                if let Some(r) = net_rule_table(d, tbl, tbl.span(), key) {
                    out.push(r);
                }
            }
        }
        other => {
            d.error(
                &other.span(),
                format!("`network.{key}` must be an array, e.g. `{key} = [\"10.0.0.0/8:443/tcp\"]`; found {}", type_name(other)),
            );
            return None;
        }
    }
    Some(out)
}

fn net_rule_table(
    d: &mut FileDiags<'_>,
    t: &dyn TableLike,
    span: Span,
    key: &str,
) -> Option<NetRule> {
    let errors_before = d.error_count();
    let section = format!("network.{key}");
    check_keys(d, t, &format!("a `{section}` entry"), NET_RULE_KEYS);
    let cidr_item = t.get("cidr");
    let net = match get_str(d, t, &section, "cidr") {
        Some(c) => match parse_cidr(&c) {
            Ok(n) => Some(n),
            Err(e) => {
                d.error(&cidr_item.and_then(Item::span), format!("{section}: {e}"));
                None
            }
        },
        None => {
            if cidr_item.is_none() {
                d.error(
                    &span,
                    format!("{section}: entry has no `cidr`; {NET_RULE_SYNTAX}"),
                );
            }
            None
        }
    };
    let ports = match t.get("ports") {
        None => PortRange::ANY,
        Some(item) => match port_range_item(item) {
            Ok(p) => p,
            Err(e) => {
                d.error(&item.span(), format!("{section}.ports: {e}"));
                PortRange::ANY
            }
        },
    };
    let protocol = match t.get("protocol") {
        None => Protocol::Any,
        Some(item) => match item.as_str().map(Protocol::parse) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                d.error(&item.span(), format!("{section}.protocol: {e}"));
                Protocol::Any
            }
            None => {
                d.error(
                    &item.span(),
                    format!(
                        "{section}.protocol must be \"tcp\", \"udp\" or \"any\", found {}",
                        type_name(item)
                    ),
                );
                Protocol::Any
            }
        },
    };
    let (net, prefix_len) = net?;
    (d.error_count() == errors_before).then_some(NetRule {
        net,
        prefix_len,
        ports,
        protocol,
    })
}

fn port_range_item(item: &Item) -> Result<PortRange, String> {
    if let Some(n) = item.as_integer() {
        return u16::try_from(n).map(PortRange::single).map_err(|_| {
            format!("{n} is not a port; write 0-65535, or a range as a string (`\"8000-8100\"`)")
        });
    }
    match item.as_str() {
        Some(s) => PortRange::parse(s),
        None => Err(format!(
            "expected a port (`443`) or a range string (`\"8000-8100\"`), found {}",
            type_name(item)
        )),
    }
}

fn listen_ports(d: &mut FileDiags<'_>, t: &dyn TableLike) -> Option<Vec<PortRange>> {
    let item = t.get("listen_allow")?;
    let Some(arr) = item.as_array() else {
        d.error(
            &item.span(),
            format!("`network.listen_allow` must be an array of ports and ranges, e.g. `[80, 443, \"8000-8100\"]`; found {}", type_name(item)),
        );
        return None;
    };
    let mut out = Vec::new();
    for v in arr.iter() {
        match port_range_item(&Item::Value(v.clone())) {
            Ok(p) => out.push(p),
            Err(e) => d.error(&v.span(), format!("network.listen_allow: {e}")),
        }
    }
    Some(out)
}
