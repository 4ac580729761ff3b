//! The clients in Postgres: what `scopegate client ...` and
//! `/admin/clients` do, and the lookup behind client authentication.
//!
//! Clients are named by their integer id (the admin API), or by their
//! name or `client_id` ([`find`], the CLI). Names are 1 to 64 characters of
//! `A-Z a-z 0-9 . _ -`, unique without regard to case (the service
//! account is `client:<name in lower case>`). Errors that are the
//! caller's fault are [`ClientError`]s of their own, so the CLI can exit 2
//! and the admin API answer 404/409/422.

use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;

use super::secret::{self, Secret};
use super::{redirect, service_account_name, SERVICE_ACCOUNT_PASSWORD};
use crate::accounts::scopes::{resolve_scopes, ResolveError};
use crate::db::{classify, DbError};
use crate::tokens::TokenHash;

/// A client as the CLI and the admin API show it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub id: i32,
    pub client_id: String,
    pub name: String,
    pub public: bool,
    /// Scope values, sorted.
    pub scopes: Vec<String>,
    /// In registration order.
    pub redirect_uris: Vec<String>,
    /// The service account's id.
    #[serde(skip)]
    pub account_id: i32,
}

impl Client {
    /// The service account's username.
    pub fn service_account(&self) -> String {
        service_account_name(&self.name)
    }
}

/// A client to register.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub name: String,
    /// Scope values; each must exist.
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub public: bool,
}

/// A newly registered client and, for a confidential one, its secret:
/// the only time the secret exists in clear.
#[derive(Debug)]
pub struct Created {
    pub client: Client,
    pub secret: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("a client named {0:?} already exists")]
    Duplicate(String),
    #[error("an account named {0:?} already exists; the client's service account needs that name")]
    AccountTaken(String),
    #[error("no scope with the value {0:?} (create it with `scopegate scope create`)")]
    UnknownScope(String),
    #[error("no client {0:?}")]
    UnknownClient(String),
    #[error("client {0:?} is public: it has no secret")]
    Public(String),
    #[error(transparent)]
    Db(DbError),
    #[error("{0}")]
    Random(#[from] secret::RandomError),
}

impl ClientError {
    /// A problem with the request, as opposed to the database or the
    /// machine failing.
    pub fn is_usage(&self) -> bool {
        !matches!(self, ClientError::Db(_) | ClientError::Random(_))
    }
}

crate::db::from_db_errors!(ClientError);

impl From<ResolveError> for ClientError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Unknown(value) => ClientError::UnknownScope(value),
            ResolveError::Db(e) => ClientError::Db(e),
        }
    }
}

/// 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), ClientError> {
    let ok = (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidField {
            field: "name",
            message:
                "must be 1 to 64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
                    .into(),
        })
    }
}

const CLIENT_COLUMNS: &str = "
SELECT c.client_pk, c.client_id, c.client_name, c.secret_hash IS NULL, c.account_id,
       COALESCE(ARRAY(SELECT s.scope_value FROM client_scopes x JOIN scopes s ON s.scope_id = x.scope_id
                       WHERE x.client_pk = c.client_pk ORDER BY s.scope_value), '{}'),
       COALESCE(ARRAY(SELECT u.redirect_uri FROM client_redirect_uris u
                       WHERE u.client_pk = c.client_pk ORDER BY u.mapping_id), '{}')
  FROM clients c";

fn client_from(row: &tokio_postgres::Row) -> Result<Client, ClientError> {
    Ok(Client {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        name: row.try_get(2)?,
        public: row.try_get(3)?,
        account_id: row.try_get(4)?,
        scopes: row.try_get(5)?,
        redirect_uris: row.try_get(6)?,
    })
}

/// Register a client, its scopes, its redirect URIs and its service
/// account, in one transaction.
pub async fn create(pool: &Pool, new: NewClient) -> Result<Created, ClientError> {
    check_name(&new.name)?;
    let mut uris: Vec<String> = Vec::with_capacity(new.redirect_uris.len());
    for uri in &new.redirect_uris {
        redirect::check(uri).map_err(|e| ClientError::InvalidField {
            field: "redirect_uris",
            message: e.to_string(),
        })?;
        if !uris.contains(uri) {
            uris.push(uri.clone());
        }
    }
    if new.public && uris.is_empty() {
        return Err(ClientError::InvalidField {
            field: "redirect_uris",
            message: "a public client needs at least one redirect URI (it can only use the authorization code flow)".into(),
        });
    }
    for s in &new.scopes {
        if !crate::scope::is_valid(s) {
            return Err(ClientError::InvalidField {
                field: "scopes",
                message: format!("{s:?} is not a valid scope"),
            });
        }
    }
    let client_id = secret::new_client_id()?;
    let secret = if new.public {
        None
    } else {
        Some(secret::new_secret()?)
    };
    let secret_hash = secret.as_ref().map(|s| secret::hash_hex(s.expose()));

    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let scope_ids = resolve_scopes(&tx, &new.scopes).await?;
    let taken = tx
        .query_opt(
            "SELECT 1 FROM clients WHERE lower(client_name) = lower($1)",
            &[&new.name],
        )
        .await?;
    if taken.is_some() {
        return Err(ClientError::Duplicate(new.name));
    }
    let username = service_account_name(&new.name);
    let account_id: i32 = tx
        .query_one(
            "INSERT INTO accounts (username, password, first_name, last_name)
             VALUES ($1, $2, 'OAuth client', $3) RETURNING account_id",
            &[&username, &SERVICE_ACCOUNT_PASSWORD, &new.name],
        )
        .await
        .map_err(|e| match classify(e) {
            e if e.is_unique_violation() => ClientError::AccountTaken(username.clone()),
            e => ClientError::Db(e),
        })?
        .try_get(0)?;
    let pk: i32 = tx
        .query_one(
            "INSERT INTO clients (client_id, client_name, secret_hash, account_id, created)
             VALUES ($1, $2, $3, $4, scopegate_unix_now()) RETURNING client_pk",
            &[&client_id, &new.name, &secret_hash, &account_id],
        )
        .await
        .map_err(|e| match classify(e) {
            e if e.is_unique_violation() => ClientError::Duplicate(new.name.clone()),
            e => ClientError::Db(e),
        })?
        .try_get(0)?;
    tx.execute(
        "INSERT INTO client_scopes (client_pk, scope_id) SELECT $1, s FROM unnest($2::INT[]) AS s
         ON CONFLICT (client_pk, scope_id) DO NOTHING",
        &[&pk, &scope_ids],
    )
    .await?;
    tx.execute(
        "INSERT INTO client_redirect_uris (client_pk, redirect_uri)
         SELECT $1, u FROM unnest($2::TEXT[]) WITH ORDINALITY AS t(u, n) ORDER BY n",
        &[&pk, &uris],
    )
    .await?;
    let client = get_in(&tx, pk)
        .await?
        .ok_or_else(|| ClientError::UnknownClient(new.name.clone()))?;
    tx.commit().await?;
    Ok(Created { client, secret })
}

async fn get_in<C: GenericClient>(client: &C, id: i32) -> Result<Option<Client>, ClientError> {
    let row = client
        .query_opt(&format!("{CLIENT_COLUMNS} WHERE c.client_pk = $1"), &[&id])
        .await?;
    row.as_ref().map(client_from).transpose()
}

/// The client with this integer id.
pub async fn get(pool: &Pool, id: i32) -> Result<Option<Client>, ClientError> {
    let conn = pool.get().await?;
    get_in(&conn, id).await
}

/// The client with this `client_id` or (case-insensitively) this name.
pub async fn find(pool: &Pool, name_or_id: &str) -> Result<Option<Client>, ClientError> {
    let conn = pool.get().await?;
    let row = if secret::is_client_id(name_or_id) {
        conn.query_opt(
            &format!("{CLIENT_COLUMNS} WHERE c.client_id = $1"),
            &[&name_or_id],
        )
        .await?
    } else {
        conn.query_opt(
            &format!("{CLIENT_COLUMNS} WHERE lower(c.client_name) = lower($1)"),
            &[&name_or_id],
        )
        .await?
    };
    row.as_ref().map(client_from).transpose()
}

/// [`find`], or [`ClientError::UnknownClient`].
pub async fn require(pool: &Pool, name_or_id: &str) -> Result<Client, ClientError> {
    find(pool, name_or_id)
        .await?
        .ok_or_else(|| ClientError::UnknownClient(name_or_id.to_owned()))
}

/// Clients ordered by id, at most `limit`, with ids above `after`.
pub async fn list(pool: &Pool, after: Option<i32>, limit: i64) -> Result<Vec<Client>, ClientError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            &format!("{CLIENT_COLUMNS} WHERE c.client_pk > $1 ORDER BY c.client_pk LIMIT $2"),
            &[&after.unwrap_or(0), &limit],
        )
        .await?;
    rows.iter().map(client_from).collect()
}

const REVOKE_CLIENT_TOKENS: &str = "
WITH r AS (
    UPDATE refresh_tokens SET active = FALSE, successor_sealed = NULL
     WHERE client_pk = $1 AND (active OR successor_sealed IS NOT NULL)
    RETURNING refresh_token_id
)
UPDATE access_tokens SET active = FALSE
 WHERE active AND (
       client_pk = $1
    OR token_id IN (SELECT token_id FROM account_tokens WHERE account_id = $2)
    OR token_id IN (SELECT rtt.access_token_id FROM refresh_token_tokens rtt
                      JOIN refresh_tokens rt ON rt.refresh_token_id = rtt.refresh_token_id
                     WHERE rt.client_pk = $1))
RETURNING token";

/// Delete a client: every token issued through it (and every token of
/// its service account) is revoked — so every replica hears of it like
/// any revocation — and then deleted with it (foreign keys cascade), with
/// its codes, scopes, redirect URIs and service account. Returns the client as it was and
/// the hashes of the access tokens revoked (for the caller's cache).
pub async fn delete(pool: &Pool, id: i32) -> Result<(Client, Vec<TokenHash>), ClientError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let locked = tx
        .query_opt(
            "SELECT client_pk FROM clients WHERE client_pk = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    if locked.is_none() {
        return Err(ClientError::UnknownClient(format!("#{id}")));
    }
    let client = get_in(&tx, id)
        .await?
        .ok_or_else(|| ClientError::UnknownClient(format!("#{id}")))?;
    let rows = tx
        .query(REVOKE_CLIENT_TOKENS, &[&id, &client.account_id])
        .await?;
    let revoked = rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter_map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h.trim(), &mut out).ok().map(|()| out)
        })
        .collect();
    tx.execute("DELETE FROM clients WHERE client_pk = $1", &[&id])
        .await?;
    tx.execute(
        "DELETE FROM accounts WHERE account_id = $1 AND password = $2",
        &[&client.account_id, &SERVICE_ACCOUNT_PASSWORD],
    )
    .await?;
    tx.commit().await?;
    Ok((client, revoked))
}

/// A new secret for a confidential client; the old one stops working at
/// once (it is checked against the database on every use).
pub async fn rotate_secret(pool: &Pool, id: i32) -> Result<(Client, Secret), ClientError> {
    let secret = secret::new_secret()?;
    let conn = pool.get().await?;
    let n = conn
        .execute(
            "UPDATE clients SET secret_hash = $2 WHERE client_pk = $1 AND secret_hash IS NOT NULL",
            &[&id, &secret::hash_hex(secret.expose())],
        )
        .await?;
    let client = get_in(&conn, id)
        .await?
        .ok_or_else(|| ClientError::UnknownClient(format!("#{id}")))?;
    if n == 0 {
        return Err(ClientError::Public(client.name));
    }
    Ok((client, secret))
}

/// A scope a client may be granted: its id and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientScope {
    pub id: i32,
    pub value: String,
}

/// What client authentication and the grants need to know about a
/// client: one query.
#[derive(Clone)]
pub struct Registered {
    pub pk: i32,
    pub client_id: String,
    pub name: String,
    /// `None`: a public client.
    pub secret_hash: Option<String>,
    pub account_id: i32,
    pub account_active: bool,
    /// Sorted by value.
    pub scopes: Vec<ClientScope>,
    pub redirect_uris: Vec<String>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("public", &self.secret_hash.is_none())
            .finish_non_exhaustive()
    }
}

impl Registered {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    /// The client's scopes with these values; `None` when one is not
    /// among them (RFC 6749 §3.3: `invalid_scope`).
    pub fn select_scopes(&self, requested: &[String]) -> Option<Vec<ClientScope>> {
        requested
            .iter()
            .map(|v| self.scopes.iter().find(|s| &s.value == v).cloned())
            .collect()
    }

    /// May `scope` (a value) ever be granted through this client?
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s.value == scope)
    }
}

const LOOKUP: &str = "
SELECT c.client_pk, c.client_id, c.client_name, c.secret_hash, c.account_id, a.is_active,
       COALESCE(ARRAY(SELECT s.scope_id FROM client_scopes x JOIN scopes s ON s.scope_id = x.scope_id
                       WHERE x.client_pk = c.client_pk ORDER BY s.scope_value), '{}'),
       COALESCE(ARRAY(SELECT s.scope_value FROM client_scopes x JOIN scopes s ON s.scope_id = x.scope_id
                       WHERE x.client_pk = c.client_pk ORDER BY s.scope_value), '{}'),
       COALESCE(ARRAY(SELECT u.redirect_uri FROM client_redirect_uris u
                       WHERE u.client_pk = c.client_pk ORDER BY u.mapping_id), '{}')
  FROM clients c JOIN accounts a ON a.account_id = c.account_id
 WHERE c.client_id = $1";

/// The client with this `client_id`, in one round trip (`None` for an id
/// that cannot be one of ours, without a query).
pub async fn lookup(pool: &Pool, client_id: &str) -> Result<Option<Registered>, DbError> {
    if !secret::is_client_id(client_id) {
        return Ok(None);
    }
    let conn = pool.get().await?;
    let stmt = conn.prepare_cached(LOOKUP).await.map_err(classify)?;
    let Some(row) = conn
        .query_opt(&stmt, &[&client_id])
        .await
        .map_err(classify)?
    else {
        return Ok(None);
    };
    let registered = (|| {
        let ids: Vec<i32> = row.try_get(6)?;
        let values: Vec<String> = row.try_get(7)?;
        Ok::<_, tokio_postgres::Error>(Registered {
            pk: row.try_get(0)?,
            client_id: row.try_get(1)?,
            name: row.try_get(2)?,
            secret_hash: row.try_get(3)?,
            account_id: row.try_get(4)?,
            account_active: row.try_get(5)?,
            scopes: ids
                .into_iter()
                .zip(values)
                .map(|(id, value)| ClientScope { id, value })
                .collect(),
            redirect_uris: row.try_get(8)?,
        })
    })();
    registered.map(Some).map_err(classify)
}

/// The `client_id` behind a client's integer id (introspection, the
/// gateway's header), or `None`.
pub async fn client_id_of<C: GenericClient>(
    client: &C,
    pk: i32,
) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt("SELECT client_id FROM clients WHERE client_pk = $1", &[&pk])
        .await
        .map_err(classify)?;
    row.map(|r| r.try_get(0)).transpose().map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["billing", "Billing-API", "svc.reports_2", "a"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a:b", "é", &"x".repeat(65), "<script>"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(service_account_name("Billing-API"), "client:billing-api");
    }
}
