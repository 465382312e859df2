//! The simulator's Okta users API: the real paths, credential checks and JSON shapes.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) const OKTA_NICK: &str = "00u1nh4thaw4yCALS3T4";
pub(super) const OKTA_EMILY: &str = "00u1emr0des5CALS3T4";
pub(super) const OKTA_JANE: &str = "00u1jan3d0e6CALS3T4";

pub(super) fn okta_headers(s: &SimState) -> Vec<(&'static str, String)> {
    let used = s.counters[Sim::Okta as usize].load(Ordering::Relaxed) % 600;
    vec![
        ("x-rate-limit-limit", "600".to_string()),
        ("x-rate-limit-remaining", (600 - used).to_string()),
        ("x-rate-limit-reset", (now_epoch() + 60).to_string()),
    ]
}

pub(super) fn okta_error(
    status: StatusCode,
    code: &str,
    summary: &str,
    headers: &[(&'static str, String)],
) -> Response {
    respond(
        status,
        json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeSimulatedError0001", "errorCauses": []}),
        headers,
    )
}

/// Checks the token and the rate limit; on success returns the rate-limit headers.
pub(super) fn okta_guard(s: &SimState, h: &HeaderMap) -> Result<Vec<(&'static str, String)>, Box<Response>> {
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

pub(super) fn okta_base(uri: &OriginalUri, h: &HeaderMap) -> String {
    let path = uri.0.path();
    let prefix = path.find("/api/v1/").map(|i| &path[..i]).unwrap_or("");
    let host = header(h, "host").unwrap_or("localhost");
    format!("http://{host}{prefix}")
}

pub(super) fn okta_user_json(id: &str, base: &str) -> Option<Value> {
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
pub(super) fn okta_resolve(key: &str) -> Option<&'static str> {
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

pub(super) async fn okta_user(State(s): St, h: HeaderMap, uri: OriginalUri, Path(key): Path<String>) -> Response {
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

pub(super) fn okta_user_not_found(id: &str, headers: &[(&'static str, String)]) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {id} (User)"),
        headers,
    )
}

pub(super) fn okta_factor(id: &str, factor_type: &str, provider: &str, vendor: &str) -> Value {
    json!({"id": id, "factorType": factor_type, "provider": provider, "vendorName": vendor, "status": "ACTIVE", "created": "2022-03-14T09:10:00.000Z", "lastUpdated": "2022-03-14T09:10:00.000Z", "profile": {}})
}

pub(super) async fn okta_factors(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
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

pub(super) fn okta_group(id: &str, name: &str, description: &str) -> Value {
    json!({"id": id, "created": "2021-01-01T00:00:00.000Z", "lastUpdated": "2024-01-01T00:00:00.000Z", "objectClass": ["okta:user_group"], "type": "OKTA_GROUP", "profile": {"name": name, "description": description}})
}

pub(super) async fn okta_groups(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
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

pub(super) async fn okta_manager(State(s): St, h: HeaderMap, uri: OriginalUri, Path(id): Path<String>) -> Response {
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
