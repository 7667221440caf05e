//! Requests to AWS services' JSON protocols (DynamoDB, Secrets Manager),
//! each POST signed with SigV4 by `aws-sigv4` with the credentials of the
//! chain ([`super::credentials`]).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

/// Where a service's requests go and how they are signed.
#[derive(Debug, Clone)]
pub(crate) struct AwsEndpoint {
    /// The URL requests are POSTed to.
    pub url: String,
    /// `host[:port]` of `url`, as signed.
    pub host: String,
    pub region: String,
    /// The signing name, e.g. `dynamodb`, `secretsmanager`.
    pub service: &'static str,
}

impl AwsEndpoint {
    /// `endpoint` (an override) or `https://<service>.<region>.amazonaws.com/`.
    pub(crate) fn new(service: &'static str, region: &str, endpoint: Option<&str>) -> Self {
        let url = endpoint
            .map(|e| e.trim_end_matches('/').to_owned() + "/")
            .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com/"));
        let host = url::Url::parse(&url)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_default();
        Self {
            url,
            host,
            region: region.to_owned(),
            service,
        }
    }
}

/// Why a signed POST got no answer.
#[derive(Debug)]
pub(crate) enum PostError {
    /// The request could not be signed.
    Sign(String),
    /// The service could not be reached.
    Send(reqwest::Error),
    /// The answer could not be read.
    Read(reqwest::Error),
}

/// POSTs `payload` as `content_type` with `X-Amz-Target: target`, signed
/// for `endpoint`; the answer's status and body.
pub(crate) async fn post(
    http: &reqwest::Client,
    endpoint: &AwsEndpoint,
    credentials: &Credentials,
    content_type: &str,
    target: &str,
    payload: String,
) -> Result<(u16, String), PostError> {
    let headers = [
        ("content-type", content_type),
        ("x-amz-target", target),
        ("host", endpoint.host.as_str()),
    ];
    let identity = credentials.clone().into();
    let signing = v4::SigningParams::builder()
        .identity(&identity)
        .region(&endpoint.region)
        .name(endpoint.service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| PostError::Sign(e.to_string()))?
        .into();
    let signed = SignableRequest::new(
        "POST",
        endpoint.url.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(payload.as_bytes()),
    )
    .and_then(|r| sign(r, &signing))
    .map_err(|e| PostError::Sign(e.to_string()))?;
    let (instructions, _) = signed.into_parts();
    let mut request = http.post(&endpoint.url);
    for (name, value) in headers.iter().filter(|(n, _)| *n != "host") {
        request = request.header(*name, *value);
    }
    for header in instructions.headers() {
        request = request.header(header.0, header.1);
    }
    let response = request.body(payload).send().await.map_err(PostError::Send)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(PostError::Read)?;
    Ok((status, text))
}
