//! The admin listener (`server.admin_listen`): liveness and readiness
//! (`docs/operations.md`, "Health"). Keep it on a private address.
//!
//! - `GET /healthz`: 200 while the process serves requests;
//! - `GET /readyz`: 200 when the database answers `SELECT 1` within two
//!   seconds, else 503 + `Retry-After` (through [`Rejection`], like every
//!   other error answer).

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::db::{DbError, DbPool};
use crate::error::Rejection;

/// The admin listener's state.
pub struct Admin {
    pub db: DbPool,
}

impl Admin {
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body> {
        let result = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/healthz") => Ok(text(StatusCode::OK, "ok\n")),
            (&Method::GET | &Method::HEAD, "/readyz") => {
                self.ready().await.map(|()| text(StatusCode::OK, "ready\n"))
            }
            _ => Err(Rejection::NotFound),
        };
        result.unwrap_or_else(Rejection::into_response)
    }

    /// Can the database answer right now?
    async fn ready(&self) -> Result<(), Rejection> {
        let check = async {
            let conn = self.db.get().await?;
            conn.simple_query("SELECT 1")
                .await
                .map_err(crate::db::classify)?;
            Ok::<_, DbError>(())
        };
        // Not ready, whatever the reason: always a 503 (never a 500).
        let failure = match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer to SELECT 1 within 2 s".into(),
        };
        Err(DbError::Unavailable(failure).into())
    }
}

fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = status;
    r
}
