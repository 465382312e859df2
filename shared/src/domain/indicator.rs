//! Indicator types, value normalization (spec `sources.md` §7) and enrichability.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The eight indicator types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorType {
    Ip,
    Domain,
    Url,
    HashMd5,
    HashSha1,
    HashSha256,
    Email,
    Account,
}

impl IndicatorType {
    pub const ALL: [IndicatorType; 8] = [
        IndicatorType::Ip,
        IndicatorType::Domain,
        IndicatorType::Url,
        IndicatorType::HashMd5,
        IndicatorType::HashSha1,
        IndicatorType::HashSha256,
        IndicatorType::Email,
        IndicatorType::Account,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            IndicatorType::Ip => "ip",
            IndicatorType::Domain => "domain",
            IndicatorType::Url => "url",
            IndicatorType::HashMd5 => "hash_md5",
            IndicatorType::HashSha1 => "hash_sha1",
            IndicatorType::HashSha256 => "hash_sha256",
            IndicatorType::Email => "email",
            IndicatorType::Account => "account",
        }
    }

    pub fn is_hash(&self) -> bool {
        matches!(
            self,
            IndicatorType::HashMd5 | IndicatorType::HashSha1 | IndicatorType::HashSha256
        )
    }
}

impl fmt::Display for IndicatorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown indicator type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown indicator type: {0:?}")]
pub struct UnknownIndicatorType(pub String);

impl FromStr for IndicatorType {
    type Err = UnknownIndicatorType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        IndicatorType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownIndicatorType(s.to_string()))
    }
}

/// One indicator extracted from an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedIndicator {
    #[serde(rename = "type")]
    pub indicator_type: IndicatorType,
    pub value: String,
    pub source_field: String,
}

/// Why a value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndicatorError {
    #[error("empty value")]
    Empty,
    #[error("placeholder value")]
    Placeholder,
    #[error("value longer than {MAX_VALUE_LEN} bytes")]
    TooLong,
    #[error("ImpHash values are not file hashes")]
    ImpHash,
    #[error("invalid {kind}: {reason}")]
    Invalid { kind: IndicatorType, reason: &'static str },
}

impl IndicatorError {
    /// `true` when the value means "nothing here" (empty, placeholder, an `IMPHASH=` part)
    /// rather than a malformed indicator. Such values are skipped silently at ingest and are
    /// not counted in `dropped_indicator_count`.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            IndicatorError::Empty | IndicatorError::Placeholder | IndicatorError::ImpHash
        )
    }

    fn invalid(kind: IndicatorType, reason: &'static str) -> Self {
        IndicatorError::Invalid { kind, reason }
    }
}

/// Longest accepted value, in UTF-8 bytes, before and after normalization. Counted in bytes
/// because the unique `(type, value)` B-tree index refuses rows over about 2,700 bytes: 2,048
/// multibyte characters would fail the insert (and the whole request) instead of this check.
pub(crate) const MAX_VALUE_LEN: usize = 2048;

/// Most distinct indicators one alert's extraction collects. Values met after that are counted
/// (see [`IndicatorSet::unexamined`]) but not normalized, so a 4 MiB body of addresses costs
/// bounded time and memory; the configurable per-alert cap applied at ingest is at most this.
pub(crate) const MAX_EXTRACTED: usize = 10_000;

const PLACEHOLDERS: [&str; 6] = ["-", "n/a", "null", "none", "unknown", "(null)"];

/// `true` for the placeholder strings of §7 (case-insensitive, after trimming).
pub(crate) fn is_placeholder(s: &str) -> bool {
    let t = s.trim();
    PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(t))
}

/// Common first step: trim, reject empty / too long / placeholder.
fn precheck(raw: &str) -> Result<&str, IndicatorError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(IndicatorError::Empty);
    }
    if t.len() > MAX_VALUE_LEN {
        return Err(IndicatorError::TooLong);
    }
    if is_placeholder(t) {
        return Err(IndicatorError::Placeholder);
    }
    Ok(t)
}

/// Normalize a value of the given type. Returns every resulting `(type, value)`: IP and hash
/// values are split on `,`, `;` and whitespace; a domain that is an IP becomes an `ip`; a hash's
/// type is decided by its length. Fails if any part fails (strict form, for the API); use
/// [`normalize_each`] to keep the valid parts.
pub fn normalize(kind: IndicatorType, raw: &str) -> Result<Vec<(IndicatorType, String)>, IndicatorError> {
    let mut out = Vec::new();
    for r in normalize_each(kind, raw) {
        let v = r?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(IndicatorError::Empty);
    }
    Ok(out)
}

/// Normalize a value, returning one result per part (IP/hash values may hold several parts).
/// Empty parts produced by splitting are skipped.
pub(crate) fn normalize_each(kind: IndicatorType, raw: &str) -> Vec<Result<(IndicatorType, String), IndicatorError>> {
    let t = match precheck(raw) {
        Ok(t) => t,
        Err(e) => return vec![Err(e)],
    };
    if kind == IndicatorType::Ip || kind.is_hash() {
        let parts: Vec<&str> = t
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        return parts
            .into_iter()
            .map(|p| {
                let p = precheck(p)?;
                if kind == IndicatorType::Ip {
                    normalize_ip(p).map(|v| (IndicatorType::Ip, v))
                } else {
                    normalize_hash_any(p)
                }
                .and_then(fits)
            })
            .collect();
    }
    let r = match kind {
        IndicatorType::Domain => normalize_domain_or_ip(t),
        IndicatorType::Url => normalize_url(t).map(|v| (IndicatorType::Url, v)),
        IndicatorType::Email => normalize_email(t).map(|v| (IndicatorType::Email, v)),
        IndicatorType::Account => normalize_account(t).map(|v| (IndicatorType::Account, v)),
        // handled above
        IndicatorType::Ip | IndicatorType::HashMd5 | IndicatorType::HashSha1 | IndicatorType::HashSha256 => {
            Err(IndicatorError::Empty)
        }
    };
    vec![r.and_then(fits)]
}

/// Normalization can lengthen a value (punycode): the stored form must fit too.
fn fits(v: (IndicatorType, String)) -> Result<(IndicatorType, String), IndicatorError> {
    if v.1.len() > MAX_VALUE_LEN {
        return Err(IndicatorError::TooLong);
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// IP
// ---------------------------------------------------------------------------------------------

/// Strict dotted-quad IPv4: four decimal octets, no leading zeros.
fn parse_ipv4_strict(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        octets[n] = part.parse().ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(octets))
}

fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    // Strip a zone (`%eth0`).
    let s = match s.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() => addr,
        Some(_) => return None,
        None => s,
    };
    let addr: Ipv6Addr = s.parse().ok()?;
    // The embedded IPv4 of `::ffff:a.b.c.d` must also be strict.
    if let Some(pos) = s.rfind(':') {
        let tail = &s[pos + 1..];
        if tail.contains('.') {
            parse_ipv4_strict(tail)?;
        }
    }
    Some(addr)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 65535)
}

/// Parse an IP, stripping a port and an IPv6 zone, without normalizing IPv4-mapped forms.
pub(crate) fn parse_ip_lenient(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        // [v6] or [v6]:port
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        return parse_ipv6(inside).map(IpAddr::V6);
    }
    if let Some(v4) = parse_ipv4_strict(s) {
        return Some(IpAddr::V4(v4));
    }
    // a.b.c.d:port
    if let Some((host, port)) = s.rsplit_once(':') {
        if host.contains('.') && !host.contains(':') {
            if valid_port(port) {
                return parse_ipv4_strict(host).map(IpAddr::V4);
            }
            return None;
        }
    }
    if s.contains(':') {
        return parse_ipv6(s).map(IpAddr::V6);
    }
    None
}

/// Map `::ffff:a.b.c.d` to the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Normalize one IP value: dotted-quad IPv4, RFC 5952 IPv6, IPv4-mapped → IPv4.
pub(crate) fn normalize_ip(s: &str) -> Result<String, IndicatorError> {
    parse_ip_lenient(s)
        .map(|ip| canonical_ip(ip).to_string())
        .ok_or(IndicatorError::invalid(IndicatorType::Ip, "not an IPv4/IPv6 address"))
}

// ---------------------------------------------------------------------------------------------
// Domain
// ---------------------------------------------------------------------------------------------

/// Domain rule of §7 for a host name that is not an IP: lowercase, strip one trailing dot,
/// punycode (UTS 46), ≥ 2 labels of 1–63 chars `[a-z0-9-_]`, total ≤ 253.
pub(crate) fn normalize_domain_name(s: &str) -> Result<String, IndicatorError> {
    let bad = |reason| IndicatorError::invalid(IndicatorType::Domain, reason);
    let s = s.trim();
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(bad("empty host"));
    }
    let ascii = idna::domain_to_ascii(s).map_err(|_| bad("not a valid internationalized domain name"))?;
    if ascii.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("single-label name"));
    }
    for l in &labels {
        if l.is_empty() || l.len() > 63 {
            return Err(bad("label empty or longer than 63 characters"));
        }
        if !l
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(bad("label has characters outside a-z 0-9 - _"));
        }
    }
    // An all-numeric last label is never a real TLD; it is a malformed IP (e.g. leading zeros).
    if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("numeric top-level label"));
    }
    Ok(ascii)
}

/// Domain field value → domain, or ip when it parses as an IP. Handles `scheme://host/...`.
fn normalize_domain_or_ip(s: &str) -> Result<(IndicatorType, String), IndicatorError> {
    let host: String = if s.contains("://") {
        let u = url::Url::parse(s).map_err(|_| IndicatorError::invalid(IndicatorType::Domain, "unparsable URL"))?;
        match u.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(v4)) => return Ok((IndicatorType::Ip, v4.to_string())),
            Some(url::Host::Ipv6(v6)) => return Ok((IndicatorType::Ip, canonical_ip(IpAddr::V6(v6)).to_string())),
            None => return Err(IndicatorError::invalid(IndicatorType::Domain, "URL has no host")),
        }
    } else {
        s.to_string()
    };
    let trimmed = host.strip_suffix('.').unwrap_or(&host);
    if let Some(ip) = parse_ip_lenient(trimmed) {
        return Ok((IndicatorType::Ip, canonical_ip(ip).to_string()));
    }
    normalize_domain_name(&host).map(|d| (IndicatorType::Domain, d))
}

// ---------------------------------------------------------------------------------------------
// URL
// ---------------------------------------------------------------------------------------------

/// The pieces of an absolute `scheme://authority/rest` URL, split without decoding.
struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    /// path + query, byte-for-byte, fragment removed
    rest: &'a str,
}

fn split_url(s: &str) -> Option<UrlParts<'_>> {
    let (scheme, after) = s.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let auth_end = after.find(['/', '?', '#', '\\']).unwrap_or(after.len());
    let authority = &after[..auth_end];
    let mut rest = &after[auth_end..];
    if let Some(hash) = rest.find('#') {
        // Blanks before a dropped fragment would end the value, and the next normalization
        // (which trims) would change it: found by the `generic` fuzz target.
        rest = rest[..hash].trim_end();
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport.find(']')?;
        let host = &hostport[..=close];
        let after = &hostport[close + 1..];
        if after.is_empty() {
            (host, None)
        } else {
            (host, Some(after.strip_prefix(':')?))
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    Some(UrlParts {
        scheme,
        userinfo,
        host,
        port,
        rest,
    })
}

/// Normalize a URL host: IP literal or domain (lowercase, trailing dot stripped, punycode).
/// Unlike the domain rule, single-label hosts are allowed.
fn normalize_url_host(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        let v6: Ipv6Addr = inner.parse().ok()?;
        return Some(format!("[{v6}]"));
    }
    if let Some(v4) = parse_ipv4_strict(host) {
        return Some(v4.to_string());
    }
    let h = host.strip_suffix('.').unwrap_or(host);
    if h.is_empty() {
        return None;
    }
    let ascii = idna::domain_to_ascii(h).ok()?;
    if ascii.is_empty()
        || ascii.len() > 253
        || !ascii
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        || ascii.split('.').any(|l| l.is_empty() || l.len() > 63)
    {
        return None;
    }
    // Reject numeric-looking hosts that are not a strict IPv4 (e.g. `010.1.1.1`, `1.2.3`).
    if ascii
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(ascii)
}

/// URL rule of §7: absolute `http`/`https`/`ftp` URL; scheme and host lowercased, host's
/// trailing dot stripped and punycoded, fragment dropped, everything else byte-for-byte.
pub(crate) fn normalize_url(s: &str) -> Result<String, IndicatorError> {
    let bad = |reason| IndicatorError::invalid(IndicatorType::Url, reason);
    let s = s.trim();
    let parts = split_url(s).ok_or(bad("not an absolute URL"))?;
    let scheme = parts.scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "ftp") {
        return Err(bad("scheme is not http, https or ftp"));
    }
    if parts.rest.chars().any(|c| c.is_control()) {
        return Err(bad("control characters"));
    }
    let host = normalize_url_host(parts.host).ok_or(bad("invalid host"))?;
    let mut out = String::with_capacity(s.len());
    out.push_str(&scheme);
    out.push_str("://");
    if let Some(u) = parts.userinfo {
        if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("invalid user info"));
        }
        out.push_str(u);
        out.push('@');
    }
    out.push_str(&host);
    if let Some(p) = parts.port {
        if !p.is_empty() {
            if !valid_port(p) {
                return Err(bad("invalid port"));
            }
            out.push(':');
            out.push_str(p);
        }
    }
    out.push_str(parts.rest);
    // Final check: the result must be an absolute URL for a WHATWG parser too.
    if url::Url::parse(&out).is_err() {
        return Err(bad("not a valid URL"));
    }
    Ok(out)
}

/// The host of a normalized URL as its own indicator: a `domain` (domain rule of §7, so a
/// single-label intranet host gives nothing) or an `ip`. Reputation services know domains far
/// better than full URLs; the never-send policy then applies to the host like to any indicator.
pub(crate) fn url_host_indicator(normalized_url: &str) -> Option<(IndicatorType, String)> {
    match url::Url::parse(normalized_url).ok()?.host()? {
        url::Host::Domain(d) => normalize_domain_name(d).ok().map(|d| (IndicatorType::Domain, d)),
        url::Host::Ipv4(v4) => Some((IndicatorType::Ip, v4.to_string())),
        url::Host::Ipv6(v6) => Some((IndicatorType::Ip, canonical_ip(IpAddr::V6(v6)).to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// Hashes
// ---------------------------------------------------------------------------------------------

/// Normalize one hash part: lowercase, strip `md5:`/`sha1:`/`sha256:`/`ALG=` prefix, hex only;
/// the length decides the type (32 md5, 40 sha1, 64 sha256). `IMPHASH=` parts are refused with
/// [`IndicatorError::ImpHash`].
pub(crate) fn normalize_hash_any(s: &str) -> Result<(IndicatorType, String), IndicatorError> {
    let bad = |reason| IndicatorError::invalid(IndicatorType::HashSha256, reason);
    let lower = s.trim().to_ascii_lowercase();
    let mut v = lower.as_str();
    if let Some((alg, rest)) = v.split_once('=') {
        if alg.is_empty() || !alg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(bad("malformed ALG= prefix"));
        }
        if alg == "imphash" {
            return Err(IndicatorError::ImpHash);
        }
        v = rest;
    } else {
        for p in ["md5:", "sha1:", "sha256:"] {
            if let Some(rest) = v.strip_prefix(p) {
                v = rest;
                break;
            }
        }
    }
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("not hexadecimal"));
    }
    let kind = match v.len() {
        32 => IndicatorType::HashMd5,
        40 => IndicatorType::HashSha1,
        64 => IndicatorType::HashSha256,
        _ => return Err(bad("length is not 32, 40 or 64")),
    };
    Ok((kind, v.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Email, account
// ---------------------------------------------------------------------------------------------

/// Email rule of §7: strip `mailto:` and `Name <…>`; lowercase; one `@`; domain rule.
pub(crate) fn normalize_email(s: &str) -> Result<String, IndicatorError> {
    let bad = |reason| IndicatorError::invalid(IndicatorType::Email, reason);
    let mut v = s.trim();
    if let (Some(open), true) = (v.rfind('<'), v.ends_with('>')) {
        v = v[open + 1..v.len() - 1].trim();
    }
    if v.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("mailto:")) {
        v = v.get(7..).unwrap_or("").trim();
        if let Some(q) = v.find('?') {
            v = &v[..q];
        }
    }
    let lower = v.to_lowercase();
    let (local, domain) = lower.split_once('@').ok_or(bad("no @"))?;
    if domain.contains('@') {
        return Err(bad("more than one @"));
    }
    if local.is_empty() {
        return Err(bad("empty local part"));
    }
    if local.len() > 64
        || local.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | ',' | ';' | '(' | ')' | '[' | ']' | '\\' | ':')
        })
    {
        return Err(bad("invalid local part"));
    }
    if parse_ip_lenient(domain).is_some() {
        return Err(bad("domain is an IP literal"));
    }
    let d = normalize_domain_name(domain).map_err(|_| bad("invalid domain"))?;
    Ok(format!("{local}@{d}"))
}

/// Account rule of §7: lowercase; `DOMAIN\user` and `user@domain` keep their shape.
pub(crate) fn normalize_account(s: &str) -> Result<String, IndicatorError> {
    let v = s.trim();
    if v.chars().any(|c| c.is_control()) {
        return Err(IndicatorError::invalid(IndicatorType::Account, "control characters"));
    }
    Ok(v.to_lowercase())
}

// ---------------------------------------------------------------------------------------------
// IndicatorSet
// ---------------------------------------------------------------------------------------------

/// Collects indicators for one alert: normalizes each value, de-duplicates by `(type, value)`
/// keeping the first `source_field`, and counts values dropped as invalid.
#[derive(Debug, Default, Clone)]
pub(crate) struct IndicatorSet {
    items: Vec<ExtractedIndicator>,
    seen: HashSet<(IndicatorType, String)>,
    dropped: usize,
    unexamined: usize,
}

/// Array nesting followed when adding a JSON value.
const MAX_VALUE_DEPTH: usize = 4;

impl IndicatorSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Normalize `raw` as `kind` and add every valid part. Returns how many were new.
    pub fn add(&mut self, kind: IndicatorType, raw: &str, source_field: &str) -> usize {
        if self.items.len() >= MAX_EXTRACTED {
            self.unexamined += 1;
            return 0;
        }
        let mut added = 0;
        for r in normalize_each(kind, raw) {
            match r {
                Ok((k, v)) => {
                    let host = (k == IndicatorType::Url).then(|| url_host_indicator(&v)).flatten();
                    if self.push(k, v, source_field) {
                        added += 1;
                    }
                    if let Some((hk, hv)) = host {
                        if self.push(hk, hv, source_field) {
                            added += 1;
                        }
                    }
                }
                Err(e) if e.is_absent() => {}
                Err(_) => self.dropped += 1,
            }
        }
        added
    }

    /// Add an already-normalized indicator (no checks). Returns whether it was new.
    pub fn push(&mut self, kind: IndicatorType, value: String, source_field: &str) -> bool {
        if self.seen.contains(&(kind, value.clone())) {
            return false;
        }
        if self.items.len() >= MAX_EXTRACTED {
            self.unexamined += 1;
            return false;
        }
        self.seen.insert((kind, value.clone()));
        self.items.push(ExtractedIndicator {
            indicator_type: kind,
            value,
            source_field: source_field.to_string(),
        });
        true
    }

    /// Add a JSON value: a string, a number (stringified) or an array of those. `null` is
    /// ignored; objects and booleans count as dropped.
    pub fn add_json(&mut self, kind: IndicatorType, v: &Value, source_field: &str) {
        self.add_json_depth(kind, v, source_field, 0);
    }

    fn add_json_depth(&mut self, kind: IndicatorType, v: &Value, source_field: &str, depth: usize) {
        match v {
            Value::Null => {}
            Value::String(s) => {
                self.add(kind, s, source_field);
            }
            Value::Number(n) => {
                self.add(kind, &n.to_string(), source_field);
            }
            Value::Array(items) if depth < MAX_VALUE_DEPTH => {
                for item in items {
                    self.add_json_depth(kind, item, source_field, depth + 1);
                }
            }
            _ => self.dropped += 1,
        }
    }

    /// Count a value as dropped without trying it.
    pub fn count_dropped(&mut self, n: usize) {
        self.dropped += n;
    }

    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Values met after [`MAX_EXTRACTED`] distinct indicators were collected (not normalized,
    /// so duplicates and invalid values among them are counted too).
    pub fn unexamined(&self) -> usize {
        self.unexamined
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    #[cfg(test)]
    pub fn items(&self) -> &[ExtractedIndicator] {
        &self.items
    }

    /// The indicators in insertion order.
    pub fn into_vec(self) -> Vec<ExtractedIndicator> {
        self.items
    }
}

#[cfg(test)]
mod tests;
