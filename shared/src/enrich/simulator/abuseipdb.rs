//! The simulator's AbuseIPDB API v2 (`check`): the real paths, credential checks and JSON shapes.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn abuse_headers(s: &SimState) -> Vec<(&'static str, String)> {
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

pub(super) fn abuse_report(at: &str, categories: &[u64], reporter: u64, country: &str) -> Value {
    json!({"reportedAt": at, "comment": "Automated report", "categories": categories, "reporterId": reporter, "reporterCountryCode": country, "reporterCountryName": ""})
}

pub(super) fn abuse_data(ip: &str) -> Value {
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

pub(super) async fn abuse_check(State(s): St, h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
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
