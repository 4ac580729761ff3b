//! Black-box tests against the real server, a real Postgres (one throwaway
//! cluster per run, a database per test) and a real upstream. One test
//! binary, so the cluster is started once.

mod support;

mod accounts;
mod admin;
mod admin_effects;
mod cli;
mod clients;
mod clients_admin;
mod clients_authorize;
mod clients_browser;
mod clients_codes;
mod clients_python;
mod clients_tokens;
mod db_tls;
mod dev;
mod foundation;
mod front_door;
mod gateway;
mod gateway_cache;
mod gateway_headers;
mod gateway_stream;
mod layout;
mod logs;
mod metrics;
mod oauth;
mod oauth_endpoints;
mod oauth_races;
mod oauth_refresh;
mod oauth_throttle;
mod openapi;
mod push;
mod reload;
mod sweep;
