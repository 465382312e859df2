//! Okta Users, Factors, Groups and the manager linked object (spec `providers.md` §5).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use url::Url;

use super::{
    execute, is_guid, join_nonblank, join_segments, normalize_timestamp, put, put_str, same_origin, str_at, unexpected,
    upstream_from, HttpResponse,
};
use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;
use crate::enrich::provider::{
    http_client, parse_rate_limit_state, parse_retry_after, Lookup, Provider, ProviderError, RateLimitState,
    REQUEST_TIMEOUT,
};

const SUPPORTED: &[IndicatorType] = &[IndicatorType::Account];

/// At most this many group names are kept.
pub(crate) const MAX_GROUPS: usize = 100;

/// How the API token is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OktaAuthScheme {
    /// `Authorization: SSWS <api token>` (classic API token).
    #[default]
    Ssws,
    /// `Authorization: Bearer <token>` (OAuth service app with `okta.users.read`,
    /// `okta.groups.read`).
    Bearer,
}

/// Settings for [`Okta`].
#[derive(Clone)]
pub struct OktaConfig {
    /// `https://{OKTA_DOMAIN}`.
    pub base_url: Url,
    pub api_token: SecretString,
    pub auth_scheme: OktaAuthScheme,
    pub timeout: Duration,
}

impl OktaConfig {
    /// From `OKTA_DOMAIN` (`acme.okta.com`, with or without `https://`) and `OKTA_API_TOKEN`.
    pub fn new(domain: &str, api_token: SecretString) -> Result<Self, url::ParseError> {
        let d = domain.trim().trim_end_matches('/');
        let base = if d.contains("://") {
            Url::parse(d)?
        } else {
            Url::parse(&format!("https://{d}"))?
        };
        Ok(Self::with_base_url(base, api_token))
    }

    pub fn with_base_url(base_url: Url, api_token: SecretString) -> Self {
        OktaConfig {
            base_url,
            api_token,
            auth_scheme: OktaAuthScheme::Ssws,
            timeout: REQUEST_TIMEOUT,
        }
    }
}

impl fmt::Debug for OktaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OktaConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_token", &"[REDACTED]")
            .field("auth_scheme", &self.auth_scheme)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The Okta provider.
pub struct Okta {
    config: OktaConfig,
    client: reqwest::Client,
    rate_limit: Mutex<Option<RateLimitState>>,
}

impl fmt::Debug for Okta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Okta")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The Okta lookup key for an account value: anything up to a `\` removed
/// (`corp\jdoe` → `jdoe`). `Err(reason)` when the value cannot be looked up.
pub(crate) fn lookup_key(value: &str) -> Result<&str, &'static str> {
    let key = value.rsplit('\\').next().unwrap_or(value).trim();
    if key.is_empty() || key == "." || key == ".." {
        return Err("invalid_value");
    }
    if is_guid(key) {
        // An Entra object id: meaningless to Okta.
        return Err("unsupported_type");
    }
    Ok(key)
}

/// Our name for an Okta `factorType`.
pub(crate) fn factor_type(t: &str) -> String {
    match t {
        "push" => "push",
        "token:software:totp" => "totp",
        "token:hotp" => "hotp",
        "sms" => "sms",
        "call" => "call",
        "email" => "email",
        "webauthn" => "webauthn",
        "u2f" => "u2f",
        "token:hardware" => "hardware_token",
        "token" => "token",
        "question" => "security_question",
        "signed_nonce" => "fastpass",
        "web" => "web",
        other => other,
    }
    .to_string()
}

impl Okta {
    pub fn new(config: OktaConfig) -> Self {
        Self::with_client(config, http_client())
    }

    pub fn with_client(config: OktaConfig, client: reqwest::Client) -> Self {
        Okta {
            config,
            client,
            rate_limit: Mutex::new(None),
        }
    }

    fn auth_header(&self) -> Result<HeaderValue, ProviderError> {
        let scheme = match self.config.auth_scheme {
            OktaAuthScheme::Ssws => "SSWS",
            OktaAuthScheme::Bearer => "Bearer",
        };
        let mut v = HeaderValue::from_str(&format!("{scheme} {}", self.config.api_token.expose_secret()))
            .map_err(|_| ProviderError::AuthFailed("API token is not a valid header value".into()))?;
        v.set_sensitive(true);
        Ok(v)
    }

    async fn get(&self, url: Url) -> Result<HttpResponse, ProviderError> {
        let req = self
            .client
            .get(url)
            .header(AUTHORIZATION, self.auth_header()?)
            .header(ACCEPT, "application/json")
            .timeout(self.config.timeout);
        let resp = execute(req).await?;
        self.record_rate_limit(&resp);
        Ok(resp)
    }

    fn record_rate_limit(&self, resp: &HttpResponse) {
        let Some(mut state) = parse_rate_limit_state(&resp.headers, Utc::now()) else {
            return;
        };
        // Spec §5: pause when Remaining ≤ 5 % of Limit, until Reset.
        if let (Some(limit), Some(remaining)) = (state.limit, state.remaining) {
            if remaining.saturating_mul(20) <= limit {
                state.pause_until = state.reset_at;
            }
        }
        *self.rate_limit.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// An optional step: a JSON answer on 200, `None` on anything else.
    async fn optional_json(&self, url: Url) -> Option<Value> {
        match self.get(url).await {
            Ok(resp) if resp.status == 200 => resp.json().ok(),
            Ok(resp) => {
                tracing::debug!(status = resp.status, "okta optional step failed");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "okta optional step failed");
                None
            }
        }
    }

    async fn factors(&self, id: &str) -> Option<Value> {
        let url = join_segments(&self.config.base_url, &["api", "v1", "users", id, "factors"]).ok()?;
        let list = self.optional_json(url).await?;
        let items = list.as_array()?;
        Some(Value::Array(
            items
                .iter()
                .map(|f| {
                    let mut m = Map::new();
                    put(
                        &mut m,
                        "type",
                        str_at(f, "factorType").map(|t| Value::String(factor_type(t))),
                    );
                    put_str(&mut m, "provider", str_at(f, "provider"));
                    put_str(&mut m, "status", str_at(f, "status"));
                    Value::Object(m)
                })
                .collect(),
        ))
    }

    async fn groups(&self, id: &str) -> Option<(Value, Value)> {
        let url = join_segments(&self.config.base_url, &["api", "v1", "users", id, "groups"]).ok()?;
        let list = self.optional_json(url).await?;
        let items = list.as_array()?;
        let names: Vec<Value> = items
            .iter()
            .filter_map(|g| g.get("profile").and_then(|p| str_at(p, "name")))
            .take(MAX_GROUPS)
            .map(|n| Value::String(n.to_string()))
            .collect();
        let raw: Vec<Value> = items
            .iter()
            .take(MAX_GROUPS)
            .map(|g| json!({"id": g.get("id"), "type": g.get("type"), "profile": {"name": g.get("profile").and_then(|p| p.get("name"))}}))
            .collect();
        Some((Value::Array(names), Value::Array(raw)))
    }

    /// The manager's user object via the `manager` linked object, if any.
    async fn linked_manager(&self, id: &str) -> Option<Value> {
        let url = join_segments(
            &self.config.base_url,
            &["api", "v1", "users", id, "linkedObjects", "manager"],
        )
        .ok()?;
        let list = self.optional_json(url).await?;
        let href = list
            .as_array()?
            .first()?
            .get("_links")?
            .get("self")?
            .get("href")?
            .as_str()?;
        let href = Url::parse(href).ok()?;
        if !same_origin(&href, &self.config.base_url) {
            tracing::warn!("okta manager link points outside the Okta domain; not followed");
            return None;
        }
        self.optional_json(href).await
    }
}

fn full_name(profile: &Value) -> Option<String> {
    if let Some(d) = str_at(profile, "displayName") {
        return Some(d.to_string());
    }
    let name = [str_at(profile, "firstName"), str_at(profile, "lastName")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty()).then_some(name)
}

#[async_trait]
impl Provider for Okta {
    fn name(&self) -> &'static str {
        "okta"
    }

    fn display_name(&self) -> &'static str {
        "Okta"
    }

    fn supported_types(&self) -> &'static [IndicatorType] {
        SUPPORTED
    }

    fn rate_limit_state(&self) -> Option<RateLimitState> {
        self.rate_limit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn lookup(&self, kind: IndicatorType, value: &str) -> Result<Lookup, ProviderError> {
        if kind != IndicatorType::Account {
            return Err(ProviderError::Skipped {
                reason: "unsupported_type",
            });
        }
        let key = lookup_key(value).map_err(|reason| ProviderError::Skipped { reason })?;
        let url = join_segments(&self.config.base_url, &["api", "v1", "users", key])?;
        let resp = self.get(url).await?;
        let summary = || {
            let v = resp.json_lenient();
            match (str_at(&v, "errorCode"), str_at(&v, "errorSummary")) {
                (Some(c), Some(s)) => Some(format!("{c}: {s}")),
                (c, s) => c.or(s).map(str::to_string),
            }
        };
        let user = match resp.status {
            200 => resp.json()?,
            404 => return Ok(Lookup::not_found(Map::new(), resp.json_lenient())),
            400 => {
                return Err(ProviderError::Skipped {
                    reason: "invalid_value",
                })
            }
            401 | 403 => {
                return Err(ProviderError::AuthFailed(
                    summary().unwrap_or_else(|| format!("HTTP {}", resp.status)),
                ))
            }
            429 => return Err(ProviderError::throttled(parse_retry_after(&resp.headers, Utc::now()))),
            s if (500..600).contains(&s) => return Err(upstream_from(&resp, summary())),
            _ => return Err(unexpected(&resp, summary())),
        };
        let id = str_at(&user, "id")
            .ok_or_else(|| ProviderError::InvalidResponse("user has no `id`".into()))?
            .to_string();
        let profile = user.get("profile").cloned().unwrap_or(Value::Null);

        let (factors, groups, manager) = futures::join!(self.factors(&id), self.groups(&id), self.linked_manager(&id));

        let mut block = Map::new();
        put_str(&mut block, "user_id", Some(&id));
        put_str(&mut block, "login", str_at(&profile, "login"));
        put_str(&mut block, "email", str_at(&profile, "email"));
        put_str(&mut block, "status", str_at(&user, "status"));

        let mut p = Map::new();
        put(&mut p, "full_name", full_name(&profile).map(Value::String));
        put_str(&mut p, "title", str_at(&profile, "title"));
        put_str(&mut p, "department", str_at(&profile, "department"));
        put_str(&mut p, "employee_type", str_at(&profile, "userType"));
        put(
            &mut p,
            "location",
            join_nonblank(&[
                str_at(&profile, "city"),
                str_at(&profile, "state"),
                str_at(&profile, "countryCode"),
            ])
            .map(Value::String),
        );
        let manager_profile = manager.as_ref().and_then(|m| m.get("profile"));
        match manager_profile.and_then(full_name) {
            Some(name) => {
                put(&mut p, "manager", Some(Value::String(name)));
                put_str(
                    &mut p,
                    "manager_email",
                    manager_profile.and_then(|mp| str_at(mp, "email")),
                );
            }
            None => put_str(&mut p, "manager", str_at(&profile, "manager")),
        }
        if !p.is_empty() {
            block.insert("profile".into(), Value::Object(p));
        }

        put(&mut block, "account_created", normalize_timestamp(user.get("created")));
        put(&mut block, "last_login", normalize_timestamp(user.get("lastLogin")));
        put(
            &mut block,
            "last_password_change",
            normalize_timestamp(user.get("passwordChanged")),
        );
        put(&mut block, "mfa_factors", factors.clone());
        let (group_names, groups_raw) = match groups {
            Some((n, r)) => (Some(n), Some(r)),
            None => (None, None),
        };
        put(&mut block, "group_membership", group_names);

        let raw = json!({
            "user": user,
            "factors": factors,
            "groups": groups_raw,
            "manager": manager.map(|m| json!({"id": m.get("id"), "status": m.get("status"), "profile": m.get("profile")})),
        });
        Ok(Lookup::found(block, Malice::Pending, None, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(lookup_key("corp\\jdoe"), Ok("jdoe"));
        assert_eq!(lookup_key("jdoe@acme.com"), Ok("jdoe@acme.com"));
        assert_eq!(
            lookup_key("8c7a3b2e-1f4d-4c6b-9a8e-2d5f7c1b3a90"),
            Err("unsupported_type")
        );
        assert_eq!(lookup_key("corp\\"), Err("invalid_value"));
    }

    #[test]
    fn factor_names() {
        assert_eq!(factor_type("token:software:totp"), "totp");
        assert_eq!(factor_type("signed_nonce"), "fastpass");
        assert_eq!(factor_type("question"), "security_question");
        assert_eq!(factor_type("claims_provider"), "claims_provider");
    }
}
