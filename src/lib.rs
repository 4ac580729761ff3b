//! # scopegate
//!
//! A reverse-proxy authorization gateway. Clients send
//! `Authorization: Bearer <token>`; scopegate finds the route in its TOML
//! configuration, checks the token against a moka cache backed by Postgres,
//! checks the scopes the route requires, and either rejects the request with
//! the right OAuth status or streams it upstream with identity headers the
//! upstream can trust. An embedded OAuth2 endpoint issues the tokens. The
//! reference is in `docs/` (`configuration.md`, `http.md`, `security.md`,
//! `operations.md`).
//!
//! ## A request on the proxy listener
//!
//! [`proxy`] is the front door. It creates one [`request::RequestCtx`] and
//! runs the phases, each a function of its own:
//!
//! ```text
//! check_request -> normalize -+-> /oauth/*: oauth::OAuth::handle ----------------+-> log
//!                             +-> route -> authenticate -> authorize -> forward -+
//! ```
//!
//! `check_request`, `normalize`, `route`, `authenticate` and `authorize` are
//! in [`gateway`], `forward` in [`gateway::forward`], `log` in [`request`].
//! A phase that fails returns a [`error::Rejection`]; the one mapping from
//! rejections (and the errors of the layers below) to HTTP responses is
//! [`error`].
//!
//! ## Modules, top to bottom (arrows point down only)
//!
//! - `main.rs` calls [`cli::main`]; [`cli`] is the command line, one file
//!   per command group, and the only place that prints or picks exit codes.
//! - [`app`] wires the state and the listeners: thread-per-core proxy
//!   threads and the admin listener, on [`server`] (hyper-util, limits,
//!   graceful drain).
//! - [`proxy`] (the proxy listener's front door), [`admin`] (the admin
//!   listener: health, metrics, OpenAPI, the admin API), [`oauth`] (the
//!   `/oauth/*` endpoints, the login page, the `/.well-known` metadata,
//!   client authentication), [`gateway`] (the proxy phases).
//! - [`request`] (the per-request context and the log phase) and [`error`]
//!   (rejections and their responses).
//! - [`clients`] (the OAuth client registry: ids, secrets, redirect URIs,
//!   authorization codes), above the next two: a client's service account
//!   is an account, and deleting a client revokes its tokens.
//! - [`tokens`] (generation, hashing, Bearer parsing, the validation cache
//!   and the `LISTEN` connection that pushes revocations into it,
//!   issuing, rotation, revocation) and [`accounts`] (accounts, scopes,
//!   roles, argon2 hashing, bootstrap).
//! - [`db`] (pool, dedicated connections, TLS to Postgres, migrations,
//!   embedded Postgres).
//! - Leaves: [`config`] (TOML to validated types), [`scope`] (scope-token
//!   syntax and the wildcard rule), [`percent`] (percent-escapes), [`body`]
//!   (the streaming body type), [`metrics`] (the per-route request
//!   counters the log phase records and `/metrics` exports), [`rate`]
//!   (per-key rate limits).
//!
//! [`echo`] is the demo and test upstream; `testing` (feature `testing`) the
//! test harness: a throwaway Postgres and a database per test.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod body;
pub mod cli;
pub mod clients;
pub mod config;
pub mod db;
pub mod echo;
pub mod error;
pub mod gateway;
pub mod metrics;
pub mod oauth;
pub mod percent;
pub mod proxy;
pub mod rate;
pub mod request;
pub mod scope;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokens;
