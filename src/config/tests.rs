use super::*;

mod cidr;
mod database_url;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, "test.toml", &EnvOverrides::default())
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const ROUTE: &str = r#"
[[routes]]
name = "orders"
path = "/api/orders"
upstream = "http://127.0.0.1:9000"
scopes = ["orders:read"]
"#;

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.max_header_bytes, 16384);
    assert_eq!(c.cache.max_staleness, Duration::from_secs(5));
    assert!(c.login.hash_concurrency >= 1);
    assert!(c.database.url.is_none());
    assert!(c.routes.is_empty());
}

#[test]
fn server_defaults_are_those_of_an_empty_file() {
    let d = ServerConfig::default();
    assert_eq!(d, parse("").unwrap().server);
    assert_eq!(d.admin_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(d.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(d.header_read_timeout, Duration::from_secs(10));
    assert_eq!(d.max_connections, 10000);
    assert_eq!(d.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn a_valid_route_is_compiled() {
    let c = parse(ROUTE).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.name, "orders");
    assert_eq!(r.path, "/api/orders");
    assert_eq!(r.upstream.authority.as_str(), "127.0.0.1:9000");
    assert_eq!(
        r.access,
        Access::Token {
            all: vec!["orders:read".into()],
            any: vec![],
        }
    );
    assert!(r.methods.is_none());
    assert_eq!(r.timeout, Duration::from_secs(30));
}

#[test]
fn invalid_toml_names_the_file_and_line() {
    let e = errors("[server\nlisten = 1");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("test.toml: invalid TOML"), "{e:?}");
    assert!(e[0].contains("line 1"), "{e:?}");
}

#[test]
fn unknown_keys_are_rejected_with_their_section() {
    let e = errors("[server]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n[bogus]\nx = 1\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("test.toml: server: unknown field `listne`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("test.toml: bogus: unknown section")),
        "{e:?}"
    );
}

#[test]
fn unknown_route_key_names_route_index_and_name() {
    let e = errors(&format!("{ROUTE}scoeps = [\"x\"]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("test.toml: routes[0] \"orders\": unknown field `scoeps`"),
        "{e:?}"
    );
}

#[test]
fn duplicate_route_names() {
    let e = errors(&format!(
        "{ROUTE}{}",
        ROUTE.replace("/api/orders", "/api/other")
    ));
    assert_eq!(
        e,
        vec!["test.toml: routes[1] \"orders\".name: duplicate route name (also routes[0])"]
    );
}

/// A route an earlier one takes every request from is refused; one that
/// keeps a method of its own, or differs in host, is a policy.
#[test]
fn routes_that_can_never_match_are_refused() {
    let second =
        |extra: &str| format!("{ROUTE}{extra}{}", ROUTE.replace("\"orders\"", "\"other\""));
    let e = errors(&second(""));
    assert_eq!(
        e,
        vec!["test.toml: routes[1] \"other\".path: never matches: routes[0] has the same path and host and allows every method this one does"]
    );
    // The earlier route allows GET and POST; the later only GET: refused.
    let narrowed = format!(
        "{}{}",
        ROUTE.replace("scopes", "methods = [\"GET\", \"POST\"]\nscopes"),
        ROUTE
            .replace("\"orders\"", "\"other\"")
            .replace("scopes", "methods = [\"GET\"]\nscopes")
    );
    assert_eq!(errors(&narrowed).len(), 1);
    // Disjoint methods, a wider later route, another host: all accepted.
    for ok in [
        format!(
            "{}{}",
            ROUTE.replace("scopes", "methods = [\"GET\"]\nscopes"),
            ROUTE
                .replace("\"orders\"", "\"other\"")
                .replace("scopes", "methods = [\"POST\"]\nscopes")
        ),
        format!(
            "{}{}",
            ROUTE.replace("scopes", "methods = [\"GET\"]\nscopes"),
            ROUTE.replace("\"orders\"", "\"other\"")
        ),
        second("")
            .replacen("scopes", "host = \"api.example.com\"\nscopes", 2)
            .replacen(
                "host = \"api.example.com\"",
                "host = \"other.example.com\"",
                1,
            ),
    ] {
        assert!(parse(&ok).is_ok(), "{ok}");
    }
}

#[test]
fn bad_upstream_urls() {
    for (bad, needle) in [
        ("not a url", "is not a URL"),
        ("ftp://x:1", "only http://"),
        ("https://x:1", "only http://"),
        ("/relative", "needs a scheme"),
        ("http://u:p@x:1", "user info"),
        ("http://x:1/?q=1", "query"),
    ] {
        let e = errors(&ROUTE.replace("http://127.0.0.1:9000", bad));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(
            e[0].starts_with("test.toml: routes[0] \"orders\".upstream: "),
            "{e:?}"
        );
        assert!(e[0].contains(needle), "{bad}: {e:?}");
    }
}

#[test]
fn upstream_base_path_is_kept() {
    let c = parse(&ROUTE.replace("http://127.0.0.1:9000", "http://127.0.0.1:9000/base/")).unwrap();
    assert_eq!(c.routes[0].upstream.base_path, "/base");
}

#[test]
fn unknown_methods() {
    let e = errors(&format!(
        "{ROUTE}methods = [\"GET\", \"FETCH\", \"CONNECT\", \"TRACE\"]\n"
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e.iter()
            .all(|m| m.starts_with("test.toml: routes[0] \"orders\".methods: unknown method")),
        "{e:?}"
    );
    assert!(e[0].contains("FETCH"));
}

#[test]
fn one_list_of_proxied_methods() {
    let joined: Vec<&str> = PROXIED_METHODS.iter().map(Method::as_str).collect();
    assert_eq!(ALLOW_ALL_METHODS, joined.join(", "));
    assert!(!PROXIED_METHODS.contains(&Method::CONNECT));
    assert!(!PROXIED_METHODS.contains(&Method::TRACE));
    // Every listed method is configurable, in any case, and kept once.
    let c = parse(&format!(
        "{ROUTE}methods = [\"get\", \"Head\", \"POST\", \"put\", \"patch\", \"delete\", \"options\", \"GET\"]\n"
    ))
    .unwrap();
    assert_eq!(c.routes[0].methods.as_deref(), Some(&PROXIED_METHODS[..]));
}

#[test]
fn invalid_scope_strings() {
    let e = errors(&ROUTE.replace(
        "[\"orders:read\"]",
        "[\"orders read\", \"ok\"]\nany_scopes = [\"q\\\"\"]",
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(
            "test.toml: routes[0] \"orders\".scopes: \"orders read\" is not a valid scope"
        ),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("test.toml: routes[0] \"orders\".any_scopes:"),
        "{e:?}"
    );
}

#[test]
fn access_policy_is_built_at_load() {
    let c = parse(&format!(
        "{ROUTE}{}{}",
        ROUTE
            .replace("\"orders\"", "\"pub\"")
            .replace("/api/orders", "/api/pub")
            .replace("scopes = [\"orders:read\"]", "public = true"),
        ROUTE
            .replace("\"orders\"", "\"any\"")
            .replace("/api/orders", "/api/any")
            .replace(
                "scopes = [\"orders:read\"]",
                "any_scopes = [\"a\", \"b:*\"]"
            ),
    ))
    .unwrap();
    assert!(!c.routes[0].access.is_public());
    assert_eq!(c.routes[1].access, Access::Public);
    assert!(c.routes[1].access.is_public());
    assert_eq!(
        c.routes[2].access,
        Access::Token {
            all: vec![],
            any: vec!["a".into(), "b:*".into()],
        }
    );
    // `public = false` with no scopes: any valid token.
    let c = parse(&ROUTE.replace("scopes = [\"orders:read\"]", "public = false")).unwrap();
    assert_eq!(
        c.routes[0].access,
        Access::Token {
            all: vec![],
            any: vec![],
        }
    );
}

#[test]
fn public_with_scopes() {
    let e = errors(&format!("{ROUTE}public = true\n"));
    assert_eq!(e, vec!["test.toml: routes[0] \"orders\".public: a public route cannot require scopes (remove scopes/any_scopes or public)"]);
    let e = errors(&ROUTE.replace(
        "scopes = [\"orders:read\"]",
        "any_scopes = [\"x\"]\npublic = true",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("test.toml: routes[0] \"orders\".public: "),
        "{e:?}"
    );
}

#[test]
fn bad_paths() {
    for bad in [
        "api", "/a//b", "/a/../b", "/a%2Fb", "/a?x", "/a b", "/a:b", "/a;b", "/a@b", "/é",
    ] {
        let e = errors(&ROUTE.replace("/api/orders", bad));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(
            e[0].starts_with("test.toml: routes[0] \"orders\".path: "),
            "{e:?}"
        );
    }
    let c = parse(&ROUTE.replace("/api/orders", "/api/orders/")).unwrap();
    assert_eq!(c.routes[0].path, "/api/orders");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = format!(
        "[server]\nlisten = \"nope\"\n[cache]\nmax_entries = 0\n{}{}",
        ROUTE.replace("http://127.0.0.1:9000", "ftp://x"),
        ROUTE
            .replace("\"orders\"", "\"b\"")
            .replace("/api/orders", "api")
    );
    let e = errors(&text);
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e.iter().any(|m| m.contains("server.listen")));
    assert!(e.iter().any(|m| m.contains("cache.max_entries")));
    assert!(e
        .iter()
        .any(|m| m.contains("routes[0] \"orders\".upstream")));
    assert!(e.iter().any(|m| m.contains("routes[1] \"b\".path")));
}

#[test]
fn wrong_types_are_located() {
    let e = errors("[server]\nmax_body_bytes = \"big\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("test.toml: server: invalid type"), "{e:?}");
    let e = errors("routes = 3\n");
    assert!(
        e[0].starts_with("test.toml: routes: must be an array"),
        "{e:?}"
    );
}

#[test]
fn env_overrides_win_and_are_validated() {
    let env = EnvOverrides {
        database_url: Some("postgres://u:secretpw@localhost/db".into()),
        listen: Some("127.0.0.1:9999".into()),
    };
    let c = Config::parse("[database]\nurl = \"postgres://x@y/z\"\n", "f", &env).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(
        c.database.url.as_ref().unwrap().expose(),
        "postgres://u:secretpw@localhost/db"
    );
    assert!(!format!("{:?}", c.database).contains("secretpw"));

    let env = EnvOverrides {
        database_url: None,
        listen: Some("bad".into()),
    };
    let e = Config::parse("", "f", &env).unwrap_err();
    assert!(
        e.0[0].to_string().starts_with("f: SCOPEGATE_LISTEN: "),
        "{e}"
    );
}

#[test]
fn shipped_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    for name in ["scopegate.toml", "dev.toml"] {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        if let Err(e) = Config::parse(&text, name, &EnvOverrides::default()) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn new_keys_have_their_defaults() {
    let c = parse("").unwrap();
    assert!(c.server.trusted_proxies.is_empty());
    assert!(!c.server.is_trusted_proxy("127.0.0.1".parse().unwrap()));
    assert_eq!(c.login.max_failures_per_ip, 50);
    assert_eq!(c.cache.invalid_lookups_per_ip, 50);
    assert_eq!(c.cache.db_deadline, Duration::from_millis(1000));
    assert_eq!(
        c.oauth,
        OAuthConfig {
            issuer: "http://127.0.0.1:8080".into(),
            password_grant: true,
            code_ttl: Duration::from_secs(60),
            introspections_per_caller: 50,
        }
    );
    assert_eq!(c.database.tls, TlsMode::Prefer);
    assert!(c.database.ca_file.is_none());
    assert!(c.database.pg_url().is_none());
}

#[test]
fn new_keys_are_read() {
    let c = parse(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
         [login]\nmax_failures_per_ip = 7\n\
         [cache]\ninvalid_lookups_per_ip = 3\ndb_deadline_ms = 250\n\
         [oauth]\nissuer = \"https://auth.example.com/\"\npassword_grant = false\ncode_ttl_secs = 30\n\
         introspections_per_caller = 9\n",
    )
    .unwrap();
    let proxies: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "::1/128"]);
    assert!(c.server.is_trusted_proxy("10.9.8.7".parse().unwrap()));
    assert!(c.server.is_trusted_proxy("::1".parse().unwrap()));
    assert!(!c.server.is_trusted_proxy("11.0.0.1".parse().unwrap()));
    assert_eq!(c.login.max_failures_per_ip, 7);
    assert_eq!(c.cache.invalid_lookups_per_ip, 3);
    assert_eq!(c.cache.db_deadline, Duration::from_millis(250));
    assert_eq!(c.oauth.issuer, "https://auth.example.com");
    assert!(!c.oauth.password_grant);
    assert_eq!(c.oauth.code_ttl, Duration::from_secs(30));
    assert_eq!(c.oauth.introspections_per_caller, 9);
}

#[test]
fn new_limits_must_be_positive() {
    let e = errors(
        "[login]\nmax_failures_per_ip = 0\n\
         [cache]\ninvalid_lookups_per_ip = 0\ndb_deadline_ms = 0\n\
         [oauth]\ncode_ttl_secs = 0\nintrospections_per_caller = 0\n",
    );
    assert_eq!(
        e,
        vec![
            "test.toml: oauth.code_ttl_secs: must be greater than 0",
            "test.toml: oauth.introspections_per_caller: must be greater than 0",
            "test.toml: cache.invalid_lookups_per_ip: must be greater than 0",
            "test.toml: cache.db_deadline_ms: must be greater than 0",
            "test.toml: login.max_failures_per_ip: must be greater than 0",
        ]
    );
    assert_eq!(
        errors("[oauth]\nintrospections_per_caller = 1000001\n"),
        ["test.toml: oauth.introspections_per_caller: must be at most 1000000"]
    );
    let e = errors("[oauth]\nissuer = \"https://a\"\nbogus = 1\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("test.toml: oauth: unknown field `bogus`"),
        "{e:?}"
    );
}

#[test]
fn trusted_proxies_errors_are_located() {
    let e = errors(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1/8\", \"::/129\", \"proxy.local\", \"10.0.0.0/\", \"10.0.0.0/+8\"]\n",
    );
    assert_eq!(e.len(), 5, "{e:?}");
    for (i, m) in e.iter().enumerate() {
        assert!(
            m.starts_with(&format!("test.toml: server.trusted_proxies[{}]: ", i + 1)),
            "{e:?}"
        );
    }
    assert!(
        e[0].contains("host bits set (the network is 10.0.0.0/8)"),
        "{e:?}"
    );
    assert!(e[1].contains("at most 128"), "{e:?}");
    assert!(e[2].contains("not an IP address"), "{e:?}");
    let e = errors("[server]\ntrusted_proxies = \"10.0.0.0/8\"\n");
    assert!(e[0].starts_with("test.toml: server: invalid type"), "{e:?}");
}

#[test]
fn issuer_default_follows_the_listen_address() {
    let env = EnvOverrides {
        database_url: None,
        listen: Some("0.0.0.0:9999".into()),
    };
    let c = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\n", "f", &env).unwrap();
    assert_eq!(c.oauth.issuer, "http://0.0.0.0:9999");
    let c = parse("[server]\nlisten = \"[::1]:8443\"\n").unwrap();
    assert_eq!(c.oauth.issuer, "http://[::1]:8443");
    // An explicit issuer is not changed by the listen address.
    let c = Config::parse("[oauth]\nissuer = \"https://a.example\"\n", "f", &env).unwrap();
    assert_eq!(c.oauth.issuer, "https://a.example");
}

#[test]
fn issuer_forms() {
    for (good, stored) in [
        ("https://auth.example.com", "https://auth.example.com"),
        ("https://auth.example.com/", "https://auth.example.com"),
        (
            "HTTPS://Auth.Example.com:8443/",
            "https://auth.example.com:8443",
        ),
        (
            "https://auth.example.com/Tenant//",
            "https://auth.example.com/Tenant",
        ),
        (
            "https://example.com/tenant/a/",
            "https://example.com/tenant/a",
        ),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ] {
        let c = parse(&format!("[oauth]\nissuer = {good:?}\n")).unwrap();
        assert_eq!(c.oauth.issuer, stored, "{good}");
    }
    for (bad, needle) in [
        ("auth.example.com", "is not a URL"),
        ("ftp://auth.example.com", "http:// or https://"),
        ("urn:example:issuer", "is not a URL"),
        ("/relative", "is not a URL"),
        ("https://", "is not a URL"),
        ("https://auth.example.com/?tenant=a", "query or fragment"),
        ("https://auth.example.com/#x", "query or fragment"),
        ("https://auth.example.com?", "query or fragment"),
        ("https://u:p@auth.example.com", "user info"),
    ] {
        let e = errors(&format!("[oauth]\nissuer = {bad:?}\n"));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(e[0].starts_with("test.toml: oauth.issuer: "), "{e:?}");
        assert!(e[0].contains(needle), "{bad}: {e:?}");
    }
}

#[test]
fn routes_cannot_be_under_reserved_paths() {
    for bad in [
        "/oauth",
        "/oauth/",
        "/oauth/token",
        "/.well-known",
        "/.well-known/oauth-authorization-server",
    ] {
        let e = errors(&format!(
            "{ROUTE}{}",
            ROUTE
                .replace("\"orders\"", "\"x\"")
                .replace("/api/orders", bad)
        ));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(
            e[0].starts_with("test.toml: routes[1] \"x\".path: "),
            "{bad}: {e:?}"
        );
        assert!(e[0].contains("which scopegate serves itself"), "{e:?}");
    }
    for good in ["/", "/oauthx", "/api/oauth", "/.well-knownx", "/well-known"] {
        let c =
            parse(&ROUTE.replace("/api/orders", good)).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(c.routes[0].path, good);
    }
    assert_eq!(reserved_prefix("/oauth/revoke"), Some("/oauth"));
    assert_eq!(reserved_prefix("/.well-known"), Some("/.well-known"));
    assert_eq!(reserved_prefix("/oauth2"), None);
    assert_eq!(reserved_prefix("/"), None);
}
