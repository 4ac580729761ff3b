//! Section K: Bearer token parsing and lookup. Raw header bytes on a
//! socket (a client library would refuse or fix most of them), with the
//! database's own statement counts (`pg_stat_statements`) showing which
//! requests cost a token lookup.

use crate::support::{
    bearer, insert_token, raw_get, recorder, spawn_app_to, statement_calls_settled, Resp, TestApp,
    API_ROUTE, TOKEN_LOOKUP,
};

const INVALID_REQUEST: &str = "Bearer realm=\"scopegate\", error=\"invalid_request\"";
const INVALID_TOKEN: &str = "Bearer realm=\"scopegate\", error=\"invalid_token\"";

/// Every statement that reads or writes a token table (`access_tokens`,
/// `refresh_tokens`, `account_tokens`, `token_scopes`) has this in its
/// text; the push listener's heartbeat (`SELECT 1`) does not.
const TOKEN_TABLES: &str = "token";

/// How many token lookups the gateway's database has executed.
async fn lookups(app: &TestApp) -> i64 {
    statement_calls_settled(&app.db, TOKEN_LOOKUP).await
}

/// Cases K3, K4, K5: credentials that are not exactly `Bearer`, one space
/// and an RFC 6750 §2.1 b64token of at most 4096 bytes are 400
/// `invalid_request` (scopegate's one strict behaviour: the request is
/// malformed, RFC 6750 §3.1), without a token lookup, without reaching the
/// upstream, and without echoing the credentials. A b64token that is not
/// the shape of a scopegate token (`sga_` and 43 characters) is 401
/// `invalid_token`, also without a lookup. Trailing whitespace is not part
/// of a field value (RFC 9110 §5.5): `Bearer T ` is `Bearer T`.
#[tokio::test]
async fn k03_malformed_or_foreign_bearer_tokens_cost_no_lookup() {
    let rec = recorder().await;
    let app = spawn_app_to(API_ROUTE, rec.addr).await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    let long = format!("sga_{}", "a".repeat(4097));
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("two spaces", format!("Bearer  {t}").into_bytes()),
        ("a tab", format!("Bearer\t{t}").into_bytes()),
        ("no token", b"Bearer".to_vec()),
        ("an empty token", b"Bearer ".to_vec()),
        (
            "non-ASCII (UTF-8)",
            format!("Bearer {t}\u{e9}").into_bytes(),
        ),
        (
            "Latin-1 byte",
            [format!("Bearer {t}").as_bytes(), b"\xe9"].concat(),
        ),
        ("a comma", format!("Bearer {t},x").into_bytes()),
        ("a quote", format!("Bearer {t}\"").into_bytes()),
        ("a space inside", format!("Bearer {t} x").into_bytes()),
        ("over 4 KiB", format!("Bearer {long}").into_bytes()),
    ];
    for (what, value) in &malformed {
        let mut header = b"Authorization: ".to_vec();
        header.extend_from_slice(value);
        header.extend_from_slice(b"\r\n");
        let r = get_with_header(&app, &header).await;
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(INVALID_REQUEST),
            "{what}"
        );
        assert_eq!(r.json()["error"], "invalid_request", "{what}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(&t[4..12]) && !body.contains("aaaa"),
            "{what}: {body}"
        );
    }
    for (what, token) in [
        ("not our shape", "not-one-of-ours".to_owned()),
        ("one character short", t[..t.len() - 1].to_owned()),
        ("refresh prefix", t.replacen("sga_", "sgr_", 1)),
    ] {
        let r = raw_get(app.addr, "/api/x", &bearer(&token)).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.header("www-authenticate"), Some(INVALID_TOKEN), "{what}");
    }
    assert_eq!(lookups(&app).await, 0, "a malformed token was looked up");
    assert!(rec.seen().is_empty(), "{:?}", rec.seen());
    // CR or LF in the value never gets that far: the head is malformed
    // (case A10), 400 from the HTTP parser.
    let r = get_with_header(&app, format!("Authorization: Bearer {t}\rx\r\n").as_bytes()).await;
    assert_eq!(r.status, 400);
    // The valid token, with trailing whitespace, is one lookup and passes.
    let r = raw_get(
        app.addr,
        "/api/x",
        &format!("Authorization: Bearer {t} \t\r\n"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(lookups(&app).await, 1);
}

/// `GET /api/x` with one raw header line (CRLF included).
async fn get_with_header(app: &TestApp, header: &[u8]) -> Resp {
    let mut req = b"GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
    req.extend_from_slice(header);
    req.extend_from_slice(b"\r\n");
    crate::support::raw(app.addr, &req).await
}

/// `token` with its last character replaced by another valid one.
fn near_miss(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "A" { "B" } else { "A" })
}

/// What of a response is not per-request (`Date`, `X-Request-Id`).
fn stable(r: &Resp) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers = r
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date") && !n.eq_ignore_ascii_case("x-request-id"))
        .cloned()
        .collect();
    (r.status, headers, r.body.clone())
}

/// Case K9: lookup timing. Tokens are looked up by their SHA-256, so a
/// near-miss token (a valid one with its last character changed) and a
/// random one cost the same: one execution of the same lookup statement
/// each, then none (the negative cache) for either, and byte-identical
/// answers. The timing itself is measured, not asserted:
/// `cargo bench --bench issuer -- near_miss_token`.
#[tokio::test]
async fn k09_a_near_miss_token_costs_what_a_random_one_costs() {
    let rec = recorder().await;
    let app = spawn_app_to(API_ROUTE, rec.addr).await;
    let valid = insert_token(&app.db, "u", &["api"], 3600).await;
    let near = near_miss(&valid);
    let random = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    assert!(scopegate::tokens::is_well_formed(
        &near,
        scopegate::tokens::Kind::Access
    ));
    assert_ne!(near, valid);

    let mut answers = Vec::new();
    let mut costs = Vec::new();
    for token in [&near, &random, &near, &random] {
        let before = lookups(&app).await;
        let tokens_before = statement_calls_settled(&app.db, TOKEN_TABLES).await;
        answers.push(stable(&raw_get(app.addr, "/api/x", &bearer(token)).await));
        costs.push((
            lookups(&app).await - before,
            statement_calls_settled(&app.db, TOKEN_TABLES).await - tokens_before,
        ));
    }
    // First sight: one lookup each, and the same number of statements on
    // the token tables altogether (the statement-count queries run on
    // another database). Again: the negative cache answers, no statement.
    assert_eq!(costs[0].0, 1, "{costs:?}");
    assert_eq!(costs[0], costs[1], "{costs:?}");
    assert_eq!(costs[2], (0, 0), "{costs:?}");
    assert_eq!(costs[2], costs[3], "{costs:?}");
    assert_eq!(answers[0].0, 401);
    for a in &answers[1..] {
        assert_eq!(a, &answers[0]);
    }
    let body = String::from_utf8_lossy(&answers[0].2);
    assert!(!body.contains(&near[4..]), "{body}");
    // The valid token still passes: the near miss did not touch it.
    assert_eq!(
        raw_get(app.addr, "/api/x", &bearer(&valid)).await.status,
        200
    );
    assert!(rec.seen().len() == 1, "{:?}", rec.seen());
}
