//! Path normalization, then route matching and the forwarded path.
//!
//! Input: the request path (UTF-8; anything else is skipped, as hyper
//! hands the gateway a `&str`).
//!
//! Properties, for a path [`normalize_path`] accepts:
//! - the result is in normal form: rooted, and it never contains `//`,
//!   a `.` or `..` segment (`/./`, `/../`, or one at the end), `%2F`/`%5C`
//!   in any case, a NUL, a backslash, `;` or `#`;
//! - idempotent: normalizing the result returns it unchanged, borrowed
//!   (the fast path agrees that it is normal);
//! - it names the resource the raw path really names: fully decoded and
//!   resolved independently ([`reference`]), both give the same segments,
//!   and a path that climbs above the root is never accepted;
//! - route matching on it picks the route that the really named path
//!   deserves (longest prefix on whole segments), so no path escapes the
//!   prefix it matched;
//! - the forwarded path is normal too and stays under the upstream's base
//!   path: an upstream that resolves it again lands exactly on base path +
//!   the segments under the matched prefix.

use std::borrow::Cow;
use std::sync::OnceLock;

use http::Method;
use scopegate::config::{Config, EnvOverrides};
use scopegate::gateway::normalize::{normalize_path, PathError};
use scopegate::gateway::route::{forwarded_path, RouteMatch, RouteTable};

/// Routes with nested prefixes, a prefix that is another's string prefix
/// but not its segment prefix (`/api` and `/apix`), unreserved punctuation,
/// a stripped prefix and upstream base paths. No `/` route, so 404 happens.
const ROUTES: &str = r#"
[[routes]]
name = "api"
path = "/api"
upstream = "http://127.0.0.1:9"
public = true

[[routes]]
name = "apix"
path = "/apix"
upstream = "http://127.0.0.1:9/x"
public = true

[[routes]]
name = "orders"
path = "/api/orders"
upstream = "http://127.0.0.1:9/base"
strip_prefix = true
public = true

[[routes]]
name = "admin"
path = "/api/orders/admin"
upstream = "http://127.0.0.1:9/internal/admin"
strip_prefix = true
public = true

[[routes]]
name = "public"
path = "/public"
upstream = "http://127.0.0.1:9/static"
strip_prefix = true
public = true

[[routes]]
name = "tilde"
path = "/~user/a.b_c-d"
upstream = "http://127.0.0.1:9"
public = true
"#;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let config = Config::parse(ROUTES, "fuzz.toml", &EnvOverrides::default())
            .expect("the fuzz routes are a valid configuration");
        RouteTable::new(config.routes)
    })
}

/// Build the route table (call before fuzzing starts, so that parsing the
/// configuration is not counted as coverage of every run).
pub fn init() {
    table();
}

/// What a path really names, decided without scopegate's code: split on
/// `/`, percent-decode each segment fully (lossless UTF-8 or `None`), drop
/// empty and `.` segments, let `..` remove one (`None` above the root).
pub fn reference(raw: &str) -> Option<Vec<String>> {
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

fn segments(prefix: &str) -> Vec<String> {
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn assert_normal_form(out: &str, raw: &str) {
    assert!(out.starts_with('/'), "{raw:?} -> {out:?}: not rooted");
    assert!(!out.contains("//"), "{raw:?} -> {out:?}: contains //");
    assert!(
        !out.contains(['\0', '\\', ';', '#']),
        "{raw:?} -> {out:?}: a rejected character survived"
    );
    let upper = out.to_ascii_uppercase();
    assert!(
        !upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"),
        "{raw:?} -> {out:?}: an encoded slash, backslash or NUL survived"
    );
    assert!(
        !out.contains("/./") && !out.contains("/../"),
        "{raw:?} -> {out:?}: a dot segment survived"
    );
    assert!(
        out.split('/').all(|s| s != "." && s != ".."),
        "{raw:?} -> {out:?}: a dot segment survived"
    );
}

pub fn check(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let real = reference(raw);
    let out = match normalize_path(raw) {
        Ok(out) => out,
        Err(PathError::EscapesRoot) => {
            // Only for a well-formed path that really climbs.
            assert!(real.is_none(), "{raw:?} wrongly rejected as climbing");
            return;
        }
        Err(_) => return,
    };
    let Some(real) = real else {
        panic!("{raw:?} climbs or does not decode, but was accepted as {out:?}");
    };
    assert_normal_form(&out, raw);
    match normalize_path(&out) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, &*out, "not idempotent"),
        other => panic!("{raw:?} -> {out:?} -> {other:?}: not idempotent"),
    }
    assert_eq!(
        reference(&out).as_ref(),
        Some(&real),
        "{raw:?} -> {out:?} names another resource"
    );

    // The route the really named path deserves: the longest prefix whose
    // segments start it.
    let deserved = table()
        .routes()
        .iter()
        .filter(|r| real.starts_with(&segments(&r.config.path)))
        .max_by_key(|r| segments(&r.config.path).len());
    match table().find(None, &Method::GET, &out) {
        RouteMatch::Found(route) => {
            assert_eq!(
                Some(route.index),
                deserved.map(|r| r.index),
                "{raw:?} -> {out:?} matched {:?}",
                route.config.name
            );
            let prefix = segments(&route.config.path);
            assert!(real.starts_with(&prefix), "{raw:?} escapes {prefix:?}");
            let fwd = forwarded_path(route, &out);
            assert_normal_form(&fwd, raw);
            assert!(
                matches!(normalize_path(&fwd), Ok(Cow::Borrowed(_))),
                "{raw:?}: forwarded {fwd:?} is not normal"
            );
            let mut expected = segments(&route.config.upstream.base_path);
            let kept = if route.config.strip_prefix {
                &real[prefix.len()..]
            } else {
                &real[..]
            };
            expected.extend(kept.iter().cloned());
            assert_eq!(
                reference(&fwd),
                Some(expected),
                "{raw:?}: forwarded {fwd:?} leaves the upstream base path"
            );
        }
        RouteMatch::NotFound => assert!(
            deserved.is_none(),
            "{raw:?} -> {out:?} matched nothing, deserved {:?}",
            deserved.map(|r| &r.config.name)
        ),
        RouteMatch::MethodNotAllowed { .. } => {
            panic!("{raw:?}: 405 from routes that allow every method")
        }
    }
}
