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
    let value = |v: Option<HeaderValue>| v.expect("a header value");
    assert_eq!(value(id.user_header()), "alice");
    assert_eq!(value(id.account_id_header()), "42");
    assert_eq!(value(id.scope_header()), "a:read b:write");
    assert_eq!(value(id.client_header()), "sgc_x");
    assert_eq!(
        (id.username(), id.scope(), id.client_id()),
        ("alice", "a:read b:write", Some("sgc_x"))
    );
    assert_eq!(id.scopes().collect::<Vec<_>>(), ["a:read", "b:write"]);
    // One buffer: the values point into it.
    let base = id.text.as_ptr() as usize;
    let user = value(id.user_header());
    let client = value(id.client_header());
    assert_eq!(user.as_bytes().as_ptr() as usize, base);
    assert_eq!(
        client.as_bytes().as_ptr() as usize,
        base + id.text.len() - 5
    );

    let id = Identity::from_record(&record("bob", &[], None)).expect("valid values");
    assert_eq!(value(id.user_header()), "bob");
    assert_eq!(value(id.account_id_header()), "42");
    assert_eq!(value(id.scope_header()), "");
    assert_eq!(id.scopes().count(), 0);
    assert!(id.client_header().is_none());
    assert_eq!(id.client_id(), None);
}

#[test]
fn a_username_that_cannot_be_a_header_value_is_refused() {
    assert!(Identity::from_record(&record("a\nb", &["x"], None)).is_none());
    assert!(Identity::from_record(&record("a", &["x"], Some("c\r"))).is_none());
}
