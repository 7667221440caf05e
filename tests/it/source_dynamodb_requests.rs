//! What Sluice asks DynamoDB for, recorded by a proxy in front of moto:
//! filters as a typed `FilterExpression`, a fixed partition key (of the
//! table or of a global secondary index) as a `Query`, and an incremental
//! job's window as the filter of each run's `Scan`, loading every item once.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::Client;

use crate::common::dynamodb::Dynamo;
use crate::common::{Sluice, rows};

/// The requests a [`Recorder`] passed on: operation and body.
type Requests = Arc<Mutex<Vec<(String, Value)>>>;

/// A TCP proxy to moto that records each DynamoDB request it forwards.
pub(crate) struct Recorder {
    endpoint: String,
    requests: Requests,
}

impl Recorder {
    async fn start(upstream: &str) -> Recorder {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Requests::default();
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(forward(client, server, recorded.clone()));
            }
        });
        Recorder { endpoint, requests }
    }

    /// The reads (`Scan`, `Query`) of `operation` since the last call,
    /// oldest first, not counting the sample's scans (`Limit` 1000).
    pub(crate) fn take(&self, operation: &str) -> Vec<Value> {
        let mut requests = self.requests.lock().unwrap();
        let taken = requests
            .iter()
            .filter(|(op, body)| op == operation && body["Limit"] != json!(1000))
            .map(|(_, body)| body.clone())
            .collect();
        requests.clear();
        taken
    }
}

/// Copies one connection's HTTP/1.1 requests (head and `Content-Length`
/// body) to the server, recording each, and its answers back.
async fn forward(client: TcpStream, server: TcpStream, requests: Requests) {
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut reader = BufReader::new(client_read);
    loop {
        let mut head = Vec::new();
        let (mut length, mut operation) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            head.extend_from_slice(line.as_bytes());
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            if lower.starts_with("x-amz-target:") {
                operation = line.trim().rsplit('.').next().unwrap().to_owned();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
        requests.lock().unwrap().push((operation, parsed));
        head.extend_from_slice(&body);
        if server_write.write_all(&head).await.is_err() {
            return;
        }
    }
}

/// An expression of a request with its placeholders filled in, its `AND`
/// terms sorted (a `BETWEEN` stays whole).
pub(crate) fn filled(body: &Value, member: &str) -> Option<String> {
    let mut text = body[member].as_str()?.to_owned();
    let mut pairs: Vec<(String, String)> = body["ExpressionAttributeNames"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .chain(
            body["ExpressionAttributeValues"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.to_string())),
        )
        .collect();
    pairs.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (placeholder, value) in pairs {
        text = text.replace(&placeholder, &value);
    }
    // `x BETWEEN a AND b` is one term.
    let mut joined: Vec<String> = Vec::new();
    for term in text.split(" AND ") {
        match joined.last_mut() {
            Some(last) if last.contains(" BETWEEN ") && !last.contains(" AND ") => *last = format!("{last} AND {term}"),
            _ => joined.push(term.to_owned()),
        }
    }
    joined.sort();
    Some(joined.join(" AND "))
}

/// Item `id`: kind `a` (odd ids) or `b`, `ts` = id / 3 (three items share
/// most values), a float `total`, an int `qty` and a `note` on every fourth.
pub(crate) fn event(id: u32) -> Value {
    let mut item = json!({
        "id": {"N": id.to_string()},
        "kind": {"S": if id % 2 == 1 { "a" } else { "b" }},
        "ts": {"N": (id / 3).to_string()},
        "total": {"N": format!("{}.5", id * 5)},
        "qty": {"N": (id % 7).to_string()},
    });
    if id.is_multiple_of(4) {
        item["note"] = json!({"S": "x"});
    }
    item
}

/// moto with table `events` (key `id`, global index `by_kind` on
/// `kind`/`ts` holding every attribute) of `items` items, and Sluice with
/// connection `dyn` through the recorder.
pub(crate) async fn setup(items: u32, extra: &str) -> (Dynamo, Recorder, Sluice, Client) {
    let dynamo = Dynamo::start();
    dynamo.python(
        "d.create_table(TableName='events', KeySchema=[{'AttributeName': 'id', 'KeyType': 'HASH'}], \
         AttributeDefinitions=[{'AttributeName': 'id', 'AttributeType': 'N'}, \
         {'AttributeName': 'kind', 'AttributeType': 'S'}, {'AttributeName': 'ts', 'AttributeType': 'N'}], \
         GlobalSecondaryIndexes=[{'IndexName': 'by_kind', 'KeySchema': [{'AttributeName': 'kind', 'KeyType': 'HASH'}, \
         {'AttributeName': 'ts', 'KeyType': 'RANGE'}], 'Projection': {'ProjectionType': 'ALL'}}], \
         BillingMode='PAY_PER_REQUEST')",
    );
    dynamo.put("events", &(1..=items).map(event).collect::<Vec<_>>());
    let recorder = Recorder::start(dynamo.endpoint()).await;
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS (endpoint '{}', region 'us-east-1', \
             access_key_id 'test', secret_access_key 'test'{extra})",
            recorder.endpoint
        ))
        .await
        .unwrap();
    (dynamo, recorder, sluice, client)
}

/// The first column of a query's rows.
async fn ids(client: &Client, sql: &str) -> Vec<u32> {
    rows(client, sql)
        .await
        .iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect()
}

pub(crate) async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_sent_as_typed_expressions_and_fixed_keys_as_queries() {
    let (_dynamo, recorder, _sluice, client) = setup(20, ", segments 2, page_size 3").await;
    let _ = ids(&client, "SELECT id FROM dyn.dynamodb.events LIMIT 1").await;
    recorder.take("");

    // A scan with a typed filter: numbers as N, strings as S (float
    // comparisons are never pushed by Sluice's planner: they stay in Sluice).
    let found = ids(
        &client,
        "SELECT id FROM dyn.dynamodb.events WHERE qty >= 2 AND note = 'x' AND total > 45 ORDER BY id",
    )
    .await;
    let expected: Vec<u32> = (1..=20)
        .filter(|id| id % 7 >= 2 && id % 4 == 0 && id * 5 > 45)
        .collect();
    assert_eq!(found, expected);
    let scans = recorder.take("Scan");
    assert!(scans.len() >= 2, "both segments read: {scans:?}");
    for scan in &scans {
        assert_eq!(
            filled(scan, "FilterExpression").as_deref(),
            Some(r#"note = {"S":"x"} AND qty >= {"N":"2"}"#),
            "{scan}"
        );
        assert_eq!(scan["TotalSegments"], json!(2));
        assert!(scan.get("KeyConditionExpression").is_none());
    }

    // The index's partition key fixed and its sort key bounded: a Query.
    let found = ids(
        &client,
        "SELECT id FROM dyn.dynamodb.events WHERE kind = 'a' AND ts > 2 AND ts <= 5 AND qty < 5 ORDER BY id",
    )
    .await;
    let expected: Vec<u32> = (1..=20)
        .filter(|id| id % 2 == 1 && id / 3 > 2 && id / 3 <= 5 && id % 7 < 5)
        .collect();
    assert_eq!(found, expected);
    let queries = recorder.take("Query");
    assert!(!queries.is_empty());
    for query in &queries {
        assert_eq!(query["IndexName"], json!("by_kind"), "{query}");
        assert_eq!(
            filled(query, "KeyConditionExpression").as_deref(),
            Some(r#"kind = {"S":"a"} AND ts BETWEEN {"N":"2"} AND {"N":"5"}"#)
        );
        assert_eq!(filled(query, "FilterExpression").as_deref(), Some(r#"qty < {"N":"5"}"#));
        assert!(
            query.get("ConsistentRead").is_none(),
            "a global index is read eventually consistent"
        );
    }
    let explain = rows(
        &client,
        "EXPLAIN SELECT id FROM dyn.dynamodb.events WHERE kind = 'a' AND ts > 2",
    )
    .await;
    let plan = format!("{explain:?}");
    assert!(
        plan.contains(r#"Query events index by_kind (Limit 3, KeyConditionExpression kind = {\"S\":\"a\"} AND ts > {\"N\":\"2\"})"#),
        "{plan}"
    );
    recorder.take("");

    // The table's own partition key: a Query of the table.
    assert_eq!(
        ids(&client, "SELECT id FROM dyn.dynamodb.events WHERE id = 7").await,
        [7]
    );
    let queries = recorder.take("Query");
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(queries[0].get("IndexName").is_none());
    assert_eq!(
        filled(&queries[0], "KeyConditionExpression").as_deref(),
        Some(r#"id = {"N":"7"}"#)
    );
    assert_eq!(queries[0]["ConsistentRead"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_window_is_the_scan_filter_and_each_item_loads_once() {
    let (dynamo, recorder, _sluice, client) = setup(20, ", segments 2, page_size 2").await;
    client
        .batch_execute("CREATE ETL JOB ev FROM dyn.dynamodb.events INTO warehouse.events INCREMENTAL BY ts ALL")
        .await
        .unwrap();
    recorder.take("");
    assert_eq!(run(&client, "ev").await, "20");
    let first = recorder.take("Scan");
    assert!(first.iter().all(|s| s.get("FilterExpression").is_none()), "{first:?}");

    // Five items sharing one new cursor value, read across page boundaries.
    dynamo.put(
        "events",
        &(21..=25)
            .map(|id| {
                let mut item = event(id);
                item["ts"] = json!({"N": "9"});
                item
            })
            .collect::<Vec<_>>(),
    );
    assert_eq!(run(&client, "ev").await, "5");
    let second = recorder.take("Scan");
    assert!(second.len() >= 2);
    for scan in &second {
        assert_eq!(
            filled(scan, "FilterExpression").as_deref(),
            Some(r#"ts > {"N":"6"}"#),
            "{scan}"
        );
    }
    assert_eq!(run(&client, "ev").await, "0");
    for scan in recorder.take("Scan") {
        assert_eq!(
            filled(&scan, "FilterExpression").as_deref(),
            Some(r#"ts > {"N":"9"}"#),
            "{scan}"
        );
    }
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(id) FROM warehouse.events"
        )
        .await[0],
        ["25", "25", "325"].map(|v| Some(v.to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_takes_the_mapping_settings_for_one_read() {
    let (_dynamo, recorder, _sluice, client) = setup(20, "").await;
    let columns =
        |rows: Vec<Vec<Option<String>>>| -> Vec<String> { rows.into_iter().map(|r| r[0].clone().unwrap()).collect() };
    let plain = columns(rows(&client, "DESCRIBE dyn.dynamodb.events").await);
    assert!(!plain.contains(&"_document".to_owned()), "{plain:?}");
    recorder.take("");

    let described = columns(
        rows(
            &client,
            "DESCRIBE dyn.dynamodb.events WITH (sample = 5, keep_document = true, on_type_mismatch = 'null')",
        )
        .await,
    );
    assert_eq!(described.last().map(String::as_str), Some("_document"), "{described:?}");
    let scans = recorder.take("Scan");
    assert_eq!(scans[0]["Limit"], json!(5), "the sample reads 5 items: {scans:?}");

    for (sql, setting) in [
        (
            "DESCRIBE dyn.dynamodb.events WITH (on_type_mismatch = 'maybe')",
            "on_type_mismatch",
        ),
        ("DESCRIBE dyn.dynamodb.events WITH (sample = 0)", "sample"),
        ("DESCRIBE dyn.dynamodb.events WITH (samples = 10)", "samples"),
    ] {
        let message = crate::common::expect_err(&client, sql, "22023").await;
        assert!(message.contains(setting), "{sql}: {message}");
    }
    // The connection itself is unchanged.
    assert_eq!(columns(rows(&client, "DESCRIBE dyn.dynamodb.events").await), plain);
}

/// `sample`, `keep_document` and `on_type_mismatch` as job settings win
/// over the connection's options and show in `SHOW CREATE ETL JOB`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_mapping_settings_win_over_the_connection_options() {
    let (dynamo, _recorder, _sluice, client) = setup(20, ", on_type_mismatch 'fail', sample 1000").await;
    // Item 21, put last (moto scans in insertion order), holds text in `qty`.
    let mut odd = event(21);
    odd["qty"] = json!({"S": "many"});
    dynamo.put("events", &[odd]);
    for (setting, sql) in [
        ("on_type_mismatch", "on_type_mismatch = 'maybe'"),
        ("keep_document", "keep_document = 'yes'"),
        ("sample", "sample = 0"),
    ] {
        let message = crate::common::expect_err(
            &client,
            &format!("CREATE ETL JOB bad FROM dyn.dynamodb.events INTO warehouse.bad SNAPSHOT WITH ({sql})"),
            // Refused by the parser, as every job setting's value.
            "42601",
        )
        .await;
        assert!(message.contains(setting), "{sql}: {message}");
    }
    client
        .batch_execute(
            "CREATE ETL JOB snap FROM dyn.dynamodb.events INTO warehouse.events_snap SNAPSHOT \
             WITH (sample = 20, on_type_mismatch = 'null', keep_document = true)",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "snap").await, "21");
    let odd = rows(
        &client,
        "SELECT qty, _document FROM warehouse.events_snap WHERE id = 21",
    )
    .await;
    assert_eq!(odd[0][0], None, "{odd:?}");
    assert!(odd[0][1].as_deref().unwrap().contains(r#""qty":"many""#), "{odd:?}");
    let create = rows(&client, "SHOW CREATE ETL JOB snap").await;
    let text = create[0].last().cloned().flatten().unwrap();
    assert!(
        text.contains("keep_document = true, on_type_mismatch = 'null', sample = 20);"),
        "{text}"
    );
    // The connection's own option still fails a job without the settings.
    client
        .batch_execute(
            "CREATE ETL JOB strict FROM dyn.dynamodb.events INTO warehouse.events_strict SNAPSHOT WITH (sample = 20)",
        )
        .await
        .unwrap();
    let failed = crate::common::expect_err(&client, "RUN ETL JOB strict", "2200G").await;
    assert!(failed.contains("document 21") && failed.contains("\"qty\""), "{failed}");
}
