//! The admin API's request and response plumbing: JSON bodies read
//! strictly, typed field access that names the field at fault, pagination
//! parameters, path segments, and the answers (`docs/http.md`, "Admin API").
//!
//! - A body must be `application/json` (415 otherwise), at most
//!   [`MAX_BODY_BYTES`] (413), received within the deadline, valid JSON
//!   (400, with the line and column of the syntax error) and an object
//!   (400).
//! - Fields: an unknown field is a 422 that lists the allowed ones (a typo
//!   such as `scope` for `scopes` must not be silently ignored); a field of
//!   the wrong type is a 422 naming it and the expected type.
//! - `?limit=N` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and
//!   `?after=<id>`: invalid values are 422s naming the parameter; a
//!   repeated one is a 400.
//!
//! Values may hold passwords: [`Object`]'s `Debug` prints only the field
//! names.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use crate::accounts::admin_store::Page;
use crate::body::{self, Body};
use crate::error::Rejection;

/// Largest admin request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

fn invalid_body(d: &'static str) -> Rejection {
    Rejection::InvalidBody(Cow::Borrowed(d))
}

fn invalid_field(field: &str, message: &str) -> Rejection {
    Rejection::InvalidField(format!("{field}: {message}").into())
}

/// Is the media type `application/json` (parameters allowed)?
fn is_json(headers: &HeaderMap) -> bool {
    let mut all = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return false;
    };
    v.to_str().ok().is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Read the body of a request that must carry a JSON object.
pub async fn read_object<B>(
    headers: &HeaderMap,
    body: B,
    deadline: Duration,
) -> Result<Object, Rejection>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !is_json(headers) {
        return Err(Rejection::UnsupportedMediaType);
    }
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| invalid_body("invalid Content-Length"))?;
        if len > MAX_BODY_BYTES as u64 {
            return Err(Rejection::PayloadTooLarge);
        }
    }
    let collected = tokio::time::timeout(deadline, Limited::new(body, MAX_BODY_BYTES).collect())
        .await
        .map_err(|_| invalid_body("the request body was not received in time"))?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Rejection::PayloadTooLarge)
        }
        Err(_) => return Err(invalid_body("the request body could not be read")),
    };
    Object::parse(&bytes)
}

/// A JSON object from a request body.
pub struct Object(Map<String, Value>);

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        // Passwords travel as strings in here; wipe them.
        for v in self.0.values_mut() {
            if let Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

impl Object {
    pub fn parse(bytes: &[u8]) -> Result<Object, Rejection> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid_body("a JSON object body is required"));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Object(map)),
            Ok(_) => Err(invalid_body("the body must be a JSON object")),
            Err(e) => Err(Rejection::InvalidBody(
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
                .into(),
            )),
        }
    }

    /// Refuse fields other than `allowed` (422 listing them).
    pub fn only(&self, allowed: &[&str]) -> Result<(), Rejection> {
        if self.0.keys().all(|k| allowed.contains(&k.as_str())) {
            return Ok(());
        }
        Err(Rejection::InvalidField(
            format!(
                "the body has a field this endpoint does not take; the fields are: {}",
                allowed.join(", ")
            )
            .into(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// A required string.
    pub fn string(&mut self, field: &str) -> Result<String, Rejection> {
        match self.0.get_mut(field) {
            Some(Value::String(s)) => Ok(std::mem::take(s)),
            None | Some(Value::Null) => Err(invalid_field(field, "is required")),
            Some(_) => Err(invalid_field(field, "must be a string")),
        }
    }

    /// An optional string: absent and `null` are `None`.
    pub fn optional_string(&mut self, field: &str) -> Result<Option<String>, Rejection> {
        Ok(self.nullable_string(field)?.flatten())
    }

    /// For a PATCH: absent is `None`, `null` is `Some(None)`.
    pub fn nullable_string(&mut self, field: &str) -> Result<Option<Option<String>>, Rejection> {
        match self.0.get_mut(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(std::mem::take(s)))),
            Some(_) => Err(invalid_field(field, "must be a string or null")),
        }
    }

    /// An optional boolean (`null` is refused: it would mean nothing).
    pub fn optional_bool(&self, field: &str) -> Result<Option<bool>, Rejection> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid_field(field, "must be true or false")),
        }
    }

    /// An optional list of strings (absent or `null`: empty), each once.
    pub fn string_list(&self, field: &str) -> Result<Vec<String>, Rejection> {
        let items = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(invalid_field(field, "must be an array of strings")),
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::String(s) = item else {
                return Err(invalid_field(&format!("{field}[{i}]"), "must be a string"));
            };
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        Ok(out)
    }
}

/// `?limit=N&after=ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub limit: i64,
    pub after: Option<i32>,
}

impl Paging {
    pub fn from_query(query: Option<&str>) -> Result<Paging, Rejection> {
        let mut limit = None;
        let mut after = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*name {
                "limit" => &mut limit,
                "after" => &mut after,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(invalid_body("a query parameter is repeated"));
            }
        }
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| invalid_field("limit", "must be an integer from 1 to 1000"))?,
        };
        let after = match after {
            None => None,
            Some(v) => Some(
                v.parse::<i32>()
                    .map_err(|_| invalid_field("after", "must be an id (an integer)"))?,
            ),
        };
        Ok(Paging { limit, after })
    }
}

/// A JSON answer with `status`.
pub fn answer(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(body::json(value));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serialize one of the store's types.
pub fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, Rejection> {
    serde_json::to_value(v).map_err(|e| {
        tracing::error!(error = %e, "cannot serialize an admin answer");
        Rejection::Internal
    })
}

/// `200` with one object.
pub fn ok<T: serde::Serialize>(v: &T) -> Result<Response<Body>, Rejection> {
    Ok(answer(StatusCode::OK, &to_value(v)?))
}

/// `201` with the object and `Location: <location>`.
pub fn created<T: serde::Serialize>(location: &str, v: &T) -> Result<Response<Body>, Rejection> {
    let mut r = answer(StatusCode::CREATED, &to_value(v)?);
    let location = HeaderValue::from_str(location).map_err(|_| Rejection::Internal)?;
    r.headers_mut().insert(header::LOCATION, location);
    Ok(r)
}

/// `200 {"items": [...], "next": <id or null>}`.
pub fn page<T: serde::Serialize>(page: &Page<T>) -> Result<Response<Body>, Rejection> {
    let items = page.items.iter().map(to_value).collect::<Result<_, _>>()?;
    let body = serde_json::json!({ "items": Value::Array(items), "next": page.next });
    Ok(answer(StatusCode::OK, &body))
}

pub fn no_content() -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// A path segment, percent-decoded (scope values may hold `/`, `%`, ...);
/// `None` when it does not decode to UTF-8 or holds a malformed escape.
pub fn decode_segment(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(crate::percent::escape_at(b, i)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A value as a path segment (the inverse of [`decode_segment`]): every
/// byte outside RFC 3986 `unreserved` and `:@` is percent-encoded.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Rejection) -> u16 {
        r.status().as_u16()
    }

    #[test]
    fn bodies() {
        assert_eq!(status(Object::parse(b"").unwrap_err()), 400);
        assert_eq!(status(Object::parse(b"[1]").unwrap_err()), 400);
        assert_eq!(status(Object::parse(b"{\"a\":").unwrap_err()), 400);
        let mut o = Object::parse(br#"{"s":"x","n":1,"z":null,"l":["a","a",2]}"#).unwrap();
        assert_eq!(status(o.only(&["s"]).unwrap_err()), 422);
        assert_eq!(o.string("s").unwrap(), "x");
        assert_eq!(status(o.string("n").unwrap_err()), 422);
        assert_eq!(status(o.string("missing").unwrap_err()), 422);
        assert_eq!(o.nullable_string("z").unwrap(), Some(None));
        assert_eq!(o.nullable_string("missing").unwrap(), None);
        assert_eq!(status(o.optional_bool("n").unwrap_err()), 422);
        let e = o.string_list("l").unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(format!("{e:?}").contains("l[2]"));
    }

    #[test]
    fn paging() {
        let p = Paging::from_query(None).unwrap();
        assert_eq!((p.limit, p.after), (100, None));
        let p = Paging::from_query(Some("limit=5&after=7&x=1")).unwrap();
        assert_eq!((p.limit, p.after), (5, Some(7)));
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "after=x",
            "after=99999999999",
        ] {
            assert_eq!(
                status(Paging::from_query(Some(bad)).unwrap_err()),
                422,
                "{bad}"
            );
        }
        assert_eq!(
            status(Paging::from_query(Some("limit=1&limit=2")).unwrap_err()),
            400
        );
    }

    #[test]
    fn segments() {
        assert_eq!(decode_segment("orders%3Aread").unwrap(), "orders:read");
        assert_eq!(decode_segment("a%2Fb").unwrap(), "a/b");
        assert!(decode_segment("a%2").is_none());
        assert!(decode_segment("%FF").is_none());
        for v in ["orders:read", "a/b?c#d%e", "x y"] {
            assert_eq!(decode_segment(&encode_segment(v)).unwrap(), v);
        }
    }
}
