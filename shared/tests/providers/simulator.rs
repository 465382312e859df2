use std::time::Duration;

use calseta::domain::indicator::IndicatorType;
use calseta::domain::malice::Malice;
use calseta::enrich::geo::geo_block;
use calseta::enrich::provider::{Lookup, Provider, ProviderError};
use calseta::enrich::providers::{AbuseIpDb, Entra, GreyNoise, Okta, VirusTotal};
use calseta::enrich::simulator::{
    router_with, simulator_configs, SimulatorOptions, DEMO_INDICATORS, DEMO_URL, EICAR_MD5, EICAR_SHA1, EICAR_SHA256,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;

use crate::common::client;

struct Sim {
    vt: VirusTotal,
    abuse: AbuseIpDb,
    gn: GreyNoise,
    okta: Okta,
    entra: Entra,
    base: Url,
}

async fn start(opts: SimulatorOptions) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router_with(opts)).await });
    let base = Url::parse(&format!("http://{addr}/")).unwrap();
    let (vt, abuse, gn, okta, entra) = simulator_configs(&base);
    Sim {
        vt: VirusTotal::with_client(vt, client()),
        abuse: AbuseIpDb::with_client(abuse, client()),
        gn: GreyNoise::with_client(gn, client()),
        okta: Okta::with_client(okta, client()),
        entra: Entra::with_client(entra, client()),
        base,
    }
}

fn no_throttle() -> SimulatorOptions {
    SimulatorOptions {
        rate_limit_every: None,
        ..Default::default()
    }
}

fn block(l: &Lookup) -> Value {
    Value::Object(l.block.clone())
}

#[tokio::test]
async fn virustotal_demo_indicators() {
    let s = start(no_throttle()).await;
    let tor = s.vt.lookup(IndicatorType::Ip, "185.220.101.47").await.unwrap();
    assert_eq!(tor.malice, Malice::Malicious);
    assert_eq!(block(&tor)["score"], json!("14/94"));
    assert_eq!(
        (block(&tor)["malicious"].clone(), block(&tor)["suspicious"].clone()),
        (json!(14), json!(2))
    );
    assert_eq!(block(&tor)["country"], json!("DE"));

    let home = s.vt.lookup(IndicatorType::Ip, "67.180.201.3").await.unwrap();
    assert_eq!(home.malice, Malice::Benign);
    assert_eq!(block(&home)["score"], json!("0/94"));
    let scanner = s.vt.lookup(IndicatorType::Ip, "45.155.205.233").await.unwrap();
    assert_eq!(scanner.malice, Malice::Malicious);
    let dns = s.vt.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap();
    assert_eq!(dns.malice, Malice::Benign);
    assert_eq!(block(&dns)["as_owner"], json!("GOOGLE"));

    let evil =
        s.vt.lookup(IndicatorType::Domain, "evil-login-portal.com")
            .await
            .unwrap();
    assert_eq!(evil.malice, Malice::Malicious);
    assert_eq!(
        block(&evil)["categories"],
        json!(["phishing", "phishing and other frauds"])
    );
    assert_eq!(block(&evil)["creation_date"], json!("2024-12-28T00:00:00.000Z"));
    let ms = s.vt.lookup(IndicatorType::Domain, "microsoft.com").await.unwrap();
    assert_eq!(ms.malice, Malice::Benign);
    assert_eq!(
        block(&ms)["categories"],
        json!(["computersandsoftware", "information technology"])
    );

    let url = s.vt.lookup(IndicatorType::Url, DEMO_URL).await.unwrap();
    assert_eq!(url.malice, Malice::Malicious);
    assert_eq!(block(&url)["title"], json!("Sign in to your account"));
    assert_eq!(
        block(&url)["link"],
        json!("https://www.virustotal.com/gui/url/b4fe267e3bba10d27205067689efb3ae7650e6a8d1ddb2c6d5edec72607d8c46")
    );

    for (kind, hash) in [
        (IndicatorType::HashMd5, EICAR_MD5),
        (IndicatorType::HashSha1, EICAR_SHA1),
        (IndicatorType::HashSha256, EICAR_SHA256),
    ] {
        let f = s.vt.lookup(kind, hash).await.unwrap();
        assert_eq!(f.malice, Malice::Malicious);
        assert_eq!(block(&f)["score"], json!("65/72"));
        assert_eq!(block(&f)["threat_label"], json!("virus.eicar/test"));
        assert_eq!(block(&f)["meaningful_name"], json!("eicar.com"));
        assert_eq!(
            block(&f)["link"],
            json!(format!("https://www.virustotal.com/gui/file/{hash}"))
        );
        assert!(f.raw["data"]["attributes"].get("last_analysis_results").is_none());
    }

    for (kind, v) in [
        (IndicatorType::Ip, "1.2.3.4"),
        (IndicatorType::Domain, "unknown-domain.com"),
        (IndicatorType::Url, "https://unknown-domain.com/"),
        (IndicatorType::HashSha256, "aa".repeat(32).as_str()),
    ] {
        let r = s.vt.lookup(kind, v).await.unwrap();
        assert!(!r.found, "{v}");
        assert_eq!(r.malice, Malice::Pending);
    }
}

#[tokio::test]
async fn abuseipdb_and_greynoise_demo_indicators_and_geo() {
    let s = start(no_throttle()).await;
    let tor = s.abuse.lookup(IndicatorType::Ip, "185.220.101.47").await.unwrap();
    assert_eq!(tor.malice, Malice::Malicious);
    assert_eq!(block(&tor)["score"], json!(97));
    assert_eq!(block(&tor)["categories"], json!(["hacking", "vpn"]));
    assert_eq!(block(&tor)["is_tor"], json!(true));
    let home = s.abuse.lookup(IndicatorType::Ip, "67.180.201.3").await.unwrap();
    assert_eq!(home.malice, Malice::Benign);
    assert_eq!(
        (block(&home)["score"].clone(), block(&home)["categories"].clone()),
        (json!(4), json!([]))
    );
    let scanner = s.abuse.lookup(IndicatorType::Ip, "45.155.205.233").await.unwrap();
    assert_eq!(scanner.malice, Malice::Malicious);
    assert_eq!(block(&scanner)["categories"][0], json!("port_scan"));
    let dns = s.abuse.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap();
    assert_eq!(
        (dns.malice, dns.malice_reason.as_deref()),
        (Malice::Benign, Some("whitelisted"))
    );
    let unknown = s.abuse.lookup(IndicatorType::Ip, "1.2.3.4").await.unwrap();
    assert!(unknown.found);
    assert_eq!(unknown.malice, Malice::Pending);
    assert!(s.abuse.rate_limit_state().unwrap().limit == Some(1000));

    // The README's geo line, from the two providers' answers.
    let vt = s.vt.lookup(IndicatorType::Ip, "185.220.101.47").await.unwrap();
    let geo = geo_block(
        vt.block.get("country").and_then(Value::as_str),
        tor.block.get("country_code").and_then(Value::as_str),
        tor.block.get("country_name").and_then(Value::as_str),
    )
    .unwrap();
    assert_eq!(
        Value::Object(geo),
        json!({"country_code": "DE", "country": "Germany", "sources": {"virustotal": "DE", "abuseipdb": "DE"}})
    );

    let gn = s.gn.lookup(IndicatorType::Ip, "185.220.101.47").await.unwrap();
    assert_eq!(gn.malice, Malice::Malicious);
    assert_eq!(block(&gn)["name"], json!("TOR Exit Node"));
    assert_eq!(block(&gn)["noise"], json!(true));
    let gdns = s.gn.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap();
    assert_eq!(gdns.malice, Malice::Benign);
    let gnf = s.gn.lookup(IndicatorType::Ip, "67.180.201.3").await.unwrap();
    assert!(!gnf.found);
    assert_eq!(block(&gnf), json!({"noise": false, "riot": false}));
}

#[tokio::test]
async fn okta_demo_accounts_match_the_readme() {
    let s = start(no_throttle()).await;
    let nick = s
        .okta
        .lookup(IndicatorType::Account, "nick.hathaway@calseta.com")
        .await
        .unwrap();
    assert!(nick.found);
    assert_eq!(nick.malice, Malice::Pending);
    let mut b = nick.block.clone();
    assert_eq!(b.remove("user_id"), Some(json!("00u1nh4thaw4yCALS3T4")));
    assert_eq!(b.remove("login"), Some(json!("nick.hathaway@calseta.com")));
    assert_eq!(b.remove("email"), Some(json!("nick.hathaway@calseta.com")));
    // Exactly the README's "What Your Agent Receives" okta block.
    assert_eq!(
        Value::Object(b),
        json!({
            "status": "ACTIVE",
            "profile": {
                "full_name": "Nick Hathaway",
                "title": "Senior Software Engineer",
                "department": "Engineering",
                "employee_type": "employee",
                "location": "San Francisco, CA, US",
                "manager": "Emily Rhodes",
                "manager_email": "emily.rhodes@calseta.com"
            },
            "account_created": "2022-03-14T09:00:00.000Z",
            "last_login": "2025-01-14T22:31:05.000Z",
            "last_password_change": "2024-10-01T11:23:44.000Z",
            "mfa_factors": [
                {"type": "push", "provider": "OKTA", "status": "ACTIVE"},
                {"type": "totp", "provider": "GOOGLE", "status": "ACTIVE"}
            ],
            "group_membership": ["Engineering", "VPN-Users", "github-org-members"]
        })
    );
    // Short login and DOMAIN\user forms resolve too.
    let short = s
        .okta
        .lookup(IndicatorType::Account, "calseta\\nick.hathaway")
        .await
        .unwrap();
    assert_eq!(short.block["user_id"], json!("00u1nh4thaw4yCALS3T4"));

    let jane = s
        .okta
        .lookup(IndicatorType::Account, "jane.doe@calseta.com")
        .await
        .unwrap();
    assert_eq!(jane.block["status"], json!("LOCKED_OUT"));
    assert_eq!(jane.block["profile"]["full_name"], json!("Jane Doe"));
    assert_eq!(jane.block["profile"]["manager"], json!("Robert Chen"));
    assert!(jane.block["profile"].get("manager_email").is_none());
    assert_eq!(
        jane.block["mfa_factors"],
        json!([{"type": "sms", "provider": "OKTA", "status": "ACTIVE"}, {"type": "security_question", "provider": "OKTA", "status": "ACTIVE"}])
    );

    let ghost = s
        .okta
        .lookup(IndicatorType::Account, "ghost@calseta.com")
        .await
        .unwrap();
    assert!(!ghost.found);
}

#[tokio::test]
async fn entra_demo_accounts() {
    let s = start(no_throttle()).await;
    let nick = s
        .entra
        .lookup(IndicatorType::Account, "nick.hathaway@calseta.com")
        .await
        .unwrap();
    assert!(nick.found);
    assert_eq!(
        block(&nick),
        json!({
            "object_id": "3f2b8c1e-7a4d-4e9b-9c2f-1d6e8a5b7c40",
            "account_enabled": true,
            "status": "ACTIVE",
            "profile": {
                "full_name": "Nick Hathaway",
                "title": "Senior Software Engineer",
                "department": "Engineering",
                "employee_type": "Employee",
                "location": "San Francisco, CA, United States",
                "manager": "Emily Rhodes",
                "manager_email": "emily.rhodes@calseta.com",
                "user_principal_name": "nick.hathaway@calseta.com",
                "mail": "nick.hathaway@calseta.com",
                "user_type": "Member"
            },
            "account_created": "2022-03-14T09:00:00.000Z",
            "last_password_change": "2024-10-01T11:23:44.000Z",
            "last_login": "2025-01-14T22:31:05.000Z",
            "mfa_factors": [
                {"type": "push", "provider": "MICROSOFT", "status": "registered"},
                {"type": "webauthn", "provider": "MICROSOFT", "status": "registered"}
            ],
            "group_membership": ["Engineering", "VPN-Users", "github-org-members"],
            "directory_roles": [],
            "on_premises_sync": true
        })
    );
    let jane = s
        .entra
        .lookup(IndicatorType::Account, "jane.doe@calseta.com")
        .await
        .unwrap();
    assert_eq!(jane.block["status"], json!("DISABLED"));
    assert_eq!(jane.block["profile"]["location"], json!("Austin - Building 2"));
    assert!(jane.block["profile"].get("manager").is_none());
    assert!(jane.block["profile"].get("mail").is_none());
    assert_eq!(jane.block["directory_roles"], json!(["Billing Administrator"]));
    assert_eq!(jane.block["last_login"], json!("2025-01-13T17:02:44.000Z"));
    let by_id = s
        .entra
        .lookup(IndicatorType::Account, "c6e2a9d4-5b1f-4a7c-8e3d-2f9b6a1c0e71")
        .await
        .unwrap();
    assert_eq!(by_id.block["profile"]["full_name"], json!("Jane Doe"));
    let ghost = s
        .entra
        .lookup(IndicatorType::Account, "ghost@calseta.com")
        .await
        .unwrap();
    assert!(!ghost.found);
    assert_eq!(ghost.malice, Malice::Pending);

    // Wrong secret: the simulator answers like the token endpoint does.
    let (_, _, _, _, mut bad) = simulator_configs(&s.base);
    bad.client_secret = SecretString::from("wrong");
    let err = Entra::with_client(bad, client())
        .lookup(IndicatorType::Account, "nick.hathaway@calseta.com")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "auth_failed");
}

#[tokio::test]
async fn every_demo_indicator_is_known_to_some_provider() {
    let s = start(no_throttle()).await;
    let providers: [&dyn Provider; 5] = [&s.vt, &s.abuse, &s.gn, &s.okta, &s.entra];
    for (kind, value) in DEMO_INDICATORS {
        let mut found = false;
        for p in providers.iter().filter(|p| p.supports(*kind)) {
            if let Ok(r) = p.lookup(*kind, value).await {
                found |= r.found;
            }
        }
        assert!(found, "{kind} {value}");
    }
}

#[tokio::test]
async fn periodic_429_with_retry_after_and_wrong_keys() {
    let s = start(SimulatorOptions {
        rate_limit_every: Some(2),
        retry_after_secs: 20,
    })
    .await;
    assert!(s.vt.lookup(IndicatorType::Ip, "8.8.8.8").await.is_ok());
    assert_eq!(
        s.vt.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap_err(),
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(20))
        }
    );
    assert!(s.vt.lookup(IndicatorType::Ip, "8.8.8.8").await.is_ok());
    assert!(s.abuse.lookup(IndicatorType::Ip, "8.8.8.8").await.is_ok());
    assert_eq!(
        s.abuse.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap_err().code(),
        "rate_limited"
    );
    assert!(s.gn.lookup(IndicatorType::Ip, "8.8.8.8").await.is_ok());
    assert_eq!(
        s.gn.lookup(IndicatorType::Ip, "8.8.8.8").await.unwrap_err().code(),
        "rate_limited"
    );

    let (mut vt, ..) = simulator_configs(&s.base);
    vt.api_key = SecretString::from("nope");
    let err = VirusTotal::with_client(vt, client())
        .lookup(IndicatorType::Ip, "8.8.8.8")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "auth_failed");
}
