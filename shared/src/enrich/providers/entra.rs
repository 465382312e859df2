//! Microsoft Entra ID via Microsoft Graph (spec `providers.md` §6): client-credentials token,
//! user, manager, memberOf and (optionally) authentication methods.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use url::Url;

use super::{
    const_url, execute, is_guid, join_nonblank, join_segments, normalize_timestamp, put, put_str, same_origin, str_at,
    unexpected, upstream_from, HttpResponse,
};
use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;
use crate::enrich::provider::{http_client, parse_retry_after, Lookup, Provider, ProviderError, REQUEST_TIMEOUT};

pub(crate) const DEFAULT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com";
pub(crate) const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com";
pub(crate) const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The user properties asked for in step 1.
pub const USER_SELECT: &str = "id,displayName,userPrincipalName,mail,accountEnabled,department,jobTitle,employeeType,officeLocation,city,state,country,userType,createdDateTime,lastPasswordChangeDateTime,onPremisesSyncEnabled";

/// At most this many memberOf entries (groups + roles) are kept.
pub(crate) const MAX_MEMBERSHIPS: usize = 300;
/// `@odata.nextLink` is followed at most this many times.
pub(crate) const MAX_NEXT_LINKS: usize = 2;

const SUPPORTED: &[IndicatorType] = &[IndicatorType::Account];

/// Settings for [`Entra`].
#[derive(Clone)]
pub struct EntraConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Microsoft Graph, `https://graph.microsoft.com` (the `/v1.0` segment is added per call).
    pub base_url: Url,
    /// The token authority, `https://login.microsoftonline.com`.
    pub login_base_url: Url,
    /// `ENTRA_SIGN_IN_ACTIVITY`: ask for `signInActivity` (needs `AuditLog.Read.All` + P1/P2).
    pub sign_in_activity: bool,
    /// `ENTRA_AUTH_METHODS`: read registered methods (needs
    /// `UserAuthenticationMethod.Read.All`).
    pub auth_methods: bool,
    pub timeout: Duration,
    /// A cached token is replaced this long before it expires (default 5 min; never more than
    /// half the token's lifetime).
    pub token_refresh_margin: Duration,
}

impl EntraConfig {
    pub fn new(tenant_id: &str, client_id: &str, client_secret: SecretString) -> Self {
        EntraConfig {
            tenant_id: tenant_id.trim().to_string(),
            client_id: client_id.trim().to_string(),
            client_secret,
            base_url: const_url(DEFAULT_GRAPH_BASE_URL),
            login_base_url: const_url(DEFAULT_LOGIN_BASE_URL),
            sign_in_activity: false,
            auth_methods: false,
            timeout: REQUEST_TIMEOUT,
            token_refresh_margin: Duration::from_secs(300),
        }
    }
}

impl fmt::Debug for EntraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraConfig")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("base_url", &self.base_url.as_str())
            .field("login_base_url", &self.login_base_url.as_str())
            .field("sign_in_activity", &self.sign_in_activity)
            .field("auth_methods", &self.auth_methods)
            .field("timeout", &self.timeout)
            .field("token_refresh_margin", &self.token_refresh_margin)
            .finish()
    }
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
    generation: u64,
}

/// The Entra ID provider. Holds the access token for its (tenant, client id) in memory for the
/// life of the instance: build one per credential set and share it.
pub struct Entra {
    config: EntraConfig,
    client: reqwest::Client,
    /// Held across a refresh, so concurrent lookups wait for one token request.
    token: tokio::sync::Mutex<Option<CachedToken>>,
    generation: AtomicU64,
    /// Cleared after a 403 on `signInActivity` (missing licence/permission).
    sign_in_activity: AtomicBool,
}

impl fmt::Debug for Entra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entra")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How an account value is looked up in Graph: a UPN (contains `@`) or an object id (GUID).
pub(crate) fn lookup_key(value: &str) -> Result<&str, &'static str> {
    let v = value.trim();
    if v.is_empty() || v == "." || v == ".." {
        return Err("invalid_value");
    }
    if v.contains('@') || is_guid(v) {
        Ok(v)
    } else {
        Err("not_upn")
    }
}

/// Our name for a Graph authentication method type (`@odata.type` suffix); `None` for
/// passwords, which are not a second factor.
pub(crate) fn method_type(odata_type: &str) -> Option<String> {
    let t = odata_type.trim_start_matches("#microsoft.graph.");
    Some(
        match t {
            "passwordAuthenticationMethod" => return None,
            "microsoftAuthenticatorAuthenticationMethod" => "push",
            "phoneAuthenticationMethod" => "phone",
            "fido2AuthenticationMethod" => "webauthn",
            "windowsHelloForBusinessAuthenticationMethod" => "windows_hello",
            "softwareOathAuthenticationMethod" => "totp",
            "hardwareOathAuthenticationMethod" => "hardware_token",
            "emailAuthenticationMethod" => "email",
            "temporaryAccessPassAuthenticationMethod" => "temporary_access_pass",
            "x509CertificateAuthenticationMethod" => "certificate",
            other => other,
        }
        .to_string(),
    )
}

/// `"code: message"` from Graph's `{error: {code, message}}`.
fn graph_error(resp: &HttpResponse) -> Option<String> {
    let v = resp.json_lenient();
    let e = v.get("error")?;
    match (str_at(e, "code"), str_at(e, "message")) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (c, m) => c.or(m).map(str::to_string),
    }
}

impl Entra {
    pub fn new(config: EntraConfig) -> Self {
        Self::with_client(config, http_client())
    }

    pub fn with_client(config: EntraConfig, client: reqwest::Client) -> Self {
        let sign_in = config.sign_in_activity;
        Entra {
            config,
            client,
            token: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            sign_in_activity: AtomicBool::new(sign_in),
        }
    }

    /// The cached token, or a fresh one (single-flight).
    async fn token(&self) -> Result<(SecretString, u64), ProviderError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok((t.value.clone(), t.generation));
            }
        }
        let (value, lifetime) = self.fetch_token().await?;
        let margin = self.config.token_refresh_margin.min(lifetime / 2);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
            generation,
        });
        Ok((value, generation))
    }

    /// Drops the cached token if it is still the one that was rejected.
    async fn invalidate(&self, generation: u64) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.generation == generation) {
            *slot = None;
        }
    }

    async fn fetch_token(&self) -> Result<(SecretString, Duration), ProviderError> {
        let url = join_segments(
            &self.config.login_base_url,
            &[&self.config.tenant_id, "oauth2", "v2.0", "token"],
        )?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", self.config.client_secret.expose_secret())
            .append_pair("scope", GRAPH_SCOPE)
            .append_pair("grant_type", "client_credentials")
            .finish();
        let req = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body)
            .timeout(self.config.timeout);
        let resp = execute(req).await?;
        match resp.status {
            200 => {
                let v = resp.json()?;
                let token = str_at(&v, "access_token")
                    .ok_or_else(|| ProviderError::InvalidResponse("token answer has no access_token".into()))?;
                let expires_in = match v.get("expires_in") {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(s)) => s.trim().parse().ok(),
                    _ => None,
                }
                .unwrap_or(3600);
                Ok((SecretString::from(token.to_string()), Duration::from_secs(expires_in)))
            }
            429 => Err(ProviderError::throttled(parse_retry_after(&resp.headers, Utc::now()))),
            s if (500..600).contains(&s) => Err(upstream_from(&resp, token_error(&resp))),
            // invalid_client / unauthorized_client / AADSTS7000215 (wrong secret), unknown
            // tenant, …: configuration errors, never retried.
            400 | 401 | 403 => Err(ProviderError::AuthFailed(format!(
                "token request failed: {}",
                token_error(&resp).unwrap_or_else(|| format!("HTTP {}", resp.status))
            ))),
            _ => Err(unexpected(&resp, token_error(&resp))),
        }
    }

    async fn send(&self, url: &Url, token: &SecretString) -> Result<HttpResponse, ProviderError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| ProviderError::InvalidResponse("token is not a valid header".into()))?;
        auth.set_sensitive(true);
        let req = self
            .client
            .get(url.clone())
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .timeout(self.config.timeout);
        execute(req).await
    }

    /// GET with the cached token; on 401 drop it, fetch a new one and retry once.
    async fn get_with_refresh(&self, url: &Url) -> Result<HttpResponse, ProviderError> {
        let (token, generation) = self.token().await?;
        let resp = self.send(url, &token).await?;
        if resp.status != 401 {
            return Ok(resp);
        }
        tracing::debug!("graph answered 401; refreshing the token once");
        self.invalidate(generation).await;
        let (token, _) = self.token().await?;
        self.send(url, &token).await
    }

    /// An optional step with the current token: JSON on 200, `None` otherwise (404 included).
    async fn optional_json(&self, url: &Url) -> Option<Value> {
        let (token, _) = self.token().await.ok()?;
        match self.send(url, &token).await {
            Ok(resp) if resp.status == 200 => resp.json().ok(),
            Ok(resp) => {
                tracing::debug!(status = resp.status, "graph optional step gave no data");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "graph optional step failed");
                None
            }
        }
    }

    fn users_url(&self, segments: &[&str], query: &str) -> Result<Url, ProviderError> {
        let mut all = vec!["v1.0", "users"];
        all.extend_from_slice(segments);
        let mut url = join_segments(&self.config.base_url, &all)?;
        url.set_query(Some(query));
        Ok(url)
    }

    async fn fetch_user(&self, key: &str) -> Result<Option<Value>, ProviderError> {
        let mut with_sign_in = self.sign_in_activity.load(Ordering::Relaxed);
        loop {
            let select = if with_sign_in {
                format!("$select={USER_SELECT},signInActivity")
            } else {
                format!("$select={USER_SELECT}")
            };
            let resp = self.get_with_refresh(&self.users_url(&[key], &select)?).await?;
            return match resp.status {
                200 => Ok(Some(resp.json()?)),
                404 => Ok(None),
                403 if with_sign_in => {
                    // No licence or no AuditLog.Read.All: stop asking on this instance.
                    tracing::info!("graph refused signInActivity; continuing without it");
                    self.sign_in_activity.store(false, Ordering::Relaxed);
                    with_sign_in = false;
                    continue;
                }
                400 => Err(ProviderError::Skipped {
                    reason: "invalid_value",
                }),
                401 | 403 => Err(ProviderError::AuthFailed(
                    graph_error(&resp).unwrap_or_else(|| format!("HTTP {}", resp.status)),
                )),
                429 => Err(ProviderError::throttled(parse_retry_after(&resp.headers, Utc::now()))),
                s if (500..600).contains(&s) => Err(upstream_from(&resp, graph_error(&resp))),
                _ => Err(unexpected(&resp, graph_error(&resp))),
            };
        }
    }

    async fn manager(&self, id: &str) -> Option<Value> {
        let url = self
            .users_url(&[id, "manager"], "$select=displayName,mail,userPrincipalName")
            .ok()?;
        self.optional_json(&url).await
    }

    /// memberOf entries, following `@odata.nextLink` at most [`MAX_NEXT_LINKS`] times.
    async fn member_of(&self, id: &str) -> Option<Vec<Value>> {
        let mut url = self.users_url(&[id, "memberOf"], "$select=displayName&$top=100").ok()?;
        let mut items = Vec::new();
        for page in 0..=MAX_NEXT_LINKS {
            let body = match self.optional_json(&url).await {
                Some(b) => b,
                // The first page failing makes the whole step fail; a later one keeps what
                // was read.
                None if page == 0 => return None,
                None => break,
            };
            items.extend(
                body.get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            if items.len() >= MAX_MEMBERSHIPS {
                break;
            }
            match body
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .and_then(|s| Url::parse(s).ok())
            {
                Some(next) if same_origin(&next, &self.config.base_url) => url = next,
                Some(_) => {
                    tracing::warn!("graph nextLink points elsewhere; not followed");
                    break;
                }
                None => break,
            }
        }
        Some(items)
    }

    async fn auth_methods(&self, id: &str) -> Option<Value> {
        if !self.config.auth_methods {
            return None;
        }
        let url = join_segments(
            &self.config.base_url,
            &["v1.0", "users", id, "authentication", "methods"],
        )
        .ok()?;
        let body = self.optional_json(&url).await?;
        let list = body.get("value")?.as_array()?;
        Some(Value::Array(
            list.iter()
                .filter_map(|m| str_at(m, "@odata.type").and_then(method_type))
                .map(|t| json!({"type": t, "provider": "MICROSOFT", "status": "registered"}))
                .collect(),
        ))
    }
}

/// `"error: AADSTS…"` from the token endpoint's `{error, error_description}`.
fn token_error(resp: &HttpResponse) -> Option<String> {
    let v = resp.json_lenient();
    let error = str_at(&v, "error");
    // The description carries trace and correlation ids; keep only its AADSTS code.
    let code = str_at(&v, "error_description")
        .and_then(|d| d.split(':').next())
        .filter(|c| c.starts_with("AADSTS"));
    match (error, code) {
        (Some(e), Some(c)) => Some(format!("{e} ({c})")),
        (e, c) => e.or(c).map(str::to_string),
    }
}

#[async_trait]
impl Provider for Entra {
    fn name(&self) -> &'static str {
        "entra"
    }

    fn display_name(&self) -> &'static str {
        "Microsoft Entra ID"
    }

    fn supported_types(&self) -> &'static [IndicatorType] {
        SUPPORTED
    }

    async fn lookup(&self, kind: IndicatorType, value: &str) -> Result<Lookup, ProviderError> {
        if kind != IndicatorType::Account {
            return Err(ProviderError::Skipped {
                reason: "unsupported_type",
            });
        }
        let key = lookup_key(value).map_err(|reason| ProviderError::Skipped { reason })?;
        let Some(user) = self.fetch_user(key).await? else {
            return Ok(Lookup::not_found(Map::new(), Value::Null));
        };
        let id = str_at(&user, "id")
            .ok_or_else(|| ProviderError::InvalidResponse("user has no `id`".into()))?
            .to_string();

        let (manager, member_of, methods) =
            futures::join!(self.manager(&id), self.member_of(&id), self.auth_methods(&id));

        let mut block = Map::new();
        put_str(&mut block, "object_id", Some(&id));
        let enabled = user.get("accountEnabled").and_then(Value::as_bool);
        put(&mut block, "account_enabled", enabled.map(Value::Bool));
        put(
            &mut block,
            "status",
            enabled.map(|e| Value::from(if e { "ACTIVE" } else { "DISABLED" })),
        );

        let mut p = Map::new();
        put_str(&mut p, "full_name", str_at(&user, "displayName"));
        put_str(&mut p, "title", str_at(&user, "jobTitle"));
        put_str(&mut p, "department", str_at(&user, "department"));
        put_str(&mut p, "employee_type", str_at(&user, "employeeType"));
        let location = str_at(&user, "officeLocation")
            .map(str::to_string)
            .or_else(|| join_nonblank(&[str_at(&user, "city"), str_at(&user, "state"), str_at(&user, "country")]));
        put(&mut p, "location", location.map(Value::String));
        if let Some(m) = &manager {
            put_str(&mut p, "manager", str_at(m, "displayName"));
            put_str(
                &mut p,
                "manager_email",
                str_at(m, "mail").or_else(|| str_at(m, "userPrincipalName")),
            );
        }
        put_str(&mut p, "user_principal_name", str_at(&user, "userPrincipalName"));
        put_str(&mut p, "mail", str_at(&user, "mail"));
        put_str(&mut p, "user_type", str_at(&user, "userType"));
        if !p.is_empty() {
            block.insert("profile".into(), Value::Object(p));
        }

        put(
            &mut block,
            "account_created",
            normalize_timestamp(user.get("createdDateTime")),
        );
        put(
            &mut block,
            "last_password_change",
            normalize_timestamp(user.get("lastPasswordChangeDateTime")),
        );
        if let Some(sia) = user.get("signInActivity") {
            put(
                &mut block,
                "last_login",
                normalize_timestamp(sia.get("lastSuccessfulSignInDateTime"))
                    .or_else(|| normalize_timestamp(sia.get("lastSignInDateTime"))),
            );
        }
        put(&mut block, "mfa_factors", methods.clone());

        let mut member_raw = Vec::new();
        if let Some(items) = &member_of {
            let mut groups = Vec::new();
            let mut roles = Vec::new();
            for item in items.iter().take(MAX_MEMBERSHIPS) {
                let Some(name) = str_at(item, "displayName") else {
                    continue;
                };
                match str_at(item, "@odata.type") {
                    Some("#microsoft.graph.group") => groups.push(Value::from(name)),
                    Some("#microsoft.graph.directoryRole") => roles.push(Value::from(name)),
                    _ => continue,
                }
                member_raw.push(json!({"@odata.type": item.get("@odata.type"), "displayName": name}));
            }
            block.insert("group_membership".into(), Value::Array(groups));
            block.insert("directory_roles".into(), Value::Array(roles));
        }
        put(
            &mut block,
            "on_premises_sync",
            user.get("onPremisesSyncEnabled").cloned(),
        );

        let raw = json!({
            "user": user,
            "manager": manager,
            "member_of": member_of.map(|_| member_raw),
            "authentication_methods": methods,
        });
        Ok(Lookup::found(block, Malice::Pending, None, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(lookup_key("a@b.com"), Ok("a@b.com"));
        assert_eq!(
            lookup_key("8c7a3b2e-1f4d-4c6b-9a8e-2d5f7c1b3a90"),
            Ok("8c7a3b2e-1f4d-4c6b-9a8e-2d5f7c1b3a90")
        );
        assert_eq!(lookup_key("corp\\jdoe"), Err("not_upn"));
        assert_eq!(lookup_key("jdoe"), Err("not_upn"));
    }

    #[test]
    fn methods() {
        assert_eq!(
            method_type("#microsoft.graph.microsoftAuthenticatorAuthenticationMethod").as_deref(),
            Some("push")
        );
        assert_eq!(method_type("#microsoft.graph.passwordAuthenticationMethod"), None);
        assert_eq!(
            method_type("#microsoft.graph.x509CertificateAuthenticationMethod").as_deref(),
            Some("certificate")
        );
    }
}
