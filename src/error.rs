//! Every rejection the gateway and the OAuth endpoints can answer with, and
//! the one place that turns it into an HTTP response (status,
//! `WWW-Authenticate`, `Retry-After`, cache headers and a small JSON body).
//!
//! Nothing else in the crate decides an error status. Descriptions are fixed
//! strings: no client input is ever echoed back.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, Body};

/// `Bearer realm="scopegate"`: the challenge without an error code
/// (RFC 6750 §3.1: no credentials, or another scheme).
pub const CHALLENGE: &str = "Bearer realm=\"scopegate\"";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed request (path, headers, framing): 400 without a challenge.
    BadRequest(&'static str),
    /// Malformed Bearer credentials: 400 with `error="invalid_request"`.
    InvalidAuthRequest(&'static str),
    NotFound,
    MethodNotAllowed {
        allow: HeaderValue,
    },
    /// No credentials (or a non-Bearer scheme) on a protected resource.
    MissingCredentials,
    /// Unknown, expired or revoked token, or an inactive account.
    InvalidToken,
    /// Token valid but lacking scope; `scope` is the route's requirement.
    InsufficientScope {
        scope: Option<HeaderValue>,
    },
    /// A caller lacks the privilege for a local endpoint (admin API, introspect).
    Forbidden(&'static str),
    /// The database cannot vouch for the request right now.
    Unavailable {
        retry_after_secs: u32,
    },
    /// Every password-hashing thread is busy and the queue is full.
    Overloaded {
        retry_after_secs: u32,
    },
    /// Login throttling.
    TooManyRequests {
        retry_after_secs: u32,
    },
    PayloadTooLarge,
    HeadersTooLarge,
    BadGateway,
    GatewayTimeout,
    /// RFC 6749 §5.2 error from `/oauth/*` (always `no-store`).
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: Cow<'static, str>,
    },
    /// A bug or an unexpected failure; details go to the log, not the client.
    Internal,
}

impl Rejection {
    pub fn oauth(
        status: StatusCode,
        error: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Rejection::OAuth {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        use Rejection::*;
        match self {
            BadRequest(_) | InvalidAuthRequest(_) => StatusCode::BAD_REQUEST,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            MissingCredentials | InvalidToken => StatusCode::UNAUTHORIZED,
            InsufficientScope { .. } | Forbidden(_) => StatusCode::FORBIDDEN,
            Unavailable { .. } | Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            BadGateway => StatusCode::BAD_GATEWAY,
            GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            OAuth { status, .. } => *status,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `(error, error_description)` of the JSON body.
    fn codes(&self) -> (&'static str, &str) {
        use Rejection::*;
        match self {
            BadRequest(d) => ("invalid_request", d),
            InvalidAuthRequest(d) => ("invalid_request", d),
            NotFound => ("not_found", "no route matches this request"),
            MethodNotAllowed { .. } => ("method_not_allowed", "method not allowed on this route"),
            MissingCredentials => ("unauthorized", "a Bearer token is required"),
            InvalidToken => (
                "invalid_token",
                "the access token is unknown, expired or revoked",
            ),
            InsufficientScope { .. } => (
                "insufficient_scope",
                "the access token lacks a scope this route requires",
            ),
            Forbidden(d) => ("forbidden", d),
            Unavailable { .. } => (
                "temporarily_unavailable",
                "the token store is unreachable; retry later",
            ),
            Overloaded { .. } => (
                "temporarily_unavailable",
                "too many logins are being processed; retry later",
            ),
            TooManyRequests { .. } => {
                ("too_many_requests", "too many failed attempts; retry later")
            }
            PayloadTooLarge => ("payload_too_large", "the request body is too large"),
            HeadersTooLarge => (
                "headers_too_large",
                "the request header section is too large",
            ),
            BadGateway => ("bad_gateway", "the upstream could not be reached"),
            GatewayTimeout => ("gateway_timeout", "the upstream did not answer in time"),
            OAuth {
                error, description, ..
            } => (error, description),
            Internal => ("server_error", "internal error"),
        }
    }

    fn www_authenticate(&self) -> Option<HeaderValue> {
        match self {
            Rejection::MissingCredentials => Some(HeaderValue::from_static(CHALLENGE)),
            Rejection::InvalidToken => Some(HeaderValue::from_static(
                "Bearer realm=\"scopegate\", error=\"invalid_token\"",
            )),
            Rejection::InvalidAuthRequest(_) => Some(HeaderValue::from_static(
                "Bearer realm=\"scopegate\", error=\"invalid_request\"",
            )),
            Rejection::InsufficientScope { scope } => {
                let mut v =
                    String::from("Bearer realm=\"scopegate\", error=\"insufficient_scope\"");
                if let Some(scope) = scope {
                    // Route scopes are validated scope-tokens: no `"` or `\`.
                    v.push_str(", scope=\"");
                    v.push_str(scope.to_str().unwrap_or_default());
                    v.push('"');
                }
                HeaderValue::from_str(&v).ok()
            }
            _ => None,
        }
    }

    /// The response. Every rejection carries a small JSON body.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let (error, description) = self.codes();
        let json = serde_json::json!({ "error": error, "error_description": description });
        let mut res = Response::new(body::full(Bytes::from(json.to_string())));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(v) = self.www_authenticate() {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        match &self {
            Rejection::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, allow.clone());
            }
            Rejection::Unavailable { retry_after_secs }
            | Rejection::Overloaded { retry_after_secs }
            | Rejection::TooManyRequests { retry_after_secs } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Rejection::OAuth { .. } => {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            }
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(r: &Response<Body>, name: header::HeaderName) -> Option<String> {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn challenges_follow_rfc6750() {
        let r = Rejection::MissingCredentials.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(header(&r, header::WWW_AUTHENTICATE).unwrap(), CHALLENGE);

        let r = Rejection::InvalidToken.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"scopegate\", error=\"invalid_token\""
        );

        let r = Rejection::InsufficientScope {
            scope: Some(HeaderValue::from_static("a:b c")),
        }
        .into_response();
        assert_eq!(r.status(), 403);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"scopegate\", error=\"insufficient_scope\", scope=\"a:b c\""
        );

        let r = Rejection::InvalidAuthRequest("x").into_response();
        assert_eq!(r.status(), 400);
        assert!(header(&r, header::WWW_AUTHENTICATE)
            .unwrap()
            .contains("invalid_request"));
    }

    #[test]
    fn retry_after_and_no_store() {
        let r = Rejection::Unavailable {
            retry_after_secs: 2,
        }
        .into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(header(&r, header::RETRY_AFTER).unwrap(), "2");
        let r = Rejection::oauth(StatusCode::BAD_REQUEST, "invalid_grant", "bad").into_response();
        assert_eq!(header(&r, header::CACHE_CONTROL).unwrap(), "no-store");
        assert_eq!(header(&r, header::PRAGMA).unwrap(), "no-cache");
        let r = Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static("GET"),
        }
        .into_response();
        assert_eq!(header(&r, header::ALLOW).unwrap(), "GET");
    }
}
