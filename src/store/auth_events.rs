//! The notices `migrations/V6__auth_notify.sql` sends when what a credential proves may have
//! changed, heard on a connection of their own (a pooled one would be handed to requests).

use std::time::Duration;

use futures_util::future::poll_fn;
use serde::Deserialize;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{pool::client_config, PoolSettings, StoreError};

const CHANNEL: &str = "chatprefs_auth";

/// What may have changed: one user of an app, a whole app, or (`app` absent) anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuthChange {
    pub app: Option<String>,
    pub client: Option<String>,
}

/// What the listening connection reports, in the order the server sent it.
#[derive(Debug)]
pub enum Heard {
    Changed(AuthChange),
    /// The connection is gone: whatever was sent since may never arrive.
    Lost,
}

/// A connection listening on the channel.
pub struct AuthListener {
    client: tokio_postgres::Client,
}

impl AuthListener {
    /// Connects and listens; `heard` is called for each notice as the connection reads it,
    /// before any later answer to [`AuthListener::heartbeat`] is delivered, and once with
    /// [`Heard::Lost`] when the connection ends.
    pub async fn connect(
        database_url: &str,
        settings: &PoolSettings,
        mut heard: impl FnMut(Heard) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let mut config = client_config(database_url, settings)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        config.application_name("chatprefs-auth-listener");
        let (client, mut connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notification(notice) = message {
                    // A notice that cannot be read still says something changed: everything.
                    let change = serde_json::from_str(notice.payload()).unwrap_or_default();
                    heard(Heard::Changed(change));
                }
            }
            heard(Heard::Lost);
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(AuthListener { client })
    }

    /// One round trip on the listening connection, within `limit`: when it answers, every
    /// notice committed before it was sent has been handed to `heard`.
    pub async fn heartbeat(&self, limit: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(limit, self.client.batch_execute("SELECT 1")).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(StoreError::Unavailable(
                "the auth listener did not answer in time".into(),
            )),
        }
    }
}
