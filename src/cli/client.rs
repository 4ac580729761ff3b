//! `scopegate client ...` (`docs/operations.md`, "OAuth clients"): a thin
//! layer over [`crate::clients::store`].
//!
//! `create` and `rotate-secret` print a confidential client's secret once,
//! on stdout; it is stored only as a hash and cannot be shown again.
//! `show`, `delete` and `rotate-secret` take the client's name or its
//! `client_id`. Duplicates, unknown names and invalid values exit 2 with
//! one line naming the problem; database failures exit 1.

use std::path::PathBuf;

use clap::Subcommand;

use super::{with_pool, CliResult};
use crate::clients::store::{self, NewClient};

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once
    Create {
        /// A name of 1 to 64 characters of A-Z a-z 0-9 . _ -
        name: String,
        /// A scope value the client may be granted (repeatable); bounds every token issued through it
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A redirect URI for the authorization code flow (repeatable), compared exactly
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A public client (browser or native app): no secret, authorization code with PKCE only
        #[arg(long)]
        public: bool,
    },
    /// List clients
    List,
    /// Show one client (by name or client_id) as JSON
    Show { client: String },
    /// Delete a client (by name or client_id), revoking every token issued through it
    Delete { client: String },
    /// Give a confidential client a new secret, printed once; the old one stops working at once
    RotateSecret { client: String },
}

fn json(client: &store::Client) -> String {
    let mut v = serde_json::to_value(client).unwrap_or_default();
    v["service_account"] = serde_json::Value::from(client.service_account());
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

pub fn client(config: &Option<PathBuf>, command: &ClientCommand) -> CliResult {
    match command {
        ClientCommand::Create {
            name,
            scopes,
            redirect_uris,
            public,
        } => with_pool(config, |pool| async move {
            let created = store::create(
                &pool,
                NewClient {
                    name: name.clone(),
                    scopes: scopes.clone(),
                    redirect_uris: redirect_uris.clone(),
                    public: *public,
                },
            )
            .await?;
            let c = &created.client;
            println!(
                "created {} client {} (id {})",
                if c.public { "public" } else { "confidential" },
                c.name,
                c.id
            );
            println!("client_id:       {}", c.client_id);
            if let Some(secret) = &created.secret {
                println!("client_secret:   {}", secret.expose());
                println!("                 (shown once: store it now; `client rotate-secret` makes a new one)");
            }
            println!("service account: {}", c.service_account());
            Ok(())
        }),
        ClientCommand::List => with_pool(config, |pool| async move {
            println!(
                "{:>6}  {:<28} {:<24} {:<12} {:<32} REDIRECT URIS",
                "ID", "CLIENT_ID", "NAME", "TYPE", "SCOPES"
            );
            let mut after = None;
            loop {
                let page = store::list(&pool, after, 1000).await?;
                for c in &page {
                    println!(
                        "{:>6}  {:<28} {:<24} {:<12} {:<32} {}",
                        c.id,
                        c.client_id,
                        c.name,
                        if c.public { "public" } else { "confidential" },
                        c.scopes.join(" "),
                        c.redirect_uris.join(" ")
                    );
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => after = Some(last.id),
                    _ => return Ok(()),
                }
            }
        }),
        ClientCommand::Show { client } => with_pool(config, |pool| async move {
            let c = store::require(&pool, client).await?;
            println!("{}", json(&c));
            Ok(())
        }),
        ClientCommand::Delete { client } => with_pool(config, |pool| async move {
            let c = store::require(&pool, client).await?;
            let (c, revoked) = store::delete(&pool, c.id).await?;
            println!(
                "deleted client {} ({}) and its service account; {} active access tokens revoked",
                c.name,
                c.client_id,
                revoked.len()
            );
            Ok(())
        }),
        ClientCommand::RotateSecret { client } => with_pool(config, |pool| async move {
            let c = store::require(&pool, client).await?;
            let (c, secret) = store::rotate_secret(&pool, c.id).await?;
            println!("new secret for client {} ({})", c.name, c.client_id);
            println!("client_secret:   {}", secret.expose());
            println!("                 (shown once; the old secret no longer works)");
            Ok(())
        }),
    }
}
