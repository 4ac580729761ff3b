//! # scopegate
//!
//! A reverse-proxy authorization gateway. Clients send
//! `Authorization: Bearer <token>`; for every request scopegate
//!
//! 1. **normalizes** the path and **routes** it by the TOML configuration
//!    ([`config`], [`gateway::route`]): each route names an upstream and the
//!    OAuth scopes it requires;
//! 2. **authenticates** the token through a bounded moka cache backed by
//!    Postgres ([`tokens::cache`]);
//! 3. **authorizes** it against the route's scopes ([`gateway::authorize`]);
//! 4. rejects with the right OAuth status ([`error::Rejection`], the one place
//!    that maps rejections to responses), or **forwards** the request upstream,
//!    streaming, with identity headers upstreams can trust.
//!
//! An embedded OAuth2 endpoint ([`oauth`]) issues the tokens: password and
//! refresh grants, revocation, introspection. Accounts, scopes and roles
//! live in Postgres ([`db`], migrations under `migrations/`).
//!
//! ```text
//!  client ──► listener (server) ──► /oauth/* ──► oauth ──► accounts, tokens ──► Postgres
//!                  │
//!                  └─► gateway: normalize ─► route ─► authenticate ─► authorize ─► forward ──► upstream
//!                                                        │ (moka cache)
//!                                                        └──────────────► Postgres
//! ```
//!
//! [`app`] wires the pieces together; [`cli`] is the command line; `main.rs`
//! only calls [`cli::main`].

pub mod accounts;
pub mod app;
pub mod body;
pub mod cli;
pub mod config;
pub mod db;
pub mod dev;
pub mod echo;
pub mod error;
pub mod gateway;
pub mod oauth;
pub mod scope;
pub mod server;
pub mod testing;
pub mod tokens;
