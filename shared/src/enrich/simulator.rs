//! A local threat-intel simulator for demo mode.
//!
//! It answers on each provider's real paths, checks the same credentials headers, and returns
//! the providers' JSON shapes (including their 404, 401, 422 and 429 answers) with fixed,
//! realistic data for a set of demo indicators. Point the real provider clients at it with
//! [`simulator_configs`]; nothing in the provider modules knows it exists.
//!
//! Mount points under the base URL: `/virustotal/api/v3`, `/abuseipdb/api/v2`,
//! `/greynoise/v3`, `/okta` (an Okta org root), `/entra/login` (token authority) and
//! `/entra/graph` (Microsoft Graph root).
//!
//! Every `rate_limit_every`-th request to one provider (default 50th) is answered with that
//! provider's 429 and a `Retry-After`; set it to `None` to switch this off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use secrecy::SecretString;
use serde_json::{json, Map, Value};
use url::Url;

use super::never_send::NeverSendPolicy;
use super::providers::{AbuseIpDbConfig, EntraConfig, GreyNoiseConfig, OktaConfig, VirusTotalConfig};
use crate::domain::indicator::IndicatorType;

pub const DEMO_VIRUSTOTAL_KEY: &str = "demo-virustotal-key";
pub const DEMO_ABUSEIPDB_KEY: &str = "demo-abuseipdb-key";
pub const DEMO_GREYNOISE_KEY: &str = "demo-greynoise-key";
pub const DEMO_OKTA_TOKEN: &str = "demo-okta-api-token";
pub const DEMO_ENTRA_TENANT: &str = "5d3f8a2c-1b4e-4f6a-9c7d-0e2b4a6c8d1f";
pub const DEMO_ENTRA_CLIENT_ID: &str = "a7c3e9f1-4b2d-4e8a-b6c0-2f4d6e8a0b1c";
pub const DEMO_ENTRA_CLIENT_SECRET: &str = "demo-entra-client-secret";

/// The phishing URL of the demo data set.
pub const DEMO_URL: &str = "https://evil-login-portal.com/office365/login.php";
const DEMO_URL_SHA256: &str = "b4fe267e3bba10d27205067689efb3ae7650e6a8d1ddb2c6d5edec72607d8c46";

pub const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
pub const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
pub const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

/// The demo indicators the simulator knows, as `(type, value)`.
pub const DEMO_INDICATORS: &[(IndicatorType, &str)] = &[
    (IndicatorType::Ip, "185.220.101.47"),
    (IndicatorType::Ip, "67.180.201.3"),
    (IndicatorType::Ip, "45.155.205.233"),
    (IndicatorType::Ip, "8.8.8.8"),
    (IndicatorType::Domain, "evil-login-portal.com"),
    (IndicatorType::Domain, "microsoft.com"),
    (IndicatorType::Url, DEMO_URL),
    (IndicatorType::HashMd5, EICAR_MD5),
    (IndicatorType::HashSha1, EICAR_SHA1),
    (IndicatorType::HashSha256, EICAR_SHA256),
    (IndicatorType::Account, "nick.hathaway@calseta.com"),
    (IndicatorType::Account, "jane.doe@calseta.com"),
];

/// Simulator behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatorOptions {
    /// Answer every n-th request to a provider with 429 (`None` = never).
    pub rate_limit_every: Option<u64>,
    /// The `Retry-After` seconds of those 429s.
    pub retry_after_secs: u64,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            rate_limit_every: Some(50),
            retry_after_secs: 20,
        }
    }
}

#[derive(Clone, Copy)]
enum Sim {
    VirusTotal = 0,
    AbuseIpDb = 1,
    GreyNoise = 2,
    Okta = 3,
    Graph = 4,
}

struct SimState {
    opts: SimulatorOptions,
    counters: [AtomicU64; 5],
    tokens_issued: AtomicU64,
}

type St = State<Arc<SimState>>;

/// The simulator with default options (a 429 on every 50th request per provider).
pub fn router() -> Router {
    router_with(SimulatorOptions::default())
}

/// The simulator with explicit options.
pub fn router_with(opts: SimulatorOptions) -> Router {
    let state = Arc::new(SimState {
        opts,
        counters: Default::default(),
        tokens_issued: AtomicU64::new(0),
    });
    Router::new()
        .route("/virustotal/api/v3/ip_addresses/{ip}", get(vt_ip))
        .route("/virustotal/api/v3/domains/{domain}", get(vt_domain))
        .route("/virustotal/api/v3/urls/{id}", get(vt_url))
        .route("/virustotal/api/v3/files/{hash}", get(vt_file))
        .route("/abuseipdb/api/v2/check", get(abuse_check))
        .route("/greynoise/v3/community/{ip}", get(gn_community))
        .route("/okta/api/v1/users/{key}", get(okta_user))
        .route("/okta/api/v1/users/{id}/factors", get(okta_factors))
        .route("/okta/api/v1/users/{id}/groups", get(okta_groups))
        .route("/okta/api/v1/users/{id}/linkedObjects/manager", get(okta_manager))
        .route("/entra/login/{tenant}/oauth2/v2.0/token", post(entra_token))
        .route("/entra/graph/v1.0/users/{key}", get(graph_user))
        .route("/entra/graph/v1.0/users/{id}/manager", get(graph_manager))
        .route("/entra/graph/v1.0/users/{id}/memberOf", get(graph_member_of))
        .route(
            "/entra/graph/v1.0/users/{id}/authentication/methods",
            get(graph_methods),
        )
        .with_state(state)
}

/// Serves [`router`] on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

/// [`serve`] with explicit options.
pub async fn serve_with(listener: tokio::net::TcpListener, opts: SimulatorOptions) -> std::io::Result<()> {
    axum::serve(listener, router_with(opts)).await
}

fn sub_url(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// Provider configurations pointing at a simulator served at `base`, with the demo
/// credentials.
pub fn simulator_configs(
    base: &Url,
) -> (
    VirusTotalConfig,
    AbuseIpDbConfig,
    GreyNoiseConfig,
    OktaConfig,
    EntraConfig,
) {
    let vt = VirusTotalConfig::new(SecretString::from(DEMO_VIRUSTOTAL_KEY))
        .with_base_url(sub_url(base, &["virustotal", "api", "v3"]));
    let abuse = AbuseIpDbConfig::new(SecretString::from(DEMO_ABUSEIPDB_KEY))
        .with_base_url(sub_url(base, &["abuseipdb", "api", "v2"]));
    let gn = GreyNoiseConfig::new(Some(SecretString::from(DEMO_GREYNOISE_KEY)))
        .with_base_url(sub_url(base, &["greynoise", "v3"]));
    let okta = OktaConfig::with_base_url(sub_url(base, &["okta"]), SecretString::from(DEMO_OKTA_TOKEN));
    let mut entra = EntraConfig::new(
        DEMO_ENTRA_TENANT,
        DEMO_ENTRA_CLIENT_ID,
        SecretString::from(DEMO_ENTRA_CLIENT_SECRET),
    );
    entra.base_url = sub_url(base, &["entra", "graph"]);
    entra.login_base_url = sub_url(base, &["entra", "login"]);
    entra.sign_in_activity = true;
    entra.auth_methods = true;
    (vt, abuse, gn, okta, entra)
}

impl super::registry::ProviderSet {
    /// Every provider pointed at a provider simulator served at `base` (the local stack with
    /// no keys, benchmarks, tests). The simulator is local, so loopback is allowed for it alone.
    /// Defined here, behind the `local` feature, so the production registry never names the
    /// simulator; the assembly injects this set where it wants it.
    pub fn simulated(base: &Url, budgets: HashMap<String, super::governor::Budget>, concurrency: usize) -> Self {
        use super::provider::{Provider, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
        use super::providers::{AbuseIpDb, Entra, GreyNoise, Okta, VirusTotal};
        use crate::net::ssrf::{self, OutboundPolicy};
        let (vt, abuse, gn, okta, entra) = simulator_configs(base);
        let mut policy = OutboundPolicy::strict();
        if let Some(h) = base.host_str() {
            policy.allow_hosts.push(h.to_string());
        }
        let client = ssrf::guarded_client(
            policy,
            ssrf::Timeouts {
                connect: CONNECT_TIMEOUT,
                total: REQUEST_TIMEOUT,
            },
        );
        let providers: Vec<Arc<dyn Provider>> = vec![
            Arc::new(VirusTotal::with_client(vt, client.clone())),
            Arc::new(AbuseIpDb::with_client(abuse, client.clone())),
            Arc::new(GreyNoise::with_client(gn, client.clone())),
            Arc::new(Okta::with_client(okta, client.clone())),
            Arc::new(Entra::with_client(entra, client)),
        ];
        Self::new(providers, budgets, concurrency)
    }
}

// ---------------------------------------------------------------------------------------------
// Plumbing

fn respond(status: StatusCode, body: Value, headers: &[(&'static str, String)]) -> Response {
    let mut r = (status, Json(body)).into_response();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(HeaderName::from_static(k), v);
        }
    }
    r
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `true` when this request is the n-th one that gets a 429.
fn throttled(s: &SimState, which: Sim) -> bool {
    let n = s.counters[which as usize].fetch_add(1, Ordering::Relaxed) + 1;
    matches!(s.opts.rate_limit_every, Some(every) if every > 0 && n.is_multiple_of(every))
}

fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

fn retry(s: &SimState) -> (&'static str, String) {
    ("retry-after", s.opts.retry_after_secs.to_string())
}

// ---------------------------------------------------------------------------------------------
// VirusTotal

fn vt_guard(s: &SimState, h: &HeaderMap) -> Option<Response> {
    match header(h, "x-apikey") {
        None => {
            return Some(respond(
                StatusCode::UNAUTHORIZED,
                json!({"error": {"code": "AuthenticationRequiredError", "message": "X-Apikey header is missing"}}),
                &[],
            ))
        }
        Some(k) if k != DEMO_VIRUSTOTAL_KEY => {
            return Some(respond(
                StatusCode::UNAUTHORIZED,
                json!({"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}}),
                &[],
            ))
        }
        Some(_) => {}
    }
    if throttled(s, Sim::VirusTotal) {
        return Some(respond(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": {"code": "QuotaExceededError", "message": "Quota exceeded"}}),
            &[retry(s)],
        ));
    }
    None
}

fn vt_not_found(what: &str, id: &str) -> Response {
    respond(
        StatusCode::NOT_FOUND,
        json!({"error": {"code": "NotFoundError", "message": format!("{what} \"{id}\" not found")}}),
        &[],
    )
}

fn vt_object(kind: &str, id: &str, self_path: &str, attributes: Value) -> Value {
    json!({"data": {
        "id": id,
        "type": kind,
        "links": {"self": format!("https://www.virustotal.com/api/v3/{self_path}")},
        "attributes": attributes,
    }})
}

/// Engine names as VirusTotal's URL/IP/domain scanners report them (the real list is about 94).
const VT_ENGINES: &[&str] = &[
    "Acronis",
    "0xSI_f33d",
    "Abusix",
    "ADMINUSLabs",
    "Criminal IP",
    "AILabs (MONITORAPP)",
    "AlienVault",
    "alphaMountain.ai",
    "AlphaSOC",
    "Antiy-AVL",
    "ArcSight Threat Intelligence",
    "AutoShun",
    "benkow.cc",
    "Bfore.Ai PreCrime",
    "BitDefender",
    "Bkav",
    "Blueliv",
    "Certego",
    "Chong Lua Dao",
    "CINS Army",
    "Cluster25",
    "CMC Threat Intelligence",
    "CRDF",
    "CSIS Security Group",
    "Cyan",
    "Cyble",
    "CyRadar",
    "DNS8",
    "Dr.Web",
    "Ermes",
    "ESET",
    "ESTsecurity",
    "EmergingThreats",
    "Emsisoft",
    "Feodo Tracker",
    "Forcepoint ThreatSeeker",
    "Fortinet",
    "G-Data",
    "GCP Abuse Intelligence",
    "Google Safebrowsing",
    "GreenSnow",
    "Gridinsoft",
    "Heimdal Security",
    "Hunt.io Intelligence",
    "IPsum",
    "Juniper Networks",
    "Kaspersky",
    "Lionic",
    "Lumu",
    "MalwarePatrol",
    "MalwareURL",
    "Malwared",
    "Mimecast",
    "Netcraft",
    "OpenPhish",
    "Phishing Database",
    "PhishFort",
    "PhishLabs",
    "Phishtank",
    "PREBYTES",
    "PrecisionSec",
    "Quick Heal",
    "Quttera",
    "Rising",
    "SafeToOpen",
    "Sangfor",
    "Sansec eComscan",
    "Scantitan",
    "SCUMWARE.org",
    "Seclookup",
    "SecureBrain",
    "SOCRadar",
    "Sophos",
    "Spam404",
    "StopForumSpam",
    "Sucuri SiteCheck",
    "ThreatHive",
    "Threatsourcing",
    "Trustwave",
    "Underworld",
    "URLhaus",
    "URLQuery",
    "Viettel Threat Intelligence",
    "VIPRE",
    "VX Vault",
    "ViriBack",
    "Webroot",
    "Yandex Safebrowsing",
    "ZeroCERT",
    "desenmascara.me",
    "malwares.com URL checker",
    "securolytics",
    "Xcitium Verdict Cloud",
    "zvelo",
    "ZeroFox",
];

/// One row per engine, as many rows of each category as `stats` counts (the real API's shape:
/// the client drops these rows before anything is stored, so their size is what an agent
/// would otherwise read).
fn vt_engines(stats: &Value, bad_result: &str) -> Value {
    let n = |k: &str| stats.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
    let plan = [
        ("malicious", n("malicious"), bad_result),
        ("suspicious", n("suspicious"), "suspicious"),
        ("harmless", n("harmless"), "clean"),
        ("undetected", n("undetected"), "unrated"),
        ("timeout", n("timeout"), "timeout"),
    ];
    let mut rows = Map::new();
    let mut names = VT_ENGINES.iter().cycle().enumerate();
    for (category, count, result) in plan {
        for _ in 0..count {
            let Some((i, name)) = names.next() else { break };
            let name = if i < VT_ENGINES.len() {
                name.to_string()
            } else {
                format!("{name} {}", i / VT_ENGINES.len() + 1)
            };
            rows.insert(
                name.clone(),
                json!({"method": "blacklist", "engine_name": name, "category": category, "result": result}),
            );
        }
    }
    Value::Object(rows)
}

/// Anti-virus rows of a file report, one per engine counted in `stats`.
fn vt_file_engines(stats: &Value, label: &str) -> Value {
    let n = |k: &str| stats.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
    let plan = [
        ("malicious", n("malicious"), Some(label)),
        ("undetected", n("undetected"), None),
        ("timeout", n("timeout"), None),
        ("type-unsupported", n("type-unsupported"), None),
    ];
    let mut rows = Map::new();
    let mut names = VT_ENGINES.iter().enumerate();
    for (category, count, result) in plan {
        for _ in 0..count {
            let Some((i, name)) = names.next() else { break };
            rows.insert(
                name.to_string(),
                json!({"method": "blacklist", "engine_name": name, "engine_version": format!("{}.{}.{}", 1 + i % 9, i % 30, 100 + i),
                       "engine_update": "20250115", "category": category, "result": result}),
            );
        }
    }
    Value::Object(rows)
}

/// A domain whois record as VirusTotal returns it.
fn vt_whois_domain(domain: &str, registrar: &str, created: &str) -> String {
    format!(
        "Domain Name: {}\nRegistry Domain ID: 2945{}_DOMAIN_COM-VRSN\nRegistrar WHOIS Server: whois.registrar.example\n\
         Registrar URL: http://www.registrar.example\nUpdated Date: 2025-01-02T00:00:00Z\nCreation Date: {created}T00:00:00Z\n\
         Registry Expiry Date: 2026-{}T00:00:00Z\nRegistrar: {registrar}\nRegistrar IANA ID: 1479\n\
         Registrar Abuse Contact Email: abuse@registrar.example\nRegistrar Abuse Contact Phone: +1.5555555555\n\
         Domain Status: clientTransferProhibited https://icann.org/epp#clientTransferProhibited\n\
         Registrant Organization: REDACTED FOR PRIVACY\nRegistrant State/Province: REDACTED FOR PRIVACY\n\
         Registrant Country: REDACTED FOR PRIVACY\nName Server: NS1.DNSOWL.COM\nName Server: NS2.DNSOWL.COM\n\
         DNSSEC: unsigned\nURL of the ICANN Whois Inaccuracy Complaint Form: https://www.icann.org/wicf/\n",
        domain.to_ascii_uppercase(),
        domain.len() * 7919,
        &created[5..],
    )
}

/// A registry whois record as VirusTotal returns it (one text field).
fn vt_whois_ip(network: &str, owner: &str, asn: u64, country: &str, registry: &str) -> String {
    format!(
        "NetRange: {network}\nCIDR: {network}\nNetName: {}\nNetHandle: NET-{}\nParent: ()\nNetType: Allocated PA\n\
         OriginAS: AS{asn}\nOrganization: {owner}\nRegDate: 2019-03-11\nUpdated: 2024-06-02\nRef: https://rdap.db.ripe.net/ip/{network}\n\
         Country: {country}\nSource: {registry}\nOrgAbuseHandle: ABUSE{asn}\nOrgAbuseName: Abuse contact\nOrgAbuseEmail: abuse@{}.example\n\
         OrgTechHandle: NOC{asn}\nOrgTechName: Network operations\nOrgTechEmail: noc@{}.example\n\
         route: {network}\norigin: AS{asn}\ndescr: {owner}\nmnt-by: MNT-AS{asn}\ncreated: 2019-03-11T10:00:00Z\nlast-modified: 2024-06-02T08:00:00Z\n",
        owner.replace(' ', "-").to_ascii_uppercase(),
        network.replace(['.', '/'], "-"),
        asn,
        asn
    )
}

fn vt_stats(malicious: u64, suspicious: u64, harmless: u64, undetected: u64) -> Value {
    json!({"malicious": malicious, "suspicious": suspicious, "harmless": harmless, "undetected": undetected, "timeout": 0})
}

fn vt_ip_attributes(ip: &str) -> Option<Value> {
    Some(match ip {
        "185.220.101.47" => json!({
            "last_analysis_stats": vt_stats(14, 2, 54, 24),
            "last_analysis_results": vt_engines(&vt_stats(14, 2, 54, 24), "malicious"),
            "last_analysis_date": 1736905200,
            "reputation": -52,
            "tags": ["tor"],
            "country": "DE", "continent": "EU",
            "as_owner": "Stiftung Erneuerbare Freiheit", "asn": 60729,
            "network": "185.220.101.0/24", "regional_internet_registry": "RIPE NCC",
            "whois": vt_whois_ip("185.220.101.0/24", "Stiftung Erneuerbare Freiheit", 60729, "DE", "RIPE NCC"),
            "total_votes": {"harmless": 2, "malicious": 31},
        }),
        "67.180.201.3" => json!({
            "last_analysis_stats": vt_stats(0, 0, 61, 33),
            "last_analysis_results": vt_engines(&vt_stats(0, 0, 61, 33), "clean"),
            "last_analysis_date": 1736821800,
            "reputation": 0,
            "tags": [],
            "country": "US", "continent": "NA",
            "as_owner": "COMCAST-7922", "asn": 7922,
            "network": "67.180.0.0/14", "regional_internet_registry": "ARIN",
            "whois": vt_whois_ip("67.180.0.0/14", "COMCAST-7922", 7922, "US", "ARIN"),
            "total_votes": {"harmless": 0, "malicious": 0},
        }),
        "45.155.205.233" => json!({
            "last_analysis_stats": vt_stats(6, 1, 55, 32),
            "last_analysis_results": vt_engines(&vt_stats(6, 1, 55, 32), "malicious"),
            "last_analysis_date": 1736899200,
            "reputation": -17,
            "tags": [],
            "country": "RU", "continent": "EU",
            "as_owner": "Media Land LLC", "asn": 206728,
            "network": "45.155.205.0/24", "regional_internet_registry": "RIPE NCC",
            "whois": vt_whois_ip("45.155.205.0/24", "Media Land LLC", 206728, "RU", "RIPE NCC"),
            "total_votes": {"harmless": 0, "malicious": 9},
        }),
        "8.8.8.8" => json!({
            "last_analysis_stats": vt_stats(0, 0, 63, 31),
            "last_analysis_results": vt_engines(&vt_stats(0, 0, 63, 31), "clean"),
            "last_analysis_date": 1736890000,
            "reputation": 531,
            "tags": [],
            "country": "US", "continent": "NA",
            "as_owner": "GOOGLE", "asn": 15169,
            "network": "8.8.8.0/24", "regional_internet_registry": "ARIN",
            "whois": vt_whois_ip("8.8.8.0/24", "GOOGLE", 15169, "US", "ARIN"),
            "total_votes": {"harmless": 220, "malicious": 31},
        }),
        _ => return None,
    })
}

async fn vt_ip(State(s): St, h: HeaderMap, Path(ip): Path<String>) -> Response {
    if let Some(r) = vt_guard(&s, &h) {
        return r;
    }
    match vt_ip_attributes(&ip) {
        Some(a) => respond(
            StatusCode::OK,
            vt_object("ip_address", &ip, &format!("ip_addresses/{ip}"), a),
            &[],
        ),
        None => vt_not_found("IP address", &ip),
    }
}

async fn vt_domain(State(s): St, h: HeaderMap, Path(domain): Path<String>) -> Response {
    if let Some(r) = vt_guard(&s, &h) {
        return r;
    }
    let attrs = match domain.as_str() {
        "evil-login-portal.com" => json!({
            "last_analysis_stats": vt_stats(9, 3, 50, 30),
            "last_analysis_results": vt_engines(&vt_stats(9, 3, 50, 30), "phishing"),
            "last_analysis_date": 1736900000,
            "reputation": -34,
            "tags": [],
            "registrar": "NameSilo, LLC",
            "whois": vt_whois_domain("evil-login-portal.com", "NameSilo, LLC", "2024-12-28"),
            "creation_date": 1735344000,
            "categories": {
                "Forcepoint ThreatSeeker": "phishing and other frauds",
                "Sophos": "phishing",
                "BitDefender": "phishing",
                "alphaMountain.ai": "Phishing"
            },
            "tld": "com",
        }),
        "microsoft.com" => json!({
            "last_analysis_stats": vt_stats(0, 0, 67, 27),
            "last_analysis_results": vt_engines(&vt_stats(0, 0, 67, 27), "clean"),
            "last_analysis_date": 1736880000,
            "reputation": 91,
            "tags": [],
            "registrar": "MarkMonitor Inc.",
            "whois": vt_whois_domain("microsoft.com", "MarkMonitor Inc.", "1991-05-02"),
            "creation_date": 673142400,
            "categories": {
                "Forcepoint ThreatSeeker": "information technology",
                "Sophos": "information technology",
                "BitDefender": "computersandsoftware",
                "alphaMountain.ai": "Information Technology"
            },
            "tld": "com",
        }),
        _ => return vt_not_found("Domain", &domain),
    };
    respond(
        StatusCode::OK,
        vt_object("domain", &domain, &format!("domains/{domain}"), attrs),
        &[],
    )
}

async fn vt_url(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = vt_guard(&s, &h) {
        return r;
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(id.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(&id))
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let known = decoded.as_deref() == Some(DEMO_URL) || id == DEMO_URL_SHA256;
    if !known {
        return vt_not_found("URL", &id);
    }
    let attrs = json!({
        "url": DEMO_URL,
        "last_final_url": "https://evil-login-portal.com/office365/login.php?session=expired",
        "last_http_response_code": 200,
        "title": "Sign in to your account",
        "last_analysis_stats": vt_stats(11, 2, 58, 22),
        "last_analysis_results": vt_engines(&vt_stats(11, 2, 58, 22), "phishing"),
        "last_analysis_date": 1736903400,
        "reputation": -12,
        "tags": [],
        "categories": {
            "Forcepoint ThreatSeeker": "phishing and other frauds",
            "Sophos": "phishing",
            "BitDefender": "phishing"
        },
        "times_submitted": 4,
    });
    respond(
        StatusCode::OK,
        vt_object("url", DEMO_URL_SHA256, &format!("urls/{DEMO_URL_SHA256}"), attrs),
        &[],
    )
}

async fn vt_file(State(s): St, h: HeaderMap, Path(hash): Path<String>) -> Response {
    if let Some(r) = vt_guard(&s, &h) {
        return r;
    }
    let h = hash.to_ascii_lowercase();
    if h != EICAR_MD5 && h != EICAR_SHA1 && h != EICAR_SHA256 {
        return vt_not_found("File", &hash);
    }
    let file_stats = json!({"malicious": 65, "suspicious": 0, "harmless": 0, "undetected": 7, "timeout": 1, "type-unsupported": 4, "failure": 0});
    let attrs = json!({
        "md5": EICAR_MD5, "sha1": EICAR_SHA1, "sha256": EICAR_SHA256,
        "meaningful_name": "eicar.com",
        "names": ["eicar.com", "eicar.com.txt", "eicar_test_file"],
        "type_description": "Text",
        "type_tag": "text",
        "size": 68,
        "first_submission_date": 1148301722,
        "times_submitted": 1265903,
        "last_analysis_stats": file_stats.clone(),
        "last_analysis_results": vt_file_engines(&file_stats, "EICAR-Test-File (NOT a Virus!)"),
        "last_analysis_date": 1736908800,
        "reputation": 3470,
        "tags": ["text", "known-distributor", "attachment"],
        "popular_threat_classification": {
            "suggested_threat_label": "virus.eicar/test",
            "popular_threat_category": [{"count": 21, "value": "virus"}],
            "popular_threat_name": [{"count": 38, "value": "eicar"}]
        },
    });
    respond(
        StatusCode::OK,
        vt_object("file", EICAR_SHA256, &format!("files/{EICAR_SHA256}"), attrs),
        &[],
    )
}

// ---------------------------------------------------------------------------------------------
// AbuseIPDB

fn abuse_headers(s: &SimState) -> Vec<(&'static str, String)> {
    let used = s.counters[Sim::AbuseIpDb as usize].load(Ordering::Relaxed);
    let now = chrono::Utc::now();
    let reset = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(now.timestamp() + 86_400);
    vec![
        ("x-ratelimit-limit", "1000".to_string()),
        ("x-ratelimit-remaining", 1000u64.saturating_sub(used).to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ]
}

fn abuse_report(at: &str, categories: &[u64], reporter: u64, country: &str) -> Value {
    json!({"reportedAt": at, "comment": "Automated report", "categories": categories, "reporterId": reporter, "reporterCountryCode": country, "reporterCountryName": ""})
}

fn abuse_data(ip: &str) -> Value {
    let version = if ip.contains(':') { 6 } else { 4 };
    let base = |score: u64,
                country: Option<&str>,
                country_name: Option<&str>,
                usage: Option<&str>,
                isp: Option<&str>,
                domain: Option<&str>| {
        json!({
            "ipAddress": ip, "isPublic": true, "ipVersion": version, "isWhitelisted": false,
            "abuseConfidenceScore": score, "countryCode": country, "countryName": country_name,
            "usageType": usage, "isp": isp, "domain": domain, "hostnames": [], "isTor": false,
            "totalReports": 0, "numDistinctUsers": 0, "lastReportedAt": null, "reports": []
        })
    };
    match ip {
        "185.220.101.47" => {
            let mut d = base(
                97,
                Some("DE"),
                Some("Germany"),
                Some("Data Center/Web Hosting/Transit"),
                Some("Stiftung Erneuerbare Freiheit"),
                Some("artikel10.org"),
            );
            d["hostnames"] = json!(["tor-exit-47.for-privacy.net"]);
            d["isTor"] = json!(true);
            d["totalReports"] = json!(2841);
            d["numDistinctUsers"] = json!(412);
            d["lastReportedAt"] = json!("2025-01-15T03:12:44+00:00");
            d["reports"] = json!([
                abuse_report("2025-01-15T03:12:44+00:00", &[15, 13], 101, "US"),
                abuse_report("2025-01-15T01:05:10+00:00", &[15], 102, "DE"),
                abuse_report("2025-01-14T22:47:31+00:00", &[13, 15], 103, "FR"),
                abuse_report("2025-01-14T19:20:02+00:00", &[15], 104, "NL"),
            ]);
            d
        }
        "67.180.201.3" => {
            let mut d = base(
                4,
                Some("US"),
                Some("United States of America"),
                Some("Fixed Line ISP"),
                Some("Comcast Cable Communications, LLC"),
                Some("comcast.net"),
            );
            d["hostnames"] = json!(["c-67-180-201-3.hsd1.ca.comcast.net"]);
            d["totalReports"] = json!(1);
            d["numDistinctUsers"] = json!(1);
            d["lastReportedAt"] = json!("2024-11-02T16:40:09+00:00");
            d
        }
        "45.155.205.233" => {
            let mut d = base(
                100,
                Some("RU"),
                Some("Russian Federation"),
                Some("Data Center/Web Hosting/Transit"),
                Some("Media Land LLC"),
                Some("ml.ru"),
            );
            d["totalReports"] = json!(15213);
            d["numDistinctUsers"] = json!(1187);
            d["lastReportedAt"] = json!("2025-01-15T03:30:57+00:00");
            d["reports"] = json!([
                abuse_report("2025-01-15T03:30:57+00:00", &[14], 201, "US"),
                abuse_report("2025-01-15T03:02:11+00:00", &[14, 15], 202, "GB"),
                abuse_report("2025-01-15T02:44:39+00:00", &[18, 22], 203, "DE"),
                abuse_report("2025-01-15T02:10:05+00:00", &[14, 21], 204, "SG"),
                abuse_report("2025-01-15T01:58:48+00:00", &[14], 205, "US"),
            ]);
            d
        }
        "8.8.8.8" => {
            let mut d = base(
                0,
                Some("US"),
                Some("United States of America"),
                Some("Content Delivery Network"),
                Some("Google LLC"),
                Some("google.com"),
            );
            d["hostnames"] = json!(["dns.google"]);
            d["isWhitelisted"] = json!(true);
            d["totalReports"] = json!(52);
            d["numDistinctUsers"] = json!(19);
            d["lastReportedAt"] = json!("2025-01-13T08:15:00+00:00");
            d["reports"] = json!([
                abuse_report("2025-01-13T08:15:00+00:00", &[14], 301, "IN"),
                abuse_report("2025-01-10T12:00:00+00:00", &[4], 302, "BR"),
            ]);
            d
        }
        // Any other public IP: AbuseIPDB has no "not found", just no reports.
        _ => base(0, None, None, None, None, None),
    }
}

async fn abuse_check(State(s): St, h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if header(&h, "key") != Some(DEMO_ABUSEIPDB_KEY) {
        return respond(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"detail": "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.", "status": 401}]}),
            &[],
        );
    }
    let limited = throttled(&s, Sim::AbuseIpDb);
    let headers = abuse_headers(&s);
    if limited {
        let mut hs = headers;
        hs.push(retry(&s));
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"errors": [{"detail": "Daily rate limit of 1000 requests exceeded for this endpoint. See headers for additional details.", "status": 429}]}),
            &hs,
        );
    }
    let ip = q.get("ipAddress").map(String::as_str).unwrap_or("");
    let parsed = ip.parse::<IpAddr>().ok();
    let public = parsed.is_some() && NeverSendPolicy::default().check(IndicatorType::Ip, ip).is_none();
    if !public {
        return respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": [{"detail": "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).", "source": {"parameter": "ipAddress"}, "status": 422}]}),
            &headers,
        );
    }
    let mut data = abuse_data(ip);
    if !q.contains_key("verbose") {
        if let Some(m) = data.as_object_mut() {
            m.remove("reports");
            m.remove("countryName");
        }
    }
    respond(StatusCode::OK, json!({ "data": data }), &headers)
}

// ---------------------------------------------------------------------------------------------
// GreyNoise

async fn gn_community(State(s): St, h: HeaderMap, Path(ip): Path<String>) -> Response {
    if let Some(k) = header(&h, "key") {
        if k != DEMO_GREYNOISE_KEY {
            return respond(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Authentication failed: invalid API key"}),
                &[],
            );
        }
    }
    if throttled(&s, Sim::GreyNoise) {
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"plan": "community", "rate-limit": "50-lookups/day", "plan_url": "https://greynoise.io/pricing", "message": "You have hit your daily rate limit of 50 requests per day. Please create a free account or upgrade your plan at https://greynoise.io/pricing."}),
            &[retry(&s)],
        );
    }
    if !matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V4(_))) {
        return respond(
            StatusCode::BAD_REQUEST,
            json!({"message": "Request is not a valid routable IPv4 address"}),
            &[],
        );
    }
    let seen = |noise: bool, riot: bool, class: &str, name: &str, last_seen: &str| {
        json!({
            "ip": ip, "noise": noise, "riot": riot, "classification": class, "name": name,
            "link": format!("https://viz.greynoise.io/ip/{ip}"), "last_seen": last_seen,
            "message": "Success"
        })
    };
    let body = match ip.as_str() {
        "185.220.101.47" => seen(true, false, "malicious", "TOR Exit Node", "2025-01-14"),
        "45.155.205.233" => seen(true, false, "malicious", "unknown", "2025-01-15"),
        "8.8.8.8" => seen(false, true, "benign", "Google Public DNS", "2025-01-14"),
        _ => {
            return respond(
                StatusCode::NOT_FOUND,
                json!({"ip": ip, "noise": false, "riot": false, "message": "IP not observed scanning the internet or contained in RIOT data set."}),
                &[],
            )
        }
    };
    respond(StatusCode::OK, body, &[])
}

// ---------------------------------------------------------------------------------------------
// Okta

const OKTA_NICK: &str = "00u1nh4thaw4yCALS3T4";
const OKTA_EMILY: &str = "00u1emr0des5CALS3T4";
const OKTA_JANE: &str = "00u1jan3d0e6CALS3T4";

fn okta_headers(s: &SimState) -> Vec<(&'static str, String)> {
    let used = s.counters[Sim::Okta as usize].load(Ordering::Relaxed) % 600;
    vec![
        ("x-rate-limit-limit", "600".to_string()),
        ("x-rate-limit-remaining", (600 - used).to_string()),
        ("x-rate-limit-reset", (now_epoch() + 60).to_string()),
    ]
}

fn okta_error(status: StatusCode, code: &str, summary: &str, headers: &[(&'static str, String)]) -> Response {
    respond(
        status,
        json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeSimulatedError0001", "errorCauses": []}),
        headers,
    )
}

/// Checks the token and the rate limit; on success returns the rate-limit headers.
fn okta_guard(s: &SimState, h: &HeaderMap) -> Result<Vec<(&'static str, String)>, Box<Response>> {
    let ok = matches!(header(h, "authorization"), Some(a)
        if a == format!("SSWS {DEMO_OKTA_TOKEN}") || a == format!("Bearer {DEMO_OKTA_TOKEN}"));
    if !ok {
        return Err(Box::new(okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
            &[],
        )));
    }
    let limited = throttled(s, Sim::Okta);
    let headers = okta_headers(s);
    if limited {
        let mut hs = headers;
        hs[1].1 = "0".to_string();
        return Err(Box::new(okta_error(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
            &hs,
        )));
    }
    Ok(headers)
}

fn okta_base(uri: &OriginalUri, h: &HeaderMap) -> String {
    let path = uri.0.path();
    let prefix = path.find("/api/v1/").map(|i| &path[..i]).unwrap_or("");
    let host = header(h, "host").unwrap_or("localhost");
    format!("http://{host}{prefix}")
}

fn okta_user_json(id: &str, base: &str) -> Option<Value> {
    let link = json!({"self": {"href": format!("{base}/api/v1/users/{id}")}});
    Some(match id {
        OKTA_NICK => json!({
            "id": OKTA_NICK, "status": "ACTIVE",
            "created": "2022-03-14T09:00:00.000Z", "activated": "2022-03-14T09:05:12.000Z",
            "statusChanged": "2022-03-14T09:05:12.000Z", "lastLogin": "2025-01-14T22:31:05.000Z",
            "lastUpdated": "2024-10-01T11:23:44.000Z", "passwordChanged": "2024-10-01T11:23:44.000Z",
            "type": {"id": "oty1calsetaDefault001"},
            "profile": {
                "firstName": "Nick", "lastName": "Hathaway", "displayName": "Nick Hathaway",
                "login": "nick.hathaway@calseta.com", "email": "nick.hathaway@calseta.com",
                "title": "Senior Software Engineer", "department": "Engineering",
                "userType": "employee", "city": "San Francisco", "state": "CA", "countryCode": "US",
                "manager": "Emily Rhodes", "mobilePhone": null
            },
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": link,
        }),
        OKTA_EMILY => json!({
            "id": OKTA_EMILY, "status": "ACTIVE",
            "created": "2019-06-03T15:30:00.000Z", "lastLogin": "2025-01-15T02:10:00.000Z",
            "passwordChanged": "2024-12-01T08:00:00.000Z",
            "profile": {
                "firstName": "Emily", "lastName": "Rhodes", "displayName": "Emily Rhodes",
                "login": "emily.rhodes@calseta.com", "email": "emily.rhodes@calseta.com",
                "title": "Engineering Manager", "department": "Engineering", "userType": "employee",
                "city": "San Francisco", "state": "CA", "countryCode": "US"
            },
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": link,
        }),
        OKTA_JANE => json!({
            "id": OKTA_JANE, "status": "LOCKED_OUT",
            "created": "2023-08-21T13:45:00.000Z", "lastLogin": "2025-01-13T17:02:44.000Z",
            "lastUpdated": "2025-01-15T03:20:00.000Z", "passwordChanged": "2024-06-18T09:12:00.000Z",
            "profile": {
                "firstName": "Jane", "lastName": "Doe", "displayName": null,
                "login": "jane.doe@calseta.com", "email": "jane.doe@calseta.com",
                "title": "Accounts Payable Specialist", "department": "Finance",
                "userType": "contractor", "city": "Austin", "state": "TX", "countryCode": "US",
                "manager": "Robert Chen"
            },
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": link,
        }),
        _ => return None,
    })
}

/// Okta resolves an id, a full login, or an unambiguous short login.
fn okta_resolve(key: &str) -> Option<&'static str> {
    let k = key.to_ascii_lowercase();
    [
        (OKTA_NICK, "nick.hathaway@calseta.com"),
        (OKTA_EMILY, "emily.rhodes@calseta.com"),
        (OKTA_JANE, "jane.doe@calseta.com"),
    ]
    .into_iter()
    .find(|(id, login)| id.eq_ignore_ascii_case(&k) || *login == k || login.split('@').next() == Some(k.as_str()))
    .map(|(id, _)| id)
}

async fn okta_user(State(s): St, h: HeaderMap, uri: OriginalUri, Path(key): Path<String>) -> Response {
    let headers = match okta_guard(&s, &h) {
        Ok(hs) => hs,
        Err(r) => return *r,
    };
    match okta_resolve(&key).and_then(|id| okta_user_json(id, &okta_base(&uri, &h))) {
        Some(u) => respond(StatusCode::OK, u, &headers),
        None => okta_error(
            StatusCode::NOT_FOUND,
            "E0000007",
            &format!("Not found: Resource not found: {key} (User)"),
            &headers,
        ),
    }
}

fn okta_user_not_found(id: &str, headers: &[(&'static str, String)]) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {id} (User)"),
        headers,
    )
}

fn okta_factor(id: &str, factor_type: &str, provider: &str, vendor: &str) -> Value {
    json!({"id": id, "factorType": factor_type, "provider": provider, "vendorName": vendor, "status": "ACTIVE", "created": "2022-03-14T09:10:00.000Z", "lastUpdated": "2022-03-14T09:10:00.000Z", "profile": {}})
}

async fn okta_factors(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
    let headers = match okta_guard(&s, &h) {
        Ok(hs) => hs,
        Err(r) => return *r,
    };
    let list = match id.as_str() {
        OKTA_NICK => json!([
            okta_factor("opf1push", "push", "OKTA", "OKTA"),
            okta_factor("uft1totp", "token:software:totp", "GOOGLE", "GOOGLE"),
        ]),
        OKTA_EMILY => json!([okta_factor("opf2push", "push", "OKTA", "OKTA")]),
        OKTA_JANE => json!([
            okta_factor("sms1jane", "sms", "OKTA", "OKTA"),
            okta_factor("ufs1q", "question", "OKTA", "OKTA"),
        ]),
        _ => return okta_user_not_found(&id, &headers),
    };
    respond(StatusCode::OK, list, &headers)
}

fn okta_group(id: &str, name: &str, description: &str) -> Value {
    json!({"id": id, "created": "2021-01-01T00:00:00.000Z", "lastUpdated": "2024-01-01T00:00:00.000Z", "objectClass": ["okta:user_group"], "type": "OKTA_GROUP", "profile": {"name": name, "description": description}})
}

async fn okta_groups(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
    let headers = match okta_guard(&s, &h) {
        Ok(hs) => hs,
        Err(r) => return *r,
    };
    let list = match id.as_str() {
        OKTA_NICK => json!([
            okta_group("00g1eng", "Engineering", "All engineers"),
            okta_group("00g1vpn", "VPN-Users", "Remote access"),
            okta_group("00g1gh", "github-org-members", "GitHub SSO"),
        ]),
        OKTA_EMILY => json!([
            okta_group("00g1eng", "Engineering", "All engineers"),
            okta_group("00g1mgr", "People-Managers", "Managers"),
        ]),
        OKTA_JANE => json!([
            okta_group("00g1fin", "Finance", "Finance team"),
            okta_group("00g1erp", "NetSuite-Users", "ERP access"),
        ]),
        _ => return okta_user_not_found(&id, &headers),
    };
    respond(StatusCode::OK, list, &headers)
}

async fn okta_manager(State(s): St, h: HeaderMap, uri: OriginalUri, Path(id): Path<String>) -> Response {
    let headers = match okta_guard(&s, &h) {
        Ok(hs) => hs,
        Err(r) => return *r,
    };
    let base = okta_base(&uri, &h);
    let list = match id.as_str() {
        OKTA_NICK => {
            json!([{"_links": {"self": {"href": format!("{base}/api/v1/users/{OKTA_EMILY}")}}}])
        }
        OKTA_EMILY | OKTA_JANE => json!([]),
        _ => return okta_user_not_found(&id, &headers),
    };
    respond(StatusCode::OK, list, &headers)
}

// ---------------------------------------------------------------------------------------------
// Entra ID (token endpoint + Microsoft Graph)

const TOKEN_PREFIX: &str = "sim-graph-token-";

async fn entra_token(State(s): St, Path(tenant): Path<String>, Form(form): Form<HashMap<String, String>>) -> Response {
    let err = |status: StatusCode, error: &str, desc: &str, code: u64| {
        respond(
            status,
            json!({"error": error, "error_description": format!("{desc}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nCorrelation ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2025-01-15 03:42:18Z"), "error_codes": [code], "timestamp": "2025-01-15 03:42:18Z"}),
            &[],
        )
    };
    if tenant != DEMO_ENTRA_TENANT {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
            90002,
        );
    }
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("grant_type") != Some("client_credentials") {
        return err(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
            70003,
        );
    }
    if field("scope") != Some("https://graph.microsoft.com/.default") {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid.",
            1002012,
        );
    }
    if field("client_id") != Some(DEMO_ENTRA_CLIENT_ID) {
        return err(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application was not found in the directory.",
            700016,
        );
    }
    if field("client_secret") != Some(DEMO_ENTRA_CLIENT_SECRET) {
        return err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            7000215,
        );
    }
    let n = s.tokens_issued.fetch_add(1, Ordering::Relaxed) + 1;
    respond(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": format!("{TOKEN_PREFIX}{n}")}),
        &[],
    )
}

fn graph_error(status: StatusCode, code: &str, message: &str, headers: &[(&'static str, String)]) -> Response {
    respond(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {"date": "2025-01-15T03:42:18", "request-id": "00000000-0000-0000-0000-000000000001", "client-request-id": "00000000-0000-0000-0000-000000000001"}}}),
        headers,
    )
}

fn graph_guard(s: &SimState, h: &HeaderMap) -> Option<Response> {
    let ok = header(h, "authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| t.starts_with(TOKEN_PREFIX));
    if !ok {
        return Some(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
            &[],
        ));
    }
    if throttled(s, Sim::Graph) {
        return Some(graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
            &[retry(s)],
        ));
    }
    None
}

const GRAPH_NICK: &str = "3f2b8c1e-7a4d-4e9b-9c2f-1d6e8a5b7c40";
const GRAPH_EMILY: &str = "9a1c4e7b-2d5f-4b8a-a3c6-7e0f1b2d4c58";
const GRAPH_JANE: &str = "c6e2a9d4-5b1f-4a7c-8e3d-2f9b6a1c0e71";

fn graph_user_json(id: &str) -> Option<Value> {
    Some(match id {
        GRAPH_NICK => json!({
            "id": GRAPH_NICK, "displayName": "Nick Hathaway",
            "userPrincipalName": "nick.hathaway@calseta.com", "mail": "nick.hathaway@calseta.com",
            "accountEnabled": true, "department": "Engineering", "jobTitle": "Senior Software Engineer",
            "employeeType": "Employee", "officeLocation": null, "city": "San Francisco", "state": "CA",
            "country": "United States", "userType": "Member",
            "createdDateTime": "2022-03-14T09:00:00Z", "lastPasswordChangeDateTime": "2024-10-01T11:23:44Z",
            "onPremisesSyncEnabled": true,
            "signInActivity": {
                "lastSignInDateTime": "2025-01-15T03:40:02Z",
                "lastSuccessfulSignInDateTime": "2025-01-14T22:31:05Z",
                "lastNonInteractiveSignInDateTime": "2025-01-15T03:41:10Z"
            }
        }),
        GRAPH_EMILY => json!({
            "id": GRAPH_EMILY, "displayName": "Emily Rhodes",
            "userPrincipalName": "emily.rhodes@calseta.com", "mail": "emily.rhodes@calseta.com",
            "accountEnabled": true, "department": "Engineering", "jobTitle": "Engineering Manager",
            "employeeType": "Employee", "officeLocation": "SF HQ 4", "city": "San Francisco",
            "state": "CA", "country": "United States", "userType": "Member",
            "createdDateTime": "2019-06-03T15:30:00Z", "lastPasswordChangeDateTime": "2024-12-01T08:00:00Z",
            "onPremisesSyncEnabled": true,
            "signInActivity": {"lastSignInDateTime": "2025-01-15T02:10:00Z", "lastSuccessfulSignInDateTime": "2025-01-15T02:10:00Z"}
        }),
        GRAPH_JANE => json!({
            "id": GRAPH_JANE, "displayName": "Jane Doe",
            "userPrincipalName": "jane.doe@calseta.com", "mail": null,
            "accountEnabled": false, "department": "Finance", "jobTitle": "Accounts Payable Specialist",
            "employeeType": "Contractor", "officeLocation": "Austin - Building 2", "city": "Austin",
            "state": "TX", "country": "United States", "userType": "Member",
            "createdDateTime": "2023-08-21T13:45:00Z", "lastPasswordChangeDateTime": "2024-06-18T09:12:00Z",
            "onPremisesSyncEnabled": null,
            "signInActivity": {"lastSignInDateTime": "2025-01-13T17:02:44Z", "lastSuccessfulSignInDateTime": null}
        }),
        _ => return None,
    })
}

fn graph_resolve(key: &str) -> Option<&'static str> {
    let k = key.to_ascii_lowercase();
    [
        (GRAPH_NICK, "nick.hathaway@calseta.com"),
        (GRAPH_EMILY, "emily.rhodes@calseta.com"),
        (GRAPH_JANE, "jane.doe@calseta.com"),
    ]
    .into_iter()
    .find(|(id, upn)| *id == k || *upn == k)
    .map(|(id, _)| id)
}

/// Applies `$select` like Graph: only the listed properties come back.
fn graph_select(obj: Value, q: &HashMap<String, String>) -> Value {
    let Some(select) = q.get("$select") else {
        return obj;
    };
    let keep: Vec<&str> = select.split(',').map(str::trim).collect();
    match obj {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| k.starts_with('@') || keep.contains(&k.as_str()))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

fn graph_not_found(key: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."),
        &[],
    )
}

async fn graph_user(
    State(s): St,
    h: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = graph_guard(&s, &h) {
        return r;
    }
    let Some(user) = graph_resolve(&key).and_then(graph_user_json) else {
        return graph_not_found(&key);
    };
    let mut body = graph_select(user, &q);
    if let Some(m) = body.as_object_mut() {
        m.insert(
            "@odata.context".into(),
            json!("https://graph.microsoft.com/v1.0/$metadata#users/$entity"),
        );
    }
    respond(StatusCode::OK, body, &[])
}

async fn graph_manager(
    State(s): St,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = graph_guard(&s, &h) {
        return r;
    }
    let manager = match graph_resolve(&id) {
        Some(GRAPH_NICK) => graph_user_json(GRAPH_EMILY),
        // No manager: Graph answers 404 on the navigation property.
        Some(_) => None,
        None => return graph_not_found(&id),
    };
    match manager {
        Some(m) => {
            let mut body = graph_select(m, &q);
            if let Some(o) = body.as_object_mut() {
                o.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                o.insert(
                    "@odata.context".into(),
                    json!("https://graph.microsoft.com/v1.0/$metadata#directoryObjects/$entity"),
                );
            }
            respond(StatusCode::OK, body, &[])
        }
        None => graph_not_found("manager"),
    }
}

async fn graph_member_of(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = graph_guard(&s, &h) {
        return r;
    }
    let group = |id: &str, name: &str| json!({"@odata.type": "#microsoft.graph.group", "id": id, "displayName": name});
    let role =
        |id: &str, name: &str| json!({"@odata.type": "#microsoft.graph.directoryRole", "id": id, "displayName": name});
    let value = match graph_resolve(&id) {
        Some(GRAPH_NICK) => json!([
            group("0b1e2d3c-0000-4000-8000-000000000001", "Engineering"),
            group("0b1e2d3c-0000-4000-8000-000000000002", "VPN-Users"),
            group("0b1e2d3c-0000-4000-8000-000000000003", "github-org-members"),
            {"@odata.type": "#microsoft.graph.administrativeUnit", "id": "0b1e2d3c-0000-4000-8000-0000000000a1", "displayName": "US West"}
        ]),
        Some(GRAPH_EMILY) => json!([
            group("0b1e2d3c-0000-4000-8000-000000000001", "Engineering"),
            group("0b1e2d3c-0000-4000-8000-000000000004", "People-Managers")
        ]),
        Some(_) => json!([
            group("0b1e2d3c-0000-4000-8000-000000000005", "Finance"),
            role("0b1e2d3c-0000-4000-8000-0000000000b1", "Billing Administrator")
        ]),
        None => return graph_not_found(&id),
    };
    respond(
        StatusCode::OK,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects(displayName)", "value": value}),
        &[],
    )
}

async fn graph_methods(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = graph_guard(&s, &h) {
        return r;
    }
    let m = |t: &str, id: &str| json!({"@odata.type": format!("#microsoft.graph.{t}"), "id": id});
    let value = match graph_resolve(&id) {
        Some(GRAPH_NICK) => json!([
            m("passwordAuthenticationMethod", "28c10230-6103-485e-b985-444c60001490"),
            m(
                "microsoftAuthenticatorAuthenticationMethod",
                "6f1d0b1f-8d2c-4c3e-9b1a-000000000001"
            ),
            m("fido2AuthenticationMethod", "6f1d0b1f-8d2c-4c3e-9b1a-000000000002")
        ]),
        Some(GRAPH_EMILY) => json!([
            m("passwordAuthenticationMethod", "28c10230-6103-485e-b985-444c60001490"),
            m(
                "microsoftAuthenticatorAuthenticationMethod",
                "6f1d0b1f-8d2c-4c3e-9b1a-000000000003"
            )
        ]),
        Some(_) => json!([
            m("passwordAuthenticationMethod", "28c10230-6103-485e-b985-444c60001490"),
            m("phoneAuthenticationMethod", "3179e48a-750b-4051-897c-87b9720928f7")
        ]),
        None => return graph_not_found(&id),
    };
    respond(
        StatusCode::OK,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/authentication/methods", "value": value}),
        &[],
    )
}
