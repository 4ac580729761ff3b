//! The log as an operator reads it, on the real binary's stderr: with
//! `--log-format json` every line is one JSON object and the access line
//! and audit events carry their fields as JSON fields; text written to a
//! pipe carries no colour codes.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::oauth::encode;
use crate::support::send;
use crate::support::{echo, http, insert_token, Serve};

const ROUTES: &str = r#"
[[routes]]
name = "public"
path = "/public"
upstream = "UPSTREAM"
public = true

[[routes]]
name = "api"
path = "/api"
upstream = "UPSTREAM"
"#;

const WAIT: Duration = Duration::from_secs(30);

fn object(line: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(o)) => o,
        other => panic!("not a JSON object ({other:?}): {line}"),
    }
}

/// The first line, already read or still to come, that satisfies `pred`.
fn line(serve: &mut Serve, pred: impl Fn(&Value) -> bool) -> Map<String, Value> {
    let matches = |l: &str| serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v));
    let found = match serve.log.iter().find(|l| matches(l)) {
        Some(l) => l.clone(),
        None => serve.wait_for_line(WAIT, matches),
    };
    object(&found)
}

/// The access line of the request whose id is `id`.
fn access(serve: &mut Serve, id: &str) -> Map<String, Value> {
    line(serve, |v| {
        v["target"] == "scopegate::access" && v["request_id"].as_str() == Some(id)
    })
}

fn keys(o: &Map<String, Value>) -> Vec<&str> {
    let mut k: Vec<&str> = o.keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn json_lines_carry_the_access_and_audit_fields_and_no_secret() {
    let db = scopegate::testing::TestDb::new().await;
    let upstream = echo().await;
    let admin_token = insert_token(&db, "ops", &["scopegate:admin"], 3600).await;
    let mut serve = Serve::start_with(
        &db.url,
        &ROUTES.replace("UPSTREAM", &format!("http://{}", upstream.addr)),
        &["--log-format", "json"],
        &[("NO_COLOR", None)],
    );
    let gw = |path: &str| format!("http://{}{path}", serve.addr);

    // An audit event: an account created through the admin API.
    let password = "pw-of-alice-1234";
    let r = send(
        http()
            .post(format!("http://{}/admin/accounts", serve.admin))
            .bearer_auth(&admin_token)
            .header("content-type", "application/json")
            .body(json!({"username": "alice", "password": password}).to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let alice = r.json()["id"].as_i64().unwrap();

    // A password grant (its tokens must not reach the log), a failed one
    // (nor its password), a proxied request with the token, an anonymous one.
    let token = |id: &str, password: &str| {
        http()
            .post(gw("/oauth/token"))
            .header("x-request-id", id)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", password),
            ]))
    };
    let (access_token, refresh_token) = send(token("log-token", password)).await.pair();
    let wrong = "wrong-password-5678";
    assert_eq!(send(token("log-wrong", wrong)).await.status, 400);
    let r = send(
        http()
            .get(gw("/api/orders?secret-query=1"))
            .bearer_auth(&access_token)
            .header("x-request-id", "log-proxied"),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        http()
            .get(gw("/public/x"))
            .header("x-request-id", "log-public"),
    )
    .await;
    assert_eq!(r.status, 200);

    let proxied = access(&mut serve, "log-proxied");
    let public = access(&mut serve, "log-public");
    let issued = access(&mut serve, "log-token");
    let refused = access(&mut serve, "log-wrong");
    let audit = line(&mut serve, |v| v["target"] == "scopegate::audit");

    // The access line: the documented fields, numbers as numbers.
    assert_eq!(
        keys(&proxied),
        [
            "account_id",
            "level",
            "method",
            "micros",
            "peer",
            "request_id",
            "route",
            "status",
            "target",
            "timestamp"
        ],
        "{proxied:?}"
    );
    assert_eq!(proxied["level"], "INFO");
    assert_eq!(proxied["method"], "GET");
    assert_eq!(proxied["route"], "api");
    assert_eq!(proxied["status"], 200);
    assert_eq!(proxied["account_id"], alice);
    assert!(proxied["micros"].is_u64(), "{proxied:?}");
    let peer: std::net::SocketAddr = proxied["peer"].as_str().unwrap().parse().unwrap();
    assert!(peer.ip().is_loopback());
    // No token: no account_id; the same fields otherwise, for /oauth/* too.
    let without_account: Vec<&str> = keys(&proxied)
        .into_iter()
        .filter(|k| *k != "account_id")
        .collect();
    for line in [&public, &issued, &refused] {
        assert_eq!(keys(line), without_account, "{line:?}");
    }
    assert_eq!(public["route"], "public");
    assert_eq!(issued["route"], "oauth:token");
    assert_eq!(issued["method"], "POST");
    assert_eq!(issued["status"], 200);
    assert_eq!(refused["route"], "oauth:token");
    assert_eq!(refused["status"], 400);

    // The audit event.
    assert_eq!(audit["target"], "scopegate::audit");
    assert_eq!(audit["message"], "admin change");
    assert_eq!(audit["what"], "account.create");
    assert_eq!(audit["id"], alice);
    assert!(audit["who"].is_i64(), "{audit:?}");

    // Every line the process wrote is one JSON object with a level and a
    // target; none holds a token, a password or the query.
    assert!(serve.log.len() >= 6, "{:?}", serve.log);
    for line in &serve.log {
        let o = object(line);
        assert!(o["level"].is_string() && o["target"].is_string(), "{line}");
        for secret in [
            access_token.as_str(),
            &refresh_token,
            &admin_token,
            password,
            wrong,
            "secret-query",
        ] {
            assert!(!line.contains(secret), "{line}");
        }
    }
}

#[tokio::test]
async fn text_to_a_pipe_has_no_colour_codes() {
    let db = scopegate::testing::TestDb::new().await;
    let upstream = echo().await;
    // NO_COLOR is not set: stderr being a pipe is what turns colour off.
    let mut serve = Serve::start_with(
        &db.url,
        &ROUTES.replace("UPSTREAM", &format!("http://{}", upstream.addr)),
        &[],
        &[("NO_COLOR", None)],
    );
    let r = send(
        http()
            .get(format!("http://{}/public/x", serve.addr))
            .header("x-request-id", "log-text"),
    )
    .await;
    assert_eq!(r.status, 200);
    let line = serve.wait_for_line(WAIT, |l| {
        l.contains("scopegate::access") && l.contains("log-text")
    });
    assert!(line.contains(" INFO scopegate::access: "), "{line}");
    assert!(line.contains("route=\"public\""), "{line}");
    for line in &serve.log {
        assert!(!line.contains('\x1b'), "an escape code in {line:?}");
        assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
    }
}

/// `docs/operations.md` ("Logs") lists every audit event the admin API
/// emits, and no other.
#[test]
fn the_audit_table_names_every_event_the_code_emits() {
    use std::collections::BTreeSet;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut emitted = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("src/admin")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, _) in text.match_indices(".audit(") {
            // The event is the call's first string literal.
            let call = &text[i..];
            let start = call.find('"').unwrap() + 1;
            let end = start + call[start..].find('"').unwrap();
            emitted.insert(call[start..end].to_owned());
        }
    }
    assert!(emitted.len() >= 20, "{emitted:?}");

    let doc = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let table = doc
        .split_once("| `what` | made by | `id` | `grant` |")
        .expect("the audit table")
        .1;
    let mut documented = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap();
        for name in first.split(',') {
            documented.insert(name.trim().trim_matches('`').to_owned());
        }
    }
    assert_eq!(documented, emitted);
}
