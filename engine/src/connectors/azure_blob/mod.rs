//! Azure Blob Storage as a file source: a container prefix read by
//! [`files`], signed with the account key, a SAS token
//! or the parts of a connection string (which also carries the endpoint of
//! Azurite or a sovereign cloud).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::azure::MicrosoftAzureBuilder;

use crate::connectors::files::{self, Backend, BucketConnector, FromOptions, Location, open_bucket};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Secret, Text},
    OptionSpec as O, ResolvedOptions, error_chain,
};

pub(crate) static AZURE_BLOB: ConnectionType = ConnectionType {
    name: "azure_blob",
    display_name: "Azure Blob Storage",
    category: Category::ObjectStorage,
    options: &[
        O::required("account", Text, "storage account name"),
        O::required("container", Text, "container name"),
        O::optional(
            "prefix",
            Text,
            "folder (blob name prefix) inside the container whose files are the tables",
        ),
        O::optional("access_key", Secret, "account access key"),
        O::optional(
            "sas_token",
            Secret,
            "shared access signature (the query string, with or without '?')",
        ),
        O::optional(
            "connection_string",
            Secret,
            "storage connection string; without any of the three, the server's Azure identity",
        ),
        files::TABLES,
        files::PARALLEL_READS,
        files::csv::HEADER,
        files::csv::DELIMITER,
        files::csv::QUOTE,
        files::csv::ESCAPE,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["account", "container", "prefix"],
    driver: Some(Driver {
        connector: &BucketConnector::<Container>(PhantomData),
        source: Some(open_bucket::<Container>),
        destination: None,
        cdc: None,
    }),
};

/// An Azure Blob connection's options.
struct Container {
    account: String,
    container: String,
    prefix: Option<String>,
    access_key: Option<String>,
    sas_token: Option<String>,
    connection_string: Option<String>,
    timeout: Duration,
}

/// How requests are signed.
enum Signing {
    Key(String),
    Sas(String),
    /// The server's identity (environment, managed identity, Azure CLI).
    Default,
}

impl FromOptions for Container {
    fn from_options(options: &ResolvedOptions, timeout: Duration) -> Self {
        let secret = |name| options.secret(name).map(|s| s.expose().to_owned());
        Self {
            account: options.text("account").unwrap_or_default().to_owned(),
            container: options.text("container").unwrap_or_default().to_owned(),
            prefix: options.text("prefix").map(str::to_owned),
            access_key: secret("access_key"),
            sas_token: secret("sas_token"),
            connection_string: secret("connection_string"),
            timeout,
        }
    }
}

impl Container {
    fn what(&self) -> String {
        format!("container \"{}\" of account \"{}\"", self.container, self.account)
    }

    /// The signing and the endpoint (when not the public cloud's).
    fn signing(&self) -> Result<(Signing, Option<String>), ConnectFailure> {
        let invalid = |message: String| ConnectFailure::new(ConnectFailureKind::Other, message);
        match (&self.access_key, &self.sas_token, &self.connection_string) {
            (Some(key), None, None) => Ok((Signing::Key(key.clone()), None)),
            (None, Some(sas), None) => Ok((Signing::Sas(sas.clone()), None)),
            (None, None, Some(text)) => {
                let parts = ConnectionString::parse(text);
                if let Some(name) = parts.get("AccountName").filter(|n| *n != self.account) {
                    return Err(invalid(format!(
                        "connection_string names account \"{name}\", not the account option \"{}\"",
                        self.account
                    )));
                }
                let signing = match (parts.get("AccountKey"), parts.get("SharedAccessSignature")) {
                    (Some(key), _) => Signing::Key(key.to_owned()),
                    (None, Some(sas)) => Signing::Sas(sas.to_owned()),
                    (None, None) => {
                        return Err(invalid(
                            "connection_string has neither AccountKey nor SharedAccessSignature".into(),
                        ));
                    }
                };
                let endpoint = parts.get("BlobEndpoint").map(str::to_owned).or_else(|| {
                    parts.get("EndpointSuffix").map(|suffix| {
                        let protocol = parts.get("DefaultEndpointsProtocol").unwrap_or("https");
                        format!("{protocol}://{}.blob.{suffix}", self.account)
                    })
                });
                Ok((signing, endpoint))
            }
            (None, None, None) => Ok((Signing::Default, None)),
            _ => Err(invalid(
                "give only one of access_key, sas_token and connection_string".into(),
            )),
        }
    }
}

#[async_trait]
impl Backend for Container {
    fn location(&self) -> Result<Location, ConnectFailure> {
        let (signing, endpoint) = self.signing()?;
        let builder = match signing {
            Signing::Key(key) => MicrosoftAzureBuilder::new().with_access_key(key),
            Signing::Sas(sas) => {
                let pairs: Vec<(String, String)> = url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                    .into_owned()
                    .collect();
                MicrosoftAzureBuilder::new().with_sas_authorization(pairs)
            }
            Signing::Default => MicrosoftAzureBuilder::from_env(),
        };
        let mut builder = builder.with_account(&self.account).with_container_name(&self.container);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_owned());
        }
        let (client, retry) = files::client_options(self.timeout);
        let store = builder
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| {
                // The only build errors with valid names are bad keys and endpoints.
                ConnectFailure::new(
                    ConnectFailureKind::BadPassword,
                    format!("cannot set up {}: {}", self.what(), error_chain(&e)),
                )
            })?;
        Ok(Location {
            store: Arc::new(store),
            prefix: files::prefix_path(self.prefix.as_deref()),
            url: format!("az://{}/{}/", self.account, self.container),
        })
    }

    fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure {
        files::classify(
            &self.what(),
            "the Storage Blob Data Reader role, or a SAS token with read and list permissions",
            error,
        )
    }
}

/// The `Key=Value;` parts of a storage connection string.
struct ConnectionString<'a>(Vec<(&'a str, &'a str)>);

impl<'a> ConnectionString<'a> {
    fn parse(text: &'a str) -> Self {
        Self(
            text.split(';')
                .filter_map(|part| part.trim().split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect(),
        )
    }

    /// The value of `key` (case-insensitive), when present and not empty.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_empty())
            .map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_split_at_the_first_equals_sign() {
        let parts = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=a2V5==;BlobEndpoint=http://127.0.0.1:1/dev;",
        );
        assert_eq!(parts.get("accountkey"), Some("a2V5=="));
        assert_eq!(parts.get("BlobEndpoint"), Some("http://127.0.0.1:1/dev"));
        assert_eq!(parts.get("SharedAccessSignature"), None);
    }
}
