//! `GET /openapi.json`: the document's structure (OpenAPI 3.1), and every
//! answer of the OAuth endpoints checked against it. The admin API's
//! answers are checked in `admin` through [`check`], for every request
//! those tests make.

use std::sync::OnceLock;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::oauth::{encode, login, new_account, post_form, CONFIG, FORM};
use crate::support::{http, insert_token, send, spawn_app, Resp};

/// The checked-in document (the one the admin listener serves).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(scopegate::admin::OPENAPI).expect("valid JSON"))
}

/// The path template of the document that `path` (no query) is an
/// instance of: literal segments must match, `{x}` matches any one.
fn template(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    document()["paths"]
        .as_object()?
        .keys()
        .filter(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
        })
        // The most literal template wins.
        .max_by_key(|t| t.split('/').filter(|s| !s.starts_with('{')).count())
        .map(String::as_str)
}

/// Follow a local `$ref` (`#/components/...`).
fn resolve(v: &'static Value) -> &'static Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local reference");
            resolve(document().pointer(pointer).expect("reference resolves"))
        }
        None => v,
    }
}

/// Assert that an answer is documented and conforms: the operation exists,
/// its status is listed, and a JSON body validates against the response's
/// schema (JSON Schema 2020-12, the dialect of OpenAPI 3.1).
#[track_caller]
pub fn check(method: &str, path: &str, r: &Resp) {
    let path = path.split('?').next().unwrap_or(path);
    let t = template(path).unwrap_or_else(|| panic!("{path} is not documented"));
    let op = &document()["paths"][t][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {t} is not documented");
    let status = r.status.to_string();
    let response = op["responses"]
        .get(&status)
        .map(resolve)
        .unwrap_or_else(|| panic!("{method} {t}: status {status} is not documented"));
    let Some(content) = response.get("content") else {
        assert!(
            r.body.is_empty(),
            "{method} {t} {status}: documented without a body, got {:?}",
            String::from_utf8_lossy(&r.body)
        );
        return;
    };
    let Some(media) = content.get("application/json") else {
        return;
    };
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{method} {t} {status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&r.body)
        )
    });
    // The schema with the document's components beside it, so its local
    // references resolve.
    let mut schema = media["schema"].clone();
    if let Value::Object(m) = &mut schema {
        m.insert("components".into(), document()["components"].clone());
    }
    let validator = jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("{method} {t} {status}: bad schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not conform:\n{}\n{body}",
        errors.join("\n")
    );
}

#[test]
fn the_document_is_openapi_3_1_and_every_operation_has_responses() {
    let doc = document();
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().unwrap();
    for prefix in ["/oauth/", "/.well-known/", "/admin/"] {
        assert!(paths.keys().any(|p| p.starts_with(prefix)), "{prefix}");
    }
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut ids = std::collections::HashSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let params: Vec<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let mut ops = 0;
        for (key, op) in item.as_object().unwrap() {
            if !methods.contains(&key.as_str()) {
                assert!(
                    ["servers", "parameters", "summary", "description"].contains(&key.as_str()),
                    "{path}: {key}"
                );
                continue;
            }
            ops += 1;
            assert!(
                ids.insert(op["operationId"].as_str().unwrap()),
                "{path} {key}: operationId not unique"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{path} {key}: no responses");
            for (status, response) in responses {
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok(),
                    "{path} {key}: {status}"
                );
                assert!(
                    resolve(response)["description"].is_string(),
                    "{path} {key} {status}: no description"
                );
            }
            // Every template parameter is declared, on the path or the operation.
            for p in &params {
                let declared = item["parameters"]
                    .as_array()
                    .into_iter()
                    .chain(op["parameters"].as_array())
                    .flatten()
                    .map(resolve)
                    .any(|d| d["in"] == "path" && d["name"] == p.as_str());
                assert!(declared, "{path} {key}: path parameter {p} not declared");
            }
            if let Some(sec) = op["security"].as_array() {
                for req in sec {
                    for name in req.as_object().unwrap().keys() {
                        assert!(
                            doc["components"]["securitySchemes"][name].is_object(),
                            "{name}"
                        );
                    }
                }
            }
        }
        assert!(ops > 0, "{path}: no operation");
    }
    // Every reference resolves, and every schema compiles.
    fn walk(v: &'static Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("$ref") {
                    resolve(v);
                }
                m.values().for_each(walk);
            }
            Value::Array(a) => a.iter().for_each(walk),
            _ => {}
        }
    }
    walk(doc);
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let mut s = schema.clone();
        s["components"] = doc["components"].clone();
        jsonschema::draft202012::new(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn the_admin_listener_serves_the_document() {
    let app = spawn_app(CONFIG).await;
    let r = send(http().get(format!("http://{}/openapi.json", app.admin))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(&r.json(), document());
    check("GET", "/openapi.json", &r);
}

/// Every OAuth operation's answers, success and error, against the document.
#[tokio::test]
async fn oauth_answers_conform_to_the_document() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "olga", "pw-olga-1", &["orders:read"], &[]).await;

    let r = login(&app, "olga", "pw-olga-1").await;
    check("POST", "/oauth/token", &r);
    let (_, refresh) = r.pair();
    let r = login(&app, "olga", "wrong").await;
    assert_eq!(r.status, 400);
    check("POST", "/oauth/token", &r);
    let r = post_form(&app, "/oauth/token", &[("grant_type", "magic")]).await;
    check("POST", "/oauth/token", &r);
    let r = post_form(
        &app,
        "/oauth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(r.status, 200);
    check("POST", "/oauth/token", &r);
    let access = r.pair().0;

    let r = send(http().get(app.url("/oauth/userinfo")).bearer_auth(&access)).await;
    assert_eq!(r.status, 200);
    check("GET", "/oauth/userinfo", &r);
    let r = send(http().get(app.url("/oauth/userinfo"))).await;
    assert_eq!(r.status, 401);
    check("GET", "/oauth/userinfo", &r);

    let inspector = insert_token(&app.db, "inspector", &["scopegate:introspect"], 3600).await;
    for token in [access.as_str(), "sga_nothing"] {
        let r = send(
            http()
                .post(app.url("/oauth/introspect"))
                .bearer_auth(&inspector)
                .header(CONTENT_TYPE, FORM)
                .body(encode(&[("token", token)])),
        )
        .await;
        assert_eq!(r.status, 200);
        check("POST", "/oauth/introspect", &r);
    }
    let r = send(
        http()
            .post(app.url("/oauth/introspect"))
            .bearer_auth(&access)
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[("token", &access)])),
    )
    .await;
    assert_eq!(r.status, 403);
    check("POST", "/oauth/introspect", &r);

    let change = |current: &'static str| {
        http()
            .post(app.url("/oauth/password"))
            .bearer_auth(&access)
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[
                ("current_password", current),
                ("new_password", "pw-olga-2"),
            ]))
    };
    let r = send(change("wrong")).await;
    assert_eq!(r.status, 400);
    check("POST", "/oauth/password", &r);
    let r = send(change("pw-olga-1")).await;
    assert_eq!(r.status, 204);
    check("POST", "/oauth/password", &r);

    let r = post_form(&app, "/oauth/revoke", &[("token", &access)]).await;
    assert_eq!(r.status, 200);
    check("POST", "/oauth/revoke", &r);
    let r = post_form(&app, "/oauth/revoke", &[]).await;
    assert_eq!(r.status, 400);
    check("POST", "/oauth/revoke", &r);

    let r = send(http().get(app.url("/.well-known/oauth-authorization-server"))).await;
    assert_eq!(r.status, 200);
    check("GET", "/.well-known/oauth-authorization-server", &r);
    let r = send(http().get(app.url("/.well-known/openid-configuration"))).await;
    assert_eq!(r.status, 404);
    check("GET", "/.well-known/openid-configuration", &r);

    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = send(http().get(format!("http://{}{path}", app.admin))).await;
        assert_eq!(r.status, 200, "{path}");
        check("GET", path, &r);
    }
}

/// [`check`] really validates: an extra field (a leaked hash), a missing
/// one, or an undocumented status fail.
#[test]
fn check_refuses_answers_that_do_not_conform() {
    let resp = |status: u16, body: serde_json::Value| Resp {
        status,
        headers: Default::default(),
        body: body.to_string().into_bytes(),
    };
    let account = serde_json::json!({"id": 1, "username": "a", "first_name": null,
        "last_name": null, "is_active": true, "scopes": [], "roles": []});
    check("GET", "/admin/accounts/1", &resp(200, account.clone()));
    let mut leaked = account.clone();
    leaked["password"] = "$argon2id$...".into();
    let mut missing = account.clone();
    missing.as_object_mut().unwrap().remove("roles");
    for (status, body) in [(200, leaked), (200, missing), (418, account)] {
        let r = resp(status, body);
        let failed = std::panic::catch_unwind(|| check("GET", "/admin/accounts/1", &r));
        assert!(
            failed.is_err(),
            "{status} {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}
