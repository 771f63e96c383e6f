//! The tables of a learned profile, one writer each, in file order.

use std::fmt::Write as _;

use agent_common::MAX_NET_RULES;

use super::generalise::{self, NetGroup, PathGroup, PortGroup};
use super::span_of;
use super::text::{
    comment_safe, cut_note, element, examples, plural, seen_text, timestamp, toml_str,
};
use super::LearnRequest;
use crate::{ImageBehaviour, Mode, PathGlobs, PathRule, Seen};

/// Paths with their history.
type PathList = Vec<(String, Seen)>;

pub(super) fn write_header(
    out: &mut String,
    selected: &[ImageBehaviour],
    all: &ImageBehaviour,
    req: &LearnRequest,
) {
    out.push_str(
        "# Learned by `seawall profile learn` from what the containers of these images did:\n",
    );
    for b in selected {
        let id = b
            .image_id
            .as_deref()
            .map(|d| format!(" ({})", comment_safe(d)))
            .unwrap_or_default();
        let when = span_of(b)
            .map(|(a, z)| format!(", {} to {}", timestamp(a), timestamp(z)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "#   {}{id}: {}{when}",
            comment_safe(&b.image),
            plural(b.containers.len() as u64, "container", "containers")
        );
    }
    if let Some(t) = req.since {
        let _ = writeln!(
            out,
            "# Only what was last seen since {} is included; counts are since first seen.",
            timestamp(t)
        );
    }
    out.push_str(
        "# Each entry says how often and when it was seen; patterns say what they were made from.\n\
         # Review it, check it (`seawall profile check FILE`), and run it in audit mode first.\n",
    );
    if let Some(m) = &all.missed {
        let _ = writeln!(
            out,
            "# MISSED: {} of these containers were not learned because the agent fell behind\n\
             # ({}): every list below may be incomplete.",
            plural(m.count, "event", "events"),
            if m.first == m.last {
                format!("at {}", timestamp(m.first))
            } else {
                format!("from {} to {}", timestamp(m.first), timestamp(m.last))
            }
        );
    }
    let cut = all.cut_categories();
    if !cut.is_empty() {
        let _ = writeln!(
            out,
            "# CUT: the agent's limit was reached for {}: those lists are incomplete (see below).",
            cut.join(", ")
        );
    }
    out.push('\n');
}

pub(super) fn write_profile_table(
    out: &mut String,
    name: &str,
    selected: &[ImageBehaviour],
    all: &ImageBehaviour,
    req: &LearnRequest,
) {
    let images: Vec<String> = req.images.iter().map(|p| toml_str(p.as_str())).collect();
    let mut description = format!(
        "learned from {} of {}",
        plural(all.containers.len() as u64, "container", "containers"),
        plural(selected.len() as u64, "image", "images")
    );
    if let Some((a, z)) = span_of(all) {
        let _ = write!(description, ", {} to {}", timestamp(a), timestamp(z));
    }
    let _ = writeln!(out, "[profile]\nname = {}", toml_str(name));
    let _ = writeln!(out, "images = [{}]", images.join(", "));
    let _ = writeln!(out, "mode = {}", toml_str(req.mode.as_str()));
    let _ = writeln!(out, "description = {}", toml_str(&description));
    if req.mode == Mode::Audit {
        out.push_str(
            "# enforce_after = \"7d\"  # uncomment to enforce once 7 days pass without a violation\n",
        );
    }
    out.push('\n');
}

pub(super) fn write_drift(out: &mut String, all: &ImageBehaviour) {
    out.push_str("[drift]\nprevent = true\n");
    if all.drift.is_empty() && all.drift.cut().is_none() {
        out.push_str("# No drift was seen while learning.\n");
    } else {
        out.push_str(
            "# Drift was seen while learning: these ran although they were not in the image. They stay\n\
             # violations; allow one (`allow = [\"/path\"]`) only if it is meant to run (a JIT cache).\n",
        );
        for (path, seen) in all.drift.iter() {
            let _ = writeln!(
                out,
                "#   {}: {}",
                toml_str(path),
                seen_text(seen, "run", "runs")
            );
        }
        cut_note(out, "drift", true, all.drift.cut());
    }
    out.push('\n');
}

/// Splits paths into those the target list can write literally and those it cannot.
fn expressible<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Seen)>,
    literal: &impl Fn(&str) -> bool,
) -> (PathList, PathList) {
    entries
        .map(|(p, s)| (p.clone(), *s))
        .partition(|(p, _)| literal(p))
}

fn exec_literal(p: &str) -> bool {
    matches!(PathRule::parse(p), Ok(PathRule::Exact(_)))
}

fn write_path_groups(out: &mut String, groups: &[PathGroup], one: &str, many: &str, what: &str) {
    for g in groups {
        let comment = if g.members.is_empty() {
            seen_text(&g.seen, one, many)
        } else {
            let base = g.pattern.trim_end_matches('*');
            let where_ = if g.pattern.ends_with("**") {
                "below"
            } else {
                "in"
            };
            let dirs = if g.dirs > 1 {
                format!(" in {} directories", g.dirs)
            } else {
                String::new()
            };
            format!(
                "generalised: {} {what} seen {where_} {}{dirs} ({}); {}",
                g.members.len(),
                comment_safe(base),
                examples(&g.members, base),
                seen_text(&g.seen, one, many)
            )
        };
        element(out, &toml_str(&g.pattern), &comment);
    }
}

fn write_unexpressible(out: &mut String, list: &[(String, Seen)], why: &str) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "# Not listed: {why}:");
    for (p, s) in list {
        let _ = writeln!(
            out,
            "#   {}: {}",
            toml_str(p),
            seen_text(s, "time", "times")
        );
    }
}

pub(super) fn write_exec(out: &mut String, all: &ImageBehaviour) {
    out.push_str("[exec]\n");
    let (literal, odd) = expressible(all.execs.iter(), &exec_literal);
    if literal.is_empty() {
        out.push_str(
            "# No executable was seen while learning, so there is no allow list: add `allow = [...]`\n\
             # by hand, or learn again with the agent running from the container's start.\n",
        );
    } else {
        let groups = generalise::paths(&literal, exec_literal);
        out.push_str("allow = [\n");
        write_path_groups(out, &groups, "run", "runs", "executables");
        out.push_str("]\n");
    }
    cut_note(out, "executables", true, all.execs.cut());
    write_unexpressible(
        out,
        &odd,
        "these paths cannot be written as an exec rule (glob characters, `..` or `//`), so \
         they are violations once enforced",
    );
    match &all.container_exec {
        None => out.push_str("block_container_exec = true  # no `docker exec` session was seen\n"),
        Some(s) => {
            let _ = writeln!(
                out,
                "# `docker exec` sessions were seen ({}); set true to make them violations.\n\
                 block_container_exec = false",
                seen_text(s, "exec", "execs")
            );
        }
    }
    out.push('\n');
}

fn file_literal(p: &str) -> bool {
    !p.contains(['*', '?', '[', ']', '{', '}', '\\']) && PathGlobs::check_pattern(p).is_ok()
}

pub(super) fn write_files(out: &mut String, all: &ImageBehaviour) {
    out.push_str("[files]\n");
    if !all.files_watched {
        out.push_str(
            "# File opens were not watched while learning (run the agent with `--audit-files`, or give\n\
             # the image a `[files] monitor` rule), so nothing is suggested here.\n\n",
        );
        return;
    }
    if all.files_written.cut().is_some() {
        out.push_str(
            "# CUT: more protectable files were written than the agent records, so which configuration\n\
             # was never written is unknown and no `read_only` is suggested.\n",
        );
    } else {
        let never_written = all
            .files_read
            .iter()
            .filter(|(p, _)| !all.files_written.contains(p.as_str()));
        let (literal, odd) = expressible(never_written, &file_literal);
        if literal.is_empty() {
            out.push_str("# No configuration, key or credential was read and left unwritten.\n");
        } else {
            out.push_str(
                "# Configuration, keys and credentials the workload read and never wrote:\n\
                 read_only = [\n",
            );
            let groups = generalise::paths(&literal, file_literal);
            write_path_groups(out, &groups, "read", "reads", "files");
            out.push_str("]\n");
        }
        cut_note(
            out,
            "reads of protectable files",
            true,
            all.files_read.cut(),
        );
        write_unexpressible(
            out,
            &odd,
            "these paths cannot be written literally as a glob, so they are not protected",
        );
    }
    if !all.write_dirs.is_empty() {
        out.push_str("# Written while learning, by directory (not restricted; for review):\n");
        const SHOWN: usize = 50;
        for (dir, seen) in all.write_dirs.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "#   {}: {}",
                toml_str(dir),
                seen_text(seen, "write", "writes")
            );
        }
        if all.write_dirs.len() > SHOWN {
            let _ = writeln!(out, "#   and {} more", all.write_dirs.len() - SHOWN);
        }
        cut_note(out, "written directories", true, all.write_dirs.cut());
    }
    out.push('\n');
}

fn net_value(g: &NetGroup) -> String {
    let host = g.prefix == if g.net.is_ipv4() { 32 } else { 128 };
    let net = match (host, g.net.is_ipv4()) {
        (true, true) => g.net.to_string(),
        (false, true) => format!("{}/{}", g.net, g.prefix),
        (true, false) => format!("[{}]", g.net),
        (false, false) => format!("[{}/{}]", g.net, g.prefix),
    };
    toml_str(&format!("{net}:{}/{}", g.ports, g.protocol))
}

fn net_comment(g: &NetGroup) -> String {
    let seen = seen_text(&g.seen, "connection", "connections");
    if !g.generalised() {
        return seen;
    }
    let mut what = Vec::new();
    if g.addresses > 1 {
        what.push(format!("{} addresses", g.addresses));
    }
    if g.ports.first != g.ports.last {
        what.push(format!(
            "ports between {} and {}",
            g.ports.first, g.ports.last
        ));
    }
    format!(
        "generalised: {} destinations seen ({}); {seen}",
        g.destinations,
        what.join(", ")
    )
}

fn port_value(g: &PortGroup) -> String {
    if g.ports.first == g.ports.last {
        g.ports.first.to_string()
    } else {
        toml_str(&g.ports.to_string())
    }
}

fn port_comment(g: &PortGroup) -> String {
    let protocols: Vec<&str> = g.protocols.iter().map(|p| p.as_str()).collect();
    let seen = seen_text(&g.seen, "bind", "binds");
    if g.count == 1 {
        format!("{}, {seen}", protocols.join("+"))
    } else {
        format!(
            "generalised: {} ports seen ({}); {seen}",
            g.count,
            protocols.join("+")
        )
    }
}

fn write_over_limit<T>(out: &mut String, list: &str, dropped: &[T], line: impl Fn(&T) -> String) {
    if dropped.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# Over the kernel's {MAX_NET_RULES} rules per list, so left out of `{list}` (seen least often;\n\
         # they are violations once enforced; merge them into a wider rule by hand if they are meant):"
    );
    for d in dropped {
        let _ = writeln!(out, "#   {}", line(d));
    }
}

/// One network list, capped at the kernel's rules per list, with what was left out.
struct NetList<'a, T> {
    key: &'static str,
    items: Vec<T>,
    value: fn(&T) -> String,
    comment: fn(&T) -> String,
    none_seen: &'static str,
    cut_what: &'static str,
    cut: Option<&'a Seen>,
}

fn write_net_list<T>(out: &mut String, list: NetList<'_, T>, seen: impl Fn(&T) -> u64) {
    let (kept, dropped) = generalise::most_seen(list.items, MAX_NET_RULES as usize, seen);
    if kept.is_empty() {
        let _ = writeln!(out, "{} = []  # {}", list.key, list.none_seen);
    } else {
        let _ = writeln!(out, "{} = [", list.key);
        for g in &kept {
            element(out, &(list.value)(g), &(list.comment)(g));
        }
        out.push_str("]\n");
    }
    write_over_limit(out, list.key, &dropped, |g| {
        format!("{}: {}", (list.value)(g), (list.comment)(g))
    });
    cut_note(out, list.cut_what, false, list.cut);
}

pub(super) fn write_network(out: &mut String, all: &ImageBehaviour) {
    out.push_str("[network]\n");
    write_net_list(
        out,
        NetList {
            key: "egress_allow",
            items: generalise::destinations(all.egress.iter()),
            value: net_value,
            comment: net_comment,
            none_seen: "no outbound connection was seen",
            cut_what: "outbound connections",
            cut: all.egress.cut(),
        },
        |g| g.seen.count,
    );
    out.push_str(
        "# UDP sent without `connect` (plain sendto) is reported only when a rule matches, so learning\n\
         # does not see it: add such destinations (a resolver that does not connect) by hand.\n",
    );
    write_net_list(
        out,
        NetList {
            key: "listen_allow",
            items: generalise::listen_ports(
                all.listens.iter().map(|(l, s)| (l.port, l.protocol, *s)),
            ),
            value: port_value,
            comment: port_comment,
            none_seen: "no port was bound",
            cut_what: "binds",
            cut: all.listens.cut(),
        },
        |g| g.seen.count,
    );
    match &all.raw_sockets {
        None if !all.raw_sockets_watched => out.push_str(
            "# Raw and packet sockets were not watched while learning (the kernel reports them only\n\
             # under a profile with `block_raw_sockets = true`), so whether the workload opens them is\n\
             # unknown. Set this once you know it does not (or learn again under such a profile):\n\
             # block_raw_sockets = true\n",
        ),
        None => out.push_str("block_raw_sockets = true  # no raw or packet socket was seen\n"),
        Some(s) => {
            let _ = writeln!(
                out,
                "# Raw or packet sockets were opened ({}); set true to make them violations.\n\
                 block_raw_sockets = false",
                seen_text(s, "time", "times")
            );
        }
    }
}
