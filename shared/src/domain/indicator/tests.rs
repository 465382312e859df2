//! Unit tests for §7 normalization and enrichability.

use super::*;
use IndicatorType::*;

fn one(kind: IndicatorType, raw: &str) -> Option<(IndicatorType, String)> {
    match normalize(kind, raw) {
        Ok(v) if v.len() == 1 => v.into_iter().next(),
        _ => None,
    }
}

fn val(kind: IndicatorType, raw: &str) -> Option<String> {
    one(kind, raw).map(|(_, v)| v)
}

#[test]
fn type_names() {
    for k in IndicatorType::ALL {
        assert_eq!(k.as_str().parse::<IndicatorType>().ok(), Some(k));
        assert_eq!(k.as_str().to_uppercase().parse::<IndicatorType>().ok(), Some(k));
        assert_eq!(
            serde_json::to_value(k).ok(),
            Some(serde_json::Value::String(k.as_str().into()))
        );
    }
    assert!("hash".parse::<IndicatorType>().is_err());
    let ind = ExtractedIndicator {
        indicator_type: HashSha1,
        value: "x".into(),
        source_field: "f".into(),
    };
    assert_eq!(
        serde_json::to_value(&ind).ok(),
        Some(serde_json::json!({"type": "hash_sha1", "value": "x", "source_field": "f"}))
    );
}

#[test]
fn common_prechecks() {
    for p in ["", "   ", "-", "N/A", "null", "NONE", "Unknown", "(null)", " n/a "] {
        let e = normalize(Account, p).err();
        assert!(e.as_ref().is_some_and(IndicatorError::is_absent), "{p:?} -> {e:?}");
    }
    let long = "a".repeat(2049);
    assert_eq!(normalize(Account, &long).err(), Some(IndicatorError::TooLong));
    let ok = "a".repeat(2048);
    assert!(normalize(Account, &ok).is_ok());
    // Counted in bytes (deviation from "2,048 chars"): 2,048 two-byte characters would
    // exceed the `(type, value)` index row limit and fail the whole ingest.
    let wide = "é".repeat(2048);
    assert_eq!(normalize(Account, &wide).err(), Some(IndicatorError::TooLong));
    assert!(normalize(Account, &"é".repeat(1024)).is_ok());
}

#[test]
fn extraction_stops_collecting_past_the_ceiling() {
    let mut set = IndicatorSet::new();
    for i in 0..(MAX_EXTRACTED + 500) {
        set.add(Ip, &format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255), "f");
    }
    assert_eq!(set.len(), MAX_EXTRACTED);
    assert_eq!(set.unexamined(), 500);
    assert_eq!(set.items()[0].value, "10.0.0.0", "first-seen order is kept");
    assert!(!set.push(Ip, "8.8.8.8".into(), "g"), "push respects the ceiling too");
    assert_eq!(set.unexamined(), 501);
}

#[test]
fn ip_rules() {
    assert_eq!(val(Ip, " 8.8.8.8 "), Some("8.8.8.8".into()));
    assert_eq!(val(Ip, "1.2.3.4:443"), Some("1.2.3.4".into()));
    assert_eq!(val(Ip, "[2001:db8::1]:443"), Some("2001:db8::1".into()));
    assert_eq!(val(Ip, "[2001:DB8::1]"), Some("2001:db8::1".into()));
    assert_eq!(val(Ip, "fe80::1%eth0"), Some("fe80::1".into()));
    assert_eq!(val(Ip, "[fe80::1%25eth0]:22"), Some("fe80::1".into()));
    assert_eq!(
        val(Ip, "2001:0DB8:0000:0000:0000:0000:0000:0001"),
        Some("2001:db8::1".into())
    );
    assert_eq!(val(Ip, "2001:db8:0:0:1:0:0:1"), Some("2001:db8::1:0:0:1".into()));
    assert_eq!(val(Ip, "::ffff:203.0.113.9"), Some("203.0.113.9".into()));
    assert_eq!(val(Ip, "::FFFF:CB00:7109"), Some("203.0.113.9".into()));
    assert_eq!(val(Ip, "0.0.0.0"), Some("0.0.0.0".into()));
    assert_eq!(val(Ip, "10.0.0.1"), Some("10.0.0.1".into()), "private kept");
    for bad in [
        "01.2.3.4",
        "1.2.3.04",
        "1.2.3.256",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.4:99999",
        "1.2.3.4:",
        "example.com",
        "::ffff:01.2.3.4",
        "1.2.3.4/24",
        "[::1]x",
        "fe80::1%",
        "0x7f.0.0.1",
    ] {
        assert!(normalize(Ip, bad).is_err(), "{bad}");
        assert!(
            normalize(Ip, bad).err().is_some_and(|e| !e.is_absent()),
            "{bad} counts as dropped"
        );
    }
}

#[test]
fn ip_splitting() {
    let got = normalize(Ip, "1.1.1.1, 8.8.8.8;9.9.9.9\n1.1.1.1 [::1]:80").ok();
    assert_eq!(
        got,
        Some(vec![
            (Ip, "1.1.1.1".to_string()),
            (Ip, "8.8.8.8".to_string()),
            (Ip, "9.9.9.9".to_string()),
            (Ip, "::1".to_string()),
        ])
    );
    let each = normalize_each(Ip, "1.1.1.1,bogus,-");
    assert_eq!(each.len(), 3);
    assert!(each[0].is_ok());
    assert!(each[1].as_ref().err().is_some_and(|e| !e.is_absent()));
    assert!(each[2].as_ref().err().is_some_and(IndicatorError::is_absent));
    // strict form fails as a whole
    assert!(normalize(Ip, "1.1.1.1,bogus").is_err());
}

#[test]
fn domain_rules() {
    assert_eq!(val(Domain, "Example.COM."), Some("example.com".into()));
    assert_eq!(
        val(Domain, "sub_domain.example.com"),
        Some("sub_domain.example.com".into())
    );
    assert_eq!(val(Domain, "bücher.example"), Some("xn--bcher-kva.example".into()));
    assert_eq!(val(Domain, "BÜCHER.example"), Some("xn--bcher-kva.example".into()));
    assert_eq!(
        val(Domain, "xn--bcher-kva.example"),
        Some("xn--bcher-kva.example".into())
    );
    assert_eq!(
        val(Domain, "https://Evil.Example.com:8443/path?q=1"),
        Some("evil.example.com".into())
    );
    assert_eq!(one(Domain, "8.8.4.4"), Some((Ip, "8.8.4.4".into())));
    assert_eq!(one(Domain, "http://8.8.4.4/x"), Some((Ip, "8.8.4.4".into())));
    assert_eq!(one(Domain, "2001:db8::5"), Some((Ip, "2001:db8::5".into())));
    let max_label = "a".repeat(63);
    assert!(val(Domain, &format!("{max_label}.com")).is_some());
    for bad in [
        "localhost",
        "intranet",
        "intranet.",
        "a..b.com",
        ".example.com",
        "exa mple.com",
        "example.com..",
        "ex!ample.com",
        "evil[.]com",
        "01.2.3.4",
        &format!("{}a.com", max_label),
        &format!("{}.com", ["abcdefghij"; 25].join(".")),
    ] {
        assert!(normalize(Domain, bad).is_err(), "{bad}");
    }
}

#[test]
fn url_rules() {
    assert_eq!(
        val(Url, "HTTPS://Evil.EXAMPLE.com./Path/A%20b?Q=Söme&x=%2F#frag"),
        Some("https://evil.example.com/Path/A%20b?Q=Söme&x=%2F".into())
    );
    assert_eq!(val(Url, "http://example.com"), Some("http://example.com".into()));
    assert_eq!(
        val(Url, "http://bücher.example/ä/../b"),
        Some("http://xn--bcher-kva.example/ä/../b".into()),
        "path kept byte-for-byte"
    );
    assert_eq!(
        val(Url, "ftp://user@files.example.org:2121/pub/x.zip"),
        Some("ftp://user@files.example.org:2121/pub/x.zip".into())
    );
    assert_eq!(val(Url, "http://1.2.3.4:8080/a"), Some("http://1.2.3.4:8080/a".into()));
    assert_eq!(
        val(Url, "http://[2001:DB8::1]/a"),
        Some("http://[2001:db8::1]/a".into())
    );
    assert_eq!(val(Url, "http://intranet/a"), Some("http://intranet/a".into()));
    assert_eq!(
        val(Url, "https://example.com?a=1"),
        Some("https://example.com?a=1".into())
    );
    for bad in [
        "hxxp://evil.example.com/",
        "hxxps://evil[.]example[.]com/",
        "http://evil[.]com/",
        "evil.example.com/path",
        "javascript:alert(1)",
        "mailto:a@b.com",
        "file:///etc/passwd",
        "http:///path",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://01.2.3.4/",
        "//example.com/x",
    ] {
        assert!(normalize(Url, bad).is_err(), "{bad}");
    }
}

#[test]
fn hash_rules() {
    let md5 = "D41D8CD98F00B204E9800998ECF8427E";
    let sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
    let sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(one(HashSha256, md5), Some((HashMd5, md5.to_lowercase())));
    assert_eq!(
        one(HashMd5, sha256),
        Some((HashSha256, sha256.into())),
        "length decides"
    );
    assert_eq!(one(HashMd5, &format!("md5:{md5}")), Some((HashMd5, md5.to_lowercase())));
    assert_eq!(one(HashSha1, &format!("SHA1:{sha1}")), Some((HashSha1, sha1.into())));
    assert_eq!(
        one(HashSha1, &format!("sha256:{sha256}")),
        Some((HashSha256, sha256.into()))
    );
    assert_eq!(
        one(HashSha1, &format!("SHA256={sha256}")),
        Some((HashSha256, sha256.into()))
    );
    let sysmon = format!("SHA1={sha1},MD5={md5},SHA256={sha256},IMPHASH=F34D5F2D4577ED6D9CEEC516C1F5A744");
    let got = normalize_each(HashSha256, &sysmon);
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], Ok((HashSha1, sha1.to_string())));
    assert_eq!(got[1], Ok((HashMd5, md5.to_lowercase())));
    assert_eq!(got[2], Ok((HashSha256, sha256.to_string())));
    assert_eq!(got[3], Err(IndicatorError::ImpHash));
    assert!(IndicatorError::ImpHash.is_absent());
    for bad in [
        "abc",
        "zz1d8cd98f00b204e9800998ecf8427e",
        &"a".repeat(128),
        &"a".repeat(33),
        "=d41d8cd98f00b204e9800998ecf8427e",
        "md5 d41d8cd98f00b204e9800998ecf842",
    ] {
        assert!(normalize(HashMd5, bad).is_err(), "{bad}");
    }
}

#[test]
fn email_rules() {
    assert_eq!(val(Email, "John.Doe@Example.COM"), Some("john.doe@example.com".into()));
    assert_eq!(
        val(Email, "\"Doe, John\" <John.Doe@Example.com>"),
        Some("john.doe@example.com".into())
    );
    assert_eq!(val(Email, "Name <a@b.com>"), Some("a@b.com".into()));
    assert_eq!(val(Email, "MAILTO:a@b.com"), Some("a@b.com".into()));
    assert_eq!(val(Email, "mailto:a@b.com?subject=hi"), Some("a@b.com".into()));
    assert_eq!(val(Email, "a@bücher.example"), Some("a@xn--bcher-kva.example".into()));
    assert_eq!(val(Email, "a@b.com."), Some("a@b.com".into()));
    for bad in [
        "a@b@c.com",
        "@b.com",
        "a@",
        "ab.com",
        "a@localhost",
        "a b@c.com",
        "a@[1.2.3.4]",
        "a@1.2.3.4",
        "mailtö:a@b.com",
    ] {
        assert!(normalize(Email, bad).is_err(), "{bad}");
    }
}

#[test]
fn account_rules() {
    assert_eq!(val(Account, "CONTOSO\\JDoe"), Some("contoso\\jdoe".into()));
    assert_eq!(val(Account, "JDoe@Contoso.com"), Some("jdoe@contoso.com".into()));
    assert_eq!(val(Account, "  Admin "), Some("admin".into()));
    assert!(normalize(Account, "a\u{0}b").is_err());
}

#[test]
fn indicator_set_dedup_and_counts() {
    let mut set = IndicatorSet::new();
    set.add(Ip, "8.8.8.8", "a");
    set.add(Ip, "8.8.8.8:53", "b");
    set.add(Domain, "1.1.1.1", "c");
    set.add(Ip, "1.1.1.1", "d");
    set.add(Ip, "bogus", "e");
    set.add(Ip, "-", "f");
    set.add_json(Account, &serde_json::json!(["Bob", "bob", null, 42, {"x": 1}]), "g");
    let items = set.items().to_vec();
    assert_eq!(set.dropped(), 2, "bogus ip and the object");
    let got: Vec<(IndicatorType, &str, &str)> = items
        .iter()
        .map(|i| (i.indicator_type, i.value.as_str(), i.source_field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Ip, "8.8.8.8", "a"),
            (Ip, "1.1.1.1", "c"),
            (Account, "bob", "g"),
            (Account, "42", "g"),
        ]
    );
}

#[test]
fn a_url_also_yields_its_host() {
    let mut set = IndicatorSet::new();
    set.add(Domain, "evil-login.example.com", "d");
    set.add(Url, "HTTPS://Evil-Login.Example.COM./a?b=1", "u1");
    set.add(Url, "http://10.0.0.5:8080/x", "u2");
    set.add(Url, "http://[::FFFF:8.8.4.4]/y", "u3");
    set.add(Url, "http://intranet/wiki", "u4");
    set.add(Url, "https://xn--bcher-kva.example/p", "u5");
    set.add(Url, "https://user:pw@files.example.org/f", "u6");
    let got: Vec<(IndicatorType, &str, &str)> = set
        .items()
        .iter()
        .map(|i| (i.indicator_type, i.value.as_str(), i.source_field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Domain, "evil-login.example.com", "d"),
            (Url, "https://evil-login.example.com/a?b=1", "u1"),
            (Url, "http://10.0.0.5:8080/x", "u2"),
            (Ip, "10.0.0.5", "u2"),
            (Url, "http://[::ffff:8.8.4.4]/y", "u3"),
            (Ip, "8.8.4.4", "u3"),
            (Url, "http://intranet/wiki", "u4"),
            (Url, "https://xn--bcher-kva.example/p", "u5"),
            (Domain, "xn--bcher-kva.example", "u5"),
            (Url, "https://user:pw@files.example.org/f", "u6"),
            (Domain, "files.example.org", "u6"),
        ]
    );
    assert_eq!(set.dropped(), 0, "a host that is no indicator is not a dropped value");
    assert_eq!(url_host_indicator("not a url"), None);
}

#[test]
fn url_with_blanks_before_its_fragment_normalizes_to_a_fixed_point() {
    // The `generic` fuzz target's crash: "…/login #step2" became "…/login " (a trailing blank)
    // and normalizing that again trimmed it.
    let once = normalize_url("http://hr-portal.example/login #step2").unwrap();
    assert_eq!(once, "http://hr-portal.example/login");
    assert_eq!(normalize_url(&once).unwrap(), once);
}
