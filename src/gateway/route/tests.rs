use super::*;
use crate::config::{Config, EnvOverrides};
use proptest::prelude::*;

/// A valid route from the real configuration loader, then adjusted.
fn rc(name: &str, path: &str) -> RouteConfig {
    let toml = format!(
        "[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://127.0.0.1:9\"\npublic = true\n"
    );
    Config::parse(&toml, "test.toml", &EnvOverrides::default())
        .expect("valid test route")
        .routes
        .remove(0)
}

fn with_host(mut c: RouteConfig, host: &str) -> RouteConfig {
    c.host = Some(host.to_owned());
    c
}

fn with_methods(mut c: RouteConfig, ms: &[Method]) -> RouteConfig {
    c.methods = Some(ms.to_vec());
    c
}

/// What `find` answers, as a short string: the route name, `404`, or
/// `405 <Allow>`.
fn answer(t: &RouteTable, host: Option<&str>, method: &Method, path: &str) -> String {
    match t.find(host, method, path) {
        RouteMatch::Found(r) => r.config.name.clone(),
        RouteMatch::NotFound => "404".into(),
        RouteMatch::MethodNotAllowed { allow } => {
            format!("405 {}", allow.to_str().unwrap_or("?"))
        }
    }
}

fn get(t: &RouteTable, path: &str) -> String {
    answer(t, None, &Method::GET, path)
}

#[test]
fn segment_boundaries() {
    let t = RouteTable::new(vec![rc("api", "/api")]);
    assert_eq!(get(&t, "/api"), "api");
    assert_eq!(get(&t, "/api/"), "api");
    assert_eq!(get(&t, "/api/x"), "api");
    assert_eq!(get(&t, "/api/x/y/"), "api");
    assert_eq!(get(&t, "/apix"), "404"); // not a segment boundary
    assert_eq!(get(&t, "/ap"), "404");
    assert_eq!(get(&t, "/"), "404");
    assert_eq!(get(&t, "/API"), "404"); // case-sensitive
    assert_eq!(get(&t, "/x/api"), "404");
}

#[test]
fn root_matches_everything() {
    let t = RouteTable::new(vec![rc("root", "/")]);
    for p in ["/", "/a", "/a/b/", "/apix"] {
        assert_eq!(get(&t, p), "root", "{p}");
    }
}

#[test]
fn longest_prefix_wins() {
    let t = RouteTable::new(vec![
        rc("root", "/"),
        rc("api", "/api"),
        rc("orders", "/api/orders"),
        rc("order7", "/api/orders/7"),
    ]);
    assert_eq!(get(&t, "/"), "root");
    assert_eq!(get(&t, "/apix"), "root");
    assert_eq!(get(&t, "/api"), "api");
    assert_eq!(get(&t, "/api/ordersx"), "api");
    assert_eq!(get(&t, "/api/orders"), "orders");
    assert_eq!(get(&t, "/api/orders/"), "orders");
    assert_eq!(get(&t, "/api/orders/70"), "orders");
    assert_eq!(get(&t, "/api/orders/7"), "order7");
    assert_eq!(get(&t, "/api/orders/7/items"), "order7");
}

#[test]
fn same_length_prefixes_do_not_interfere() {
    let t = RouteTable::new(vec![rc("abc", "/abc"), rc("abd", "/abd")]);
    assert_eq!(get(&t, "/abc/1"), "abc");
    assert_eq!(get(&t, "/abd/1"), "abd");
    assert_eq!(get(&t, "/abe"), "404");
}

#[test]
fn attack_paths_after_normalization() {
    use crate::gateway::normalize::normalize_path;
    let t = RouteTable::new(vec![rc("public", "/public"), rc("admin", "/admin")]);
    for (raw, want) in [
        ("/public/../admin/users", "admin"),
        ("/public/%2e%2e/admin", "admin"),
        ("/public/.%2E/admin", "admin"),
        ("//admin", "admin"),
        ("/./admin", "admin"),
        ("/admin/.", "admin"),
        ("/%61dmin", "admin"),
        ("/public/%252e%252e/admin", "public"),
        ("/adminx", "404"),
    ] {
        let p = normalize_path(raw).expect("accepted");
        assert_eq!(get(&t, &p), want, "{raw}");
    }
}

#[test]
fn hosts() {
    let t = RouteTable::new(vec![
        rc("any", "/api"),
        with_host(rc("tenant", "/api"), "tenant.example"),
        with_host(rc("ip", "/api"), "127.0.0.1"),
    ]);
    let g = &Method::GET;
    assert_eq!(answer(&t, Some("tenant.example"), g, "/api"), "tenant");
    assert_eq!(answer(&t, Some("TENANT.Example"), g, "/api"), "tenant");
    assert_eq!(
        answer(&t, Some("tenant.example:8080"), g, "/api/x"),
        "tenant"
    );
    assert_eq!(answer(&t, Some("tenant.example."), g, "/api"), "tenant");
    assert_eq!(answer(&t, Some("tenant.example.:443"), g, "/api"), "tenant");
    assert_eq!(answer(&t, Some("127.0.0.1:8080"), g, "/api"), "ip");
    assert_eq!(answer(&t, Some("other.example"), g, "/api"), "any");
    assert_eq!(answer(&t, Some("xtenant.example"), g, "/api"), "any");
    assert_eq!(answer(&t, Some("tenant.example.x"), g, "/api"), "any");
    assert_eq!(answer(&t, Some("[::1]:8080"), g, "/api"), "any");
    assert_eq!(answer(&t, Some(""), g, "/api"), "any");
    assert_eq!(answer(&t, None, g, "/api"), "any");
}

#[test]
fn host_only_routes_need_a_matching_host() {
    let t = RouteTable::new(vec![with_host(rc("only", "/"), "example.com")]);
    let g = &Method::GET;
    assert_eq!(answer(&t, Some("example.com"), g, "/x"), "only");
    assert_eq!(answer(&t, None, g, "/x"), "404");
    assert_eq!(answer(&t, Some("[::1]:8080"), g, "/x"), "404");
    assert_eq!(answer(&t, Some("evil.com"), g, "/x"), "404");
    assert_eq!(answer(&t, Some("example.com.evil.com"), g, "/x"), "404");
}

#[test]
fn host_names() {
    assert_eq!(host_name("a.b"), "a.b");
    assert_eq!(host_name("a.b:80"), "a.b");
    assert_eq!(host_name("a.b."), "a.b");
    assert_eq!(host_name("a.b.:80"), "a.b");
    assert_eq!(host_name("[::1]:8080"), "[::1]");
    assert_eq!(host_name("[::1]"), "[::1]");
    assert_eq!(host_name("[::1"), "[::1");
    assert_eq!(host_name(""), "");
}

#[test]
fn longer_prefix_beats_host() {
    let t = RouteTable::new(vec![
        with_host(rc("hosted", "/api"), "h.example"),
        rc("deeper", "/api/orders"),
    ]);
    let g = &Method::GET;
    assert_eq!(answer(&t, Some("h.example"), g, "/api/orders/1"), "deeper");
    assert_eq!(answer(&t, Some("h.example"), g, "/api/users"), "hosted");
}

#[test]
fn methods_first_in_config_order_wins() {
    let t = RouteTable::new(vec![
        with_methods(rc("read", "/o"), &[Method::GET]),
        with_methods(rc("write", "/o"), &[Method::POST, Method::PUT]),
        with_methods(rc("read-too", "/o"), &[Method::GET, Method::DELETE]),
    ]);
    assert_eq!(answer(&t, None, &Method::GET, "/o/1"), "read");
    assert_eq!(answer(&t, None, &Method::PUT, "/o/1"), "write");
    assert_eq!(answer(&t, None, &Method::DELETE, "/o/1"), "read-too");
    assert_eq!(
        answer(&t, None, &Method::PATCH, "/o/1"),
        "405 GET, POST, PUT, DELETE"
    );
    // HEAD is not implied by GET.
    assert_eq!(
        answer(&t, None, &Method::HEAD, "/o"),
        "405 GET, POST, PUT, DELETE"
    );
}

#[test]
fn methods_unset_means_every_method() {
    let t = RouteTable::new(vec![rc("all", "/a")]);
    for m in [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        assert_eq!(answer(&t, None, &m, "/a"), "all");
    }
    assert_eq!(
        t.routes()[0].allow.to_str().unwrap(),
        "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    );
}

#[test]
fn allow_lists_exactly_the_configured_methods_in_a_fixed_order() {
    let t = RouteTable::new(vec![with_methods(
        rc("r", "/r"),
        &[Method::OPTIONS, Method::POST, Method::GET],
    )]);
    assert_eq!(t.routes()[0].allow.to_str().unwrap(), "GET, POST, OPTIONS");
    assert_eq!(
        answer(&t, None, &Method::HEAD, "/r"),
        "405 GET, POST, OPTIONS"
    );
}

#[test]
fn method_never_makes_a_less_specific_route_win() {
    let t = RouteTable::new(vec![
        rc("api", "/api"),
        with_methods(rc("orders", "/api/orders"), &[Method::GET]),
        with_methods(
            with_host(rc("hosted", "/api/orders"), "h.example"),
            &[Method::PUT],
        ),
    ]);
    assert_eq!(answer(&t, None, &Method::POST, "/api/orders"), "405 GET");
    assert_eq!(answer(&t, None, &Method::POST, "/api/other"), "api");
    // The host-specific level wins, and its 405 lists only its methods.
    assert_eq!(
        answer(&t, Some("h.example"), &Method::GET, "/api/orders"),
        "405 PUT"
    );
    assert_eq!(
        answer(&t, Some("h.example"), &Method::PUT, "/api/orders"),
        "hosted"
    );
}

#[test]
fn allow_of_a_host_level_ignores_other_hosts() {
    let t = RouteTable::new(vec![
        with_methods(with_host(rc("a", "/x"), "a.example"), &[Method::GET]),
        with_methods(with_host(rc("b", "/x"), "b.example"), &[Method::POST]),
        with_methods(with_host(rc("a2", "/x"), "a.example"), &[Method::PUT]),
    ]);
    assert_eq!(
        answer(&t, Some("a.example"), &Method::DELETE, "/x"),
        "405 GET, PUT"
    );
    assert_eq!(
        answer(&t, Some("b.example"), &Method::DELETE, "/x"),
        "405 POST"
    );
    assert_eq!(answer(&t, Some("b.example"), &Method::POST, "/x"), "b");
    assert_eq!(answer(&t, Some("a.example"), &Method::PUT, "/x"), "a2");
    assert_eq!(answer(&t, Some("c.example"), &Method::GET, "/x"), "404");
}

#[test]
fn routes_keep_configuration_order_and_index() {
    let t = RouteTable::new(vec![rc("a", "/"), rc("b", "/b/c"), rc("c", "/b")]);
    assert!(!t.is_empty());
    assert_eq!(t.by_index(2).map(|r| r.config.name.as_str()), Some("c"));
    assert!(t.by_index(3).is_none());
    let names: Vec<&str> = t.routes().iter().map(|r| r.config.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    for (i, r) in t.routes().iter().enumerate() {
        assert_eq!(r.index, i);
    }
    match t.find(None, &Method::GET, "/b/c/d") {
        RouteMatch::Found(r) => assert!(std::ptr::eq(r, &t.routes()[r.index])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_table() {
    let t = RouteTable::new(Vec::new());
    assert!(t.is_empty());
    assert!(t.routes().is_empty());
    assert_eq!(get(&t, "/"), "404");
    assert!(RouteTable::default().is_empty());
}

#[test]
fn required_scope_header() {
    let token = |all: &[&str], any: &[&str]| Access::Token {
        all: all.iter().map(|s| s.to_string()).collect(),
        any: any.iter().map(|s| s.to_string()).collect(),
    };
    let mut c = rc("x", "/x");
    c.access = token(&["a", "b:c"], &["d", "a", "e:*"]);
    let mut none = rc("y", "/y");
    none.access = token(&[], &[]);
    let mut any_only = rc("z", "/z");
    any_only.access = token(&[], &["q"]);
    let t = RouteTable::new(vec![c, none, any_only, rc("p", "/p")]);
    let r = t.routes();
    assert_eq!(r[0].required_scope.as_ref().unwrap(), "a b:c d e:*");
    assert!(r[1].required_scope.is_none());
    assert_eq!(r[2].required_scope.as_ref().unwrap(), "q");
    assert!(r[3].required_scope.is_none());
}

fn base(mut c: RouteConfig, base_path: &str, strip: bool) -> RouteConfig {
    c.upstream.base_path = base_path.to_owned();
    c.strip_prefix = strip;
    c
}

#[test]
fn forwarded_paths() {
    let t = RouteTable::new(vec![
        base(rc("plain", "/p"), "", false),
        base(rc("strip", "/api"), "", true),
        base(rc("based", "/b"), "/base", false),
        base(rc("both", "/s"), "/base", true),
        base(rc("root", "/"), "", true),
        base(rc("root-based", "/"), "/up", true),
    ]);
    let r = |name: &str| {
        t.routes()
            .iter()
            .find(|r| r.config.name == name)
            .expect("route")
    };
    assert_eq!(forwarded_path(r("plain"), "/p/q"), "/p/q");
    assert_eq!(forwarded_path(r("strip"), "/api"), "/");
    assert_eq!(forwarded_path(r("strip"), "/api/"), "/");
    assert_eq!(forwarded_path(r("strip"), "/api/x/y"), "/x/y");
    assert_eq!(forwarded_path(r("strip"), "/api/x/"), "/x/");
    // Not under the prefix (never returned by `find`): unchanged.
    assert_eq!(forwarded_path(r("strip"), "/apix"), "/apix");
    assert_eq!(forwarded_path(r("based"), "/b/z"), "/base/b/z");
    assert_eq!(forwarded_path(r("both"), "/s"), "/base/");
    assert_eq!(forwarded_path(r("both"), "/s/z"), "/base/z");
    assert_eq!(forwarded_path(r("root"), "/a/b"), "/a/b");
    assert_eq!(forwarded_path(r("root-based"), "/a"), "/up/a");
    assert_eq!(forwarded_path(r("root-based"), "/"), "/up/");
}

#[test]
fn forwarded_path_borrows_when_there_is_no_base() {
    let t = RouteTable::new(vec![
        base(rc("plain", "/p"), "", false),
        base(rc("strip", "/api"), "", true),
    ]);
    let [plain, strip] = t.routes() else {
        panic!("two routes")
    };
    assert!(matches!(forwarded_path(plain, "/p/q"), Cow::Borrowed(_)));
    assert!(matches!(forwarded_path(strip, "/api"), Cow::Borrowed("/")));
    assert!(matches!(
        forwarded_path(strip, "/api/x"),
        Cow::Borrowed("/x")
    ));
}

// ---------------------------------------------------------------------
// Property: configuration order does not matter, except for the tie
// between routes of one level that allow the same method.

/// A fixed set of routes where no two routes of one level share a
/// method, so every answer is order-independent.
fn distinct_routes() -> Vec<RouteConfig> {
    vec![
        rc("root", "/"),
        rc("api", "/api"),
        with_methods(rc("orders-r", "/api/orders"), &[Method::GET, Method::HEAD]),
        with_methods(rc("orders-w", "/api/orders"), &[Method::POST]),
        with_host(rc("orders-h", "/api/orders"), "h.example"),
        with_methods(with_host(rc("api-h", "/api"), "h.example"), &[Method::PUT]),
        with_methods(with_host(rc("api-g", "/api"), "g.example"), &[Method::GET]),
        rc("apix", "/apix"),
        with_methods(rc("deep", "/api/orders/7/items"), &[Method::DELETE]),
        with_host(rc("root-h", "/"), "h.example"),
    ]
}

const PROBE_PATHS: [&str; 11] = [
    "/",
    "/x",
    "/api",
    "/api/",
    "/apix",
    "/apix/1",
    "/api/orders",
    "/api/orders/7",
    "/api/orders/7/items",
    "/api/orders/7/items/1",
    "/api/ordersx",
];

const PROBE_HOSTS: [Option<&str>; 5] = [
    None,
    Some("h.example"),
    Some("H.EXAMPLE:8080"),
    Some("g.example"),
    Some("other"),
];

fn answers(t: &RouteTable) -> Vec<String> {
    let mut out = Vec::new();
    for host in PROBE_HOSTS {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            for p in PROBE_PATHS {
                out.push(format!("{host:?} {m} {p} -> {}", answer(t, host, &m, p)));
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn configuration_order_does_not_matter(
        perm in Just((0..distinct_routes().len()).collect::<Vec<usize>>()).prop_shuffle()
    ) {
        let all = distinct_routes();
        let shuffled: Vec<RouteConfig> = perm.iter().map(|&i| all[i].clone()).collect();
        let reference = answers(&RouteTable::new(all));
        let t = RouteTable::new(shuffled);
        prop_assert_eq!(answers(&t), reference);
        // `routes()` still follows the (shuffled) configuration.
        for (i, r) in t.routes().iter().enumerate() {
            prop_assert_eq!(r.index, i);
            prop_assert_eq!(&r.config.name, &all_names()[perm[i]]);
        }
    }
}

fn all_names() -> Vec<String> {
    distinct_routes().into_iter().map(|c| c.name).collect()
}

#[test]
fn order_dependent_tie_is_first_in_configuration() {
    let a = with_methods(rc("a", "/t"), &[Method::GET]);
    let b = with_methods(rc("b", "/t"), &[Method::GET, Method::POST]);
    let t1 = RouteTable::new(vec![a.clone(), b.clone()]);
    let t2 = RouteTable::new(vec![b, a]);
    assert_eq!(get(&t1, "/t"), "a");
    assert_eq!(get(&t2, "/t"), "b");
    assert_eq!(answer(&t1, None, &Method::POST, "/t"), "b");
    assert_eq!(answer(&t2, None, &Method::POST, "/t"), "b");
}

// ---------------------------------------------------------------------
// Property (a short version of the `path_route` fuzz target in `fuzz/`):
// raw path -> normalize -> route -> forwarded path. No normalized path
// escapes the prefix it matched, and the route is the one the path really
// names deserves.

/// What a raw path really names, decided without the normalizer: each
/// segment fully percent-decoded, `.`/empty dropped, `..` pops (`None`
/// above the root or when a segment is not UTF-8).
fn real_segments(raw: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for seg in raw.split('/').skip(1) {
        let seg = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .ok()?
            .into_owned();
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            _ => out.push(seg),
        }
    }
    Some(out)
}

fn prefix_segments(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn escape_table() -> RouteTable {
    RouteTable::new(vec![
        rc("api", "/api"),
        rc("apix", "/apix"),
        base(rc("orders", "/api/orders"), "/base", true),
        base(rc("admin", "/api/orders/admin"), "/internal", true),
        base(rc("public", "/public"), "/static", false),
    ])
}

fn raw_path() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec![
        "api",
        "apix",
        "orders",
        "admin",
        "public",
        "x",
        "%61pi",
        "ap%69",
        "%41pi",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        ".%2e",
        "",
        "%2f",
        "%5c",
        "%252e%252e",
        "a%3Ab",
        "%00",
        ";",
        "é",
    ]);
    (prop::collection::vec(seg, 0..8), any::<bool>())
        .prop_map(|(segs, slash)| format!("/{}{}", segs.join("/"), if slash { "/" } else { "" }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalized_paths_stay_under_their_route(raw in raw_path()) {
        use crate::gateway::normalize::normalize_path;
        let t = escape_table();
        let real = real_segments(&raw);
        let Ok(out) = normalize_path(&raw) else { return Ok(()) };
        let real = real.expect("an accepted path names something real");
        prop_assert!(!out.contains("//") && !out.contains("/./") && !out.contains("/../"));
        prop_assert!(!out.to_ascii_uppercase().contains("%2F") && !out.contains('\0'));
        let twice = normalize_path(&out);
        prop_assert_eq!(twice.as_deref(), Ok(&*out), "idempotent");
        let deserved = t
            .routes()
            .iter()
            .filter(|r| real.starts_with(&prefix_segments(&r.config.path)))
            .max_by_key(|r| r.config.path.len())
            .map(|r| r.config.name.as_str());
        match t.find(None, &Method::GET, &out) {
            RouteMatch::Found(r) => {
                prop_assert_eq!(Some(r.config.name.as_str()), deserved, "{} -> {}", raw, out);
                let prefix = prefix_segments(&r.config.path);
                let fwd = forwarded_path(r, &out);
                let mut expected = prefix_segments(&r.config.upstream.base_path);
                let kept = if r.config.strip_prefix { &real[prefix.len()..] } else { &real[..] };
                expected.extend(kept.iter().cloned());
                prop_assert_eq!(real_segments(&fwd), Some(expected), "{} -> {}", raw, fwd);
            }
            other => prop_assert!(deserved.is_none(), "{} -> {} -> {:?}", raw, out, other),
        }
    }
}
