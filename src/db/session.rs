//! One dedicated connection outside the pool, for a session that must
//! stay open and hear asynchronous messages (the revocation listener's
//! `LISTEN`).

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::DbError;
use crate::config::Secret;

/// A connection of its own: its client, and the payloads of the
/// notifications it receives, in order. The channel closes when the
/// connection ends; dropping the session closes the connection.
pub struct Session {
    pub client: tokio_postgres::Client,
    pub notifications: mpsc::UnboundedReceiver<String>,
    driver: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Session {
    /// Connect to `url` (as configured) with the pool's connection
    /// settings, as `application_name`.
    pub async fn open(url: &Secret, application_name: &str) -> Result<Session, DbError> {
        let mut pg = super::pg_config(url)?;
        pg.application_name(application_name);
        let (client, mut connection) = pg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(super::classify)?;
        let (tx, notifications) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Session {
            client,
            notifications,
            driver,
        })
    }
}
