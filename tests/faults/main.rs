//! The fault scenarios of `docs/security.md` ("Faults", F1–F15), one
//! binary with its own throwaway Postgres cluster (a database per test):
//! a database that is absent, killed, hung, slow or out of connections,
//! upstreams that refuse, reset, stall or lose their client, broken
//! reloads, SIGTERM mid-flight, spraying and stampedes, a login storm,
//! a skewed clock and a log nobody reads. Each test's name starts with
//! its id (`f02_...`); the scenarios proven elsewhere are named in that
//! table.

#[path = "../integration/support/mod.rs"]
mod support;

mod cache;
mod clock;
mod database;
mod hashing;
mod lifecycle;
mod upstream;
