//! Resumable load job uploads (`uploadType=resumable`): a POST with the job
//! opens a session (with the file's size, or without it when the file is
//! sent while it is written), PUTs with `Content-Range` add pieces
//! (answered `308` with the `Range` received until the last; every piece
//! but the last a multiple of 256 KiB, `bytes a-b/*` while the size is not
//! known), and `bytes */total` or `bytes */*` asks how much arrived (or,
//! when every byte did, ends the file). The job runs when the last byte
//! arrives.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{State, error, insert_job};

/// Open sessions and what they were sent.
#[derive(Debug, Default)]
pub struct Sessions {
    /// By session id, in order of opening.
    pub open: BTreeMap<String, Session>,
    /// Data bytes received by PUTs of every session (resent bytes count again).
    pub bytes_received: usize,
    /// `bytes */total` (or `bytes */*`) status questions.
    pub status_queries: usize,
}

/// One upload session.
#[derive(Debug)]
pub struct Session {
    pub job: Value,
    /// The file's size: from `X-Upload-Content-Length`, or when the
    /// session was opened without it, from the range of its last piece.
    pub total: Option<usize>,
    /// Whether the session was opened without the size.
    pub opened_unsized: bool,
    pub received: Vec<u8>,
    /// Pieces that arrived before the file's size was known.
    pub unsized_pieces: usize,
}

/// The protocol's unit: every piece but the last is a multiple of it.
const PIECE_UNIT: usize = 256 << 10;

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
            let total = match header("x-upload-content-length") {
                "" => None,
                length => match length.parse::<usize>() {
                    Ok(total) => Some(total),
                    Err(_) => return error(400, "invalid", "X-Upload-Content-Length is not a number"),
                },
            };
            let id = format!("session{:04}", s.uploads.open.len() + 1);
            s.uploads.open.insert(
                id.clone(),
                Session {
                    job,
                    total,
                    opened_unsized: total.is_none(),
                    received: Vec::new(),
                    unsized_pieces: 0,
                },
            );
            let location = format!("http://{}{}&upload_id={id}", header("host"), uri);
            (StatusCode::OK, [(header::LOCATION, location)]).into_response()
        }
        ("PUT", Some(id)) => {
            let range = header("content-range").to_owned();
            let Some(session) = s.uploads.open.get_mut(&id) else {
                return error(404, "notFound", format!("no upload session {id}"));
            };
            let Some((bytes, size)) = range.strip_prefix("bytes ").and_then(|r| r.split_once('/')) else {
                return error(
                    400,
                    "invalid",
                    format!("Content-Range {range} is not bytes <range>/<size>"),
                );
            };
            let size = match size {
                "*" => None,
                size => match size.parse::<usize>() {
                    Ok(size) => Some(size),
                    Err(_) => return error(400, "invalid", format!("Content-Range {range}: bad size")),
                },
            };
            if let (Some(size), Some(total)) = (size, session.total)
                && size != total
            {
                return error(
                    400,
                    "invalid",
                    format!("Content-Range {range}: the file has {total} bytes"),
                );
            }
            if bytes == "*" {
                if !body.is_empty() {
                    return error(400, "invalid", format!("Content-Range {range} with a body"));
                }
                s.uploads.status_queries += 1;
            } else {
                let start = bytes.split_once('-').and_then(|(start, _)| start.parse::<usize>().ok());
                if start != Some(session.received.len()) {
                    return error(
                        400,
                        "invalid",
                        format!("Content-Range {range} does not continue at {}", session.received.len()),
                    );
                }
                let ends = size.is_some_and(|size| session.received.len() + body.len() == size);
                if !ends && !body.len().is_multiple_of(PIECE_UNIT) {
                    return error(
                        400,
                        "invalid",
                        format!("Content-Range {range}: a piece before the last must be a multiple of 256 KiB"),
                    );
                }
                if size.is_none() {
                    session.unsized_pieces += 1;
                }
                session.received.extend_from_slice(body);
                s.uploads.bytes_received += body.len();
            }
            if session.total.is_none() {
                session.total = size;
            }
            if session.total.is_none_or(|total| session.received.len() < total) {
                let mut answer = StatusCode::PERMANENT_REDIRECT.into_response();
                if !session.received.is_empty() {
                    let range = format!("bytes=0-{}", session.received.len() - 1);
                    answer.headers_mut().insert(header::RANGE, range.parse().unwrap());
                }
                return answer;
            }
            // Kept: asking again after the last piece's answer was lost meets
            // the job id as taken (409), as a repeated insert does.
            let (job, media) = (session.job.clone(), session.received.clone());
            insert_job(s, project, job, Some(media))
        }
        _ => error(400, "invalid", "not a resumable upload request"),
    }
}
