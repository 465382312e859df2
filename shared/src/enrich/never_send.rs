//! Values that never leave our account (spec `providers.md` §1.1).
//!
//! Checked before any cache lookup or HTTP call. A value caught here gets one result under
//! the pseudo-provider `_validation` with `status: "skipped"` and the reason code returned by
//! [`NeverSendPolicy::check`]. Identity values (`account`) are additionally only ever given to
//! `okta` and `entra`; that is enforced by the providers' supported types, not here.
//!
//! Classification of the special ranges: loopback, link-local, RFC 1918, CGNAT and unique-local
//! /site-local IPv6 are `private_ip`; every other IANA special-purpose range listed in the spec
//! (unspecified, documentation, benchmarking, 6to4 relay anycast, IETF protocol assignments,
//! multicast, future use, broadcast, discard-only, `2001::/23`) is `reserved_ip`.

use std::net::IpAddr;

use crate::domain::indicator::IndicatorType;
use crate::net::special::{embedded_ipv4, special};
pub(crate) use crate::net::special::{Cidr, InvalidCidr};

pub(crate) const PRIVATE_IP: &str = "private_ip";
pub(crate) const RESERVED_IP: &str = "reserved_ip";
pub(crate) const INTERNAL_IP: &str = "internal_ip";
pub(crate) const INTERNAL_DOMAIN: &str = "internal_domain";
pub(crate) const URL_CREDENTIALS: &str = "url_credentials";
pub(crate) const EMPTY_FILE_HASH: &str = "empty_file_hash";
pub(crate) const SERVICE_ACCOUNT: &str = "service_account";
/// A value that does not parse as its type (normalization should have caught it).
pub(crate) const INVALID_VALUE: &str = "invalid_value";

/// MD5, SHA-1 and SHA-256 of the empty file.
pub(crate) const EMPTY_FILE_HASHES: [&str; 3] = [
    "d41d8cd98f00b204e9800998ecf8427e",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

/// Domain suffixes that are never public (each also matches on its own).
pub(crate) const NON_PUBLIC_SUFFIXES: [&str; 13] = [
    "local",
    "localhost",
    "localdomain",
    "internal",
    "intranet",
    "private",
    "corp",
    "home",
    "lan",
    "test",
    "example",
    "invalid",
    "arpa",
];

/// Reserved example domains (and their subdomains).
pub(crate) const EXAMPLE_DOMAINS: [&str; 3] = ["example.com", "example.net", "example.org"];

/// Built-in Windows principals, compared after removing `nt authority\`.
pub(crate) const SERVICE_ACCOUNTS: [&str; 4] = ["system", "local service", "network service", "anonymous logon"];

/// The deployment's never-send policy: the built-in rules plus `INTERNAL_CIDRS` and
/// `INTERNAL_DOMAIN_SUFFIXES`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeverSendPolicy {
    /// The organisation's own (public) ranges: `internal_ip`.
    pub internal_cidrs: Vec<Cidr>,
    /// Lowercase suffixes without a leading dot (`corp.acme.com`): `internal_domain`.
    pub internal_domain_suffixes: Vec<String>,
}

/// Error for a malformed setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Cidr(#[from] InvalidCidr),
}

impl NeverSendPolicy {
    /// From the two settings, each a comma- or whitespace-separated list (either may be empty).
    pub fn from_settings(internal_cidrs: &str, internal_domain_suffixes: &str) -> Result<Self, PolicyError> {
        let cidrs = split_list(internal_cidrs)
            .map(str::parse::<Cidr>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(cidrs, split_list(internal_domain_suffixes)))
    }

    pub fn new<S: AsRef<str>>(
        internal_cidrs: Vec<Cidr>,
        internal_domain_suffixes: impl IntoIterator<Item = S>,
    ) -> Self {
        let internal_domain_suffixes = internal_domain_suffixes
            .into_iter()
            .map(|s| normalize_suffix(s.as_ref()))
            .filter(|s| !s.is_empty())
            .collect();
        NeverSendPolicy {
            internal_cidrs,
            internal_domain_suffixes,
        }
    }

    /// The reason code when `value` of type `kind` must not be sent out, else `None`.
    pub fn check(&self, kind: IndicatorType, value: &str) -> Option<&'static str> {
        let value = value.trim();
        match kind {
            IndicatorType::Ip => match parse_ip(value) {
                Some(ip) => self.ip_reason(ip),
                None => Some(INVALID_VALUE),
            },
            IndicatorType::Domain => self.domain_reason(value),
            IndicatorType::Url => self.url_reason(value),
            IndicatorType::HashMd5 | IndicatorType::HashSha1 | IndicatorType::HashSha256 => {
                let v = value.to_ascii_lowercase();
                EMPTY_FILE_HASHES.contains(&v.as_str()).then_some(EMPTY_FILE_HASH)
            }
            IndicatorType::Account => account_reason(value),
            IndicatorType::Email => None,
        }
    }

    /// `private_ip`, `reserved_ip`, `internal_ip` or `None`.
    pub fn ip_reason(&self, ip: IpAddr) -> Option<&'static str> {
        special_range(ip).or_else(|| self.internal(ip))
    }

    /// In `INTERNAL_CIDRS`, itself or the IPv4 address it carries.
    fn internal(&self, ip: IpAddr) -> Option<&'static str> {
        let carried = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.internal_cidrs
            .iter()
            .any(|c| c.contains(ip) || carried.is_some_and(|v4| c.contains(v4)))
            .then_some(INTERNAL_IP)
    }

    /// `internal_domain` or `None`.
    pub fn domain_reason(&self, domain: &str) -> Option<&'static str> {
        let d = domain.trim().to_ascii_lowercase();
        let d = d.strip_suffix('.').unwrap_or(&d);
        if d.is_empty() {
            return Some(INVALID_VALUE);
        }
        if !d.contains('.')
            || NON_PUBLIC_SUFFIXES.iter().any(|s| is_under(d, s))
            || EXAMPLE_DOMAINS.iter().any(|s| is_under(d, s))
            || self.internal_domain_suffixes.iter().any(|s| is_under(d, s))
        {
            return Some(INTERNAL_DOMAIN);
        }
        None
    }

    fn url_reason(&self, value: &str) -> Option<&'static str> {
        let Ok(url) = url::Url::parse(value) else {
            return Some(INVALID_VALUE);
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Some(URL_CREDENTIALS);
        }
        match url.host() {
            Some(url::Host::Domain(d)) => match parse_ip(d) {
                Some(ip) => self.ip_reason(ip),
                None => self.domain_reason(d),
            },
            Some(url::Host::Ipv4(v4)) => self.ip_reason(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.ip_reason(IpAddr::V6(v6)),
            None => Some(INVALID_VALUE),
        }
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

fn normalize_suffix(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_start_matches("*.").trim_start_matches('.');
    s.strip_suffix('.').unwrap_or(s).to_string()
}

/// `d` equals `suffix` or ends in `.suffix`.
fn is_under(d: &str, suffix: &str) -> bool {
    d == suffix || (d.len() > suffix.len() && d.ends_with(suffix) && d.as_bytes()[d.len() - suffix.len() - 1] == b'.')
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
    s.parse().ok()
}

/// `private_ip` for our own networks (loopback, private, link-local), `reserved_ip` for the
/// rest of the shared special-address table ([`crate::net::special`]), which also judges
/// IPv6 forms carrying an IPv4 address by that IPv4.
pub(crate) fn special_range(ip: IpAddr) -> Option<&'static str> {
    special(ip).map(|s| if s.is_local() { PRIVATE_IP } else { RESERVED_IP })
}

fn account_reason(value: &str) -> Option<&'static str> {
    let v = value.trim().to_lowercase();
    let bare = v.strip_prefix("nt authority\\").unwrap_or(&v);
    if SERVICE_ACCOUNTS.contains(&bare) {
        return Some(SERVICE_ACCOUNT);
    }
    // Machine accounts: `HOST$`, `DOMAIN\HOST$`, `HOST$@realm`.
    let name = v.rsplit('\\').next().unwrap_or(&v);
    let name = name.split('@').next().unwrap_or(name);
    if name.len() > 1 && name.ends_with('$') {
        return Some(SERVICE_ACCOUNT);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use IndicatorType::*;

    fn policy() -> NeverSendPolicy {
        NeverSendPolicy::from_settings("203.0.114.0/24, 2a01:4f8:abcd::/48", "corp.acme.com .ad.acme.net").unwrap()
    }

    #[test]
    #[allow(clippy::too_many_lines, reason = "one row per case reads best as one table")]
    fn table() {
        let p = policy();
        let cases: &[(IndicatorType, &str, Option<&str>)] = &[
            // ip v4, one per listed range (first, inside, last where useful)
            (Ip, "0.0.0.0", Some(RESERVED_IP)),
            (Ip, "0.255.255.255", Some(RESERVED_IP)),
            (Ip, "10.0.0.1", Some(PRIVATE_IP)),
            (Ip, "10.255.255.255", Some(PRIVATE_IP)),
            (Ip, "100.64.0.1", Some(PRIVATE_IP)),
            (Ip, "100.127.255.254", Some(PRIVATE_IP)),
            (Ip, "100.128.0.1", None),
            (Ip, "127.0.0.1", Some(PRIVATE_IP)),
            (Ip, "127.255.0.9", Some(PRIVATE_IP)),
            (Ip, "169.254.169.254", Some(PRIVATE_IP)),
            (Ip, "172.16.0.1", Some(PRIVATE_IP)),
            (Ip, "172.31.255.255", Some(PRIVATE_IP)),
            (Ip, "172.32.0.1", None),
            (Ip, "192.0.0.8", Some(RESERVED_IP)),
            (Ip, "192.0.2.10", Some(RESERVED_IP)),
            (Ip, "192.88.99.1", Some(RESERVED_IP)),
            (Ip, "192.168.1.1", Some(PRIVATE_IP)),
            (Ip, "198.18.0.1", Some(RESERVED_IP)),
            (Ip, "198.19.255.255", Some(RESERVED_IP)),
            (Ip, "198.20.0.1", None),
            (Ip, "198.51.100.7", Some(RESERVED_IP)),
            (Ip, "203.0.113.9", Some(RESERVED_IP)),
            (Ip, "224.0.0.251", Some(RESERVED_IP)),
            (Ip, "239.255.255.250", Some(RESERVED_IP)),
            (Ip, "240.0.0.1", Some(RESERVED_IP)),
            (Ip, "255.255.255.255", Some(RESERVED_IP)),
            (Ip, "8.8.8.8", None),
            (Ip, "185.220.101.47", None),
            // ip v6
            (Ip, "::", Some(RESERVED_IP)),
            (Ip, "::1", Some(PRIVATE_IP)),
            (Ip, "100::1", Some(RESERVED_IP)),
            (Ip, "100::ffff:ffff:ffff:ffff", Some(RESERVED_IP)),
            (Ip, "100:0:0:1::1", None),
            (Ip, "2001::1", Some(RESERVED_IP)),
            (Ip, "2001:1ff:ffff::1", Some(RESERVED_IP)),
            (Ip, "2001:200::1", None),
            (Ip, "2001:db8::1", Some(RESERVED_IP)),
            (Ip, "fc00::1", Some(PRIVATE_IP)),
            (Ip, "fd12:3456::1", Some(PRIVATE_IP)),
            (Ip, "fe80::1", Some(PRIVATE_IP)),
            (Ip, "fec0::1", Some(PRIVATE_IP)),
            (Ip, "ff02::1", Some(RESERVED_IP)),
            (Ip, "2606:4700:4700::1111", None),
            // embedded IPv4: mapped and NAT64 judge the IPv4
            (Ip, "::ffff:10.1.2.3", Some(PRIVATE_IP)),
            (Ip, "::ffff:127.0.0.1", Some(PRIVATE_IP)),
            (Ip, "::ffff:192.0.2.1", Some(RESERVED_IP)),
            (Ip, "::ffff:8.8.8.8", None),
            (Ip, "64:ff9b::a9fe:a9fe", Some(PRIVATE_IP)),
            (Ip, "64:ff9b::192.168.0.1", Some(PRIVATE_IP)),
            (Ip, "64:ff9b::8.8.8.8", None),
            (Ip, "64:ff9b::203.0.114.5", Some(INTERNAL_IP)),
            // the other IPv4 carriers: compatible, SIIT, 6to4, local-use NAT64, Teredo
            (Ip, "::10.1.2.3", Some(PRIVATE_IP)),
            (Ip, "::127.0.0.1", Some(PRIVATE_IP)),
            (Ip, "::8.8.8.8", None),
            (Ip, "::ffff:0:10.1.2.3", Some(PRIVATE_IP)),
            (Ip, "::ffff:0:192.0.2.1", Some(RESERVED_IP)),
            (Ip, "::ffff:0:8.8.8.8", None),
            (Ip, "2002:c0a8:101::1", Some(PRIVATE_IP)),
            (Ip, "2002:a9fe:a9fe::", Some(PRIVATE_IP)),
            (Ip, "2002:cb00:7201::1", Some(INTERNAL_IP)),
            (Ip, "2002:808:808::1", None),
            (Ip, "64:ff9b:1::8.8.8.8", Some(PRIVATE_IP)),
            (Ip, "64:ff9b:1::a00:1", Some(PRIVATE_IP)),
            (Ip, "2001:0:4136:e378:8000:63bf:f5ff:fffe", Some(RESERVED_IP)),
            (Url, "http://[::ffff:0:a00:1]/", Some(PRIVATE_IP)),
            (Url, "http://[2002:7f00:1::]/", Some(PRIVATE_IP)),
            (Url, "http://[64:ff9b:1::a9fe:a9fe]/", Some(PRIVATE_IP)),
            // INTERNAL_CIDRS
            (Ip, "203.0.114.77", Some(INTERNAL_IP)),
            (Ip, "2a01:4f8:abcd:1::5", Some(INTERNAL_IP)),
            (Ip, "2a01:4f8:abce::5", None),
            (Ip, "not-an-ip", Some(INVALID_VALUE)),
            // domain: single label, non-public suffixes, example domains
            (Domain, "fileserver", Some(INTERNAL_DOMAIN)),
            (Domain, "printer.local", Some(INTERNAL_DOMAIN)),
            (Domain, "local", Some(INTERNAL_DOMAIN)),
            (Domain, "app.localhost", Some(INTERNAL_DOMAIN)),
            (Domain, "box.localdomain", Some(INTERNAL_DOMAIN)),
            (Domain, "metadata.google.internal", Some(INTERNAL_DOMAIN)),
            (Domain, "wiki.intranet", Some(INTERNAL_DOMAIN)),
            (Domain, "x.private", Some(INTERNAL_DOMAIN)),
            (Domain, "dc01.corp", Some(INTERNAL_DOMAIN)),
            (Domain, "nas.home", Some(INTERNAL_DOMAIN)),
            (Domain, "router.lan", Some(INTERNAL_DOMAIN)),
            (Domain, "site.test", Some(INTERNAL_DOMAIN)),
            (Domain, "foo.example", Some(INTERNAL_DOMAIN)),
            (Domain, "foo.invalid", Some(INTERNAL_DOMAIN)),
            (Domain, "router.home.arpa", Some(INTERNAL_DOMAIN)),
            (Domain, "1.0.168.192.in-addr.arpa", Some(INTERNAL_DOMAIN)),
            (Domain, "example.com", Some(INTERNAL_DOMAIN)),
            (Domain, "www.example.net", Some(INTERNAL_DOMAIN)),
            (Domain, "a.b.example.org", Some(INTERNAL_DOMAIN)),
            (Domain, "printer.local.", Some(INTERNAL_DOMAIN)),
            (Domain, "notexample.com", None),
            (Domain, "corporate.com", None),
            (Domain, "mytest.com", None),
            (Domain, "evil-login-portal.com", None),
            (Domain, "microsoft.com", None),
            // INTERNAL_DOMAIN_SUFFIXES
            (Domain, "corp.acme.com", Some(INTERNAL_DOMAIN)),
            (Domain, "dc01.corp.acme.com", Some(INTERNAL_DOMAIN)),
            (Domain, "dc01.ad.acme.net", Some(INTERNAL_DOMAIN)),
            (Domain, "acme.com", None),
            (Domain, "xcorp.acme.com", None),
            // url: host checks and credentials
            (Url, "http://10.0.0.5/admin", Some(PRIVATE_IP)),
            (Url, "http://[::1]:8080/", Some(PRIVATE_IP)),
            (Url, "http://[::ffff:169.254.169.254]/latest", Some(PRIVATE_IP)),
            (Url, "https://192.0.2.1/x", Some(RESERVED_IP)),
            (Url, "https://203.0.114.10/login", Some(INTERNAL_IP)),
            (Url, "http://0x7f.1/", Some(PRIVATE_IP)),
            (Url, "http://intranet/home", Some(INTERNAL_DOMAIN)),
            (Url, "https://wiki.corp.acme.com/page", Some(INTERNAL_DOMAIN)),
            (Url, "https://www.example.com/", Some(INTERNAL_DOMAIN)),
            (Url, "ftp://files.lan/x", Some(INTERNAL_DOMAIN)),
            (Url, "https://user:pass@evil-login-portal.com/", Some(URL_CREDENTIALS)),
            (Url, "https://user@evil-login-portal.com/", Some(URL_CREDENTIALS)),
            (Url, "https://:secret@evil-login-portal.com/", Some(URL_CREDENTIALS)),
            (Url, "https://evil-login-portal.com/login?next=a@b", None),
            (Url, "http://185.220.101.47/payload", None),
            (Url, "not a url", Some(INVALID_VALUE)),
            // hashes
            (HashMd5, "d41d8cd98f00b204e9800998ecf8427e", Some(EMPTY_FILE_HASH)),
            (
                HashSha1,
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                Some(EMPTY_FILE_HASH),
            ),
            (
                HashSha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                Some(EMPTY_FILE_HASH),
            ),
            (HashMd5, "D41D8CD98F00B204E9800998ECF8427E", Some(EMPTY_FILE_HASH)),
            (HashMd5, "44d88612fea8a8f36de82e1278abb02f", None),
            // accounts
            (Account, "system", Some(SERVICE_ACCOUNT)),
            (Account, "nt authority\\system", Some(SERVICE_ACCOUNT)),
            (Account, "local service", Some(SERVICE_ACCOUNT)),
            (Account, "nt authority\\local service", Some(SERVICE_ACCOUNT)),
            (Account, "network service", Some(SERVICE_ACCOUNT)),
            (Account, "NT AUTHORITY\\NETWORK SERVICE", Some(SERVICE_ACCOUNT)),
            (Account, "anonymous logon", Some(SERVICE_ACCOUNT)),
            (Account, "nt authority\\anonymous logon", Some(SERVICE_ACCOUNT)),
            (Account, "ws01$", Some(SERVICE_ACCOUNT)),
            (Account, "corp\\ws01$", Some(SERVICE_ACCOUNT)),
            (Account, "ws01$@corp.acme.com", Some(SERVICE_ACCOUNT)),
            (Account, "nick.hathaway@calseta.com", None),
            (Account, "corp\\jdoe", None),
            (Account, "systemadmin", None),
            // email is never checked here (no provider takes it)
            (Email, "someone@example.com", None),
        ];
        for (kind, value, want) in cases {
            assert_eq!(p.check(*kind, value), *want, "{kind} {value}");
        }
    }

    #[test]
    fn default_policy_has_no_internal_ranges() {
        let p = NeverSendPolicy::default();
        assert_eq!(p.check(Ip, "203.0.114.77"), None);
        assert_eq!(p.check(Domain, "dc01.corp.acme.com"), None);
    }

    #[test]
    fn bad_internal_cidr_is_refused() {
        assert!(NeverSendPolicy::from_settings("10.0.0.0/99", "").is_err());
        assert!(NeverSendPolicy::from_settings("nope/8", "").is_err());
    }

    /// The never-send list and the SSRF guard read one table: an address is withheld from
    /// providers exactly when strict mode refuses to connect to it, and our own networks are
    /// `private_ip` exactly when the guard calls them loopback, private or link-local.
    #[test]
    fn agrees_with_the_ssrf_guard() {
        use crate::net::ssrf::{classify, AddrClass};
        let p = NeverSendPolicy::default();
        let addrs = [
            "8.8.8.8",
            "127.0.0.1",
            "10.0.0.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "2001:db8::1",
            "2001:2::1",
            "3fff::1",
            "2606:4700:4700::1111",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "::10.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:0:10.0.0.1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:8.8.8.8",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::8.8.8.8",
            "64:ff9b:1::7f00:1",
            "64:ff9b:1::c000:201",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ];
        for s in addrs {
            let ip: IpAddr = s.parse().unwrap();
            let guard = classify(ip);
            let reason = p.ip_reason(ip);
            assert_eq!(
                reason.is_none(),
                guard == AddrClass::Public,
                "{s}: {reason:?} vs {guard:?}"
            );
            let local = matches!(
                guard,
                AddrClass::Loopback
                    | AddrClass::Private
                    | AddrClass::Forbidden("link_local")
                    | AddrClass::Forbidden("metadata")
            );
            assert_eq!(reason == Some(PRIVATE_IP), local, "{s}: {reason:?} vs {guard:?}");
        }
    }
}
