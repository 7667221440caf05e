//! The Cloud Storage part of the fake, under `<fake url>/storage`: the XML
//! API calls `object_store` makes for a staging bucket (object put, delete,
//! get, multipart uploads and `list-type=2` listings), with objects kept in
//! memory, and the reading of `gs://` URIs by load jobs.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::FakeBigQuery;

/// The buckets' objects, and which buckets refuse writes.
#[derive(Debug, Default)]
pub struct Storage {
    /// Object contents by (bucket, object name).
    pub objects: BTreeMap<(String, String), Vec<u8>>,
    /// Buckets where the service account lacks `storage.objects.create`
    /// and `storage.objects.delete`.
    pub read_only: BTreeSet<String>,
    /// `gs://` URIs of every object written, in order.
    pub written: Vec<String>,
    /// Multipart uploads in progress, by upload id.
    pub multipart: BTreeMap<String, Multipart>,
    /// Objects completed from a multipart upload, and their part counts.
    pub multipart_objects: Vec<(String, usize)>,
}

/// A multipart upload in progress: the object (bucket, name) and its
/// parts by number.
pub type Multipart = ((String, String), BTreeMap<u32, Vec<u8>>);

/// The smallest part of a multipart upload but the last (as GCS's XML API).
const MIN_PART: usize = 5 << 20;

impl FakeBigQuery {
    /// The base URL Sluice's `SLUICE_GCS_ENDPOINT` must have.
    pub fn gcs_url(&self) -> String {
        format!("{}/storage", self.url)
    }

    /// The names of the objects in a bucket.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        self.state()
            .gcs
            .objects
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, name)| name.clone())
            .collect()
    }
}

/// The XML error GCS answers with.
fn xml_error(status: StatusCode, code: &str, details: &str) -> Response {
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{code}</Message><Details>{details}</Details></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn denied(permission: &str, bucket: &str, name: &str) -> Response {
    xml_error(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        &format!(
            "sluice-test@test-project.iam.gserviceaccount.com does not have {permission} access to the Google Cloud \
             Storage object. Permission '{permission}' denied on resource (or it may not exist): {bucket}/{name}."
        ),
    )
}

/// Answers a request for `<bucket>[/<percent-encoded object name>]`.
pub fn route(storage: &mut Storage, method: &Method, rest: &str, query: Option<&str>, body: &Bytes) -> Response {
    let (bucket, name) = match rest.split_once('/') {
        Some((bucket, name)) => (bucket.to_owned(), percent_decode(name)),
        None => (rest.to_owned(), String::new()),
    };
    let key = (bucket.clone(), name.clone());
    let parameters: BTreeMap<&str, &str> = (query.unwrap_or_default().split('&'))
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    if !name.is_empty() && (parameters.contains_key("uploads") || parameters.contains_key("uploadId")) {
        if storage.read_only.contains(&bucket) {
            return denied("storage.objects.create", &bucket, &name);
        }
        return multipart(storage, method, key, &parameters, body);
    }
    match (method.as_str(), name.is_empty()) {
        ("GET", true) => list(storage, &bucket, query.unwrap_or_default()),
        ("PUT", false) => {
            if storage.read_only.contains(&bucket) {
                return denied("storage.objects.create", &bucket, &name);
            }
            storage.objects.insert(key, body.to_vec());
            storage.written.push(format!("gs://{bucket}/{name}"));
            let etag = format!("\"{:x}\"", body.len() * 7919 + storage.written.len());
            (
                StatusCode::OK,
                [
                    (header::ETAG, etag),
                    ("x-goog-generation".parse().unwrap(), storage.written.len().to_string()),
                ],
            )
                .into_response()
        }
        ("DELETE", false) => {
            if storage.read_only.contains(&bucket) {
                return denied("storage.objects.delete", &bucket, &name);
            }
            match storage.objects.remove(&key) {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => xml_error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist."),
            }
        }
        ("GET", false) => match storage.objects.get(&key) {
            Some(data) => (StatusCode::OK, data.clone()).into_response(),
            None => xml_error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist."),
        },
        _ => xml_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "the fake does not do this",
        ),
    }
}

/// The XML API's multipart uploads: initiate (`POST ?uploads`), a part
/// (`PUT ?partNumber=n&uploadId=id`, at least 5 MiB unless it is the
/// last), complete (`POST ?uploadId=id` with the parts' numbers and ETags)
/// and abort (`DELETE ?uploadId=id`).
fn multipart(
    storage: &mut Storage,
    method: &Method,
    key: (String, String),
    parameters: &BTreeMap<&str, &str>,
    body: &Bytes,
) -> Response {
    let xml = |body: String| (StatusCode::OK, [(header::CONTENT_TYPE, "application/xml")], body).into_response();
    let no_upload = || {
        xml_error(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The specified upload does not exist.",
        )
    };
    let upload_id = parameters.get("uploadId").map(|id| id.to_string());
    match (method.as_str(), upload_id) {
        ("POST", None) => {
            let id = format!(
                "upload{}",
                storage.multipart.len() + storage.multipart_objects.len() + 1
            );
            storage.multipart.insert(id.clone(), (key, BTreeMap::new()));
            xml(format!(
                "<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult><Bucket>b</Bucket>\
                 <Key>k</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"
            ))
        }
        ("PUT", Some(id)) => {
            let Some((_, parts)) = storage.multipart.get_mut(&id) else {
                return no_upload();
            };
            let Some(number) = parameters.get("partNumber").and_then(|n| n.parse::<u32>().ok()) else {
                return xml_error(StatusCode::BAD_REQUEST, "InvalidArgument", "partNumber is needed");
            };
            parts.insert(number, body.to_vec());
            (
                StatusCode::OK,
                [(header::ETAG, format!("\"part{number}-{}\"", body.len()))],
            )
                .into_response()
        }
        ("POST", Some(id)) => {
            let Some((key, parts)) = storage.multipart.remove(&id) else {
                return no_upload();
            };
            let listed: Vec<u32> = String::from_utf8_lossy(body)
                .split("<PartNumber>")
                .skip(1)
                .filter_map(|rest| rest.split_once("</PartNumber>").and_then(|(n, _)| n.parse().ok()))
                .collect();
            if listed.is_empty() || listed != parts.keys().copied().collect::<Vec<_>>() {
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidPart",
                    "the parts listed are not the parts sent",
                );
            }
            let sizes: Vec<usize> = parts.values().map(Vec::len).collect();
            if sizes[..sizes.len() - 1].iter().any(|&size| size < MIN_PART) {
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "EntityTooSmall",
                    "a part but the last is under 5 MiB",
                );
            }
            let object: Vec<u8> = parts.into_values().flatten().collect();
            let (bucket, name) = key.clone();
            storage.objects.insert(key, object);
            storage.written.push(format!("gs://{bucket}/{name}"));
            storage
                .multipart_objects
                .push((format!("gs://{bucket}/{name}"), sizes.len()));
            xml(format!(
                "<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult><Bucket>{bucket}</Bucket>\
                 <Key>{name}</Key><ETag>\"done{}\"</ETag></CompleteMultipartUploadResult>",
                storage.written.len()
            ))
        }
        ("DELETE", Some(id)) => match storage.multipart.remove(&id) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => no_upload(),
        },
        _ => xml_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "the fake does not do this",
        ),
    }
}

/// A `list-type=2` listing of the objects whose names start with `prefix`.
fn list(storage: &Storage, bucket: &str, query: &str) -> Response {
    let parameters: BTreeMap<&str, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, percent_decode(v)))
        .collect();
    if parameters.get("list-type").map(String::as_str) != Some("2") {
        return xml_error(StatusCode::BAD_REQUEST, "InvalidArgument", "only list-type=2 listings");
    }
    let prefix = parameters.get("prefix").cloned().unwrap_or_default();
    let contents: String = storage
        .objects
        .iter()
        .filter(|((b, name), _)| b == bucket && name.starts_with(&prefix))
        .map(|((_, name), data)| {
            format!(
                "<Contents><Key>{name}</Key><Size>{}</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified>\
                 <ETag>\"e\"</ETag></Contents>",
                data.len()
            )
        })
        .collect();
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>{bucket}</Name><Prefix>{prefix}</Prefix>\
         <KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// The files a load job's `sourceUris` name, as BigQuery reads them.
pub fn read_uris(storage: &Storage, uris: &[Value]) -> Result<Vec<Vec<u8>>, (&'static str, String)> {
    if uris.is_empty() || uris.len() > 10_000 {
        return Err((
            "invalid",
            format!("a load job takes 1 to 10,000 URIs, not {}", uris.len()),
        ));
    }
    uris.iter()
        .map(|uri| {
            let text = uri.as_str().unwrap_or_default();
            let (bucket, name) = text
                .strip_prefix("gs://")
                .and_then(|rest| rest.split_once('/'))
                .ok_or(("invalid", format!("Invalid source URI: {uri}")))?;
            storage
                .objects
                .get(&(bucket.to_owned(), name.to_owned()))
                .cloned()
                .ok_or(("notFound", format!("Not found: URI {text}")))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
