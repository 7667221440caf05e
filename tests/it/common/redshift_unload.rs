//! A Redshift `UNLOAD` in front of the PostgreSQL stand-in, which cannot
//! parse it: a pgwire proxy that forwards every message to the stand-in
//! unchanged, except a simple query starting with `UNLOAD`, which it
//! parses as Redshift does (`UNLOAD ('<select>') TO 's3://...' IAM_ROLE
//! '...' FORMAT PARQUET` and the options Sluice sends), runs the inner
//! select on the stand-in, writes the rows as Parquet objects into moto's
//! S3 and answers like Redshift (`UNLOAD`, or an `XX000` error such as
//! Redshift's for a role it may not assume or a bucket it cannot write).
//! Every UNLOAD it received is kept for the tests to check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::aws::AmazonS3Builder;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use datafusion::parquet::arrow::ArrowWriter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::types::{Kind, Type};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::PgServer;

/// Rows per unloaded Parquet file, so that a scan reads several.
const ROWS_PER_FILE: usize = 1000;

/// The proxy, serving until dropped.
pub struct UnloadProxy {
    pub port: u16,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct State {
    upstream_port: u16,
    admin: tokio_postgres::Config,
    s3_endpoint: String,
    iam_role: String,
    /// Every UNLOAD statement received, as sent.
    received: Mutex<Vec<String>>,
    /// How long an UNLOAD takes after its files are written.
    delay_ms: AtomicU64,
}

impl UnloadProxy {
    /// Proxies `pg`; UNLOADs may assume `iam_role` only and write to
    /// moto's S3 at `s3_endpoint`.
    pub fn start(pg: &PgServer, s3_endpoint: &str, iam_role: &str) -> Self {
        let mut admin = pg.config();
        admin.user("postgres").password(pg.admin_password.as_str());
        let state = Arc::new(State {
            upstream_port: pg.port,
            admin,
            s3_endpoint: s3_endpoint.to_owned(),
            iam_role: iam_role.to_owned(),
            received: Mutex::default(),
            delay_ms: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Bound here, served by the proxy's runtime (a test's runtime may
        // not block on another).
        let bound = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        bound.set_nonblocking(true).unwrap();
        let port = bound.local_addr().unwrap().port();
        let serving = state.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(bound).unwrap();
            while let Ok((client, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    if let Err(e) = proxy(client, state).await {
                        eprintln!("unload proxy: {e}");
                    }
                });
            }
        });
        Self {
            port,
            state,
            runtime: Some(runtime),
        }
    }

    /// The UNLOAD statements received so far.
    pub fn received(&self) -> Vec<String> {
        self.state.received.lock().unwrap().clone()
    }

    /// Makes each UNLOAD answer `delay` after writing its files.
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for UnloadProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// One client session: the start-up forwarded, then message by message.
async fn proxy(client: TcpStream, state: Arc<State>) -> Result<(), Failure> {
    let (mut from_client, to_client) = client.into_split();
    let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
    // Start-up: no TLS here (`N` to an SSLRequest or GSSENCRequest).
    let startup = loop {
        let len = from_client.read_u32().await? as usize;
        let mut body = vec![0; len - 4];
        from_client.read_exact(&mut body).await?;
        let code = u32::from_be_bytes(body[..4].try_into()?);
        if code == 80_877_103 || code == 80_877_104 {
            to_client.lock().await.write_all(b"N").await?;
            continue;
        }
        let mut message = (len as u32).to_be_bytes().to_vec();
        message.extend(body);
        break message;
    };
    let upstream = TcpStream::connect(("127.0.0.1", state.upstream_port)).await?;
    let (mut from_server, mut to_server) = upstream.into_split();
    to_server.write_all(&startup).await?;
    let relay = to_client.clone();
    tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if relay.lock().await.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = relay.lock().await.shutdown().await;
    });
    while let Ok(kind) = from_client.read_u8().await {
        let len = from_client.read_u32().await? as usize;
        let mut body = vec![0; len - 4];
        from_client.read_exact(&mut body).await?;
        if kind == b'Q' {
            let text = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned();
            if text.trim_start().to_ascii_uppercase().starts_with("UNLOAD") {
                state.received.lock().unwrap().push(text.clone());
                let answer = unload(&state, &text).await;
                answer_client(&to_client, answer).await?;
                continue;
            }
        }
        to_server.write_u8(kind).await?;
        to_server.write_u32(len as u32).await?;
        to_server.write_all(&body).await?;
        if kind == b'X' {
            break;
        }
    }
    Ok(())
}

/// Redshift's answer: `UNLOAD`, or an error (SQLSTATE, message).
async fn answer_client(
    to_client: &tokio::sync::Mutex<OwnedWriteHalf>,
    answer: Result<(), (String, String)>,
) -> Result<(), Failure> {
    let mut out = Vec::new();
    let mut message = |kind: u8, body: &[u8]| {
        out.push(kind);
        out.extend(((body.len() + 4) as u32).to_be_bytes());
        out.extend(body);
    };
    match answer {
        Ok(()) => message(b'C', b"UNLOAD\0"),
        Err((code, text)) => {
            let mut body = Vec::new();
            for (field, value) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', &code), (b'M', &text)] {
                body.push(field);
                body.extend(value.as_bytes());
                body.push(0);
            }
            body.push(0);
            message(b'E', &body);
        }
    }
    message(b'Z', b"I");
    to_client.lock().await.write_all(&out).await?;
    Ok(())
}

/// An UNLOAD statement as Redshift reads it.
#[derive(Debug)]
struct Statement {
    select: String,
    to: String,
    iam_role: String,
}

fn syntax(message: impl Into<String>) -> (String, String) {
    ("42601".into(), message.into())
}

/// A Redshift string literal at the start of `text` (`''` and backslash
/// escapes) and the rest after it.
fn literal(text: &str) -> Result<(String, &str), (String, String)> {
    let text = text.trim_start();
    let mut chars = text
        .strip_prefix('\'')
        .ok_or_else(|| syntax(format!("expected a quoted string at: {text}")))?
        .char_indices();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next().ok_or_else(|| syntax("unterminated string"))?.1),
            '\'' => {
                let rest = &text[i + 2..];
                match rest.strip_prefix('\'') {
                    Some(_) => {
                        value.push('\'');
                        chars.next();
                    }
                    None => return Ok((value, rest)),
                }
            }
            _ => value.push(c),
        }
    }
    Err(syntax("unterminated string"))
}

fn keyword<'a>(text: &'a str, word: &str) -> Result<&'a str, (String, String)> {
    let text = text.trim_start();
    match text.get(..word.len()) {
        Some(head) if head.eq_ignore_ascii_case(word) => Ok(&text[word.len()..]),
        _ => Err(syntax(format!("syntax error: expected {word} at: {text}"))),
    }
}

/// Parses `UNLOAD ('select') TO 'url' IAM_ROLE 'role' FORMAT PARQUET
/// [PARALLEL ON|OFF] [MAXFILESIZE n MB]`: other options are refused, as
/// Sluice sends none.
fn parse(text: &str) -> Result<Statement, (String, String)> {
    let rest = keyword(text, "UNLOAD")?;
    let rest = keyword(rest, "(")?;
    let (select, rest) = literal(rest)?;
    let rest = keyword(rest, ")")?;
    let rest = keyword(rest, "TO")?;
    let (to, rest) = literal(rest)?;
    let rest = keyword(rest, "IAM_ROLE")?;
    let (iam_role, rest) = literal(rest)?;
    let words: Vec<String> = rest.split_whitespace().map(|w| w.to_ascii_uppercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut format = false;
    let mut at = 0;
    while at < words.len() {
        match &words[at..] {
            ["FORMAT", "PARQUET", ..] => format = true,
            ["PARALLEL", "ON" | "OFF", ..] => {}
            ["MAXFILESIZE", n, "MB", ..] if n.parse::<u32>().is_ok() => at += 1,
            _ => return Err(syntax(format!("syntax error at or near \"{}\"", words[at]))),
        }
        at += 2;
    }
    if !format {
        return Err(("0A000".into(), "the proxy unloads FORMAT PARQUET only".into()));
    }
    if !to.starts_with("s3://") || !to.ends_with('/') {
        return Err(("XX000".into(), format!("invalid S3 prefix {to}")));
    }
    Ok(Statement { select, to, iam_role })
}

/// Runs one UNLOAD.
async fn unload(state: &State, text: &str) -> Result<(), (String, String)> {
    let statement = parse(text)?;
    if statement.iam_role != state.iam_role {
        return Err((
            "XX000".into(),
            format!(
                "User arn:aws:redshift:us-east-1:123456789012:dbuser:standin/rs_etl is not authorized to assume \
                 IAM Role {}",
                statement.iam_role
            ),
        ));
    }
    let internal = |e: &dyn std::fmt::Display| ("XX000".to_owned(), e.to_string());
    let batches = select(state, &statement.select).await.map_err(|e| internal(&e))?;
    let (bucket, prefix) = statement.to["s3://".len()..].split_once('/').unwrap();
    let store = AmazonS3Builder::new()
        .with_endpoint(&state.s3_endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("a")
        .with_secret_access_key("b")
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| internal(&e))?;
    for (i, batch) in batches.iter().enumerate() {
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).map_err(|e| internal(&e))?;
        writer.write(batch).map_err(|e| internal(&e))?;
        writer.close().map_err(|e| internal(&e))?;
        let key = Path::from(format!("{prefix}{i:04}_part_00.parquet"));
        store.put(&key, PutPayload::from(bytes)).await.map_err(|e| {
            (
                "XX000".to_owned(),
                format!("S3ServiceException:The specified bucket is not valid or not reachable ({e}),Status 404"),
            )
        })?;
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    Ok(())
}

/// The rows of `sql` on the stand-in as Arrow batches of at most
/// [`ROWS_PER_FILE`] rows, typed as Redshift types them in Parquet.
async fn select(state: &State, sql: &str) -> Result<Vec<RecordBatch>, Failure> {
    let (client, connection) = state.admin.connect(NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, MDY'; SET extra_float_digits TO 3")
        .await?;
    let prepared = client.prepare(sql).await?;
    let fields: Vec<Field> = prepared
        .columns()
        .iter()
        .map(|c| Field::new(c.name(), arrow_type(c.type_(), c.type_modifier()), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let rows: Vec<_> = client
        .simple_query(sql)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect();
    let mut batches = Vec::new();
    for chunk in rows.chunks(ROWS_PER_FILE) {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if field.data_type() == &DataType::Binary {
                let mut builder = BinaryBuilder::new();
                for row in chunk {
                    match row.get(i) {
                        Some(text) => builder.append_value(hex::decode(text.trim_start_matches("\\x"))?),
                        None => builder.append_null(),
                    }
                }
                columns.push(Arc::new(builder.finish()));
                continue;
            }
            let mut builder = StringBuilder::new();
            for row in chunk {
                builder.append_option(row.get(i));
            }
            let texts: ArrayRef = Arc::new(builder.finish());
            let options = CastOptions {
                safe: false,
                ..CastOptions::default()
            };
            columns.push(cast_with_options(&texts, field.data_type(), &options)?);
        }
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(batches)
}

/// The Parquet (Arrow) type Redshift writes for a column of type `ty`.
fn arrow_type(ty: &Type, modifier: i32) -> DataType {
    let ty = match ty.kind() {
        Kind::Domain(base) => base,
        _ => ty,
    };
    match *ty {
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::NUMERIC if modifier >= 4 => {
            let modifier = modifier - 4;
            DataType::Decimal128(((modifier >> 16) & 0xffff) as u8, (modifier & 0xffff) as i8)
        }
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::BOOL => DataType::Boolean,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::BYTEA => DataType::Binary,
        _ => DataType::Utf8,
    }
}

#[test]
fn the_parser_reads_redshift_literals() {
    let parsed = parse(
        "UNLOAD ('SELECT 1 WHERE a = ''it''''s'' AND b = ''x\\\\y''') TO 's3://b/p/' IAM_ROLE 'arn:r' \
         FORMAT PARQUET PARALLEL ON MAXFILESIZE 256 MB",
    )
    .unwrap();
    assert_eq!(parsed.select, "SELECT 1 WHERE a = 'it''s' AND b = 'x\\y'");
    assert_eq!((parsed.to.as_str(), parsed.iam_role.as_str()), ("s3://b/p/", "arn:r"));
    assert!(parse("UNLOAD ('SELECT 1') TO 's3://b/p/' IAM_ROLE 'r' FORMAT PARQUET CLEANPATH").is_err());
    assert!(parse("UNLOAD ('SELECT 1') TO 's3://b/p/' IAM_ROLE 'r'").is_err());
}

/// The keys under `prefix` in moto's bucket `bucket` at `endpoint`.
pub async fn objects(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("a")
        .with_secret_access_key("b")
        .with_bucket_name(bucket)
        .build()
        .unwrap();
    let listed: Vec<_> = store.list(Some(&Path::from(prefix))).try_collect().await.unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}
