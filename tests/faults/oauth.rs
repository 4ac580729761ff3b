//! Accounts and `/oauth/token` calls for the fault tests: an account made
//! through the store (in-process gateway or a `serve` child on the same
//! database), a password login, a refresh.

use scopegate::accounts::password::Hasher;
use scopegate::accounts::store::{self, NewAccount, StoreError};
use scopegate::accounts::Password;
use scopegate::testing::TestDb;

use crate::support::{http, send, Resp, TestApp};

/// Throttling out of the way (every test logs in from 127.0.0.1), two
/// hashing threads, one protected route.
pub const CONFIG: &str = r#"
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

/// Create an account holding `scopes` (created when missing) on `db`, as
/// the CLI or admin API would.
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

/// Create an account on `app`'s database.
pub async fn new_account(app: &TestApp, username: &str, password: &str, scopes: &[&str]) -> i32 {
    account_in(&app.db, username, password, scopes).await
}

/// `POST /oauth/token` with `params` to the proxy listener at `addr`.
pub async fn token_at(addr: std::net::SocketAddr, params: &[(&str, &str)]) -> Resp {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        body.append_pair(k, v);
    }
    send(
        http()
            .post(format!("http://{addr}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish()),
    )
    .await
}

/// A password login.
pub async fn login_at(addr: std::net::SocketAddr, username: &str, password: &str) -> Resp {
    token_at(
        addr,
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
    )
    .await
}

pub async fn login(app: &TestApp, username: &str, password: &str) -> Resp {
    login_at(app.addr, username, password).await
}
