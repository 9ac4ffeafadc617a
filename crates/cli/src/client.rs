//! The CLI's client of berth's HTTP API: [`berth_server::client::Client`] for the server
//! and token the command line names.

use crate::ServerArgs;
use anyhow::anyhow;

pub use berth_server::client::{Client, ClientError};

/// A client of the server `server` names, with its token.
pub fn client(server: &ServerArgs) -> anyhow::Result<Client> {
    let token = server
        .token
        .as_deref()
        .ok_or_else(|| anyhow!("no token: set BERTH_TOKEN or pass --token (see `berth user add`)"))?;
    Ok(Client::new(&server.url, token))
}

/// The error envelope of a refusal, if `error` is one.
pub fn refused(error: &ClientError) -> Option<&berth_server::wire::ErrorEnvelope> {
    match error {
        ClientError::Refused(envelope) => Some(envelope),
        _ => None,
    }
}
