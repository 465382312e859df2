//! Which providers run, with what credentials, base URLs and budgets (providers spec, table at
//! the top). Credentials come from one Secrets Manager JSON secret (`CALSETA_PROVIDER_SECRETS_ARN`,
//! fields named like the variables below) or from the environment. A provider is *configured*
//! when its required credentials are non-empty.
//!
//! Every provider client goes through the SSRF guard: base URLs are checked at start-up, and the
//! address actually connected to is checked on every connection.

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::governor::Budget;
use super::provider::{Provider, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::providers::{
    AbuseIpDb, AbuseIpDbConfig, Entra, EntraConfig, GreyNoise, GreyNoiseConfig, Okta, OktaConfig, VirusTotal,
    VirusTotalConfig,
};
use crate::config::{var as env, ConfigError};
use crate::domain::indicator::IndicatorType;
use crate::net::ssrf::{self, OutboundPolicy};
use crate::secrets::JsonSecret;

/// Static facts about a built-in provider, for `GET /v1/enrichments/providers`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProviderInfo {
    pub name: &'static str,
    pub display_name: &'static str,
    pub supported_types: &'static [IndicatorType],
}

pub(crate) const BUILT_IN: &[ProviderInfo] = &[
    ProviderInfo {
        name: "virustotal",
        display_name: "VirusTotal",
        supported_types: &[
            IndicatorType::Ip,
            IndicatorType::Domain,
            IndicatorType::Url,
            IndicatorType::HashMd5,
            IndicatorType::HashSha1,
            IndicatorType::HashSha256,
        ],
    },
    ProviderInfo {
        name: "abuseipdb",
        display_name: "AbuseIPDB",
        supported_types: &[IndicatorType::Ip],
    },
    ProviderInfo {
        name: "greynoise",
        display_name: "GreyNoise",
        supported_types: &[IndicatorType::Ip],
    },
    ProviderInfo {
        name: "okta",
        display_name: "Okta",
        supported_types: &[IndicatorType::Account],
    },
    ProviderInfo {
        name: "entra",
        display_name: "Microsoft Entra ID",
        supported_types: &[IndicatorType::Account],
    },
];

/// Credential and setting names read from the secret or the environment.
pub(crate) const CREDENTIAL_NAMES: &[&str] = &[
    "VIRUSTOTAL_API_KEY",
    "ABUSEIPDB_API_KEY",
    "GREYNOISE_API_KEY",
    "OKTA_DOMAIN",
    "OKTA_API_TOKEN",
    "ENTRA_TENANT_ID",
    "ENTRA_CLIENT_ID",
    "ENTRA_CLIENT_SECRET",
];

/// Provider credentials by name. Debug prints names only.
#[derive(Clone, Default)]
pub struct Credentials(HashMap<String, SecretString>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("Credentials").field(&names).finish()
    }
}

impl Credentials {
    /// From the environment only.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any name → value lookup (tests, the local stack).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut m = HashMap::new();
        for name in CREDENTIAL_NAMES {
            if let Some(v) = get(name).filter(|v| !v.trim().is_empty()) {
                m.insert((*name).to_string(), SecretString::from(v.trim().to_string()));
            }
        }
        Credentials(m)
    }

    /// The JSON secret's fields (`virustotal_api_key`, …, as docs/deploy.md names them; the
    /// upper-case variable names are accepted too), with the environment filling what the
    /// secret lacks.
    pub fn from_secret(secret: &JsonSecret) -> Self {
        let mut c = Self::from_env();
        for name in CREDENTIAL_NAMES {
            if let Some(v) = secret.get(&name.to_ascii_lowercase()).or_else(|| secret.get(name)) {
                c.0.insert((*name).to_string(), v);
            }
        }
        c
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name).filter(|v| !v.expose_secret().trim().is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Non-secret settings: base URL overrides (tests, proxies, sovereign clouds), budgets, the
/// outbound policy, whether GreyNoise runs without a key.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub base_urls: HashMap<&'static str, Url>,
    pub entra_login_base_url: Option<Url>,
    pub budgets: HashMap<String, Budget>,
    pub outbound: OutboundPolicy,
    /// GreyNoise's community API works without a key (lower limits); on by default.
    pub greynoise_keyless: bool,
    /// Concurrent calls per provider from one instance.
    pub concurrency: usize,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            base_urls: HashMap::new(),
            entra_login_base_url: None,
            budgets: BUILT_IN
                .iter()
                .map(|p| (p.name.to_string(), Budget::default_for(p.name)))
                .collect(),
            outbound: OutboundPolicy::strict(),
            greynoise_keyless: true,
            concurrency: 16,
        }
    }
}

fn env_url(name: &'static str) -> Result<Option<Url>, ConfigError> {
    env(name)
        .map(|v| {
            Url::parse(v.trim()).map_err(|e| ConfigError::Invalid {
                name,
                problem: e.to_string(),
            })
        })
        .transpose()
}

impl ProviderSettings {
    /// `<PROVIDER>_BASE_URL`, `ENTRA_LOGIN_BASE_URL`, `CALSETA_BUDGET_<PROVIDER>` (`4/min,500/day`
    /// or `unlimited`), `GREYNOISE_KEYLESS`, `CALSETA_PROVIDER_CONCURRENCY`, and the outbound
    /// policy (`CALSETA_OUTBOUND_ALLOW_HOSTS`, `CALSETA_OUTBOUND_ALLOW_PRIVATE`,
    /// `CALSETA_OUTBOUND_ALLOW_LOOPBACK`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut s = ProviderSettings::default();
        for (provider, var) in [
            ("virustotal", "VIRUSTOTAL_BASE_URL"),
            ("abuseipdb", "ABUSEIPDB_BASE_URL"),
            ("greynoise", "GREYNOISE_BASE_URL"),
            ("okta", "OKTA_BASE_URL"),
            ("entra", "ENTRA_GRAPH_BASE_URL"),
        ] {
            if let Some(u) = env_url(var)? {
                s.base_urls.insert(provider, u);
            }
        }
        s.entra_login_base_url = env_url("ENTRA_LOGIN_BASE_URL")?;
        s.budgets = budgets_from_env(true)?;
        if let Some(v) = env("GREYNOISE_KEYLESS") {
            s.greynoise_keyless = parse_bool("GREYNOISE_KEYLESS", &v)?;
        }
        if let Some(v) = env("CALSETA_PROVIDER_CONCURRENCY") {
            s.concurrency = v.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "CALSETA_PROVIDER_CONCURRENCY",
                problem: format!("{v:?} is not a whole number"),
            })?;
        }
        s.outbound = outbound_policy_from_env()?;
        Ok(s)
    }
}

/// Budgets from `CALSETA_BUDGET_<PROVIDER>`; providers without one get their plan default
/// (`with_defaults`) or no limit (the local simulator).
pub(crate) fn budgets_from_env(with_defaults: bool) -> Result<HashMap<String, Budget>, ConfigError> {
    let mut out = HashMap::new();
    for (provider, var) in [
        ("virustotal", "CALSETA_BUDGET_VIRUSTOTAL"),
        ("abuseipdb", "CALSETA_BUDGET_ABUSEIPDB"),
        ("greynoise", "CALSETA_BUDGET_GREYNOISE"),
        ("okta", "CALSETA_BUDGET_OKTA"),
        ("entra", "CALSETA_BUDGET_ENTRA"),
    ] {
        let b = match env(var) {
            Some(v) => Budget::parse(&v).map_err(|problem| ConfigError::Invalid { name: var, problem })?,
            None if with_defaults => Budget::default_for(provider),
            None => Budget::UNLIMITED,
        };
        out.insert(provider.to_string(), b);
    }
    Ok(out)
}

/// The providers of a deployed function: credentials from the JSON secret at
/// `CALSETA_PROVIDER_SECRETS_ARN` (else the environment), settings from the environment.
pub(crate) async fn providers_from_env(
    secrets: Option<&crate::secrets::SecretsClient>,
) -> Result<ProviderSet, ConfigError> {
    let creds = match (env("CALSETA_PROVIDER_SECRETS_ARN"), secrets) {
        (Some(arn), Some(client)) => Credentials::from_secret(&client.json(&arn).await?),
        (Some(_), None) => {
            return Err(ConfigError::Missing(
                "a Secrets Manager client for CALSETA_PROVIDER_SECRETS_ARN",
            ))
        }
        (None, _) => Credentials::from_env(),
    };
    ProviderSet::build(&creds, &ProviderSettings::from_env()?)
}

pub(crate) fn parse_bool(name: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(ConfigError::Invalid {
            name,
            problem: format!("{other:?} is not a boolean"),
        }),
    }
}

/// The outbound policy of user-configurable URLs: public addresses only, unless
/// `CALSETA_OUTBOUND_ALLOW_HOSTS` (comma list, `*.suffix` allowed),
/// `CALSETA_OUTBOUND_ALLOW_PRIVATE` or `CALSETA_OUTBOUND_ALLOW_LOOPBACK` say otherwise.
pub(crate) fn outbound_policy_from_env() -> Result<OutboundPolicy, ConfigError> {
    let mut p = OutboundPolicy::strict();
    if let Some(v) = env("CALSETA_OUTBOUND_ALLOW_HOSTS") {
        p.allow_hosts = v
            .split([',', ' '])
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
    }
    if let Some(v) = env("CALSETA_OUTBOUND_ALLOW_PRIVATE") {
        p.allow_private = parse_bool("CALSETA_OUTBOUND_ALLOW_PRIVATE", &v)?;
    }
    if let Some(v) = env("CALSETA_OUTBOUND_ALLOW_LOOPBACK") {
        p.allow_loopback = parse_bool("CALSETA_OUTBOUND_ALLOW_LOOPBACK", &v)?;
    }
    Ok(p)
}

/// The configured providers, built once per process.
#[derive(Clone)]
pub struct ProviderSet {
    pub providers: Vec<Arc<dyn Provider>>,
    pub budgets: HashMap<String, Budget>,
    pub concurrency: usize,
}

impl std::fmt::Debug for ProviderSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSet")
            .field("providers", &self.names())
            .field("budgets", &self.budgets)
            .finish()
    }
}

impl ProviderSet {
    pub fn new(providers: Vec<Arc<dyn Provider>>, budgets: HashMap<String, Budget>, concurrency: usize) -> Self {
        ProviderSet {
            providers,
            budgets,
            concurrency: concurrency.max(1),
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    pub fn is_configured(&self, name: &str) -> bool {
        self.providers.iter().any(|p| p.name() == name)
    }

    /// Builds every provider whose credentials are present. Base URLs must pass the outbound
    /// policy's name and scheme checks here; resolved addresses are checked at connect time.
    pub fn build(creds: &Credentials, settings: &ProviderSettings) -> Result<Self, ConfigError> {
        let timeouts = ssrf::Timeouts {
            connect: CONNECT_TIMEOUT,
            total: REQUEST_TIMEOUT,
        };
        let client = ssrf::try_guarded_client_with(settings.outbound.clone(), timeouts, Arc::new(ssrf::SystemLookup))
            .map_err(|e| ConfigError::Invalid {
            name: "provider HTTP client",
            problem: e.to_string(),
        })?;
        let check = |name: &'static str, url: &Url| -> Result<(), ConfigError> {
            check_base_url(&settings.outbound, url).map_err(|problem| ConfigError::Invalid { name, problem })
        };
        let mut providers: Vec<Arc<dyn Provider>> = Vec::new();

        if let Some(key) = creds.get("VIRUSTOTAL_API_KEY") {
            let mut c = VirusTotalConfig::new(key.clone());
            if let Some(u) = settings.base_urls.get("virustotal") {
                check("VIRUSTOTAL_BASE_URL", u)?;
                c = c.with_base_url(u.clone());
            }
            providers.push(Arc::new(VirusTotal::with_client(c, client.clone())));
        }
        if let Some(key) = creds.get("ABUSEIPDB_API_KEY") {
            let mut c = AbuseIpDbConfig::new(key.clone());
            if let Some(u) = settings.base_urls.get("abuseipdb") {
                check("ABUSEIPDB_BASE_URL", u)?;
                c = c.with_base_url(u.clone());
            }
            providers.push(Arc::new(AbuseIpDb::with_client(c, client.clone())));
        }
        let gn_key = creds.get("GREYNOISE_API_KEY").cloned();
        if gn_key.is_some() || settings.greynoise_keyless {
            let mut c = GreyNoiseConfig::new(gn_key);
            if let Some(u) = settings.base_urls.get("greynoise") {
                check("GREYNOISE_BASE_URL", u)?;
                c = c.with_base_url(u.clone());
            }
            providers.push(Arc::new(GreyNoise::with_client(c, client.clone())));
        }
        if let Some(token) = creds.get("OKTA_API_TOKEN") {
            let c = match (settings.base_urls.get("okta"), creds.get("OKTA_DOMAIN")) {
                (Some(u), _) => {
                    check("OKTA_BASE_URL", u)?;
                    Some(OktaConfig::with_base_url(u.clone(), token.clone()))
                }
                (None, Some(domain)) => {
                    let c =
                        OktaConfig::new(domain.expose_secret(), token.clone()).map_err(|e| ConfigError::Invalid {
                            name: "OKTA_DOMAIN",
                            problem: e.to_string(),
                        })?;
                    check("OKTA_DOMAIN", &c.base_url)?;
                    Some(c)
                }
                (None, None) => None,
            };
            if let Some(c) = c {
                providers.push(Arc::new(Okta::with_client(c, client.clone())));
            }
        }
        if let (Some(tenant), Some(client_id), Some(secret)) = (
            creds.get("ENTRA_TENANT_ID"),
            creds.get("ENTRA_CLIENT_ID"),
            creds.get("ENTRA_CLIENT_SECRET"),
        ) {
            let mut c = EntraConfig::new(tenant.expose_secret(), client_id.expose_secret(), secret.clone());
            if let Some(u) = settings.base_urls.get("entra") {
                check("ENTRA_GRAPH_BASE_URL", u)?;
                c.base_url = u.clone();
            }
            if let Some(u) = &settings.entra_login_base_url {
                check("ENTRA_LOGIN_BASE_URL", u)?;
                c.login_base_url = u.clone();
            }
            providers.push(Arc::new(Entra::with_client(c, client.clone())));
        }
        Ok(ProviderSet::new(
            providers,
            settings.budgets.clone(),
            settings.concurrency,
        ))
    }
}

/// Scheme and host-name rules of the outbound policy for a configured base URL (IP literals are
/// judged here too; names are judged again on every resolved address).
fn check_base_url(policy: &OutboundPolicy, url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("{url}: scheme must be https or http"));
    }
    let host = url.host_str().ok_or_else(|| format!("{url}: no host"))?;
    if policy.host_allowed(host) {
        return Ok(());
    }
    policy.check_name(host).map_err(|e| e.to_string())?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        policy
            .check_ip(ip)
            .map_err(|class| format!("{url}: {class} address refused"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_providers_with_credentials_are_built() {
        let creds = Credentials::from_lookup(|n| match n {
            "VIRUSTOTAL_API_KEY" => Some("k".into()),
            "OKTA_API_TOKEN" => Some("t".into()),
            "ENTRA_TENANT_ID" => Some("x".into()),
            _ => None,
        });
        let settings = ProviderSettings {
            greynoise_keyless: false,
            ..ProviderSettings::default()
        };
        let set = ProviderSet::build(&creds, &settings).unwrap();
        // Okta without a domain, Entra without a client id and secret: not configured.
        assert_eq!(set.names(), vec!["virustotal"]);
        assert!(format!("{creds:?}").contains("VIRUSTOTAL_API_KEY"));
        assert!(!format!("{creds:?}").contains("\"k\""));
    }

    #[test]
    fn secret_fields_use_the_documented_names() {
        let secret = JsonSecret::parse(
            "arn:aws:secretsmanager:eu-west-1:1:secret:app",
            r#"{"key_hash_secret": "x", "virustotal_api_key": "vt", "ABUSEIPDB_API_KEY": "ab", "okta_domain": ""}"#,
        )
        .unwrap();
        let c = Credentials::from_secret(&secret);
        assert_eq!(
            c.get("VIRUSTOTAL_API_KEY").map(|v| v.expose_secret().to_string()),
            Some("vt".into())
        );
        assert_eq!(
            c.get("ABUSEIPDB_API_KEY").map(|v| v.expose_secret().to_string()),
            Some("ab".into())
        );
        assert!(
            c.get("OKTA_DOMAIN").is_none(),
            "blank values do not configure a provider"
        );
    }

    #[test]
    fn base_urls_pass_the_outbound_policy() {
        let creds = Credentials::from_lookup(|n| (n == "VIRUSTOTAL_API_KEY").then(|| "k".into()));
        let mut settings = ProviderSettings::default();
        settings
            .base_urls
            .insert("virustotal", Url::parse("http://169.254.169.254/latest").unwrap());
        assert!(ProviderSet::build(&creds, &settings).is_err());
        settings
            .base_urls
            .insert("virustotal", Url::parse("http://127.0.0.1:9000/vt").unwrap());
        assert!(ProviderSet::build(&creds, &settings).is_err());
        settings.outbound.allow_loopback = true;
        assert!(ProviderSet::build(&creds, &settings).is_ok());
        settings
            .base_urls
            .insert("virustotal", Url::parse("file:///etc/passwd").unwrap());
        assert!(ProviderSet::build(&creds, &settings).is_err());
    }
}
