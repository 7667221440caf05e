//! The HTTP client of Google sign-in calls (token, STS and IAM credentials
//! endpoints): the same trust store as every other TLS path, and, when
//! `SLUICE_GOOGLE_AUTH_ENDPOINT` is set (tests point it at a local fake),
//! Google's sign-in hosts replaced by that base URL. A token URL that a
//! credentials file names (`token_uri`, `token_url`) is used as written.

use std::sync::Arc;
use std::task::{Context, Poll};

use gcp_bigquery_client::yup_oauth2::CustomHyperClientBuilder;
use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use crate::contract::ConnectFailure;

/// The environment variable that moves Google's sign-in hosts.
const ENDPOINT_VARIABLE: &str = "SLUICE_GOOGLE_AUTH_ENDPOINT";

/// The hosts of Google's token, STS and IAM credentials endpoints.
const SIGN_IN_HOSTS: &[&str] = &[
    "oauth2.googleapis.com",
    "accounts.google.com",
    "sts.googleapis.com",
    "iamcredentials.googleapis.com",
];

/// The replacement of Google's sign-in hosts, if any.
fn replacement() -> Option<Uri> {
    std::env::var(ENDPOINT_VARIABLE).ok().and_then(|url| url.parse().ok())
}

fn is_sign_in_host(uri: &Uri) -> bool {
    uri.host().is_some_and(|host| SIGN_IN_HOSTS.contains(&host))
}

/// `url` with a sign-in host replaced (scheme, host and port) when
/// `SLUICE_GOOGLE_AUTH_ENDPOINT` is set.
pub(super) fn rerouted(url: &str) -> String {
    match (url.parse::<Uri>(), replacement()) {
        (Ok(uri), Some(to)) if is_sign_in_host(&uri) => {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            format!("{}{path}", to.to_string().trim_end_matches('/'))
        }
        _ => url.to_owned(),
    }
}

/// Connects like the HTTPS connector, to the replacement for sign-in hosts.
#[derive(Clone)]
pub(super) struct SignInConnector {
    https: HttpsConnector<HttpConnector>,
    replacement: Option<Arc<Uri>>,
}

impl Service<Uri> for SignInConnector {
    type Response = <HttpsConnector<HttpConnector> as Service<Uri>>::Response;
    type Error = <HttpsConnector<HttpConnector> as Service<Uri>>::Error;
    type Future = <HttpsConnector<HttpConnector> as Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match &self.replacement {
            Some(to) if is_sign_in_host(&uri) => self.https.call(Uri::clone(to)),
            _ => self.https.call(uri),
        }
    }
}

/// The client `yup-oauth2` sends sign-in requests with.
pub(super) fn client() -> Result<CustomHyperClientBuilder<SignInConnector>, ConnectFailure> {
    let tls = crate::tls::client_config(crate::tls::Verify::ChainAndHost, None)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SignInConnector {
        https,
        replacement: replacement().map(Arc::new),
    };
    Ok(Client::builder(TokioExecutor::new()).build(connector).into())
}
