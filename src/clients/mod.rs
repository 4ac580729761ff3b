//! The OAuth client registry (`docs/operations.md`, "OAuth clients").
//!
//! A client is a name, a generated `client_id`, the scopes that bound what
//! any token issued through it may carry, the redirect URIs it may receive
//! codes at, and, for a **confidential** client, a secret. A **public**
//! client (a browser or native app, RFC 6749 §2.1) has none and can only
//! use the authorization code flow with PKCE.
//!
//! - [`secret`]: the formats of client ids, secrets and authorization
//!   codes, and the constant-time secret check;
//! - [`redirect`]: which redirect URIs may be registered;
//! - [`store`]: the clients in Postgres (create, list, show, delete,
//!   rotate the secret, and the one-query lookup client authentication
//!   uses) — the CLI and the admin API are thin layers over it;
//! - [`codes`]: authorization codes: created after a login on the
//!   authorization page, exchanged once at the token endpoint.
//!
//! Every client has a **service account** (`client:<name>`), created and
//! deleted with it: `client_credentials` tokens belong to it, so upstreams
//! see it in `X-Authenticated-User`. Its password column holds
//! [`SERVICE_ACCOUNT_PASSWORD`], which is not a PHC string: verification
//! refuses it (at the cost of a real verification, so timing says
//! nothing), and no password can be set on it.

pub mod codes;
pub mod redirect;
pub mod secret;
pub mod store;

/// The password column of a client's service account: not a PHC string
/// (those start with `$`), so no password ever matches it.
pub const SERVICE_ACCOUNT_PASSWORD: &str = "!oauth-client-service-account";

/// The username of a client's service account.
pub fn service_account_name(client_name: &str) -> String {
    format!("client:{}", client_name.to_ascii_lowercase())
}
