//! `scopegate route explain`: the route phase run on a made-up request,
//! answered as data (the command line prints it).

use http::Method;

use super::normalize::normalize_path;
use super::route::{forwarded_path, RouteMatch, RouteTable};
use crate::config::{Config, RouteConfig};

/// Which route a request would take, and what it would need.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The normalized path, when normalization changed it.
    pub normalized: Option<String>,
    pub route: RouteConfig,
    /// The route's position in the configuration.
    pub index: usize,
    /// `scheme://authority/path` the upstream would be asked for.
    pub upstream_url: String,
}

/// Why no route would serve the request (each is a usage error for the CLI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("{0:?} is not an HTTP method")]
    BadMethod(String),
    #[error("{path:?} would be rejected with 400: {reason}")]
    Rejected { path: String, reason: &'static str },
    #[error("no route matches {method} {path} (404)")]
    NoRoute { method: Method, path: String },
    #[error("a route matches {path} but not {method} (405; Allow: {allow})")]
    MethodNotAllowed {
        method: Method,
        path: String,
        allow: String,
    },
}

/// Explain `method path` (a query is ignored) with an optional `Host`.
pub fn explain(
    config: &Config,
    method: &str,
    path: &str,
    host: Option<&str>,
) -> Result<Explanation, ExplainError> {
    let method: Method = method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| ExplainError::BadMethod(method.to_owned()))?;
    let (raw_path, _query) = path.split_once('?').unwrap_or((path, ""));
    let normalized = normalize_path(raw_path).map_err(|e| ExplainError::Rejected {
        path: path.to_owned(),
        reason: e.description(),
    })?;
    let table = RouteTable::new(config.routes.clone());
    match table.find(host, &method, &normalized) {
        RouteMatch::NotFound => Err(ExplainError::NoRoute {
            method,
            path: normalized.into_owned(),
        }),
        RouteMatch::MethodNotAllowed { allow } => Err(ExplainError::MethodNotAllowed {
            method,
            path: normalized.to_string(),
            allow: allow.to_str().unwrap_or("").to_owned(),
        }),
        RouteMatch::Found(r) => {
            let up = &r.config.upstream;
            Ok(Explanation {
                upstream_url: format!(
                    "{}://{}{}",
                    up.scheme,
                    up.authority,
                    forwarded_path(r, &normalized)
                ),
                normalized: (normalized != raw_path).then(|| normalized.into_owned()),
                route: r.config.clone(),
                index: r.index,
            })
        }
    }
}
