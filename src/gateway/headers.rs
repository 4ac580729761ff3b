//! The header policy of the forward phase (`docs/http.md`, "Forwarding
//! headers"; RFC 9110 §7.6.1):
//! - hop-by-hop headers (RFC 9110 §7.6.1) and every header named in
//!   `Connection`/`Proxy-Connection` are removed first;
//! - identity and forwarding headers a client could spoof are removed next,
//!   in every spelling (`X-Authenticated-*`, `X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`, and their `_` variants);
//! - only then are the gateway's own values set, so nothing a client sends
//!   (not even `Connection: X-Authenticated-Scope`) can remove or replace them;
//! - `Authorization` is dropped unless the route sets `forward_authorization`;
//! - `Host` becomes the upstream's authority (nginx's default); the client's
//!   host travels in `X-Forwarded-Host` and `Forwarded`;
//! - HTTP/2 cookie crumbs (several `cookie` fields) are joined into one
//!   `Cookie` with `"; "` (RFC 9113 §8.2.3), as an HTTP/1.1 upstream expects.
//!
//! This runs on every proxied request, so it is written to cost little:
//! one pass over the names the client sent decides what goes (a `remove`
//! of a name that is not there would still hash it), and the values that
//! depend only on the client's address and host are made once per proxy
//! thread while they repeat (keep-alive connections).

use std::cell::RefCell;
use std::net::IpAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use smallvec::SmallVec;

use super::route::Route;
use crate::request::{RequestCtx, X_REQUEST_ID};

static X_AUTH_USER: HeaderName = HeaderName::from_static("x-authenticated-user");
static X_AUTH_ACCOUNT: HeaderName = HeaderName::from_static("x-authenticated-account-id");
static X_AUTH_SCOPE: HeaderName = HeaderName::from_static("x-authenticated-scope");
static X_AUTH_CLIENT: HeaderName = HeaderName::from_static("x-authenticated-client");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// What the header policy does with a name the client or upstream sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `Connection` and the obsolete `Proxy-Connection`: hop-by-hop, and
    /// the names they list go too.
    Connection,
    /// The other hop-by-hop headers (RFC 9110 §7.6.1, §7.8; RFC 9112 §6.1).
    HopByHop,
    ContentLength,
    Authorization,
    /// A name only the gateway may set ([`spoofable`]).
    Spoofable,
    Other,
}

/// A name's fate, decided by its text (lower case, as `HeaderName` keeps
/// it) in one place.
fn classify(name: &str) -> Kind {
    match name {
        "connection" | "proxy-connection" => Kind::Connection,
        "keep-alive"
        | "proxy-authenticate"
        | "proxy-authorization"
        | "te"
        | "trailer"
        | "transfer-encoding"
        | "upgrade" => Kind::HopByHop,
        "content-length" => Kind::ContentLength,
        "authorization" => Kind::Authorization,
        _ if spoofable(name) => Kind::Spoofable,
        _ => Kind::Other,
    }
}

/// Which message the headers belong to.
#[derive(Debug, Clone, Copy)]
pub enum Message {
    /// A client's request on its way upstream. Its `Content-Length` goes
    /// too (hyper re-derives framing from the body actually sent), and its
    /// `Authorization` unless the route forwards it.
    Request { keep_authorization: bool },
    /// An upstream's response on its way to the client.
    Response,
}

/// Would a client-sent header of this name impersonate the gateway?
fn spoofable(name: &str) -> bool {
    // Every such name starts with `x` or `f` (names are lower case).
    if !matches!(name.as_bytes().first(), Some(b'x' | b'f')) {
        return false;
    }
    let starts = |p: &str| {
        name.len() >= p.len()
            && name.as_bytes()[..p.len()]
                .iter()
                .zip(p.as_bytes())
                .all(|(a, b)| a == b || (*a == b'_' && *b == b'-'))
    };
    starts("x-authenticated-")
        || starts("x-forwarded-")
        || name == "forwarded"
        || starts("x-real-ip")
}

/// Remove hop-by-hop headers, the headers `Connection` names, and (for
/// requests) everything spoofable, `Content-Length` and perhaps
/// `Authorization`. One pass over the names; allocates only when more than
/// four must go.
pub fn strip_headers(h: &mut HeaderMap, message: Message) {
    let (request, drop_authorization) = match message {
        Message::Request { keep_authorization } => (true, !keep_authorization),
        Message::Response => (false, false),
    };
    let mut doomed: SmallVec<[HeaderName; 4]> = SmallVec::new();
    for (name, value) in h.iter() {
        let goes = match classify(name.as_str()) {
            Kind::Connection => {
                let tokens = value.to_str().unwrap_or_default().split(',');
                doomed.extend(
                    tokens.filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok()),
                );
                true
            }
            Kind::HopByHop => true,
            Kind::ContentLength | Kind::Spoofable => request,
            Kind::Authorization => drop_authorization,
            Kind::Other => false,
        };
        if goes {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        h.remove(name);
    }
}

/// Rewrite a client's request headers for `route`'s upstream, as the
/// module documentation says. `client_host` is the host the client asked
/// for (checked by the route phase).
pub(super) fn rewrite_request(
    h: &mut HeaderMap,
    ctx: &RequestCtx<'_>,
    route: &Route,
    client_host: Option<&HeaderValue>,
) {
    strip_headers(
        h,
        Message::Request {
            keep_authorization: route.config.forward_authorization,
        },
    );
    join_cookies(h);
    // Room for what is added below, so the map grows (and rehashes) at
    // most once.
    h.reserve(10);
    let (xff, forwarded) = peer_headers(ctx.client, client_host);
    // Behind a trusted proxy its chain is extended with the peer;
    // otherwise whatever the client claimed was removed and the client
    // address stands alone.
    let xff =
        super::forwarded::extended_chain(ctx.forwarded_for.as_ref(), ctx.peer.ip()).unwrap_or(xff);
    h.insert(X_FORWARDED_FOR.clone(), xff);
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = client_host {
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Some(v) = forwarded {
        h.insert(FORWARDED.clone(), v);
    }
    h.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    if let Some(id) = &ctx.identity {
        let values = [
            (&X_AUTH_USER, id.user_header()),
            (&X_AUTH_ACCOUNT, id.account_id_header()),
            (&X_AUTH_SCOPE, id.scope_header()),
            (&X_AUTH_CLIENT, id.client_header()),
        ];
        for (name, value) in values {
            if let Some(v) = value {
                h.insert(name.clone(), v);
            }
        }
    }
    h.insert(header::HOST, route.config.upstream.host.clone());
}

/// The values one client address and host give: `X-Forwarded-For`, and
/// `Forwarded` (`for=...;proto=http`, with `;host="..."` for a plain
/// host[:port]; none if it cannot be a header value).
struct PeerHeaders {
    ip: IpAddr,
    host: Option<HeaderValue>,
    xff: HeaderValue,
    forwarded: Option<HeaderValue>,
}

impl PeerHeaders {
    fn new(ip: IpAddr, host: Option<&HeaderValue>) -> PeerHeaders {
        let text = ip.to_string();
        let xff =
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let mut forwarded = if ip.is_ipv6() {
            format!("for=\"[{text}]\";proto=http")
        } else {
            format!("for={text};proto=http")
        };
        if let Some(hs) = host.and_then(|h| h.to_str().ok()) {
            // Only a plain host[:port] goes into the quoted-string.
            if hs
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                forwarded.push_str(";host=\"");
                forwarded.push_str(hs);
                forwarded.push('"');
            }
        }
        PeerHeaders {
            ip,
            host: host.cloned(),
            xff,
            forwarded: HeaderValue::from_str(&forwarded).ok(),
        }
    }
}

/// [`PeerHeaders`] for a client: formatting an address costs more than
/// the rest of the header rewrite, and consecutive requests on a proxy
/// thread mostly come from the same client and host (keep-alive), so each
/// thread remembers the last one.
fn peer_headers(ip: IpAddr, host: Option<&HeaderValue>) -> (HeaderValue, Option<HeaderValue>) {
    thread_local! {
        static LAST: RefCell<Option<PeerHeaders>> = const { RefCell::new(None) };
    }
    LAST.with(|cell| {
        let mut last = cell.borrow_mut();
        let p = match last.take() {
            Some(p) if p.ip == ip && p.host.as_ref() == host => p,
            _ => PeerHeaders::new(ip, host),
        };
        let values = (p.xff.clone(), p.forwarded.clone());
        *last = Some(p);
        values
    })
}

/// Join HTTP/2 cookie crumbs into one field (RFC 9113 §8.2.3). Allocates
/// only when there is more than one.
fn join_cookies(h: &mut HeaderMap) {
    let mut crumbs = h.get_all(header::COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, crumb) in h.get_all(header::COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofable_names() {
        for n in [
            "x-authenticated-user",
            "x-authenticated-scope",
            "x_authenticated_user",
            "x-forwarded-for",
            "x-forwarded-user",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(spoofable(n), "{n}");
        }
        for n in [
            "x-request-id",
            "authorization",
            "x-authenticatedx",
            "content-type",
        ] {
            assert!(!spoofable(n), "{n}");
        }
    }

    #[test]
    fn names_are_classified() {
        for n in [
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_eq!(classify(n), Kind::HopByHop, "{n}");
        }
        assert_eq!(classify("connection"), Kind::Connection);
        assert_eq!(classify("proxy-connection"), Kind::Connection);
        assert_eq!(classify("content-length"), Kind::ContentLength);
        assert_eq!(classify("authorization"), Kind::Authorization);
        assert_eq!(classify("x-forwarded-host"), Kind::Spoofable);
        for n in [
            "host",
            "x-request-id",
            "tee",
            "upgrade-insecure-requests",
            "f",
        ] {
            assert_eq!(classify(n), Kind::Other, "{n}");
        }
    }

    #[test]
    fn connection_named_headers_and_hop_by_hop_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Foo, x-authenticated-scope"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("proxy-connection", HeaderValue::from_static("x-bar"));
        h.insert("x-bar", HeaderValue::from_static("1"));
        h.insert("x-authenticated-user", HeaderValue::from_static("admin"));
        h.insert("x_authenticated_user", HeaderValue::from_static("admin"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let mut response = h.clone();
        strip_headers(
            &mut h,
            Message::Request {
                keep_authorization: false,
            },
        );
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-keep"]);
        // A response keeps its length and what only a client could spoof.
        strip_headers(&mut response, Message::Response);
        let mut names: Vec<&str> = response.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "authorization",
                "content-length",
                "x-authenticated-user",
                "x-keep",
                "x_authenticated_user"
            ]
        );
    }

    #[test]
    fn authorization_is_kept_when_the_route_forwards_it() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        strip_headers(
            &mut h,
            Message::Request {
                keep_authorization: true,
            },
        );
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["authorization"]);
    }

    #[test]
    fn peer_headers_per_address_family_and_host() {
        let host = HeaderValue::from_static("api.example:8080");
        let (xff, fwd) = peer_headers("10.1.2.3".parse().unwrap(), Some(&host));
        assert_eq!(xff, "10.1.2.3");
        assert_eq!(
            fwd.unwrap(),
            "for=10.1.2.3;proto=http;host=\"api.example:8080\""
        );
        // A different address or host replaces the remembered one.
        let (xff, fwd) = peer_headers("::1".parse().unwrap(), Some(&host));
        assert_eq!(xff, "::1");
        assert_eq!(
            fwd.unwrap(),
            "for=\"[::1]\";proto=http;host=\"api.example:8080\""
        );
        let (_, fwd) = peer_headers("::1".parse().unwrap(), None);
        assert_eq!(fwd.unwrap(), "for=\"[::1]\";proto=http");
        // A host that is not plain stays out of the quoted-string.
        let odd = HeaderValue::from_static("a\"b");
        let (xff, fwd) = peer_headers("10.1.2.3".parse().unwrap(), Some(&odd));
        assert_eq!(xff, "10.1.2.3");
        assert_eq!(fwd.unwrap(), "for=10.1.2.3;proto=http");
    }
}
