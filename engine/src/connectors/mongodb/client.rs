//! A driver client from a connection's options: its `uri`, or host, port,
//! user, password, auth database and TLS.

use std::time::Duration;

use mongodb::Client;
use mongodb::options::{ClientOptions, Credential, ServerAddress, Tls, TlsOptions};
use tokio::sync::OnceCell;

use super::errors::connect_failure;
use crate::contract::{ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError};

/// One connection's client, made at first use and shared by its
/// databases (the driver pools connections inside it).
pub(super) struct Connection {
    options: ClientSettings,
    timeout: Duration,
    client: OnceCell<Client>,
}

impl Connection {
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        Self {
            options: ClientSettings::from(options),
            timeout,
            client: OnceCell::new(),
        }
    }

    pub(super) async fn client(&self) -> Result<&Client, SourceError> {
        self.client
            .get_or_try_init(|| async {
                connect(&self.options, self.timeout)
                    .await
                    .map(|(client, _)| client)
                    .map_err(SourceError::Connect)
            })
            .await
    }
}

/// The options a client is made of, secrets decrypted: kept in memory
/// only, never shown.
pub(super) struct ClientSettings {
    uri: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    auth_source: String,
    tls: String,
    tls_ca_file: Option<String>,
}

impl From<&ResolvedOptions> for ClientSettings {
    fn from(options: &ResolvedOptions) -> Self {
        let text = |name: &str| options.text(name).map(str::to_owned);
        Self {
            uri: options.secret("uri").map(|s| s.expose().to_owned()),
            host: text("host"),
            port: options.integer("port").and_then(|p| u16::try_from(p).ok()),
            user: text("user"),
            password: options.secret("password").map(|s| s.expose().to_owned()),
            auth_source: text("auth_source").unwrap_or_else(|| "admin".to_owned()),
            tls: text("tls").unwrap_or_else(|| "disable".to_owned()),
            tls_ca_file: text("tls_ca_file"),
        }
    }
}

/// A client (the driver connects lazily) and the database it
/// authenticates against.
pub(super) async fn connect(options: &ClientSettings, timeout: Duration) -> Result<(Client, String), ConnectFailure> {
    let mut client_options = match &options.uri {
        Some(uri) => ClientOptions::parse(uri).await.map_err(|e| {
            connect_failure(&e).unwrap_or_else(|| {
                // The driver's message may quote the uri: say only what is wrong.
                let reason = match e.kind.as_ref() {
                    mongodb::error::ErrorKind::InvalidArgument { .. } => "it is not a valid connection string",
                    _ => "it cannot be resolved",
                };
                ConnectFailure::new(ConnectFailureKind::OptionMismatch, format!("uri: {reason}"))
            })
        })?,
        None => from_parts(options)?,
    };
    client_options.app_name = Some("sluice".to_owned());
    client_options.server_selection_timeout = Some(timeout);
    client_options.connect_timeout = Some(timeout);
    let auth_db = client_options
        .credential
        .as_ref()
        .and_then(|c| c.source.clone())
        .or_else(|| client_options.default_database.clone())
        .unwrap_or_else(|| "admin".to_owned());
    let client = Client::with_options(client_options)
        .map_err(|e| ConnectFailure::new(ConnectFailureKind::OptionMismatch, e.to_string()))?;
    Ok((client, auth_db))
}

fn from_parts(options: &ClientSettings) -> Result<ClientOptions, ConnectFailure> {
    let host = options.host.as_deref().ok_or_else(|| {
        ConnectFailure::new(
            ConnectFailureKind::OptionMismatch,
            "give either uri or host (with port, user, password)",
        )
    })?;
    let mut client_options = ClientOptions::default();
    client_options.hosts = vec![ServerAddress::Tcp {
        host: host.to_owned(),
        port: options.port,
    }];
    if let Some(user) = &options.user {
        let mut credential = Credential::default();
        credential.username = Some(user.clone());
        credential.password = options.password.clone();
        credential.source = Some(options.auth_source.clone());
        client_options.credential = Some(credential);
    }
    client_options.tls = match options.tls.as_str() {
        "disable" => None,
        mode => {
            let mut tls = TlsOptions::default();
            tls.allow_invalid_certificates = Some(mode == "require");
            tls.ca_file_path = options.tls_ca_file.as_ref().map(Into::into);
            Some(Tls::Enabled(tls))
        }
    };
    Ok(client_options)
}
