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

mod abuseipdb;
mod entra;
mod greynoise;
mod okta;
mod virustotal;

use abuseipdb::*;
use entra::*;
use greynoise::*;
use okta::*;
use virustotal::*;

pub(crate) const DEMO_VIRUSTOTAL_KEY: &str = "demo-virustotal-key";
pub(crate) const DEMO_ABUSEIPDB_KEY: &str = "demo-abuseipdb-key";
pub(crate) const DEMO_GREYNOISE_KEY: &str = "demo-greynoise-key";
pub(crate) const DEMO_OKTA_TOKEN: &str = "demo-okta-api-token";
pub(crate) const DEMO_ENTRA_TENANT: &str = "5d3f8a2c-1b4e-4f6a-9c7d-0e2b4a6c8d1f";
pub(crate) const DEMO_ENTRA_CLIENT_ID: &str = "a7c3e9f1-4b2d-4e8a-b6c0-2f4d6e8a0b1c";
pub(crate) const DEMO_ENTRA_CLIENT_SECRET: &str = "demo-entra-client-secret";

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
