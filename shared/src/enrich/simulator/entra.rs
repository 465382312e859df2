//! The simulator's Entra ID token endpoint and Microsoft Graph: the real paths, credential checks and JSON shapes.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) const TOKEN_PREFIX: &str = "sim-graph-token-";

pub(super) async fn entra_token(
    State(s): St,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
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

pub(super) fn graph_error(
    status: StatusCode,
    code: &str,
    message: &str,
    headers: &[(&'static str, String)],
) -> Response {
    respond(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {"date": "2025-01-15T03:42:18", "request-id": "00000000-0000-0000-0000-000000000001", "client-request-id": "00000000-0000-0000-0000-000000000001"}}}),
        headers,
    )
}

pub(super) fn graph_guard(s: &SimState, h: &HeaderMap) -> Option<Response> {
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

pub(super) const GRAPH_NICK: &str = "3f2b8c1e-7a4d-4e9b-9c2f-1d6e8a5b7c40";
pub(super) const GRAPH_EMILY: &str = "9a1c4e7b-2d5f-4b8a-a3c6-7e0f1b2d4c58";
pub(super) const GRAPH_JANE: &str = "c6e2a9d4-5b1f-4a7c-8e3d-2f9b6a1c0e71";

pub(super) fn graph_user_json(id: &str) -> Option<Value> {
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

pub(super) fn graph_resolve(key: &str) -> Option<&'static str> {
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
pub(super) fn graph_select(obj: Value, q: &HashMap<String, String>) -> Value {
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

pub(super) fn graph_not_found(key: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."),
        &[],
    )
}

pub(super) async fn graph_user(
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

pub(super) async fn graph_manager(
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

pub(super) async fn graph_member_of(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
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

pub(super) async fn graph_methods(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
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
