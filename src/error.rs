//! Every rejection the gateway, the OAuth endpoints and the admin listener
//! can answer with, and the one place that turns it into an HTTP response
//! (status, `WWW-Authenticate`, `Retry-After`, cache headers and a small
//! JSON body). The errors of the layers below (database, token store,
//! accounts, password hashing) become rejections here, through `From`, so
//! handlers use `?` and nothing else in the crate decides an error status.
//!
//! Descriptions are fixed strings (the admin API's name the field at fault,
//! e.g. `scopes[1]: no scope has this value`): no client input is ever
//! echoed back, and internal details (SQL errors, OS errors) go to the log,
//! never to the client. The status table is in `docs/http.md`.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::accounts::password::HashError;
use crate::accounts::store::StoreError;
use crate::body::{self, Body};
use crate::clients::codes::CodeError;
use crate::clients::store::ClientError;
use crate::db::DbError;
use crate::tokens::bearer::MalformedCredentials;
use crate::tokens::cache::TokenError;
use crate::tokens::issue::IssueError;

/// How long a client is told to wait after a 503 for a database that
/// cannot answer.
pub const RETRY_AFTER_SECS: u32 = 2;

/// `Bearer realm="scopegate"`: the challenge without an error code
/// (RFC 6750 §3.1: no credentials, or another scheme).
pub const CHALLENGE: &str = "Bearer realm=\"scopegate\"";

/// `Basic realm="scopegate"`: the challenge of a failed client
/// authentication that used HTTP Basic (RFC 6749 §5.2).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"scopegate\"";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed request (path, headers, framing): 400 without a challenge.
    BadRequest(&'static str),
    /// Body framing the gateway will not forward (HTTP/1.1): 400, and the
    /// connection is closed after it (`Connection: close`), so nothing
    /// after the body is read as a request.
    BadFraming(&'static str),
    /// Admin API: the body or the query is not what the endpoint takes
    /// (not JSON, not an object, a repeated parameter): 400.
    InvalidBody(Cow<'static, str>),
    /// Admin API: a body that is not `application/json`: 415.
    UnsupportedMediaType,
    /// Admin API: no account, scope, role or grant with this id or name: 404.
    UnknownResource(&'static str),
    /// Admin API: a duplicate (name, value, grant): 409; the description
    /// names the field.
    Conflict(&'static str),
    /// Admin API: a field with an invalid value: 422; the description
    /// starts with the field's name.
    InvalidField(Cow<'static, str>),
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
    /// An introspection caller over `oauth.introspections_per_caller`.
    TooManyIntrospections {
        retry_after_secs: u32,
    },
    PayloadTooLarge,
    BadGateway,
    GatewayTimeout,
    /// Client authentication failed (RFC 6749 §5.2 `invalid_client`):
    /// unknown client, wrong or missing secret. `basic`: the client tried
    /// HTTP Basic, so the answer carries a Basic challenge.
    InvalidClient {
        basic: bool,
    },
    /// RFC 6749 §5.2 error from `/oauth/*` (always `no-store`).
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: Cow<'static, str>,
    },
    /// A bug or an unexpected failure; details go to the log, not the client.
    Internal,
}

/// A 405 unless the request's method is one of `allowed` (`allow` is the
/// `Allow` value that lists them): for the endpoints the server answers
/// itself (`/oauth/*`, `/admin/*`), whose methods are fixed.
pub fn require_method<B>(
    req: &http::Request<B>,
    allowed: &[http::Method],
    allow: &'static str,
) -> Result<(), Rejection> {
    if allowed.contains(req.method()) {
        Ok(())
    } else {
        Err(Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static(allow),
        })
    }
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
            BadRequest(_) | BadFraming(_) | InvalidAuthRequest(_) | InvalidBody(_) => {
                StatusCode::BAD_REQUEST
            }
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NotFound | UnknownResource(_) => StatusCode::NOT_FOUND,
            Conflict(_) => StatusCode::CONFLICT,
            InvalidField(_) => StatusCode::UNPROCESSABLE_ENTITY,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            MissingCredentials | InvalidToken | InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Unavailable { .. } | Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            TooManyRequests { .. } | TooManyIntrospections { .. } => StatusCode::TOO_MANY_REQUESTS,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
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
            BadRequest(d) | BadFraming(d) => ("invalid_request", d),
            InvalidAuthRequest(d) => ("invalid_request", d),
            InvalidBody(d) => ("invalid_request", d),
            UnsupportedMediaType => (
                "unsupported_media_type",
                "the body must be application/json",
            ),
            NotFound => ("not_found", "no route matches this request"),
            UnknownResource(d) => ("not_found", d),
            Conflict(d) => ("conflict", d),
            InvalidField(d) => ("invalid_field", d),
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
            TooManyIntrospections { .. } => (
                "too_many_requests",
                "too many introspection requests from this caller; retry later",
            ),
            PayloadTooLarge => ("payload_too_large", "the request body is too large"),
            BadGateway => ("bad_gateway", "the upstream could not be reached"),
            GatewayTimeout => ("gateway_timeout", "the upstream did not answer in time"),
            InvalidClient { .. } => ("invalid_client", "client authentication failed"),
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
            Rejection::InvalidClient { basic: true } => {
                Some(HeaderValue::from_static(BASIC_CHALLENGE))
            }
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
            Rejection::BadFraming(_) => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Rejection::Unavailable { retry_after_secs }
            | Rejection::Overloaded { retry_after_secs }
            | Rejection::TooManyRequests { retry_after_secs } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            // Only `/oauth/introspect` answers it: an OAuth answer.
            Rejection::TooManyIntrospections { retry_after_secs } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            }
            Rejection::OAuth { .. } | Rejection::InvalidClient { .. } => {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            }
            _ => {}
        }
        res
    }
}

impl From<MalformedCredentials> for Rejection {
    fn from(e: MalformedCredentials) -> Self {
        Rejection::InvalidAuthRequest(e.0)
    }
}

impl From<TokenError> for Rejection {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid => Rejection::InvalidToken,
            TokenError::Unavailable => Rejection::Unavailable {
                retry_after_secs: RETRY_AFTER_SECS,
            },
            TokenError::Throttled { retry_after_secs } => {
                Rejection::TooManyRequests { retry_after_secs }
            }
        }
    }
}

/// 503 when the database could not be reached (or answer in time), 500 for
/// anything else; the details are logged, never sent.
impl From<DbError> for Rejection {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "database unavailable");
                Rejection::Unavailable {
                    retry_after_secs: RETRY_AFTER_SECS,
                }
            }
            DbError::Query(q) => {
                tracing::error!(error = %crate::db::pg_error_text(&q), "database query failed");
                Rejection::Internal
            }
        }
    }
}

impl From<CodeError> for Rejection {
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::Db(e) => e.into(),
            CodeError::Random(e) => {
                tracing::error!(error = %e, "cannot generate an authorization code");
                Rejection::Internal
            }
        }
    }
}

impl From<IssueError> for Rejection {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Db(e) => e.into(),
            IssueError::Random(msg) => {
                tracing::error!(error = %msg, "cannot generate a token");
                Rejection::Internal
            }
        }
    }
}

/// A saturated hashing pool is a 503 with a short `Retry-After`.
impl From<HashError> for Rejection {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Rejection::Overloaded {
                retry_after_secs: 1,
            },
            other => {
                tracing::error!(error = %other, "password hashing failed");
                Rejection::Internal
            }
        }
    }
}

impl Rejection {
    /// The client registry's errors as the admin API answers them: 404
    /// unknown, 409 duplicate, 422 invalid field (named).
    pub fn from_client_store(e: ClientError) -> Rejection {
        match e {
            ClientError::Db(e) => e.into(),
            ClientError::Random(e) => {
                tracing::error!(error = %e, "cannot generate a client id or secret");
                Rejection::Internal
            }
            ClientError::InvalidField { field, message } => {
                Rejection::InvalidField(format!("{field}: {message}").into())
            }
            ClientError::UnknownScope(_) => {
                Rejection::InvalidField("scopes: no scope has this value".into())
            }
            ClientError::Duplicate(_) => {
                Rejection::Conflict("name: a client with this name already exists")
            }
            ClientError::AccountTaken(_) => Rejection::Conflict(
                "name: an account holds the service account's name (client:<name>)",
            ),
            ClientError::UnknownClient(_) => Rejection::UnknownResource("no client has this id"),
            ClientError::Public(_) => Rejection::Conflict("a public client has no secret"),
        }
    }

    /// A store failure as the admin API answers it: 404 for an unknown id,
    /// 409 for a duplicate, 422 for an invalid value (naming the field),
    /// and the database or hashing pool failing as everywhere else.
    pub fn from_admin_store(e: StoreError) -> Rejection {
        use crate::accounts::InvalidCredential as C;
        match e {
            StoreError::Db(e) => e.into(),
            StoreError::Hash(e) => e.into(),
            StoreError::Invalid(c) => {
                let field = match c {
                    C::EmptyUsername | C::UsernameTooLong | C::UsernameCharacters => "username",
                    C::EmptyPassword | C::PasswordTooLong => "password",
                };
                Rejection::InvalidField(format!("{field}: {c}").into())
            }
            StoreError::InvalidField { field, message } => {
                Rejection::InvalidField(format!("{field}: {message}").into())
            }
            StoreError::DuplicateAccount(_) => {
                Rejection::Conflict("username: an account with this username already exists")
            }
            StoreError::DuplicateScope(_) => {
                Rejection::Conflict("value: a scope with this value already exists")
            }
            StoreError::DuplicateScopeName(_) => {
                Rejection::Conflict("name: a scope with this name already exists")
            }
            StoreError::DuplicateRole(_) => {
                Rejection::Conflict("name: a role with this name already exists")
            }
            StoreError::AlreadyGranted(_) => Rejection::Conflict("this grant exists already"),
            StoreError::UnknownAccount(_)
            | StoreError::UnknownId {
                kind: "account", ..
            } => Rejection::UnknownResource("no account has this id"),
            StoreError::UnknownId { kind: "scope", .. } => {
                Rejection::UnknownResource("no scope has this id")
            }
            StoreError::UnknownId { .. } => Rejection::UnknownResource("no role has this id"),
            StoreError::NotGranted(_) => Rejection::UnknownResource("no such grant"),
            StoreError::UnknownScope(_) => {
                Rejection::InvalidField("scope: no scope has this value".into())
            }
            StoreError::UnknownRole(_) => {
                Rejection::InvalidField("role: no role has this name".into())
            }
            StoreError::Random(msg) => {
                tracing::error!(error = %msg, "admin change failed");
                Rejection::Internal
            }
        }
    }
}

/// Store failures seen by the OAuth endpoints: the caller's own account
/// vanished (its token is no longer valid), a value it sent is invalid, or
/// the machinery below failed.
impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => e.into(),
            StoreError::Hash(e) => e.into(),
            StoreError::UnknownAccount(_) => Rejection::InvalidToken,
            StoreError::Invalid(e) => {
                Rejection::oauth(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "account update failed");
                Rejection::Internal
            }
        }
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
    fn invalid_client_challenges_only_after_basic() {
        let r = Rejection::InvalidClient { basic: true }.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE).unwrap(),
            BASIC_CHALLENGE
        );
        assert_eq!(header(&r, header::CACHE_CONTROL).unwrap(), "no-store");
        let r = Rejection::InvalidClient { basic: false }.into_response();
        assert_eq!(r.status(), 401);
        assert!(header(&r, header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn too_many_introspections_is_429_with_retry_after() {
        let r = Rejection::TooManyIntrospections {
            retry_after_secs: 3,
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, header::RETRY_AFTER).unwrap(), "3");
        assert_eq!(header(&r, header::CACHE_CONTROL).unwrap(), "no-store");
        assert!(header(&r, header::WWW_AUTHENTICATE).is_none());
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
