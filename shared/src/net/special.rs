//! The one table of special-purpose IP addresses (IANA special-purpose registries).
//!
//! Two classifiers read it and must never disagree: the SSRF guard ([`super::ssrf`]: may we
//! connect there?) and the never-send list (`enrich::never_send`: may this indicator leave our
//! account?). An address is special here exactly when it is not public to both.
//!
//! IPv6 forms that carry an IPv4 address are judged by that IPv4, so `::ffff:10.0.0.1` is as
//! private as `10.0.0.1`: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, SIIT
//! `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002:AABB:CCDD::/48`. Two carriers are
//! special themselves and take the stricter of their own class and the embedded one: local-use
//! NAT64 `64:ff9b:1::/48` (private: not globally reachable, RFC 8215; the IPv4 read at the /96
//! position) and Teredo `2001::/32` (reserved as part of `2001::/23`; the client IPv4 is the
//! inverted last 32 bits).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a host route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Error for a malformed CIDR string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR: {0:?}")]
pub struct InvalidCidr(pub String);

impl Cidr {
    pub fn new(network: IpAddr, prefix: u8) -> Option<Self> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Same family and same leading `prefix` bits.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(u32::from(n) as u128, u32::from(a) as u128, self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || InvalidCidr(s.to_string());
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None if network.is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(network, prefix).ok_or_else(err)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Loopback,
    /// RFC 1918, CGNAT, unique-local, site-local, local-use NAT64.
    Private,
    LinkLocal,
    /// Cloud instance metadata services.
    Metadata,
    Unspecified,
    Multicast,
    /// Documentation, benchmarking, protocol assignments, future use, broadcast, discard-only.
    Reserved,
}

impl Special {
    /// The lowercase name used in errors and logs.
    pub fn label(self) -> &'static str {
        match self {
            Special::Loopback => "loopback",
            Special::Private => "private",
            Special::LinkLocal => "link_local",
            Special::Metadata => "metadata",
            Special::Unspecified => "unspecified",
            Special::Multicast => "multicast",
            Special::Reserved => "reserved",
        }
    }

    /// A network of our own (loopback, private, link-local and the metadata services in it),
    /// as opposed to addresses that route nowhere.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            Special::Loopback | Special::Private | Special::LinkLocal | Special::Metadata
        )
    }

    /// For carriers that are special themselves: classes the SSRF guard never allows outrank
    /// the ones a deployment may allow (loopback, private).
    fn rank(self) -> u8 {
        match self {
            Special::Loopback | Special::Private => 1,
            _ => 2,
        }
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> (u32, u8) {
    (u32::from_be_bytes([a, b, c, d]), prefix)
}

/// First match wins: specific entries come before the ranges that contain them.
const V4_TABLE: [((u32, u8), Special); 17] = [
    (v4(169, 254, 169, 254, 32), Special::Metadata),
    // Alibaba Cloud's metadata service sits in CGNAT space; refuse it even when private
    // addresses are allowed.
    (v4(100, 100, 100, 200, 32), Special::Metadata),
    (v4(127, 0, 0, 0, 8), Special::Loopback),
    (v4(10, 0, 0, 0, 8), Special::Private),
    (v4(172, 16, 0, 0, 12), Special::Private),
    (v4(192, 168, 0, 0, 16), Special::Private),
    (v4(100, 64, 0, 0, 10), Special::Private),
    (v4(169, 254, 0, 0, 16), Special::LinkLocal),
    (v4(0, 0, 0, 0, 8), Special::Unspecified),
    (v4(224, 0, 0, 0, 4), Special::Multicast),
    // 240/4 future use, including the broadcast address.
    (v4(240, 0, 0, 0, 4), Special::Reserved),
    (v4(192, 0, 0, 0, 24), Special::Reserved),
    (v4(192, 0, 2, 0, 24), Special::Reserved),
    (v4(192, 88, 99, 0, 24), Special::Reserved),
    (v4(198, 18, 0, 0, 15), Special::Reserved),
    (v4(198, 51, 100, 0, 24), Special::Reserved),
    (v4(203, 0, 113, 0, 24), Special::Reserved),
];

const fn v6(s: [u16; 8], prefix: u8) -> (u128, u8) {
    let mut n = 0u128;
    let mut i = 0;
    while i < 8 {
        n = (n << 16) | s[i] as u128;
        i += 1;
    }
    (n, prefix)
}

/// Native IPv6 ranges (the embedded-IPv4 carriers are handled before this table).
const V6_TABLE: [((u128, u8), Special); 12] = [
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Special::Loopback),
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), Special::Unspecified),
    (v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128), Special::Metadata),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Special::Private),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Special::LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Special::Private),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Special::Multicast),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), Special::Private),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), Special::Reserved),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), Special::Reserved),
    // Protocol assignments, including Teredo 2001::/32 and benchmarking 2001:2::/48.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), Special::Reserved),
    // Documentation (RFC 9637).
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), Special::Reserved),
];

fn hit(net: u128, prefix: u8, bits: u8, a: u128) -> bool {
    prefix_eq(net, a, prefix, bits)
}

fn table_v4(a: Ipv4Addr) -> Option<Special> {
    let a = u32::from(a) as u128;
    V4_TABLE
        .iter()
        .find(|((n, p), _)| hit(*n as u128, *p, 32, a))
        .map(|(_, s)| *s)
}

fn table_v6(a: Ipv6Addr) -> Option<Special> {
    let a = u128::from(a);
    V6_TABLE.iter().find(|((n, p), _)| hit(*n, *p, 128, a)).map(|(_, s)| *s)
}

/// Where an IPv6 address carries an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// The IPv6 address only transports the IPv4: judged by the IPv4 alone.
    Transparent(Ipv4Addr),
    /// The IPv6 range is special itself: the stricter of both.
    Special(Ipv4Addr),
}

fn carrier(a: Ipv6Addr) -> Option<Carrier> {
    let s = a.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        // `::` and `::1` are themselves, not IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, 0, 0] | [0, 0, 0, 0, 0, 0, 0, 1] => None,
        // IPv4-compatible, IPv4-mapped, SIIT (IPv4-translated).
        [0, 0, 0, 0, 0, 0, hi, lo] | [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
            Some(Carrier::Transparent(v4(hi, lo)))
        }
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(Carrier::Transparent(v4(hi, lo))),
        [0x2002, hi, lo, ..] => Some(Carrier::Transparent(v4(hi, lo))),
        [0x64, 0xff9b, 1, _, _, _, hi, lo] => Some(Carrier::Special(v4(hi, lo))),
        [0x2001, 0, _, _, _, _, hi, lo] => Some(Carrier::Special(v4(!hi, !lo))),
        _ => None,
    }
}

/// The IPv4 address an IPv6 address carries (mapped, compatible, SIIT, NAT64 well-known and
/// local-use at the /96 position, 6to4, Teredo client), if any.
pub(crate) fn embedded_ipv4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    carrier(a).map(|c| match c {
        Carrier::Transparent(v4) | Carrier::Special(v4) => v4,
    })
}

/// The special class of `ip`, or `None` for a public address.
pub fn special(ip: IpAddr) -> Option<Special> {
    match ip {
        IpAddr::V4(a) => table_v4(a),
        IpAddr::V6(a) => match carrier(a) {
            Some(Carrier::Transparent(v4)) => table_v4(v4),
            Some(Carrier::Special(v4)) => {
                let own = table_v6(a);
                match (own, table_v4(v4)) {
                    (Some(o), Some(e)) if e.rank() > o.rank() => Some(e),
                    (Some(o), _) => Some(o),
                    (None, e) => e,
                }
            }
            None => table_v6(a),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Special::*;

    #[test]
    fn table() {
        let cases: &[(&str, Option<Special>)] = &[
            ("8.8.8.8", None),
            ("127.0.0.1", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("100.64.0.1", Some(Private)),
            ("100.100.100.200", Some(Metadata)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.1.1", Some(LinkLocal)),
            ("0.0.0.0", Some(Unspecified)),
            ("224.0.0.1", Some(Multicast)),
            ("255.255.255.255", Some(Reserved)),
            ("::1", Some(Loopback)),
            ("::", Some(Unspecified)),
            ("2606:4700:4700::1111", None),
            ("3fff::1", Some(Reserved)),
            ("3fff:fff::1", Some(Reserved)),
            ("3fff:1000::1", None),
            // carriers of an IPv4 address
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::10.1.2.3", Some(Private)),
            ("::8.8.8.8", None),
            ("::ffff:0:10.1.2.3", Some(Private)),
            ("::ffff:0:169.254.169.254", Some(Metadata)),
            ("::ffff:0:8.8.8.8", None),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("64:ff9b::8.8.8.8", None),
            ("2002:a00:1::1", Some(Private)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:808:808::1", None),
            // local-use NAT64: private at least, stricter when the IPv4 says so
            ("64:ff9b:1::8.8.8.8", Some(Private)),
            ("64:ff9b:1::10.0.0.1", Some(Private)),
            ("64:ff9b:1::169.254.169.254", Some(Metadata)),
            ("64:ff9b:1:ffff::192.0.2.1", Some(Reserved)),
            ("64:ff9b:2::8.8.8.8", None),
            // Teredo: reserved; client 10.0.0.1 is stored inverted (f5ff:fffe)
            ("2001:0:4136:e378:8000:63bf:f5ff:fffe", Some(Reserved)),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", Some(Reserved)),
        ];
        for (s, want) in cases {
            assert_eq!(special(s.parse().unwrap()), *want, "{s}");
        }
    }

    #[test]
    fn embedded_forms() {
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(embedded_ipv4(ip("::ffff:1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(ip("::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(ip("::ffff:0:1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(ip("64:ff9b::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(ip("64:ff9b:1:2::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(ip("2002:102:304::1")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(ip("2001:0:4136:e378:8000:63bf:fefd:fcfb")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(ip("::1")), None);
        assert_eq!(embedded_ipv4(ip("::")), None);
        assert_eq!(embedded_ipv4(ip("2606:4700::1111")), None);
    }

    #[test]
    fn cidr_parse() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().prefix(), 8);
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().prefix(), 32);
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix(), 128);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains("1.2.3.4".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
    }
}
