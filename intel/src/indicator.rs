//! One indicator of compromise: the SHA-256 of a file's content, or an IP network.
//!
//! Every feed format ends up here, so a hash or an address means the same whichever file listed
//! it: hex is case-insensitive, a CIDR must have its host bits clear (`10.0.0.1/8` is ambiguous
//! and refused, not guessed), and an IPv4-mapped IPv6 network (`::ffff:192.0.2.1`) is stored as
//! the IPv4 network it is, because the kernel sees the same destination through either socket
//! family.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The SHA-256 digest of a file's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<Sha256, IndicatorError> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err(IndicatorError::NotSha256 {
                text: excerpt(text),
            });
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Sha256(out))
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// An IP network: an address with its host bits clear and a prefix length. A single address
/// is a /32 (IPv4) or /128 (IPv6) network.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// Parses `192.0.2.1`, `192.0.2.0/24`, `2001:db8::1` or `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<IpNet, IndicatorError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| IndicatorError::NotAnAddress {
                text: excerpt(text),
            })?;
        let max = max_prefix(addr);
        let prefix_len = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                // `parse` accepts a leading `+`; a prefix is plain digits.
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(IndicatorError::PrefixLength {
                        text: excerpt(text),
                        max,
                    })
                }
            },
        };
        let net = mask(addr, prefix_len);
        if net != addr {
            return Err(IndicatorError::HostBitsSet {
                text: excerpt(text),
                network: IpNet {
                    addr: net,
                    prefix_len,
                }
                .to_string(),
            });
        }
        Ok(IpNet::new_masked(addr, prefix_len))
    }

    /// The network of `addr` with `prefix_len` bits (host bits cleared), IPv4-mapped IPv6
    /// stored as IPv4. `prefix_len` is capped at the family's width.
    pub fn new_masked(addr: IpAddr, prefix_len: u8) -> IpNet {
        let prefix_len = prefix_len.min(max_prefix(addr));
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix_len >= 96) {
                return IpNet::new_masked(IpAddr::V4(v4), prefix_len - 96);
            }
        }
        IpNet {
            addr: mask(addr, prefix_len),
            prefix_len,
        }
    }

    /// The network address (host bits clear).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether this is one address rather than a range.
    pub fn is_single_address(&self) -> bool {
        self.prefix_len == max_prefix(self.addr)
    }

    /// Whether `addr` is in the network; an IPv4-mapped IPv6 address is its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        mask(addr, self.prefix_len) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single_address() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix_len)
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; anything else unchanged.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

pub(crate) fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    fn clear(bytes: &mut [u8], prefix_len: u8) {
        for (i, b) in bytes.iter_mut().enumerate() {
            let keep = usize::from(prefix_len).saturating_sub(i * 8).min(8);
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

/// What an indicator is, as events and `seawall status` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndicatorKind {
    /// A file's SHA-256.
    Sha256,
    /// One IP address.
    Ip,
    /// An IP network wider than one address.
    Cidr,
}

impl IndicatorKind {
    /// The event's `intel.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Sha256 => "sha256",
            IndicatorKind::Ip => "ip",
            IndicatorKind::Cidr => "cidr",
        }
    }

    /// Every kind, in the order `seawall status` lists them.
    pub const ALL: [IndicatorKind; 3] = [
        IndicatorKind::Sha256,
        IndicatorKind::Ip,
        IndicatorKind::Cidr,
    ];
}

impl fmt::Display for IndicatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hash or a network.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Indicator {
    /// A file whose content has this SHA-256.
    Sha256(Sha256),
    /// Destinations in this network.
    Net(IpNet),
}

impl Indicator {
    /// Parses one indicator as a plain list writes it: 64 hex digits, an address or a CIDR.
    pub fn parse(text: &str) -> Result<Indicator, IndicatorError> {
        let bytes = text.as_bytes();
        if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_hexdigit) {
            return match bytes.len() {
                64 => Sha256::parse(text).map(Indicator::Sha256),
                32 | 40 | 128 => Err(IndicatorError::OtherHash {
                    text: excerpt(text),
                    algorithm: match bytes.len() {
                        32 => "an MD5",
                        40 => "a SHA-1",
                        _ => "a SHA-512",
                    },
                }),
                _ => Err(IndicatorError::Unrecognised {
                    text: excerpt(text),
                }),
            };
        }
        if text.contains(['.', ':']) {
            return IpNet::parse(text).map(Indicator::Net);
        }
        Err(IndicatorError::Unrecognised {
            text: excerpt(text),
        })
    }

    /// Hash, single address or wider network.
    pub fn kind(&self) -> IndicatorKind {
        match self {
            Indicator::Sha256(_) => IndicatorKind::Sha256,
            Indicator::Net(n) if n.is_single_address() => IndicatorKind::Ip,
            Indicator::Net(_) => IndicatorKind::Cidr,
        }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Indicator::Sha256(h) => h.fmt(f),
            Indicator::Net(n) => n.fmt(f),
        }
    }
}

/// Why a piece of text is not an indicator. The offending text is quoted, cut to a readable
/// length and with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndicatorError {
    /// Hex, but the length of another hash algorithm.
    #[error(
        "`{text}` looks like {algorithm} hash; Seawall matches files by SHA-256 only \
         (64 hex digits): use the feed's SHA-256 list"
    )]
    OtherHash {
        /// The text as found.
        text: String,
        /// Which algorithm the length suggests.
        algorithm: &'static str,
    },
    /// Meant as a SHA-256 but not 64 hex digits.
    #[error("`{text}` is not a SHA-256: write 64 hex digits")]
    NotSha256 {
        /// The text as found.
        text: String,
    },
    /// Not an IPv4 or IPv6 address.
    #[error(
        "`{text}` is not an IP address or CIDR (host names are not resolved; write e.g. \
         `192.0.2.1`, `198.51.100.0/24` or `2001:db8::/32`)"
    )]
    NotAnAddress {
        /// The text as found.
        text: String,
    },
    /// A prefix length out of range for the family.
    #[error("`{text}`: the prefix length must be a number from 0 to {max}")]
    PrefixLength {
        /// The text as found.
        text: String,
        /// 32 or 128.
        max: u8,
    },
    /// An address with bits set beyond its prefix: which was meant is not clear.
    #[error(
        "`{text}` has host bits set after its prefix; write `{network}` for the network, or \
         the address alone"
    )]
    HostBitsSet {
        /// The text as found.
        text: String,
        /// The network it would be with its host bits cleared.
        network: String,
    },
    /// Neither a hash nor an address.
    #[error("`{text}` is not a SHA-256 (64 hex digits), an IP address or a CIDR")]
    Unrecognised {
        /// The text as found.
        text: String,
    },
}

/// At most this many characters of offending input are quoted in a message.
const EXCERPT_CHARS: usize = 80;

/// Input quoted in a message: control characters escaped (a feed line must not drive the
/// operator's terminal), cut to [`EXCERPT_CHARS`].
pub(crate) fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || c == '`' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hashes_are_case_insensitive_and_print_lowercase() {
        let upper = Sha256::parse(H).unwrap();
        let lower = Sha256::parse(&H.to_ascii_lowercase()).unwrap();
        assert_eq!(upper, lower);
        assert_eq!(upper.to_string(), H.to_ascii_lowercase());
        assert_eq!(upper.0[0], 0x27);
        assert_eq!(upper.0[31], 0x0f);
        assert_eq!(Indicator::parse(H).unwrap().kind(), IndicatorKind::Sha256);
    }

    #[test]
    fn other_hash_lengths_are_named() {
        let md5 = "44d88612fea8a8f36de82e1278abb02f";
        let e = Indicator::parse(md5).unwrap_err();
        assert!(e.to_string().contains("an MD5"), "{e}");
        let sha1 = "3395856ce81f2b7382dee72602f798b642f14140";
        assert!(Indicator::parse(sha1)
            .unwrap_err()
            .to_string()
            .contains("a SHA-1"));
        assert!(matches!(
            Indicator::parse(&H[..63]),
            Err(IndicatorError::Unrecognised { .. })
        ));
        assert!(Sha256::parse(&format!("{}g", &H[..63])).is_err());
        // Multi-byte characters must not trip the byte arithmetic.
        assert!(Sha256::parse(&"é".repeat(32)).is_err());
    }

    #[test]
    fn addresses_and_networks() {
        let n = IpNet::parse("192.0.2.1").unwrap();
        assert_eq!((n.addr(), n.prefix_len()), (ip("192.0.2.1"), 32));
        assert_eq!(Indicator::Net(n).kind(), IndicatorKind::Ip);
        let n = IpNet::parse("198.51.100.0/24").unwrap();
        assert_eq!(Indicator::Net(n).kind(), IndicatorKind::Cidr);
        assert_eq!(n.to_string(), "198.51.100.0/24");
        assert!(n.contains(ip("198.51.100.255")));
        assert!(!n.contains(ip("198.51.101.0")));
        assert!(n.contains(ip("::ffff:198.51.100.7")));
        let n = IpNet::parse("2001:db8::/32").unwrap();
        assert!(n.contains(ip("2001:db8:1::1")));
        assert!(!n.contains(ip("2001:db9::1")));
        assert!(!n.contains(ip("32.1.13.184")));
        assert_eq!(IpNet::parse("0.0.0.0/0").unwrap().prefix_len(), 0);
        assert_eq!(
            IpNet::parse("192.0.2.1/32").unwrap().to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn ipv4_mapped_networks_are_ipv4() {
        let n = IpNet::parse("::ffff:192.0.2.1").unwrap();
        assert_eq!((n.addr(), n.prefix_len()), (ip("192.0.2.1"), 32));
        let n = IpNet::parse("::ffff:198.51.100.0/120").unwrap();
        assert_eq!((n.addr(), n.prefix_len()), (ip("198.51.100.0"), 24));
        // Wider than the mapped range: stays IPv6.
        let n = IpNet::parse("::/64").unwrap();
        assert!(n.addr().is_ipv6());
    }

    #[test]
    fn ambiguous_or_malformed_networks_are_refused() {
        let e = IpNet::parse("10.0.0.1/8").unwrap_err();
        assert!(e.to_string().contains("write `10.0.0.0/8`"), "{e}");
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "::/129",
            "010.0.0.1",
            "1.2.3",
            "example.com",
            "[::1]",
            "fe80::1%eth0",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
        assert!(Indicator::parse("evil").is_err());
        assert!(Indicator::parse("").is_err());
    }

    #[test]
    fn excerpts_are_short_and_inert() {
        let e = Indicator::parse(&format!("\u{1b}[31m{}", "x".repeat(500))).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains('\u{1b}'), "{msg}");
        assert!(msg.chars().count() < 200, "{msg}");
    }
}
