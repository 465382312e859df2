//! The simulator's GreyNoise community API v3: the real paths, credential checks and JSON shapes.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn gn_community(State(s): St, h: HeaderMap, Path(ip): Path<String>) -> Response {
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
