//! The simulator's VirusTotal API v3: the real paths, credential checks and JSON shapes.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn vt_guard(s: &SimState, h: &HeaderMap) -> Option<Response> {
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

pub(super) fn vt_not_found(what: &str, id: &str) -> Response {
    respond(
        StatusCode::NOT_FOUND,
        json!({"error": {"code": "NotFoundError", "message": format!("{what} \"{id}\" not found")}}),
        &[],
    )
}

pub(super) fn vt_object(kind: &str, id: &str, self_path: &str, attributes: Value) -> Value {
    json!({"data": {
        "id": id,
        "type": kind,
        "links": {"self": format!("https://www.virustotal.com/api/v3/{self_path}")},
        "attributes": attributes,
    }})
}

/// Engine names as VirusTotal's URL/IP/domain scanners report them (the real list is about 94).
pub(super) const VT_ENGINES: &[&str] = &[
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
pub(super) fn vt_engines(stats: &Value, bad_result: &str) -> Value {
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
pub(super) fn vt_file_engines(stats: &Value, label: &str) -> Value {
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
pub(super) fn vt_whois_domain(domain: &str, registrar: &str, created: &str) -> String {
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
pub(super) fn vt_whois_ip(network: &str, owner: &str, asn: u64, country: &str, registry: &str) -> String {
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

pub(super) fn vt_stats(malicious: u64, suspicious: u64, harmless: u64, undetected: u64) -> Value {
    json!({"malicious": malicious, "suspicious": suspicious, "harmless": harmless, "undetected": undetected, "timeout": 0})
}

pub(super) fn vt_ip_attributes(ip: &str) -> Option<Value> {
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

pub(super) async fn vt_ip(State(s): St, h: HeaderMap, Path(ip): Path<String>) -> Response {
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

pub(super) async fn vt_domain(State(s): St, h: HeaderMap, Path(domain): Path<String>) -> Response {
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

pub(super) async fn vt_url(State(s): St, h: HeaderMap, Path(id): Path<String>) -> Response {
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

pub(super) async fn vt_file(State(s): St, h: HeaderMap, Path(hash): Path<String>) -> Response {
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
