//! One pattern instead of many entries, but only where many siblings were seen: every
//! generalisation allows things the workload never did, so the thresholds are high and a few
//! places are never generalised at all.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Destination, PortRange, Seen, Transport};

/// Distinct entries directly in one directory before they become `dir/*`.
pub(crate) const DIR_MIN: usize = 10;
/// Distinct entries below one directory before they become `dir/**` ...
pub(crate) const TREE_MIN: usize = 24;
/// ... and in at least this many of its sub-directories.
pub(crate) const TREE_MIN_DIRS: usize = 3;
/// `dir/**` is never written for a directory this close to `/` (`/usr/**`, `/opt/**`).
pub(crate) const TREE_MIN_DEPTH: usize = 2;
/// Distinct addresses in one /24 (IPv4) or /64 (IPv6), same port and protocol, before they
/// become that network.
pub(crate) const NET_MIN_ADDRESSES: usize = 8;
/// Distinct ports, each within [`PORT_GAP`] of the next, before they become a range.
pub(crate) const PORT_MIN: usize = 8;
/// Largest gap between neighbouring ports of one range.
pub(crate) const PORT_GAP: u16 = 16;

/// Where `dir/*` would admit shells and download tools the workload never ran; trees above them
/// (`/usr/**`, `/usr/local/**`) are refused for the same reason, and so is `/*`.
const NEVER_GENERALISED: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// An exact path, or a `dir/*` / `dir/**` pattern standing for the paths it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathGroup {
    /// `/bin/sh`, `/opt/app/*` or `/opt/app/**`.
    pub pattern: String,
    /// All its members' histories as one.
    pub seen: Seen,
    /// The paths a pattern was made from; empty for an exact path.
    pub members: Vec<String>,
    /// How many directories the members were in.
    pub dirs: usize,
}

fn protected(dir: &str) -> bool {
    dir.is_empty()
        || dir == "/"
        || NEVER_GENERALISED
            .iter()
            .any(|p| *p == dir || p.starts_with(&format!("{dir}/")))
}

fn parent(path: &str) -> &str {
    &path[..path.rfind('/').unwrap_or(0)]
}

/// Groups absolute paths. `literal` says whether a path or directory can be written as it is in
/// the target list (no glob characters, an exact form the checker accepts); directories that
/// cannot are never turned into patterns. Output is sorted by pattern.
pub(crate) fn paths(entries: &[(String, Seen)], literal: impl Fn(&str) -> bool) -> Vec<PathGroup> {
    let mut below: BTreeMap<String, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for (p, _) in entries {
        let comps: Vec<&str> = p[1..].split('/').collect();
        for depth in TREE_MIN_DEPTH..comps.len() {
            let dir = format!("/{}", comps[..depth].join("/"));
            let slot = below.entry(dir).or_default();
            slot.0 += 1;
            if depth + 1 < comps.len() {
                slot.1.insert(comps[depth]);
            }
        }
    }
    // Shallowest first, so a qualifying directory swallows qualifying sub-directories.
    let mut candidates: Vec<&String> = below
        .iter()
        .filter(|(d, (n, subdirs))| {
            *n >= TREE_MIN && subdirs.len() >= TREE_MIN_DIRS && !protected(d) && literal(d)
        })
        .map(|(d, _)| d)
        .collect();
    candidates.sort_by_key(|d| (d.matches('/').count(), d.as_str()));
    let mut trees: Vec<&String> = Vec::new();
    for d in candidates {
        if !trees.iter().any(|t| d.starts_with(&format!("{t}/"))) {
            trees.push(d);
        }
    }

    let mut groups: BTreeMap<String, (Seen, Vec<String>)> = BTreeMap::new();
    let mut add = |pattern: String, path: &str, seen: &Seen| {
        let slot = groups.entry(pattern).or_insert((*seen, Vec::new()));
        if slot.1.is_empty() {
            slot.0 = *seen;
        } else {
            slot.0.merge(seen);
        }
        slot.1.push(path.to_string());
    };
    let mut rest: BTreeMap<&str, Vec<(&String, &Seen)>> = BTreeMap::new();
    for (p, s) in entries {
        match trees.iter().find(|t| p.starts_with(&format!("{t}/"))) {
            Some(t) => add(format!("{t}/**"), p, s),
            None => rest.entry(parent(p)).or_default().push((p, s)),
        }
    }
    for (dir, members) in rest {
        let generalise = members.len() >= DIR_MIN && !protected(dir) && literal(dir);
        for (p, s) in members {
            if generalise {
                add(format!("{dir}/*"), p, s);
            } else {
                add(p.clone(), p, s);
            }
        }
    }
    groups
        .into_iter()
        .map(|(pattern, (seen, mut members))| {
            let exact = members.len() == 1 && members[0] == pattern;
            if exact {
                members.clear();
            }
            members.sort();
            let dirs = members
                .iter()
                .map(|m| parent(m))
                .collect::<BTreeSet<_>>()
                .len();
            PathGroup {
                pattern,
                seen,
                members,
                dirs,
            }
        })
        .collect()
}

/// Egress destinations as rules: a network (a single address unless generalised), a port range
/// and a protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetGroup {
    /// Network address, host bits clear.
    pub net: IpAddr,
    /// Prefix length; 32 or 128 for a single address.
    pub prefix: u8,
    /// Ports.
    pub ports: PortRange,
    /// Protocol.
    pub protocol: Transport,
    /// All members' histories as one.
    pub seen: Seen,
    /// Distinct destinations (address, port) it stands for.
    pub destinations: usize,
    /// Distinct addresses among them.
    pub addresses: usize,
}

impl NetGroup {
    /// Whether this stands for more than the one destination it names.
    pub fn generalised(&self) -> bool {
        self.destinations > 1
    }
}

fn host_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

fn network(a: IpAddr) -> (IpAddr, u8) {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 0)), 24)
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            (IpAddr::V6(Ipv6Addr::from(o)), 64)
        }
    }
}

/// Sorted, distinct ports split where the gap is wider than [`PORT_GAP`]; runs of at least
/// [`PORT_MIN`] ports become one range, the others stay single ports.
fn port_runs(ports: &[u16]) -> Vec<PortRange> {
    let mut runs: Vec<Vec<u16>> = Vec::new();
    for &p in ports {
        match runs.last_mut() {
            Some(run) if p - run[run.len() - 1] <= PORT_GAP => run.push(p),
            _ => runs.push(vec![p]),
        }
    }
    let mut out = Vec::new();
    for run in runs {
        if run.len() >= PORT_MIN {
            out.push(PortRange {
                first: run[0],
                last: run[run.len() - 1],
            });
        } else {
            out.extend(run.into_iter().map(PortRange::single));
        }
    }
    out
}

/// Groups destinations: first many addresses of one network on the same port, then many ports
/// of the same network. Output sorted by network, ports and protocol.
pub(crate) fn destinations<'a>(
    entries: impl Iterator<Item = (&'a Destination, &'a Seen)>,
) -> Vec<NetGroup> {
    type ByNet = BTreeMap<(Transport, u16, IpAddr, u8), Vec<(IpAddr, Seen)>>;
    let mut by_net: ByNet = BTreeMap::new();
    for (d, s) in entries {
        let (net, prefix) = network(d.address);
        by_net
            .entry((d.protocol, d.port, net, prefix))
            .or_default()
            .push((d.address, *s));
    }
    // Step one: addresses. Key: (protocol, net, prefix) → port → (seen, destinations, addresses).
    let mut by_port: BTreeMap<(Transport, IpAddr, u8), BTreeMap<u16, Vec<NetGroup>>> =
        BTreeMap::new();
    for ((protocol, port, net, prefix), members) in by_net {
        let mut push = |net: IpAddr, prefix: u8, seen: Seen, n: usize| {
            by_port
                .entry((protocol, net, prefix))
                .or_default()
                .entry(port)
                .or_default()
                .push(NetGroup {
                    net,
                    prefix,
                    ports: PortRange::single(port),
                    protocol,
                    seen,
                    destinations: n,
                    addresses: n,
                })
        };
        if members.len() >= NET_MIN_ADDRESSES {
            let mut seen = members[0].1;
            members[1..].iter().for_each(|(_, s)| seen.merge(s));
            push(net, prefix, seen, members.len());
        } else {
            for (addr, seen) in members {
                push(addr, host_prefix(addr), seen, 1);
            }
        }
    }
    // Step two: ports of the same (network, protocol).
    let mut out = Vec::new();
    for ((protocol, net, prefix), ports) in by_port {
        let list: Vec<u16> = ports.keys().copied().collect();
        for range in port_runs(&list) {
            let members: Vec<&NetGroup> = ports
                .range(range.first..=range.last)
                .flat_map(|(_, g)| g)
                .collect();
            let mut seen = members[0].seen;
            members[1..].iter().for_each(|g| seen.merge(&g.seen));
            out.push(NetGroup {
                net,
                prefix,
                ports: range,
                protocol,
                seen,
                destinations: members.iter().map(|g| g.destinations).sum(),
                addresses: members.iter().map(|g| g.addresses).max().unwrap_or(1),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.net, a.prefix, a.ports.first, a.protocol).cmp(&(
            b.net,
            b.prefix,
            b.ports.first,
            b.protocol,
        ))
    });
    out
}

/// Listening ports as `listen_allow` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortGroup {
    /// A port or a range.
    pub ports: PortRange,
    /// Protocols bound on them.
    pub protocols: BTreeSet<Transport>,
    /// All members' histories as one.
    pub seen: Seen,
    /// Distinct ports it stands for.
    pub count: usize,
}

/// Groups ports bound (any protocol) into single ports and ranges, sorted.
pub(crate) fn listen_ports(
    entries: impl Iterator<Item = (u16, Transport, Seen)>,
) -> Vec<PortGroup> {
    let mut by_port: BTreeMap<u16, (BTreeSet<Transport>, Seen)> = BTreeMap::new();
    for (port, proto, seen) in entries {
        let slot = by_port.entry(port).or_insert((BTreeSet::new(), seen));
        if !slot.0.is_empty() {
            slot.1.merge(&seen);
        }
        slot.0.insert(proto);
    }
    let list: Vec<u16> = by_port.keys().copied().collect();
    port_runs(&list)
        .into_iter()
        .map(|range| {
            let mut protocols = BTreeSet::new();
            let mut seen: Option<Seen> = None;
            let mut count = 0;
            for (_, (p, s)) in by_port.range(range.first..=range.last) {
                protocols.extend(p.iter().copied());
                match seen.as_mut() {
                    Some(all) => all.merge(s),
                    None => seen = Some(*s),
                }
                count += 1;
            }
            PortGroup {
                ports: range,
                protocols,
                seen: seen.unwrap_or(Seen::at(0)),
                count,
            }
        })
        .collect()
}

/// Splits `items` into the `max` most often seen (kept in their order) and the rest: the kernel
/// takes a bounded number of rules per list.
pub(crate) fn most_seen<T>(
    items: Vec<T>,
    max: usize,
    seen: impl Fn(&T) -> u64,
) -> (Vec<T>, Vec<T>) {
    if items.len() <= max {
        return (items, Vec::new());
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Stable: at equal counts the earlier (sorted) entry is kept.
    order.sort_by_key(|&i| std::cmp::Reverse(seen(&items[i])));
    let keep: BTreeSet<usize> = order[..max].iter().copied().collect();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for (i, item) in items.into_iter().enumerate() {
        if keep.contains(&i) {
            kept.push(item);
        } else {
            dropped.push(item);
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(n: u64) -> Seen {
        Seen {
            count: n,
            first: 10,
            last: 20,
        }
    }

    fn entries(paths: &[String]) -> Vec<(String, Seen)> {
        paths.iter().map(|p| (p.clone(), seen(1))).collect()
    }

    fn patterns(groups: &[PathGroup]) -> Vec<&str> {
        groups.iter().map(|g| g.pattern.as_str()).collect()
    }

    #[test]
    fn few_siblings_stay_exact() {
        let paths: Vec<String> = (0..DIR_MIN - 1).map(|i| format!("/app/bin/t{i}")).collect();
        let g = paths_of(&paths);
        assert_eq!(g.len(), DIR_MIN - 1);
        assert!(g.iter().all(|g| g.members.is_empty()));
    }

    fn paths_of(paths: &[String]) -> Vec<PathGroup> {
        super::paths(&entries(paths), |_| true)
    }

    #[test]
    fn many_siblings_become_one_directory_level() {
        let mut paths: Vec<String> = (0..DIR_MIN).map(|i| format!("/app/bin/t{i}")).collect();
        paths.push("/app/run".into());
        let g = paths_of(&paths);
        assert_eq!(patterns(&g), ["/app/bin/*", "/app/run"]);
        assert_eq!(g[0].members.len(), DIR_MIN);
        assert_eq!(g[0].seen.count, DIR_MIN as u64);
        assert_eq!(g[0].dirs, 1);
    }

    #[test]
    fn system_binary_directories_and_the_root_are_never_generalised() {
        for dir in ["/bin", "/usr/bin", "/usr/local/sbin", ""] {
            let paths: Vec<String> = (0..50).map(|i| format!("{dir}/t{i}")).collect();
            let g = paths_of(&paths);
            assert_eq!(g.len(), 50, "{dir}");
        }
        // Nor a tree above them: /usr/local/** would admit /usr/local/bin/*.
        let paths: Vec<String> = (0..60)
            .map(|i| format!("/usr/local/{}/t{i}", ["lib", "share", "etc"][i % 3]))
            .collect();
        let g = paths_of(&paths);
        assert!(g.iter().all(|g| !g.pattern.ends_with("**")), "{g:?}");
    }

    #[test]
    fn many_directories_below_one_become_a_tree_at_depth_two_or_more() {
        let paths: Vec<String> = (0..TREE_MIN)
            .map(|i| format!("/opt/app/{}/t{i}", ["bin", "lib", "plugins"][i % 3]))
            .collect();
        let g = paths_of(&paths);
        assert_eq!(patterns(&g), ["/opt/app/**"]);
        assert_eq!((g[0].members.len(), g[0].dirs), (TREE_MIN, 3));

        // Two sub-directories are not "many": each becomes `dir/*` instead.
        let paths: Vec<String> = (0..TREE_MIN)
            .map(|i| format!("/opt/app/{}/t{i}", ["bin", "lib"][i % 2]))
            .collect();
        assert_eq!(
            patterns(&paths_of(&paths)),
            ["/opt/app/bin/*", "/opt/app/lib/*"]
        );

        // Depth one is never a tree: `/opt/**` is too wide.
        let paths: Vec<String> = (0..TREE_MIN * 2)
            .map(|i| format!("/opt/{}/t{i}", ["a", "b", "c"][i % 3]))
            .collect();
        assert!(paths_of(&paths).iter().all(|g| !g.pattern.ends_with("**")));
    }

    #[test]
    fn directories_that_cannot_be_written_literally_stay_exact() {
        let paths: Vec<String> = (0..DIR_MIN).map(|i| format!("/a*b/t{i}")).collect();
        let g = super::paths(&entries(&paths), |p| !p.contains('*'));
        assert_eq!(g.len(), DIR_MIN);
    }

    fn dest(a: &str, port: u16) -> Destination {
        Destination {
            address: a.parse().unwrap(),
            port,
            protocol: Transport::Tcp,
        }
    }

    fn net_strings(entries: &[(Destination, Seen)]) -> Vec<String> {
        destinations(entries.iter().map(|(d, s)| (d, s)))
            .iter()
            .map(|g| format!("{}/{} {} {}", g.net, g.prefix, g.ports, g.destinations))
            .collect()
    }

    #[test]
    fn many_addresses_of_one_network_become_a_cidr() {
        let mut e: Vec<(Destination, Seen)> = (1..=NET_MIN_ADDRESSES as u8)
            .map(|i| (dest(&format!("10.0.1.{i}"), 5432), seen(1)))
            .collect();
        e.push((dest("10.0.2.1", 5432), seen(1)));
        e.push((dest("10.0.1.1", 80), seen(1)));
        assert_eq!(
            net_strings(&e),
            [
                "10.0.1.0/24 5432 8",
                "10.0.1.1/32 80 1",
                "10.0.2.1/32 5432 1"
            ]
        );
        let few: Vec<(Destination, Seen)> = (1..NET_MIN_ADDRESSES as u8)
            .map(|i| (dest(&format!("fd00::{i}"), 53), seen(1)))
            .collect();
        assert_eq!(net_strings(&few).len(), NET_MIN_ADDRESSES - 1);
    }

    #[test]
    fn many_close_ports_become_a_range() {
        let mut e: Vec<(Destination, Seen)> = (0..PORT_MIN as u16)
            .map(|i| (dest("127.0.0.1", 8000 + i * 3), seen(1)))
            .collect();
        e.push((dest("127.0.0.1", 9000), seen(1)));
        assert_eq!(
            net_strings(&e),
            ["127.0.0.1/32 8000-8021 8", "127.0.0.1/32 9000 1"]
        );
        // Far apart ports are not a range, however many.
        let e: Vec<(Destination, Seen)> = (0..20u16)
            .map(|i| (dest("127.0.0.1", 1000 + i * 100), seen(1)))
            .collect();
        assert_eq!(net_strings(&e).len(), 20);
    }

    #[test]
    fn listen_ports_merge_protocols_and_runs() {
        let mut e = vec![(53, Transport::Udp, seen(1)), (53, Transport::Tcp, seen(2))];
        e.extend((0..PORT_MIN as u16).map(|i| (7000 + i, Transport::Tcp, seen(1))));
        let g = listen_ports(e.into_iter());
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].ports, PortRange::single(53));
        assert_eq!(g[0].protocols.len(), 2);
        assert_eq!(g[0].seen.count, 3);
        assert_eq!(
            (g[1].ports, g[1].count),
            (
                PortRange {
                    first: 7000,
                    last: 7007
                },
                PORT_MIN
            )
        );
    }

    #[test]
    fn most_seen_keeps_order_and_breaks_ties_by_position() {
        let (kept, dropped) = most_seen(vec![(1, 5), (2, 9), (3, 5), (4, 1)], 2, |x| x.1);
        assert_eq!(kept, [(1, 5), (2, 9)]);
        assert_eq!(dropped, [(3, 5), (4, 1)]);
    }
}
