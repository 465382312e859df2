//! The outbound URL guard for configurable provider base URLs and agent webhook URLs
//! (DESIGN §5 "Outbound safety").
//!
//! Two layers:
//! 1. [`OutboundPolicy::check_url`] when a URL is configured or before a request: scheme,
//!    forbidden host names, and every resolved address must be allowed.
//! 2. [`GuardedResolver`], the DNS resolver of [`guarded_client`], applies the same address
//!    rule at connect time, so a DNS answer that changes after the check (DNS rebinding)
//!    cannot reach an internal address.
//!
//! **IP-literal hosts bypass the resolver**: reqwest (hyper's connector) connects to
//! `http://10.0.0.1/` without calling any resolver. Callers must therefore run
//! [`OutboundPolicy::check_url`] on every URL before requesting it (it judges IP literals
//! directly). [`guarded_client`] follows no redirects, so a redirect to an IP literal cannot
//! bypass the check either, and it ignores proxy settings (a proxy would resolve for us).
//!
//! Address classes: loopback (`127.0.0.0/8`, `::1`) is allowed only with `allow_loopback`;
//! private networks (RFC 1918, CGNAT `100.64.0.0/10`, unique-local `fc00::/7`, site-local
//! `fec0::/10`) only with `allow_private`; link-local (including the cloud metadata addresses
//! `169.254.169.254` and `fd00:ec2::254`), unspecified, multicast, broadcast, documentation,
//! benchmarking and other reserved ranges never. The ranges are the table in [`super::special`],
//! shared with the never-send list; IPv6 forms carrying an IPv4 address (mapped, compatible,
//! SIIT, NAT64, 6to4, Teredo) are judged by it. A host in `allow_hosts` (exact name, IP
//! literal, or `*.suffix` for subdomains) skips the name and address checks.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use super::special::{special, Special};

/// Who may be reached. The default allows public addresses only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub allow_loopback: bool,
    pub allow_private: bool,
    /// Hosts exempt from the checks: exact names or IP literals, or `*.example.com`.
    pub allow_hosts: Vec<String>,
}

/// Why an outbound URL or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    #[error("scheme {0:?} is not allowed (http or https only)")]
    UnsupportedScheme(String),
    #[error("URL has no host")]
    MissingHost,
    #[error("host {0:?} is not allowed")]
    ForbiddenHost(String),
    #[error("host {host:?} did not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
    #[error("host {host:?} resolves to {addr}, a {class} address")]
    ForbiddenAddress {
        host: String,
        addr: IpAddr,
        class: &'static str,
    },
}

/// What kind of address an IP is, for the outbound rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrClass {
    Public,
    Loopback,
    Private,
    /// Never reachable: `link_local`, `metadata`, `unspecified`, `multicast`, `reserved`, …
    Forbidden(&'static str),
}

/// Classifies one address by the shared special-address table ([`super::special`]; embedded
/// IPv4 forms judged by the IPv4).
pub(crate) fn classify(ip: IpAddr) -> AddrClass {
    match special(ip) {
        None => AddrClass::Public,
        Some(Special::Loopback) => AddrClass::Loopback,
        Some(Special::Private) => AddrClass::Private,
        Some(other) => AddrClass::Forbidden(other.label()),
    }
}

fn normalize_host(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    let h = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(&h);
    h.strip_suffix('.').unwrap_or(h).to_string()
}

impl OutboundPolicy {
    /// Public addresses only.
    pub fn strict() -> Self {
        Self::default()
    }

    /// `true` when `host` is exempt through `allow_hosts`.
    pub fn host_allowed(&self, host: &str) -> bool {
        let h = normalize_host(host);
        self.allow_hosts.iter().any(|pattern| {
            let p = normalize_host(pattern);
            match p.strip_prefix("*.") {
                Some(suffix) => h.len() > suffix.len() && h.ends_with(&format!(".{suffix}")),
                None => p == h,
            }
        })
    }

    /// The host-name rule: `metadata.google.internal`, `*.internal` and `*.local` are refused.
    pub fn check_name(&self, host: &str) -> Result<(), SsrfError> {
        let h = normalize_host(host);
        if h.is_empty() {
            return Err(SsrfError::MissingHost);
        }
        let forbidden = h == "metadata.google.internal"
            || h == "internal"
            || h == "local"
            || h.ends_with(".internal")
            || h.ends_with(".local");
        if forbidden && !self.host_allowed(&h) {
            return Err(SsrfError::ForbiddenHost(h));
        }
        Ok(())
    }

    /// The address rule for one resolved address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        match classify(ip) {
            AddrClass::Public => Ok(()),
            AddrClass::Loopback if self.allow_loopback => Ok(()),
            AddrClass::Loopback => Err("loopback"),
            AddrClass::Private if self.allow_private => Ok(()),
            AddrClass::Private => Err("private"),
            AddrClass::Forbidden(class) => Err(class),
        }
    }

    fn check_addrs(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), SsrfError> {
        if addrs.is_empty() {
            return Err(SsrfError::Unresolvable {
                host: host.to_string(),
                reason: "no addresses".into(),
            });
        }
        if self.host_allowed(host) {
            return Ok(());
        }
        for a in addrs {
            self.check_ip(a.ip()).map_err(|class| SsrfError::ForbiddenAddress {
                host: host.to_string(),
                addr: a.ip(),
                class,
            })?;
        }
        Ok(())
    }

    /// Checks `url` and returns the addresses it resolves to (system DNS).
    pub async fn check_url(&self, url: &Url) -> Result<Vec<SocketAddr>, SsrfError> {
        self.check_url_with(url, &SystemLookup).await
    }

    /// [`check_url`](Self::check_url) with an explicit resolver.
    pub async fn check_url_with(&self, url: &Url, lookup: &dyn HostLookup) -> Result<Vec<SocketAddr>, SsrfError> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(SsrfError::UnsupportedScheme(other.to_string())),
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let host = match url.host() {
            Some(url::Host::Ipv4(a)) => {
                let addrs = vec![SocketAddr::new(IpAddr::V4(a), port)];
                self.check_addrs(&a.to_string(), &addrs)?;
                return Ok(addrs);
            }
            Some(url::Host::Ipv6(a)) => {
                let addrs = vec![SocketAddr::new(IpAddr::V6(a), port)];
                self.check_addrs(&a.to_string(), &addrs)?;
                return Ok(addrs);
            }
            Some(url::Host::Domain(d)) => normalize_host(d),
            None => return Err(SsrfError::MissingHost),
        };
        self.check_name(&host)?;
        let addrs = lookup.lookup(&host, port).await.map_err(|e| SsrfError::Unresolvable {
            host: host.clone(),
            reason: e.to_string(),
        })?;
        self.check_addrs(&host, &addrs)?;
        Ok(addrs)
    }
}

/// Name resolution, injectable for tests and pinned hosts.
pub trait HostLookup: Send + Sync {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` via tokio).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemLookup;

impl HostLookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}

/// A resolver that applies the [`OutboundPolicy`] to every answer at connect time.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
    lookup: Arc<dyn HostLookup>,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    pub fn with_lookup(policy: OutboundPolicy, lookup: Arc<dyn HostLookup>) -> Self {
        GuardedResolver {
            policy: Arc::new(policy),
            lookup,
        }
    }

    /// Resolves `host` and refuses the whole answer if any address is not allowed.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<SocketAddr>, SsrfError> {
        let host = normalize_host(host);
        self.policy.check_name(&host)?;
        // Port 0: reqwest puts the URL's port in.
        let addrs = self
            .lookup
            .lookup(&host, 0)
            .await
            .map_err(|e| SsrfError::Unresolvable {
                host: host.clone(),
                reason: e.to_string(),
            })?;
        self.policy.check_addrs(&host, &addrs)?;
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match this.resolve_checked(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(e) => {
                    tracing::warn!(error = %e, "outbound connection refused by the SSRF guard");
                    Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

/// Timeouts for a guarded client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            total: Duration::from_secs(10),
        }
    }
}

/// A client whose every connection goes through [`GuardedResolver`]; no redirects, no proxy.
/// Run [`OutboundPolicy::check_url`] on each URL as well (IP literals skip the resolver).
///
/// # Panics
/// Only when the TLS backend cannot be initialised (a broken build, at startup); use
/// [`try_guarded_client_with`] to handle that as an error.
pub(crate) fn guarded_client(policy: OutboundPolicy, timeouts: Timeouts) -> reqwest::Client {
    guarded_client_with(policy, timeouts, Arc::new(SystemLookup))
}

/// [`guarded_client`] with an explicit resolver.
#[allow(
    clippy::expect_used,
    reason = "documented panic: a TLS backend that cannot start is a broken build"
)]
pub(crate) fn guarded_client_with(
    policy: OutboundPolicy,
    timeouts: Timeouts,
    lookup: Arc<dyn HostLookup>,
) -> reqwest::Client {
    // Never fall back to an unguarded client.
    try_guarded_client_with(policy, timeouts, lookup).expect("the TLS backend initialises (reqwest client build)")
}

/// Fallible form of [`guarded_client_with`].
pub(crate) fn try_guarded_client_with(
    policy: OutboundPolicy,
    timeouts: Timeouts,
    lookup: Arc<dyn HostLookup>,
) -> Result<reqwest::Client, reqwest::Error> {
    super::tls::install_crypto_provider();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::with_lookup(policy, lookup)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .user_agent(super::USER_AGENT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::str::FromStr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Fixed answers per host.
    struct StaticLookup(HashMap<String, Vec<IpAddr>>);

    impl HostLookup for StaticLookup {
        fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            let r = self
                .0
                .get(host)
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"));
            Box::pin(async move { r })
        }
    }

    /// Answers from a script, one entry per call (the last repeats): a rebinding DNS server.
    struct Rebinding {
        answers: Vec<Vec<IpAddr>>,
        calls: AtomicUsize,
        seen: Mutex<Vec<String>>,
    }

    impl HostLookup for Rebinding {
        fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            self.seen.lock().unwrap().push(host.to_string());
            let i = self.calls.fetch_add(1, Ordering::SeqCst);
            let ips = self.answers[i.min(self.answers.len() - 1)].clone();
            Box::pin(async move { Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect()) })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn lookup(pairs: &[(&str, &[&str])]) -> StaticLookup {
        StaticLookup(
            pairs
                .iter()
                .map(|(h, ips)| (h.to_string(), ips.iter().map(|s| ip(s)).collect()))
                .collect(),
        )
    }

    #[test]
    fn classification() {
        let cases = [
            ("8.8.8.8", AddrClass::Public),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.1.2.3", AddrClass::Loopback),
            ("10.1.1.1", AddrClass::Private),
            ("172.20.0.1", AddrClass::Private),
            ("192.168.0.10", AddrClass::Private),
            ("100.64.1.1", AddrClass::Private),
            ("169.254.169.254", AddrClass::Forbidden("metadata")),
            ("100.100.100.200", AddrClass::Forbidden("metadata")),
            ("169.254.1.1", AddrClass::Forbidden("link_local")),
            ("0.0.0.0", AddrClass::Forbidden("unspecified")),
            ("224.0.0.1", AddrClass::Forbidden("multicast")),
            ("255.255.255.255", AddrClass::Forbidden("reserved")),
            ("198.18.0.1", AddrClass::Forbidden("reserved")),
            ("::1", AddrClass::Loopback),
            ("::", AddrClass::Forbidden("unspecified")),
            ("fd00:ec2::254", AddrClass::Forbidden("metadata")),
            ("fd12::1", AddrClass::Private),
            ("fe80::1", AddrClass::Forbidden("link_local")),
            ("ff02::1", AddrClass::Forbidden("multicast")),
            ("2001:db8::1", AddrClass::Forbidden("reserved")),
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:169.254.169.254", AddrClass::Forbidden("metadata")),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("64:ff9b::a9fe:a9fe", AddrClass::Forbidden("metadata")),
            ("::127.0.0.1", AddrClass::Loopback),
            ("2002:a9fe:a9fe::1", AddrClass::Forbidden("metadata")),
            ("2002:0808:0808::1", AddrClass::Public),
            ("2606:4700:4700::1111", AddrClass::Public),
            // SIIT, local-use NAT64 and Teredo were accepted in strict mode before the shared table
            ("::ffff:0:127.0.0.1", AddrClass::Loopback),
            ("::ffff:0:a9fe:a9fe", AddrClass::Forbidden("metadata")),
            ("::ffff:0:8.8.8.8", AddrClass::Public),
            ("64:ff9b:1::8.8.8.8", AddrClass::Private),
            ("64:ff9b:1::a9fe:a9fe", AddrClass::Forbidden("metadata")),
            ("64:ff9b:1::c000:201", AddrClass::Forbidden("reserved")),
            ("2001:0:4136:e378:8000:63bf:f5ff:fffe", AddrClass::Forbidden("reserved")),
            ("3fff::1", AddrClass::Forbidden("reserved")),
        ];
        for (s, want) in cases {
            assert_eq!(classify(ip(s)), want, "{s}");
        }
    }

    #[tokio::test]
    async fn refuses_loopback_private_metadata_and_mapped_literals() {
        let p = OutboundPolicy::strict();
        let none = lookup(&[]);
        for u in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://10.0.0.7/",
            "https://192.168.1.1/",
            "http://100.64.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[::a9fe:a9fe]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0.0.0.0/",
        ] {
            let r = p.check_url_with(&url(u), &none).await;
            assert!(matches!(r, Err(SsrfError::ForbiddenAddress { .. })), "{u}: {r:?}");
        }
    }

    #[tokio::test]
    async fn refuses_names_schemes_and_bad_answers() {
        let p = OutboundPolicy::strict();
        let l = lookup(&[
            ("metadata.google.internal", &["169.254.169.254"]),
            ("hooks.acme.com", &["93.184.216.34"]),
            ("mixed.acme.com", &["93.184.216.34", "10.0.0.1"]),
            ("localhost", &["127.0.0.1", "::1"]),
        ]);
        for (u, host) in [
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                "metadata.google.internal",
            ),
            ("http://db.service.internal/", "db.service.internal"),
            ("http://printer.local/", "printer.local"),
            ("http://METADATA.GOOGLE.INTERNAL./", "metadata.google.internal"),
        ] {
            assert_eq!(
                p.check_url_with(&url(u), &l).await,
                Err(SsrfError::ForbiddenHost(host.to_string()))
            );
        }
        assert!(matches!(
            p.check_url_with(&url("ftp://hooks.acme.com/"), &l).await,
            Err(SsrfError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            p.check_url_with(&url("file:///etc/passwd"), &l).await,
            Err(SsrfError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            p.check_url_with(&url("https://nowhere.acme.com/"), &l).await,
            Err(SsrfError::Unresolvable { .. })
        ));
        // Every address must be public, not just the first.
        assert!(matches!(
            p.check_url_with(&url("https://mixed.acme.com/"), &l).await,
            Err(SsrfError::ForbiddenAddress { class: "private", .. })
        ));
        assert!(matches!(
            p.check_url_with(&url("http://localhost:9000/"), &l).await,
            Err(SsrfError::ForbiddenAddress { class: "loopback", .. })
        ));
        let ok = p.check_url_with(&url("https://hooks.acme.com/x"), &l).await.unwrap();
        assert_eq!(ok, vec![SocketAddr::new(ip("93.184.216.34"), 443)]);
    }

    #[tokio::test]
    async fn allow_flags_and_allow_list() {
        let l = lookup(&[
            ("localhost", &["127.0.0.1"]),
            ("vault.corp.acme.com", &["10.1.2.3"]),
            ("api.corp.acme.com", &["10.1.2.4"]),
        ]);
        let loopback = OutboundPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert!(loopback
            .check_url_with(&url("http://localhost:9000/"), &l)
            .await
            .is_ok());
        assert!(loopback
            .check_url_with(&url("http://127.0.0.1:9000/"), &l)
            .await
            .is_ok());
        assert!(loopback.check_url_with(&url("http://10.0.0.1/"), &l).await.is_err());
        // Metadata stays refused whatever the flags.
        let open = OutboundPolicy {
            allow_loopback: true,
            allow_private: true,
            allow_hosts: vec![],
        };
        assert!(open.check_url_with(&url("http://10.0.0.1/"), &l).await.is_ok());
        assert!(open.check_url_with(&url("http://169.254.169.254/"), &l).await.is_err());
        // Allow-list: exact and wildcard.
        let listed = OutboundPolicy {
            allow_hosts: vec!["vault.corp.acme.com".into(), "*.corp.acme.com".into()],
            ..Default::default()
        };
        assert!(listed
            .check_url_with(&url("https://vault.corp.acme.com/"), &l)
            .await
            .is_ok());
        assert!(listed
            .check_url_with(&url("https://api.corp.acme.com/"), &l)
            .await
            .is_ok());
        assert!(listed.check_url_with(&url("http://localhost/"), &l).await.is_err());
        assert!(!listed.host_allowed("corp.acme.com"));
        assert!(!listed.host_allowed("evilcorp.acme.com.attacker.net"));
        let literal = OutboundPolicy {
            allow_hosts: vec!["127.0.0.1".into()],
            ..Default::default()
        };
        assert!(literal.check_url_with(&url("http://127.0.0.1:1/"), &l).await.is_ok());
    }

    #[tokio::test]
    async fn resolver_blocks_rebinding() {
        // First answer public (passes check_url), then the name rebinds to loopback.
        let dns = Arc::new(Rebinding {
            answers: vec![vec![ip("93.184.216.34")], vec![ip("127.0.0.1")]],
            calls: AtomicUsize::new(0),
            seen: Mutex::new(vec![]),
        });
        let policy = OutboundPolicy::strict();
        assert!(policy
            .check_url_with(&url("https://rebind.attacker.net/hook"), dns.as_ref())
            .await
            .is_ok());
        let resolver = GuardedResolver::with_lookup(policy, dns.clone());
        let err = match resolver.resolve(Name::from_str("rebind.attacker.net").unwrap()).await {
            Ok(_) => panic!("rebinding answer accepted"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("loopback"), "{err}");
        assert_eq!(dns.seen.lock().unwrap().len(), 2);

        // A public answer passes through the Resolve impl.
        let ok = GuardedResolver::with_lookup(
            OutboundPolicy::strict(),
            Arc::new(lookup(&[("hooks.acme.com", &["93.184.216.34"])])),
        );
        let addrs: Vec<SocketAddr> = ok
            .resolve(Name::from_str("hooks.acme.com").unwrap())
            .await
            .map_err(|e| e.to_string())
            .unwrap()
            .collect();
        assert_eq!(addrs, vec![SocketAddr::new(ip("93.184.216.34"), 0)]);

        // Forbidden names are refused before any lookup.
        let r = ok.resolve(Name::from_str("metadata.google.internal").unwrap()).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn guarded_client_refuses_a_name_resolving_to_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // Accept and answer one request with a tiny HTTP/1.1 response.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let dns: Arc<dyn HostLookup> = Arc::new(lookup(&[("hooks.attacker.net", &["127.0.0.1"])]));
        let target = format!("http://hooks.attacker.net:{port}/");

        let strict = guarded_client_with(OutboundPolicy::strict(), Timeouts::default(), dns.clone());
        let err = strict.get(&target).send().await.unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err:?}");

        let permissive = guarded_client_with(
            OutboundPolicy {
                allow_loopback: true,
                ..Default::default()
            },
            Timeouts::default(),
            dns,
        );
        let resp = permissive.get(&target).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
        server.await.unwrap();
    }
}
