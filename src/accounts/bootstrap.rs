//! The first administrator.
//!
//! When no account holds `scopegate:admin` (directly or through a role),
//! active or not, `serve` and `dev` create one named `admin` with a random
//! 24-character password (OS CSPRNG, letters and digits: ~143 bits), grant
//! it `scopegate:admin` and `scopegate:introspect`, and print the password
//! once on stdout. It is never logged.
//!
//! A disabled administrator is never replaced: someone disabled it, and a
//! fresh admin with a password on stdout would undo that. Bootstrap then
//! creates nothing and logs (a warning, never stdout) how to re-enable it
//! with `scopegate account enable <name>`.
//!
//! If an account named `admin` exists without the scope, it is left alone
//! and the new account is named `admin2`, `admin3`, ... instead; the printed
//! line names it. Replicas starting together serialize on an advisory lock,
//! so only one creates it.

use deadpool_postgres::Pool;
use rand::TryRngCore;

use super::password::Hasher;
use super::store::StoreError;
use super::Password;
use crate::db::classify;

pub const ADMIN_SCOPE: &str = "scopegate:admin";
pub const INTROSPECT_SCOPE: &str = "scopegate:introspect";
const PASSWORD_LEN: usize = 24;
/// `pg_advisory_xact_lock` key ("scopegat" in ASCII).
const LOCK_KEY: i64 = 0x7363_6f70_6567_6174;

/// The account [`bootstrap`] created.
#[derive(Debug)]
pub struct Bootstrapped {
    pub username: String,
    pub password: Password,
}

/// Every account holding the admin scope (own or through a role), active
/// ones first.
const ADMINS: &str = "
SELECT a.username, a.is_active FROM accounts a
 WHERE a.account_id IN (
    SELECT x.account_id FROM account_scopes x JOIN scopes s ON s.scope_id = x.scope_id
     WHERE s.scope_value = $1
    UNION
    SELECT ar.account_id FROM account_roles ar
      JOIN role_scopes rs ON rs.role_id = ar.role_id
      JOIN scopes s ON s.scope_id = rs.scope_id
     WHERE s.scope_value = $1)
 ORDER BY a.is_active DESC, a.username";

/// Create the bootstrap administrator if no account, active or not, holds
/// the admin scope. `Ok(None)`: nothing to do (logged when the only
/// administrators are disabled).
pub async fn bootstrap(pool: &Pool, hasher: &Hasher) -> Result<Option<Bootstrapped>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let admins = tx.query(ADMINS, &[&ADMIN_SCOPE]).await?;
    if let Some(first) = admins.first() {
        if !first.try_get::<_, bool>(1)? {
            for admin in &admins {
                let name: String = admin.try_get(0)?;
                tracing::warn!(
                    username = %name,
                    "the administrator {name:?} is disabled and no active account holds \
                     {ADMIN_SCOPE}; none is created in its place. Re-enable it with \
                     `scopegate account enable {name}`"
                );
            }
        }
        return Ok(None);
    }
    let password = random_password()?;
    let phc = hasher.hash(Password::new(password.expose())).await?;
    let mut username = String::from("admin");
    for n in 2..1000 {
        let taken = tx
            .query_opt("SELECT 1 FROM accounts WHERE username = $1", &[&username])
            .await?
            .is_some();
        if !taken {
            break;
        }
        username = format!("admin{n}");
    }
    let id: i32 = tx
        .query_one(
            "INSERT INTO accounts (username, password, first_name, last_name)
             VALUES ($1, $2, 'Bootstrap', 'Administrator') RETURNING account_id",
            &[&username, &phc],
        )
        .await
        .map_err(|e| {
            let e = classify(e);
            if e.is_unique_violation() {
                StoreError::DuplicateAccount(username.clone())
            } else {
                StoreError::Db(e)
            }
        })?
        .try_get(0)?;
    for (value, name) in [
        (ADMIN_SCOPE, "scopegate admin"),
        (INTROSPECT_SCOPE, "scopegate introspection"),
    ] {
        // The seed creates both scopes; recreate them if someone deleted them.
        tx.execute(
            "INSERT INTO scopes (scope_name, scope_value) VALUES ($2, $1) ON CONFLICT (scope_value) DO NOTHING",
            &[&value, &name],
        )
        .await?;
        tx.execute(
            "INSERT INTO account_scopes (account_id, scope_id)
             SELECT $1, scope_id FROM scopes WHERE scope_value = $2
             ON CONFLICT (account_id, scope_id) DO NOTHING",
            &[&id, &value],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(Bootstrapped { username, password }))
}

/// [`bootstrap`], printing the new account and its password once on
/// stdout (not through the log).
pub async fn bootstrap_and_print(pool: &Pool, hasher: &Hasher) -> Result<(), StoreError> {
    if let Some(b) = bootstrap(pool, hasher).await? {
        tracing::info!(username = %b.username, "created the bootstrap administrator");
        println!(
            "created the bootstrap administrator {:?} (scopes {ADMIN_SCOPE} {INTROSPECT_SCOPE})\n  \
             password: {}\n  (shown only this once; change it with POST /oauth/password \
             or `scopegate account set-password {}`)",
            b.username,
            b.password.expose(),
            b.username
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// [`PASSWORD_LEN`] letters and digits from the OS CSPRNG, without modulo
/// bias (bytes >= 248 are redrawn).
pub fn random_password() -> Result<Password, StoreError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LEN {
        rand::rngs::OsRng.try_fill_bytes(&mut buf).map_err(|e| {
            StoreError::Random(format!("the OS random number generator failed: {e}"))
        })?;
        for b in buf {
            if out.len() == PASSWORD_LEN {
                break;
            }
            if usize::from(b) < 62 * 4 {
                out.push(char::from(ALPHABET[usize::from(b) % 62]));
            }
        }
    }
    zeroize::Zeroize::zeroize(&mut buf);
    Ok(Password::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_passwords_are_24_alphanumerics_and_differ() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 24);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), b.expose());
    }
}
