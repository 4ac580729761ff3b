//! The one response/request body type used across the crate: a boxed,
//! streaming body, so local answers (`Full`) and proxied upstream bodies
//! (`Incoming`) share a type without buffering.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response body.
pub fn json(v: &serde_json::Value) -> Body {
    full(Bytes::from(v.to_string()))
}
