use super::*;

fn record(username: &str, scopes: &[&str], client_id: Option<&str>) -> AccessRecord {
    AccessRecord {
        token_id: 7,
        account_id: 42,
        username: username.to_owned(),
        account_active: true,
        token_active: true,
        expires: 2_000,
        created: 1_000,
        left_ms: 60_000,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        client_id: client_id.map(str::to_owned),
    }
}

#[test]
fn identity_headers_are_slices_of_one_buffer() {
    let id = Identity::from_record(&record("alice", &["a:read", "b:write"], Some("sgc_x")))
        .expect("valid values");
    assert_eq!(id.user_header, "alice");
    assert_eq!(id.account_id_header, "42");
    assert_eq!(id.scope_header, "a:read b:write");
    assert_eq!(
        id.client_header.as_ref().map(|v| v.as_bytes()),
        Some(&b"sgc_x"[..])
    );
    assert_eq!((id.username(), id.scope()), ("alice", "a:read b:write"));

    let id = Identity::from_record(&record("bob", &[], None)).expect("valid values");
    assert_eq!(id.user_header, "bob");
    assert_eq!(id.scope_header, "");
    assert!(id.client_header.is_none());
}

#[test]
fn a_username_that_cannot_be_a_header_value_is_refused() {
    assert!(Identity::from_record(&record("a\nb", &["x"], None)).is_none());
    assert!(Identity::from_record(&record("a", &["x"], Some("c\r"))).is_none());
}
