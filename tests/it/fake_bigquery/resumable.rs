//! Resumable load job uploads (`uploadType=resumable`): a POST with the job
//! opens a session, PUTs with `Content-Range` add pieces (answered `308`
//! with the `Range` received until the last), and `bytes */total` asks how
//! much arrived. The job runs when the last byte arrives.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{State, error, insert_job};

/// Open sessions and what they were sent.
#[derive(Debug, Default)]
pub struct Sessions {
    /// By session id: the job, its total size, the bytes received.
    pub open: BTreeMap<String, (Value, usize, Vec<u8>)>,
    /// Data bytes received by PUTs of every session (resent bytes count again).
    pub bytes_received: usize,
    /// `bytes */total` status questions.
    pub status_queries: usize,
}

/// Answers a resumable upload request for project `project`.
pub fn route(s: &mut State, method: &Method, project: &str, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let session = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("upload_id="))
        .map(str::to_owned);
    match (method.as_str(), session) {
        ("POST", None) => {
            let Ok(job) = serde_json::from_slice::<Value>(body) else {
                return error(400, "parseError", "Parse error");
            };
            let Ok(total) = header("x-upload-content-length").parse::<usize>() else {
                return error(400, "invalid", "X-Upload-Content-Length is needed");
            };
            let id = format!("session{}", s.uploads.open.len() + 1);
            s.uploads.open.insert(id.clone(), (job, total, Vec::new()));
            let location = format!("http://{}{}&upload_id={id}", header("host"), uri);
            (StatusCode::OK, [(header::LOCATION, location)]).into_response()
        }
        ("PUT", Some(id)) => {
            let range = header("content-range").to_owned();
            let Some((job, total, received)) = s.uploads.open.get_mut(&id) else {
                return error(404, "notFound", format!("no upload session {id}"));
            };
            if range == format!("bytes */{total}") {
                s.uploads.status_queries += 1;
            } else {
                let start = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(start, _)| start.parse::<usize>().ok());
                if start != Some(received.len()) {
                    return error(
                        400,
                        "invalid",
                        format!("Content-Range {range} does not continue at {}", received.len()),
                    );
                }
                received.extend_from_slice(body);
                s.uploads.bytes_received += body.len();
            }
            if received.len() < *total {
                let mut answer = StatusCode::PERMANENT_REDIRECT.into_response();
                if !received.is_empty() {
                    let range = format!("bytes=0-{}", received.len() - 1);
                    answer.headers_mut().insert(header::RANGE, range.parse().unwrap());
                }
                return answer;
            }
            // Kept: asking again after the last piece's answer was lost meets
            // the job id as taken (409), as a repeated insert does.
            let (job, media) = (job.clone(), received.clone());
            insert_job(s, project, job, Some(media))
        }
        _ => error(400, "invalid", "not a resumable upload request"),
    }
}
