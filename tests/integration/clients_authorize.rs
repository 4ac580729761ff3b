//! `GET`/`POST /oauth/authorize` against the real server: the client and
//! redirect URI are checked before anything else (open-redirect attempts
//! get a 400 page and no `Location`), PKCE is required, the login page's
//! headers and escaping, the anti-CSRF token, logins, and the redirect
//! with a code; and the helpers the code-flow tests share.

use reqwest::header::{CONTENT_TYPE, COOKIE};

use crate::clients::{new_client, TestClient};
use crate::oauth::{db_exec, encode, new_account, CONFIG, FORM};
use crate::support::{send, spawn_app, Resp, TestApp};

pub const REDIRECT: &str = "https://app.example/cb";
/// RFC 7636 Appendix B.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A client that never follows redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub async fn get_authorize(app: &TestApp, params: &[(&str, &str)]) -> Resp {
    send(browser().get(format!(
        "{}?{}",
        app.url("/oauth/authorize"),
        encode(params)
    )))
    .await
}

/// The usual request parameters for `client`.
pub fn request<'a>(client: &'a TestClient, state: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", REDIRECT),
        ("state", state),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of a login page.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}

/// The browser-nonce cookie a page set (`name=value`).
pub fn cookie(r: &Resp) -> String {
    r.header("set-cookie")
        .expect("the page sets its cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Post the login form of `page` with these credentials (and the page's
/// cookie unless `cookie` says otherwise).
pub async fn post_login(
    app: &TestApp,
    fields: &[(String, String)],
    cookie: Option<&str>,
    username: &str,
    password: &str,
) -> Resp {
    let mut params: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    params.push(("username", username));
    params.push(("password", password));
    let mut req = browser()
        .post(app.url("/oauth/authorize"))
        .header(CONTENT_TYPE, FORM)
        .body(encode(&params));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    send(req).await
}

/// The query parameters of a `Location`.
pub fn location_params(r: &Resp) -> Vec<(String, String)> {
    let loc = r.header("location").expect("a Location");
    let query = loc.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Log in through the page for `client` and return the code.
pub async fn code_for(
    app: &TestApp,
    client: &TestClient,
    params: &[(&str, &str)],
    username: &str,
    password: &str,
) -> String {
    let page = get_authorize(app, params).await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let html = String::from_utf8(page.body.clone()).unwrap();
    let r = post_login(
        app,
        &hidden_fields(&html),
        Some(&cookie(&page)),
        username,
        password,
    )
    .await;
    assert_eq!(r.status, 302, "{}", String::from_utf8_lossy(&r.body));
    let p = location_params(&r);
    assert!(r.header("location").unwrap().starts_with(REDIRECT));
    let _ = client;
    param(&p, "code").expect("a code").to_owned()
}

/// A code for `setup`'s account (alice) asking for the scope `s`, through
/// the login page.
pub async fn alice_code(app: &TestApp, client: &TestClient) -> String {
    code_for(app, client, &request(client, "s"), "alice", "correct horse").await
}

pub async fn setup(app: &TestApp) -> TestClient {
    new_account(
        app,
        "alice",
        "correct horse",
        &["orders:read", "orders:write"],
        &[],
    )
    .await;
    new_client(
        app,
        "webapp",
        &["orders:read", "profile"],
        &[REDIRECT, "https://app.example/other"],
        true,
    )
    .await
}

fn assert_refused_page(r: &Resp, what: &str) {
    assert_eq!(
        r.status,
        400,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.header("location").is_none(), "{what}: redirected");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let html = String::from_utf8_lossy(&r.body);
    assert!(html.contains("cannot be processed"), "{what}: {html}");
    assert!(!html.contains("evil"), "{what}: echoes the attacker's URI");
}

#[tokio::test]
async fn open_redirect_attempts_get_a_400_page_and_no_location() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let base = request(&client, "s");
    let with = |name: &str, value: &str| {
        let mut p: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| *k != name)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.push((name.into(), value.into()));
        p
    };
    for uri in [
        "https://evil.example/cb",
        "https://app.example/cb/../../evil",
        "https://app.example/cb/",
        "https://app.example/cbx",
        "https://app.example/cb?x=1",
        "https://app.example/cb#x",
        "https://app.example/cb%2F..%2Fevil",
        "https://app.example.evil.example/cb",
        "https://app.example@evil.example/cb",
        "HTTPS://APP.EXAMPLE/cb",
        "https://app.example:443/cb",
        "http://app.example/cb",
        "https://app.example/CB",
        " https://app.example/cb",
        "//evil.example/cb",
    ] {
        let p = with("redirect_uri", uri);
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_refused_page(&get_authorize(&app, &p).await, uri);
    }
    // Unknown client, no client, a client_id that is not even shaped like one.
    for id in ["sgc_AAAAAAAAAAAAAAAAAAAAAA", "evil", ""] {
        let p = with("client_id", id);
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_refused_page(&get_authorize(&app, &p).await, id);
    }
    // No redirect_uri while two are registered; repeated parameters.
    let p: Vec<(&str, &str)> = base
        .iter()
        .filter(|(k, _)| *k != "redirect_uri")
        .cloned()
        .collect();
    assert_refused_page(&get_authorize(&app, &p).await, "absent");
    let mut p = base.clone();
    p.push(("redirect_uri", "https://evil.example/cb"));
    assert_refused_page(&get_authorize(&app, &p).await, "repeated");
    let raw = format!(
        "{}?client_id={}&client_id=x&redirect_uri={}",
        app.url("/oauth/authorize"),
        client.client_id,
        REDIRECT
    );
    assert_refused_page(&send(browser().get(raw)).await, "repeated client_id");
    // The POST side refuses the same way, before the CSRF check.
    let mut fields: Vec<(String, String)> = with("redirect_uri", "https://evil.example/cb");
    fields.push(("csrf".into(), "x".into()));
    assert_refused_page(
        &post_login(&app, &fields, None, "alice", "correct horse").await,
        "post",
    );

    // A client with exactly one URI may leave it out.
    let single = new_client(&app, "single", &[], &["http://127.0.0.1:9/cb"], true).await;
    let r = get_authorize(
        &app,
        &[
            ("response_type", "code"),
            ("client_id", &single.client_id),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn other_errors_are_redirected_with_state_and_iss() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let issuer = app.state.oauth.authorize.issuer.clone();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        // PKCE: missing, plain, absent method (= plain), malformed.
        (
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "short")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("scope", "orders:write")], "invalid_scope"),
        (vec![("scope", "orders:read \"x")], "invalid_scope"),
    ];
    for (overrides, error) in cases {
        let mut p: Vec<(&str, &str)> = request(&client, "st<>&")
            .into_iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .collect();
        p.extend(overrides.iter().filter(|(_, v)| !v.is_empty()));
        let r = get_authorize(&app, &p).await;
        assert_eq!(
            r.status,
            302,
            "{overrides:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r
            .header("location")
            .unwrap()
            .starts_with("https://app.example/cb?"));
        let q = location_params(&r);
        assert_eq!(param(&q, "error"), Some(error), "{overrides:?}");
        assert_eq!(param(&q, "state"), Some("st<>&"));
        assert_eq!(param(&q, "iss"), Some(issuer.as_str()));
        assert!(param(&q, "code").is_none());
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
}

#[tokio::test]
async fn the_login_page_is_self_contained_framed_nowhere_and_escapes_what_it_echoes() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let state = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let mut p = request(&client, state);
    p.push(("scope", "orders:read"));
    let r = get_authorize(&app, &p).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    let set_cookie = r.header("set-cookie").unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let html = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Loads nothing from anywhere, needs no JavaScript.
    for needle in [
        "<img",
        "<link",
        " src=\"",
        "href=",
        "javascript:",
        "<iframe",
    ] {
        assert!(!html.contains(needle), "{needle}: {html}");
    }
    assert!(html.contains("<form method=\"post\" action=\"/oauth/authorize\">"));
    assert!(html.contains("webapp") && html.contains("orders:read"));
    // The hidden fields carry the request back exactly.
    let fields = hidden_fields(&html);
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("state"), Some(state));
    assert_eq!(get("client_id"), Some(client.client_id.as_str()));
    assert!(get("csrf").is_some());
}

#[tokio::test]
async fn the_anti_csrf_token_is_required_bound_to_the_request_and_the_browser() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let page = get_authorize(&app, &request(&client, "one")).await;
    let fields = hidden_fields(&String::from_utf8(page.body.clone()).unwrap());
    let cookie = cookie(&page);
    let csrf = fields.iter().find(|(k, _)| k == "csrf").unwrap().1.clone();
    let without = |name: &str| -> Vec<(String, String)> {
        fields.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let replace = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut f = without(name);
        f.push((name.into(), value.into()));
        f
    };
    let mut forged = csrf.clone().into_bytes();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let other_page = get_authorize(&app, &request(&client, "two")).await;
    let other_csrf = hidden_fields(&String::from_utf8(other_page.body.clone()).unwrap())
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .unwrap()
        .1;
    type Case<'a> = (&'a str, Vec<(String, String)>, Option<String>);
    let cases: Vec<Case> = vec![
        ("missing", without("csrf"), Some(cookie.clone())),
        ("forged", replace("csrf", &forged), Some(cookie.clone())),
        ("garbage", replace("csrf", "<x>"), Some(cookie.clone())),
        (
            "another request's",
            replace("csrf", &other_csrf),
            Some(cookie.clone()),
        ),
        (
            "state changed",
            replace("state", "evil"),
            Some(cookie.clone()),
        ),
        (
            "scope added",
            {
                let mut f = fields.clone();
                f.push(("scope".into(), "profile".into()));
                f
            },
            Some(cookie.clone()),
        ),
        ("no cookie", fields.clone(), None),
        (
            "another browser's cookie",
            fields.clone(),
            Some("scopegate_authorize=AAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
    ];
    for (what, f, c) in cases {
        let r = post_login(&app, &f, c.as_deref(), "alice", "correct horse").await;
        assert_eq!(r.status, 400, "{what}");
        assert!(r.header("location").is_none(), "{what}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    // Nothing was issued, and the genuine form still works.
    assert_eq!(
        db_exec(&app, "SELECT 1 FROM authorization_codes", &[]).await,
        0
    );
    let r = post_login(&app, &fields, Some(&cookie), "alice", "correct horse").await;
    assert_eq!(r.status, 302);
}

#[tokio::test]
async fn logins_on_the_page() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let page = get_authorize(&app, &request(&client, "xyz")).await;
    let fields = hidden_fields(&String::from_utf8(page.body.clone()).unwrap());
    let c = cookie(&page);
    // Wrong password, unknown user, the client's service account: the page
    // again, with an error and a fresh form.
    for (user, pw) in [
        ("alice", "wrong"),
        ("nobody", "correct horse"),
        ("client:webapp", "x"),
    ] {
        let r = post_login(&app, &fields, Some(&c), user, pw).await;
        assert_eq!(r.status, 200, "{user}");
        let html = String::from_utf8(r.body.clone()).unwrap();
        assert!(html.contains("incorrect"), "{html}");
        assert!(r.header("location").is_none());
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert!(hidden_fields(&html).iter().any(|(k, _)| k == "csrf"));
    }
    let before = app.state.oauth.hasher.computed();
    let r = post_login(&app, &fields, Some(&c), "alice", "correct horse").await;
    assert_eq!(
        app.state.oauth.hasher.computed(),
        before + 1,
        "argon2 on the pool"
    );
    assert_eq!(r.status, 302);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let q = location_params(&r);
    let code = param(&q, "code").unwrap();
    assert!(code.starts_with("sgo_"));
    assert_eq!(param(&q, "state"), Some("xyz"));
    assert_eq!(
        param(&q, "iss"),
        Some(app.state.oauth.authorize.issuer.as_str())
    );
    // Stored hashed, bound to the client, URI, challenge and the scopes
    // the account holds among those the client may have.
    let conn = app.db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT k.code, k.redirect_uri, k.code_challenge, c.client_id,
                    ARRAY(SELECT s.scope_value FROM authorization_code_scopes x JOIN scopes s USING (scope_id) WHERE x.code_id = k.code_id)
               FROM authorization_codes k JOIN clients c USING (client_pk)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), crate::oauth::hash_hex(code));
    assert_eq!(row.get::<_, String>(1), REDIRECT);
    assert_eq!(row.get::<_, String>(2), CHALLENGE);
    assert_eq!(row.get::<_, String>(3), client.client_id);
    assert_eq!(row.get::<_, Vec<String>>(4), ["orders:read"]);
}

#[tokio::test]
async fn the_page_shares_the_login_throttle() {
    let app = spawn_app("[login]\nmax_failures = 2\nhash_concurrency = 1\n").await;
    let client = setup(&app).await;
    let page = get_authorize(&app, &request(&client, "s")).await;
    let fields = hidden_fields(&String::from_utf8(page.body.clone()).unwrap());
    let c = cookie(&page);
    for _ in 0..2 {
        assert_eq!(
            post_login(&app, &fields, Some(&c), "alice", "nope")
                .await
                .status,
            200
        );
    }
    let r = post_login(&app, &fields, Some(&c), "alice", "correct horse").await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").unwrap().parse::<u32>().unwrap() >= 1);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // The same throttle as the password grant.
    crate::oauth::login(&app, "alice", "correct horse")
        .await
        .assert_error(429, "too_many_requests");
}

#[tokio::test]
async fn metadata_follows_rfc8414() {
    let app = spawn_app(CONFIG).await;
    let r = send(browser().get(app.url("/.well-known/oauth-authorization-server"))).await;
    assert_eq!(r.status, 200);
    let m = r.json();
    let issuer = app.state.oauth.authorize.issuer.clone();
    assert_eq!(m["issuer"], issuer.as_str());
    assert_eq!(
        m["authorization_endpoint"],
        format!("{issuer}/oauth/authorize")
    );
    assert_eq!(m["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(m["revocation_endpoint"], format!("{issuer}/oauth/revoke"));
    assert_eq!(
        m["introspection_endpoint"],
        format!("{issuer}/oauth/introspect")
    );
    assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        m["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    let grants: Vec<&str> = m["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for g in [
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "password",
    ] {
        assert!(grants.contains(&g), "{g}");
    }
    let scopes = m["scopes_supported"].as_array().unwrap();
    assert!(scopes.contains(&serde_json::json!("scopegate:admin")));
}

#[tokio::test]
async fn the_oauth_section_sets_the_issuer_and_can_remove_the_password_grant() {
    let app = spawn_app(&format!(
        "[oauth]\nissuer = \"https://login.example.com\"\npassword_grant = false\ncode_ttl_secs = 30\n{CONFIG}"
    ))
    .await;
    let client = setup(&app).await;
    let m = send(browser().get(app.url("/.well-known/oauth-authorization-server")))
        .await
        .json();
    assert_eq!(m["issuer"], "https://login.example.com");
    assert_eq!(m["token_endpoint"], "https://login.example.com/oauth/token");
    let grants = m["grant_types_supported"].as_array().unwrap();
    assert!(
        !grants.contains(&serde_json::json!("password")),
        "{grants:?}"
    );
    assert!(grants.contains(&serde_json::json!("client_credentials")));
    // The token endpoint no longer knows the grant (RFC 9700 §2.4).
    let r = crate::oauth::login(&app, "alice", "correct horse").await;
    r.assert_error(400, "unsupported_grant_type");
    assert!(!String::from_utf8_lossy(&r.body).contains("password"));
    // `iss` in the redirect is the configured issuer; the cookie is Secure.
    let page = get_authorize(&app, &request(&client, "s")).await;
    assert!(page.header("set-cookie").unwrap().contains("; Secure"));
    let r = post_login(
        &app,
        &hidden_fields(&String::from_utf8(page.body.clone()).unwrap()),
        Some(&cookie(&page)),
        "alice",
        "correct horse",
    )
    .await;
    assert_eq!(
        param(&location_params(&r), "iss"),
        Some("https://login.example.com")
    );
    // Codes live code_ttl_secs.
    let conn = app.db.pool().get().await.unwrap();
    let ttl: i64 = conn
        .query_one("SELECT expires - created FROM authorization_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ttl, 30);
}
