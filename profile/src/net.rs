//! Network rules: `CIDR[:PORTS[/PROTO]]` strings (or their inline-table form) and port ranges.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The syntax reminder appended to every network-rule error.
pub(crate) const NET_RULE_SYNTAX: &str = "expected `CIDR[:PORTS[/PROTO]]`, e.g. `\"10.0.0.0/8\"`, \
     `\"127.0.0.1:8080\"`, `\"0.0.0.0/0:443/tcp\"`, `\"192.168.0.0/16:8000-8999/tcp\"`, \
     `\"[::1]:53/udp\"` (IPv6 with ports in brackets), or \
     `{ cidr = \"10.0.0.0/8\", ports = \"80-90\", protocol = \"tcp\" }`";

/// Transport protocol of a network rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP and UDP (and anything else).
    Any,
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
}

impl Protocol {
    pub(crate) fn parse(s: &str) -> Result<Protocol, String> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "any" => Ok(Protocol::Any),
            other => Err(format!(
                "unknown protocol `{other}`; allowed values: \"tcp\", \"udp\", \"any\""
            )),
        }
    }
}

/// An inclusive port range; `0-65535` means any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port, inclusive.
    pub first: u16,
    /// Last port, inclusive.
    pub last: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    /// A single port.
    pub fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Whether this is `0-65535`.
    pub fn is_any(&self) -> bool {
        *self == Self::ANY
    }

    /// Parses `443`, `8000-8999` or `*`.
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Self::ANY);
        }
        let port = |p: &str| -> Result<u16, String> {
            p.trim().parse::<u16>().map_err(|_| {
                format!(
                    "`{s}` is not a port or port range: write a port (`443`) or an inclusive \
                     range (`8000-8999`), each port 0-65535"
                )
            })
        };
        let range = match s.split_once('-') {
            Some((a, b)) => PortRange {
                first: port(a)?,
                last: port(b)?,
            },
            None => Self::single(port(s)?),
        };
        if range.first > range.last {
            return Err(format!(
                "port range `{s}` runs backwards; write `{}-{}`",
                range.last, range.first
            ));
        }
        Ok(range)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One egress rule: a network, a port range and a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetRule {
    /// Network address, host bits zero.
    pub net: IpAddr,
    /// Prefix length (0-32 for IPv4, 0-128 for IPv6).
    pub prefix_len: u8,
    /// Destination ports; [`PortRange::ANY`] for any.
    pub ports: PortRange,
    /// Transport protocol.
    pub protocol: Protocol,
}

impl NetRule {
    /// Whether a connection to `addr:port` over `proto` matches. An IPv4 rule also matches the
    /// IPv4-mapped IPv6 form (`::ffff:10.0.0.1`), so a dual-stack socket cannot side-step it.
    pub fn matches(&self, addr: IpAddr, port: u16, proto: Protocol) -> bool {
        let proto_ok = self.protocol == Protocol::Any || self.protocol == proto;
        proto_ok && self.ports.contains(port) && self.contains_addr(addr)
    }

    fn contains_addr(&self, addr: IpAddr) -> bool {
        match (self.net, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                prefix_eq(&net.octets(), &a.octets(), self.prefix_len)
            }
            (IpAddr::V4(net), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| prefix_eq(&net.octets(), &a.octets(), self.prefix_len)),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_eq(&net.octets(), &a.octets(), self.prefix_len)
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    /// Parses the string form `CIDR[:PORTS[/PROTO]]`.
    pub fn parse(s: &str) -> Result<NetRule, String> {
        let s = s.trim();
        let (cidr, rest) = if let Some(after) = s.strip_prefix('[') {
            let close = after
                .find(']')
                .ok_or_else(|| format!("`{s}` opens `[` but never closes it; {NET_RULE_SYNTAX}"))?;
            let rest = &after[close + 1..];
            let rest = match rest.strip_prefix(':') {
                Some(r) => Some(r),
                None if rest.is_empty() => None,
                None => {
                    return Err(format!(
                        "`{s}`: after `]` write `:PORTS`, e.g. `[::1]:53/udp`"
                    ))
                }
            };
            (&after[..close], rest)
        } else if s.matches(':').count() > 1 {
            // Bare IPv6: no ports possible without brackets.
            (s, None)
        } else {
            match s.split_once(':') {
                Some((c, r)) => (c, Some(r)),
                None => (s, None),
            }
        };
        let (net, prefix_len) = parse_cidr(cidr).map_err(|e| {
            // Name the whole entry once, whether or not the CIDR error already quotes it.
            if e.starts_with(&format!("`{s}`")) {
                e
            } else {
                format!("`{s}`: {e}")
            }
        })?;
        let (ports, protocol) = match rest {
            None => (PortRange::ANY, Protocol::Any),
            Some(r) => {
                let (p, proto) = match r.split_once('/') {
                    Some((p, proto)) => (
                        p,
                        Protocol::parse(proto).map_err(|e| format!("`{s}`: {e}"))?,
                    ),
                    None => (r, Protocol::Any),
                };
                let ports = PortRange::parse(p).map_err(|e| format!("`{s}`: {e}"))?;
                (ports, proto)
            }
        };
        Ok(NetRule {
            net,
            prefix_len,
            ports,
            protocol,
        })
    }
}

impl fmt::Display for NetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ports.is_any() && self.protocol == Protocol::Any {
            return write!(f, "{}/{}", self.net, self.prefix_len);
        }
        match self.net {
            IpAddr::V4(_) => write!(f, "{}/{}:", self.net, self.prefix_len)?,
            IpAddr::V6(_) => write!(f, "[{}/{}]:", self.net, self.prefix_len)?,
        }
        if self.ports.is_any() {
            f.write_str("*")?;
        } else {
            write!(f, "{}", self.ports)?;
        }
        match self.protocol {
            Protocol::Any => Ok(()),
            Protocol::Tcp => f.write_str("/tcp"),
            Protocol::Udp => f.write_str("/udp"),
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix_len: u8) -> bool {
    let full = usize::from(prefix_len / 8);
    let rem = prefix_len % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rem == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    a[full] & mask == b[full] & mask
}

/// Parses `10.0.0.0/8`, `10.0.0.1` (a /32), `fd00::/8` or `::1` (a /128).
pub(crate) fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("`{addr}` is not an IP address (host names are not resolved); {NET_RULE_SYNTAX}")
    })?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(format!(
                    "`/{p}` is not a prefix length for {}; write 0-{max}, e.g. `{}`",
                    if max == 32 { "IPv4" } else { "IPv6" },
                    if max == 32 { "10.0.0.0/8" } else { "fd00::/8" }
                ))
            }
        },
    };
    let net = mask(addr, prefix_len);
    if net != addr {
        return Err(format!(
            "`{s}` has host bits set after the /{prefix_len} prefix; write `{net}/{prefix_len}` \
             for the network, or `{addr}` for the single address"
        ));
    }
    Ok((net, prefix_len))
}

fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    fn clear(bytes: &mut [u8], prefix_len: u8) {
        for (i, b) in bytes.iter_mut().enumerate() {
            let bit = (i * 8) as u32;
            let keep = u32::from(prefix_len).saturating_sub(bit).min(8);
            *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        }
    }
    match addr {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            clear(&mut o, prefix_len);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            clear(&mut o, prefix_len);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_documented_form() {
        let r = NetRule::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            (r.net, r.prefix_len, r.ports, r.protocol),
            (ip("10.0.0.0"), 8, PortRange::ANY, Protocol::Any)
        );

        let r = NetRule::parse("127.0.0.1:8080").unwrap();
        assert_eq!(
            (r.net, r.prefix_len, r.ports, r.protocol),
            (ip("127.0.0.1"), 32, PortRange::single(8080), Protocol::Any)
        );

        let r = NetRule::parse("0.0.0.0/0:443/tcp").unwrap();
        assert_eq!(
            (r.prefix_len, r.ports, r.protocol),
            (0, PortRange::single(443), Protocol::Tcp)
        );

        let r = NetRule::parse("[::1]:53/udp").unwrap();
        assert_eq!(
            (r.net, r.prefix_len, r.ports, r.protocol),
            (ip("::1"), 128, PortRange::single(53), Protocol::Udp)
        );

        let r = NetRule::parse("192.168.0.0/16:8000-8999/tcp").unwrap();
        assert_eq!(
            r.ports,
            PortRange {
                first: 8000,
                last: 8999
            }
        );

        let r = NetRule::parse("fd00::/8").unwrap();
        assert_eq!((r.net, r.prefix_len), (ip("fd00::"), 8));

        let r = NetRule::parse("[fd00::/8]:*/udp").unwrap();
        assert_eq!((r.ports, r.protocol), (PortRange::ANY, Protocol::Udp));

        for s in [
            "10.0.0.0/8",
            "127.0.0.1/32:8080",
            "0.0.0.0/0:443/tcp",
            "[::1/128]:53/udp",
        ] {
            assert_eq!(
                NetRule::parse(&NetRule::parse(s).unwrap().to_string()),
                NetRule::parse(s)
            );
        }
    }

    #[test]
    fn errors_explain_the_syntax() {
        let e = NetRule::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("write `10.0.0.0/8`"), "{e}");
        let e = NetRule::parse("10.0.0.0/33").unwrap_err();
        assert!(e.contains("write 0-32"), "{e}");
        let e = NetRule::parse("example.com:443").unwrap_err();
        assert!(e.contains("host names are not resolved"), "{e}");
        let e = NetRule::parse("10.0.0.0/8:70000").unwrap_err();
        assert!(e.contains("each port 0-65535"), "{e}");
        let e = NetRule::parse("10.0.0.0/8:90-80").unwrap_err();
        assert!(e.contains("write `80-90`"), "{e}");
        let e = NetRule::parse("10.0.0.0/8:80/sctp").unwrap_err();
        assert!(e.contains("\"tcp\", \"udp\", \"any\""), "{e}");
        let e = NetRule::parse("[::1:53").unwrap_err();
        assert!(e.contains("never closes"), "{e}");
    }

    #[test]
    fn matching_v4_v6_ports_and_protocols() {
        let r = NetRule::parse("192.168.0.0/16:8000-8999/tcp").unwrap();
        assert!(r.matches(ip("192.168.4.5"), 8000, Protocol::Tcp));
        assert!(r.matches(ip("192.168.255.255"), 8999, Protocol::Tcp));
        assert!(!r.matches(ip("192.168.4.5"), 9000, Protocol::Tcp));
        assert!(!r.matches(ip("192.168.4.5"), 7999, Protocol::Tcp));
        assert!(!r.matches(ip("192.168.4.5"), 8080, Protocol::Udp));
        assert!(!r.matches(ip("192.169.0.1"), 8080, Protocol::Tcp));
        // IPv4-mapped IPv6 is the same destination.
        assert!(r.matches(ip("::ffff:192.168.1.1"), 8080, Protocol::Tcp));

        let r = NetRule::parse("10.1.2.0/23").unwrap();
        assert!(r.matches(ip("10.1.3.255"), 1, Protocol::Udp));
        assert!(!r.matches(ip("10.1.4.0"), 1, Protocol::Udp));

        let r = NetRule::parse("[2001:db8::/32]:53/udp").unwrap();
        assert!(r.matches(ip("2001:db8:ffff::1"), 53, Protocol::Udp));
        assert!(!r.matches(ip("2001:db9::1"), 53, Protocol::Udp));
        assert!(!r.matches(ip("2001:db8::1"), 53, Protocol::Tcp));
        assert!(!r.matches(ip("32.1.13.184"), 53, Protocol::Udp));

        let loopback6 = NetRule::parse("::1").unwrap();
        assert!(loopback6.matches(ip("::1"), 65535, Protocol::Tcp));
        assert!(!loopback6.matches(ip("::2"), 65535, Protocol::Tcp));

        let all = NetRule::parse("0.0.0.0/0").unwrap();
        assert!(all.matches(ip("8.8.8.8"), 0, Protocol::Any));
        assert!(!all.matches(ip("::2"), 1, Protocol::Tcp));
        let all6 = NetRule::parse("::/0").unwrap();
        assert!(all6.matches(ip("fe80::1"), 1, Protocol::Tcp));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::parse("80"), Ok(PortRange::single(80)));
        assert_eq!(
            PortRange::parse("8000-8100"),
            Ok(PortRange {
                first: 8000,
                last: 8100
            })
        );
        assert_eq!(PortRange::parse("*"), Ok(PortRange::ANY));
        assert!(PortRange::parse("http").is_err());
        assert!(PortRange::single(80).contains(80));
        assert!(!PortRange::single(80).contains(81));
    }
}
