//! `WITH (parallelism = n)` and cluster parts on SQL Server, against
//! pysqlbridge with SQL Server's application locks added
//! (`tests/fixtures/sqlbridge_applocks.py`): n `SELECT` streams over key
//! ranges load exactly the rows a serial run loads, and every read follows
//! the freeze: the table locked in one transaction (`WITH (TABLOCK,
//! HOLDLOCK)`) under an application lock, each stream beginning a
//! `SNAPSHOT` transaction and joining while the freeze is held, the table
//! thawed once every stream has joined. The bridge has no writers and no
//! lock manager of its own, so what the locks do on a real server (writers
//! wait, snapshots agree) is SQL Server's documented behaviour, checked
//! here only as the calls that ask for it; `source_sqlserver::live_sql_server`
//! runs a parallel job against a real server when one is configured.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::sqlbridge::{BRIDGE_DATABASE, BRIDGE_PASSWORD, BRIDGE_USER, LockCall, SqlBridge};
use common::{Sluice, expect_err, rows};
use futures::TryStreamExt;
use serde_json::json;
use sluice_catalog::OptionValue;
use sluice_engine::contract::{ScanRequest, SourceError, TableRef};

use crate::job_ops::{detail, explain};
use crate::parallel::difference;
use crate::source_mysql::Connections;
use crate::source_sqlserver::{expected, loaded, options, orders_csv};

/// Rows of `orders`: several batches per stream.
const ROWS: i64 = 12_000;

/// Checks the application-lock calls of parallel reads, one freeze per
/// entry of `parts` (its number of streams), in order: each freeze taken
/// by one session and released by it only after every stream joined; each
/// stream on a session of its own, seeing the freeze held before taking
/// its part's lock, each part taken once (a second taker is refused).
/// With `watched`, the coordinator (whose split was kept, as a cluster
/// keeps it while tasks run) saw each part held before it thawed the
/// table; a read in one process ends the freeze itself once all opened.
fn assert_freezes(calls: &[LockCall], parts: &[usize], watched: bool) {
    let freezes: Vec<(usize, &LockCall)> = (calls.iter().enumerate())
        .filter(|(_, c)| c.call == "sp_getapplock" && c.resource.starts_with("sluice_freeze_"))
        .filter(|(_, c)| !c.resource.contains('/'))
        .collect();
    assert_eq!(freezes.len(), parts.len(), "one freeze per parallel read: {calls:#?}");
    for ((at, freeze), &n) in freezes.into_iter().zip(parts) {
        assert_eq!(freeze.answer, json!(true), "{freeze:?}");
        let thawed = (calls.iter().enumerate().skip(at))
            .find(|(_, c)| c.call == "sp_releaseapplock" && c.resource == freeze.resource)
            .map(|(i, c)| {
                assert_eq!((c.session, &c.answer), (freeze.session, &json!(true)), "{c:?}");
                i
            })
            .unwrap_or_else(|| panic!("{} never thawed: {calls:#?}", freeze.resource));
        let prefix = format!("{}/", freeze.resource);
        let joins: Vec<(usize, &LockCall)> = (calls.iter().enumerate())
            .filter(|(_, c)| c.call == "sp_getapplock" && c.resource.starts_with(&prefix))
            .filter(|(_, c)| c.answer == json!(true))
            .collect();
        assert_eq!(joins.len(), n, "each stream joined once: {joins:#?}");
        let mut sessions: Vec<u64> = joins.iter().map(|(_, c)| c.session).collect();
        sessions.sort_unstable();
        sessions.dedup();
        assert_eq!(sessions.len(), n, "a session per stream");
        assert!(
            !sessions.contains(&freeze.session),
            "the streams are not the coordinator"
        );
        let mut resources: Vec<&str> = joins.iter().map(|(_, c)| c.resource.as_str()).collect();
        resources.sort_unstable();
        resources.dedup();
        assert_eq!(resources.len(), n, "each part taken once");
        for (i, join) in &joins {
            assert!(*i < thawed, "{} joined before the thaw", join.resource);
            let saw_frozen = calls[..*i].iter().any(|c| {
                c.call == "APPLOCK_TEST"
                    && c.session == join.session
                    && c.resource == freeze.resource
                    && c.answer == json!(0)
            });
            assert!(saw_frozen, "{} saw the freeze held first", join.resource);
            if !watched {
                continue;
            }
            let seen = calls[..thawed].iter().any(|c| {
                c.call == "APPLOCK_TEST"
                    && c.session == freeze.session
                    && c.resource == join.resource
                    && c.answer == json!(0)
            });
            assert!(seen, "the coordinator saw {} held before thawing", join.resource);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sql_server_runs_load_what_serial_runs_load_inside_one_freeze() {
    let bridge = SqlBridge::start_with_applocks(&[("orders", &orders_csv(ROWS))]);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION mssql TYPE sqlserver OPTIONS ({}); \
             CREATE ETL JOB serial FROM mssql.dbo.orders INTO warehouse.serial SNAPSHOT; \
             CREATE ETL JOB par FROM mssql.dbo.orders INTO warehouse.par SNAPSHOT WITH (parallelism = 4, batch_rows = 1000); \
             CREATE ETL JOB par_inc FROM mssql.dbo.orders INTO warehouse.par_inc INCREMENTAL BY id ALL WITH (parallelism = 3);",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    let plan = explain(&client, "par").await;
    let last = detail(&plan, "source query 4/4");
    assert!(last.contains("WHERE [id] >= "), "{plan:#?}");
    assert!(bridge.lock_calls().is_empty(), "EXPLAIN freezes nothing");
    for job in ["serial", "par", "par_inc"] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    }
    let same = |n: &str| [Some("0".into()), Some("0".into()), Some(n.into()), Some(n.into())];
    assert_eq!(difference(&client, "serial", "par").await, same("12000"));
    assert_eq!(difference(&client, "serial", "par_inc").await, same("12000"));
    assert_eq!(loaded(&client, "par").await, expected(ROWS));
    assert_freezes(&bridge.lock_calls(), &[4, 3], false);
    let log = bridge.log();
    assert_eq!(
        log.matches("WITH (TABLOCK, HOLDLOCK)").count(),
        2,
        "one table lock per parallel run"
    );
    assert_eq!(
        log.matches("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION")
            .count(),
        4 + 3,
        "one snapshot transaction per stream"
    );

    // An incremental run reads the new rows in parallel too, and only them.
    let mut bridge = bridge;
    bridge.write_table("orders", &orders_csv(ROWS + 50));
    bridge.restart();
    let summary = rows(&client, "RUN ETL JOB par_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("50"), "{summary:?}");
    assert_eq!(loaded(&client, "par_inc").await, expected(ROWS + 50));

    // Synapse has no snapshot isolation: parallelism is refused up front.
    client
        .batch_execute(&format!(
            "CREATE CONNECTION syn TYPE synapse OPTIONS ({})",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    let message = expect_err(
        &client,
        "CREATE ETL JOB syn_par FROM syn.dbo.orders INTO warehouse.syn_par SNAPSHOT WITH (parallelism = 2)",
        "22023",
    )
    .await;
    assert!(message.contains("cannot be read by parallel streams"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_reads_only_inside_its_freeze_and_only_once() {
    let bridge = SqlBridge::start_with_applocks(&[("orders", &orders_csv(ROWS))]);
    let connections = Connections::new();
    let options = BTreeMap::from([
        ("host".to_owned(), OptionValue::Text("127.0.0.1".into())),
        ("port".to_owned(), OptionValue::Integer(bridge.port.into())),
        ("database".to_owned(), OptionValue::Text(BRIDGE_DATABASE.into())),
        ("user".to_owned(), OptionValue::Text(BRIDGE_USER.into())),
        ("password".to_owned(), OptionValue::Text(BRIDGE_PASSWORD.into())),
        ("trust_server_certificate".to_owned(), OptionValue::Bool(true)),
    ]);
    let source = connections.source_with("mssql", "sqlserver", options).await;
    let table = TableRef {
        schema: "dbo".into(),
        name: "orders".into(),
    };
    let description = source.describe(&table).await.unwrap();
    // Small batches: an unread stream stops its reader (and keeps its
    // session and lock) long before the end of its part.
    let request = ScanRequest {
        batch_rows: Some(100),
        ..ScanRequest::every_column(&description)
    };
    let thawed = |freeze: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = bridge.lock_calls();
            if calls
                .iter()
                .any(|c| c.call == "sp_releaseapplock" && c.resource == freeze)
            {
                return calls;
            }
            assert!(Instant::now() < deadline, "{freeze} still frozen: {calls:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A part read twice while its first reader holds it is refused; the
    // table thaws once every part has joined, while the split still lives.
    let split = source.split_scan(&description, &request, Some(0), 3).await.unwrap();
    assert_eq!(split.parts.len(), 3);
    let token = |i: usize| split.parts[i].snapshot.clone().unwrap();
    let freeze = token(0).rsplit_once('/').unwrap().0.to_owned();
    let mut streams = Vec::new();
    for (i, part) in split.parts.iter().enumerate() {
        streams.push(
            source
                .scan_part(&description, &part.request, part.snapshot.as_deref())
                .await
                .unwrap(),
        );
        if i == 0 {
            let twice = source
                .scan_part(&description, &part.request, part.snapshot.as_deref())
                .await
                .err()
                .expect("refused");
            assert!(
                matches!(&twice, SourceError::Query { code: Some(c), message }
                    if c == "40001" && message.contains("already being read")),
                "{twice:?}"
            );
            assert!(
                !bridge.lock_calls().iter().any(|c| c.call == "sp_releaseapplock"),
                "frozen until every part has joined"
            );
        }
    }
    let calls = thawed(&freeze);
    assert_freezes(&calls, &[3], true);
    let mut ids = Vec::new();
    for stream in streams {
        let batches: Vec<_> = stream.try_collect().await.unwrap();
        for batch in batches {
            let column = batch.column(0);
            let id = datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Int64).unwrap();
            let id = id
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap();
            ids.extend(id.iter().flatten());
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=ROWS).collect::<Vec<_>>(), "the parts read every row once");
    drop(split);

    // A part that starts after its freeze ended cannot read the run's
    // snapshot: refused with 40001, so the run retries as a whole.
    let late = source.split_scan(&description, &request, Some(0), 2).await.unwrap();
    let freeze = late.parts[0]
        .snapshot
        .clone()
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned();
    let part = late.parts[0].clone();
    drop(late);
    thawed(&freeze);
    let refused = source
        .scan_part(&description, &part.request, part.snapshot.as_deref())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&refused, SourceError::Query { code: Some(c), message }
            if c == "40001" && message.contains("started after the table's freeze ended")),
        "{refused:?}"
    );
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_server_table_is_split_by_key_range_over_both_executors_in_one_freeze() {
    use crate::cluster::Cluster;
    let cluster = Cluster::start(10);
    let bridge = SqlBridge::start_with_applocks(&[("orders", &orders_csv(ROWS))]);
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION mssql TYPE sqlserver OPTIONS ({}); \
             CREATE ETL JOB orders FROM mssql.dbo.orders INTO warehouse.orders SNAPSHOT WITH (parallelism = 4)",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    let plan = explain(&client, "orders").await;
    let execution = detail(&plan, "execution");
    assert!(
        execution.contains(": 4 tasks, each a range of the split column read in one snapshot"),
        "{execution}"
    );
    let run = cluster.run(&client, "orders").await;
    assert_eq!(
        (run[1].as_deref(), run[2].as_deref()),
        (Some("succeeded"), Some("12000")),
        "{run:?}"
    );
    let done = cluster.tasks_done();
    assert_eq!(done.iter().sum::<usize>(), 4, "every range ran once: {done:?}");
    assert!(done.iter().all(|&n| n > 0), "both executors did work: {done:?}");
    assert_eq!(loaded(&client, "orders").await, expected(ROWS));
    assert_freezes(&bridge.lock_calls(), &[4], true);
    for (executor, log) in cluster.executors.iter().map(|e| e.log()).enumerate() {
        assert!(
            !log.contains(BRIDGE_PASSWORD),
            "executor {executor} never logs the password"
        );
    }
}
