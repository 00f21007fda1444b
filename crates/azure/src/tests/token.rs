use super::*;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn imds_shape_all_strings() {
    let body = br#"{"access_token":"eyJ0","client_id":"c1","expires_in":"86399","expires_on":"1700086399",
        "ext_expires_in":"86399","not_before":"1700000000","resource":"https://vault.azure.net","token_type":"Bearer"}"#;
    let t = Token::from_response(body, "ignored", at(1_700_000_000)).unwrap();
    assert_eq!(t.access_token.expose(), "eyJ0");
    assert_eq!(
        (t.expires_in, t.expires_on, t.expires_at()),
        (Some(86399), Some(1_700_086_399), 1_700_086_399)
    );
    assert_eq!(t.not_before.as_deref(), Some("1700000000"));
    assert_eq!((t.resource.as_str(), t.client_id.as_deref()), ("https://vault.azure.net", Some("c1")));
}

#[test]
fn v2_shape_numbers_and_no_expires_on() {
    let t = Token::from_response(
        br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"x"}"#,
        "https://management.azure.com/",
        at(1000),
    )
    .unwrap();
    assert_eq!(t.expires_on, None);
    assert_eq!(t.expires_at(), 4599);
    assert_eq!(t.resource, "https://management.azure.com/");
    assert!(!t.expires_within(Duration::from_secs(300), at(1000)));
    assert!(t.expires_within(Duration::from_secs(300), at(4300)));
}

#[test]
fn expires_on_number_string_and_adal_dates() {
    for (value, want) in [
        (r#"1700000000"#, 1_700_000_000),
        (r#""1700000000""#, 1_700_000_000),
        (r#"1700000000.7"#, 1_700_000_000),
        (r#""6/20/2019 11:37:52 PM +00:00""#, 1_561_073_872),
        (r#""6/20/2019 11:37:52 AM +00:00""#, 1_561_030_672),
        (r#""6/20/2019 12:00:00 AM +00:00""#, 1_560_988_800),
        (r#""6/20/2019 12:00:00 PM +00:00""#, 1_561_032_000),
        (r#""6/20/2019 23:37:52 +00:00""#, 1_561_073_872),
        (r#""1/1/1970 0:00:00 +00:00""#, 0),
        (r#""2/29/2024 10:00:00 +00:00""#, 1_709_200_800),
    ] {
        let body = format!(r#"{{"access_token":"x","expires_on":{value}}}"#);
        let t = Token::from_response(body.as_bytes(), "r", at(0)).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(t.expires_on, Some(want), "{value}");
    }
}

#[test]
fn rejects_unusable_responses() {
    let parse = |b: &str| Token::from_response(b.as_bytes(), "r", at(0)).unwrap_err();
    assert!(matches!(parse("not json"), TokenParseError::NotJson(_)));
    assert_eq!(parse(r#"{"expires_in":"10"}"#), TokenParseError::NoAccessToken);
    assert_eq!(parse(r#"{"access_token":"","expires_in":"10"}"#), TokenParseError::NoAccessToken);
    assert_eq!(parse(r#"{"access_token":"x"}"#), TokenParseError::NoExpiry);
    assert_eq!(parse(r#"{"access_token":"x","expires_in":"soon"}"#), TokenParseError::NoExpiry);
    for bad in [r#""tomorrow""#, r#""13/1/2020 1:00:00 +00:00""#, r#""6/20/2019 11:37:52 PM +02:00""#, "true"]
    {
        let body = format!(r#"{{"access_token":"x","expires_in":"5","expires_on":{bad}}}"#);
        assert!(matches!(parse(&body), TokenParseError::BadExpiresOn(_)), "{bad}");
    }
}

#[test]
fn serialises_to_upstream_nmi_shape() {
    let t = Token::from_response(
        br#"{"access_token":"tok","expires_in":3599,"expires_on":"6/20/2019 11:37:52 PM +00:00","resource":"https://r/","token_type":"Bearer","client_id":"c"}"#,
        "https://r/",
        at(1_561_070_273),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        r#"{"access_token":"tok","refresh_token":"","expires_in":"3599","expires_on":"1561073872","not_before":"","resource":"https://r/","token_type":"Bearer"}"#
    );
}

#[test]
fn aged_counts_down_from_now() {
    let t = Token::from_response(br#"{"access_token":"x","expires_in":"100"}"#, "r", at(1000)).unwrap();
    let later = t.aged(at(1040));
    assert_eq!((later.expires_in, later.expires_on), (Some(60), Some(1100)));
    let json = serde_json::to_value(&later).unwrap();
    assert_eq!(json["expires_in"], "60");
    assert_eq!(json["expires_on"], "1100");
}

#[test]
fn debug_redacts_the_access_token() {
    let t = Token::from_response(br#"{"access_token":"very-secret","expires_in":1}"#, "r", at(0)).unwrap();
    assert!(!format!("{t:?}").contains("very-secret"));
}
