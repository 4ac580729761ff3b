//! `scopegate account|scope|role ...` (`docs/operations.md`, "Accounts,
//! scopes and roles").
//!
//! Passwords are never arguments: `account create` and `set-password` read
//! one line from stdin when stdin is not a terminal (`echo "$PW" |
//! scopegate account create bob`), and otherwise prompt twice without echo.
//! Duplicates, unknown names and invalid values exit 2 with one line naming
//! the problem; database failures exit 1.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::Subcommand;

use super::{with_pool, CliResult, Failure};
use crate::accounts::password::Hasher;
use crate::accounts::store::{self, NewAccount, StoreError};
use crate::accounts::{check_new_password, normalize_username, Password};

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account; the password is read from stdin (one line) or prompted for
    Create {
        username: String,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        /// A scope value to grant (repeatable), e.g. --scope orders:read
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A role name to grant (repeatable)
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// List accounts
    List,
    /// Show one account as JSON
    Show { username: String },
    /// Disable an account (its tokens stop working)
    Disable { username: String },
    /// Enable a disabled account
    Enable { username: String },
    /// Set a new password (stdin or prompt) and revoke every token of the account
    SetPassword { username: String },
    /// Grant scopes and/or roles to an account
    Grant {
        username: String,
        /// A scope value to grant (repeatable)
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A role name to grant (repeatable)
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Revoke every access and refresh token of an account
    RevokeTokens { username: String },
}

#[derive(Subcommand, Debug)]
pub enum ScopeCommand {
    /// Create a scope: a display NAME and the VALUE used in tokens and routes
    Create {
        name: String,
        value: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List scopes
    List,
    /// Delete a scope by value (and every grant of it)
    Delete { value: String },
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Create a role with scopes
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A scope value the role grants (repeatable)
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// List roles
    List,
    /// Delete a role by name (and every grant of it)
    Delete { name: String },
}

/// One password: a line from stdin, or typed twice at a prompt.
fn read_password(what: &str) -> Result<Password, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::runtime(format!("cannot read the password from stdin: {e}")))?;
        let trimmed = line.trim_end_matches(['\n', '\r']).to_owned();
        zeroize::Zeroize::zeroize(&mut line);
        if trimmed.is_empty() {
            return Err(Failure::usage(format!(
                "no {what} on stdin (send it as one line, or run on a terminal to be prompted)"
            )));
        }
        return Ok(Password::new(trimmed));
    }
    let first = rpassword::prompt_password(format!("{what}: "))
        .map_err(|e| Failure::runtime(format!("cannot read the {what}: {e}")))?;
    let first = Password::new(first);
    let second = rpassword::prompt_password(format!("{what} (again): "))
        .map_err(|e| Failure::runtime(format!("cannot read the {what}: {e}")))?;
    let second = Password::new(second);
    if first.expose() != second.expose() {
        return Err(Failure::usage(format!("the two {what}s differ")));
    }
    Ok(first)
}

fn check_password(p: &Password) -> Result<(), Failure> {
    check_new_password(p).map_err(|e| Failure::usage(e.to_string()))
}

pub fn account(config: &Option<PathBuf>, command: &AccountCommand) -> CliResult {
    match command {
        AccountCommand::Create {
            username,
            first_name,
            last_name,
            scopes,
            roles,
        } => {
            // Reject a bad username before asking for a password.
            normalize_username(username).map_err(|e| Failure::usage(e.to_string()))?;
            let password = read_password("password")?;
            check_password(&password)?;
            with_pool(config, |pool| async move {
                let hasher = Hasher::new(1);
                let account = store::create_account(
                    &pool,
                    &hasher,
                    NewAccount {
                        username: username.clone(),
                        password,
                        first_name: first_name.clone(),
                        last_name: last_name.clone(),
                        scopes: scopes.clone(),
                        roles: roles.clone(),
                    },
                )
                .await?;
                println!("created account {} (id {})", account.username, account.id);
                Ok(())
            })
        }
        AccountCommand::List => with_pool(config, |pool| async move {
            let mut after = None;
            println!(
                "{:>6}  {:<24} {:<6} {:<40} ROLES",
                "ID", "USERNAME", "ACTIVE", "SCOPES"
            );
            loop {
                let page = store::list_accounts(&pool, after, 1000).await?;
                for a in &page {
                    println!(
                        "{:>6}  {:<24} {:<6} {:<40} {}",
                        a.id,
                        a.username,
                        if a.is_active { "yes" } else { "no" },
                        a.scopes.join(" "),
                        a.roles.join(" ")
                    );
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => after = Some(last.id),
                    _ => return Ok(()),
                }
            }
        }),
        AccountCommand::Show { username } => with_pool(config, |pool| async move {
            let account = store::find_account(&pool, username)
                .await?
                .ok_or_else(|| StoreError::UnknownAccount(username.clone()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&account)
                    .map_err(|e| StoreError::Random(e.to_string()))?
            );
            Ok(())
        }),
        AccountCommand::Disable { username } | AccountCommand::Enable { username } => {
            let active = matches!(command, AccountCommand::Enable { .. });
            with_pool(config, |pool| async move {
                let a = store::set_active(&pool, username, active).await?;
                println!(
                    "account {} {}",
                    a.username,
                    if active { "enabled" } else { "disabled" }
                );
                Ok(())
            })
        }
        AccountCommand::SetPassword { username } => {
            let password = read_password("new password")?;
            check_password(&password)?;
            with_pool(config, |pool| async move {
                let a = store::find_account(&pool, username)
                    .await?
                    .ok_or_else(|| StoreError::UnknownAccount(username.clone()))?;
                let hasher = Hasher::new(1);
                let revoked = store::set_password(&pool, &hasher, a.id, password).await?;
                println!(
                    "password of {} changed; every token revoked ({} active access tokens)",
                    a.username,
                    revoked.len()
                );
                Ok(())
            })
        }
        AccountCommand::Grant {
            username,
            scopes,
            roles,
        } => {
            if scopes.is_empty() && roles.is_empty() {
                return Err(Failure::usage(
                    "nothing to grant: pass --scope SCOPE and/or --role ROLE",
                ));
            }
            with_pool(config, |pool| async move {
                let a = store::grant(&pool, username, scopes, roles).await?;
                println!(
                    "account {} now has scopes [{}] and roles [{}]",
                    a.username,
                    a.scopes.join(" "),
                    a.roles.join(" ")
                );
                Ok(())
            })
        }
        AccountCommand::RevokeTokens { username } => with_pool(config, |pool| async move {
            let a = store::find_account(&pool, username)
                .await?
                .ok_or_else(|| StoreError::UnknownAccount(username.clone()))?;
            let revoked = store::revoke_tokens(&pool, a.id).await?;
            println!(
                "revoked every token of {} ({} active access tokens)",
                a.username,
                revoked.len()
            );
            Ok(())
        }),
    }
}

pub fn scope(config: &Option<PathBuf>, command: &ScopeCommand) -> CliResult {
    match command {
        ScopeCommand::Create {
            name,
            value,
            description,
        } => with_pool(config, |pool| async move {
            let s = store::create_scope(&pool, name, value, description.as_deref()).await?;
            println!("created scope {} (id {})", s.value, s.id);
            Ok(())
        }),
        ScopeCommand::List => with_pool(config, |pool| async move {
            println!("{:>6}  {:<32} {:<32} DESCRIPTION", "ID", "VALUE", "NAME");
            for s in store::list_scopes(&pool).await? {
                println!(
                    "{:>6}  {:<32} {:<32} {}",
                    s.id,
                    s.value,
                    s.name,
                    s.description.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }),
        ScopeCommand::Delete { value } => with_pool(config, |pool| async move {
            store::delete_scope(&pool, value).await?;
            println!("deleted scope {value}");
            Ok(())
        }),
    }
}

pub fn role(config: &Option<PathBuf>, command: &RoleCommand) -> CliResult {
    match command {
        RoleCommand::Create {
            name,
            description,
            scopes,
        } => with_pool(config, |pool| async move {
            let r = store::create_role(&pool, name, description.as_deref(), scopes).await?;
            println!(
                "created role {} (id {}) with scopes [{}]",
                r.name,
                r.id,
                r.scopes.join(" ")
            );
            Ok(())
        }),
        RoleCommand::List => with_pool(config, |pool| async move {
            println!("{:>6}  {:<24} {:<40} DESCRIPTION", "ID", "NAME", "SCOPES");
            for r in store::list_roles(&pool).await? {
                println!(
                    "{:>6}  {:<24} {:<40} {}",
                    r.id,
                    r.name,
                    r.scopes.join(" "),
                    r.description.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }),
        RoleCommand::Delete { name } => with_pool(config, |pool| async move {
            store::delete_role(&pool, name).await?;
            println!("deleted role {name}");
            Ok(())
        }),
    }
}
