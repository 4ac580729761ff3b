//! The token endpoint from a test's side: the configuration that keeps
//! login throttling out of the way, form encoding, accounts made through
//! the store, password logins. Shared by every test binary.

use std::net::SocketAddr;

use scopegate::accounts::password::Hasher;
use scopegate::accounts::store::{self, NewAccount, StoreError};
use scopegate::accounts::Password;
use scopegate::testing::TestDb;

use super::{http, send, Resp};

/// Throttling out of the way (every test logs in from 127.0.0.1), two
/// hashing threads, one protected route.
pub const OAUTH_CONFIG: &str = r#"
[login]
max_failures = 1000
max_failures_per_ip = 1000
hash_concurrency = 2

[[routes]]
name = "orders"
path = "/api/orders"
upstream = "UPSTREAM"
scopes = ["orders:read"]
"#;

pub const FORM: &str = "application/x-www-form-urlencoded";

pub fn encode(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Create an account holding `scopes` (created when missing) on `db`, as
/// the CLI or admin API would (for a gateway in this process or a `serve`
/// child on the same database).
pub async fn account_in(db: &TestDb, username: &str, password: &str, scopes: &[&str]) -> i32 {
    let pool = db.pool();
    for s in scopes {
        match store::create_scope(&pool, s, s, None).await {
            Ok(_) | Err(StoreError::DuplicateScope(_) | StoreError::DuplicateScopeName(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    store::create_account(
        &pool,
        &Hasher::new(1),
        NewAccount {
            username: username.into(),
            password: Password::new(password),
            first_name: None,
            last_name: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: Vec::new(),
        },
    )
    .await
    .unwrap()
    .id
}

/// `POST /oauth/token` with `params` to the proxy listener at `addr`.
pub async fn token_at(addr: SocketAddr, params: &[(&str, &str)]) -> Resp {
    send(
        http()
            .post(format!("http://{addr}/oauth/token"))
            .header("content-type", FORM)
            .body(encode(params)),
    )
    .await
}

/// A password login at the proxy listener at `addr`.
pub async fn login_at(addr: SocketAddr, username: &str, password: &str) -> Resp {
    let params = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    token_at(addr, &params).await
}
