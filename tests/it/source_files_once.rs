//! Files loaded `INCREMENTAL BY _modified_at` exactly once: files that
//! share one last-modified time across two runs (a local directory with
//! set mtimes, and S3 where times have whole seconds), a changed file
//! loaded again, and a kill in the middle of a run followed by a re-run.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common;

use common::emulators::{Emulator, python_path};
use common::*;

/// The last-modified time the local files share: long before any run.
fn shared_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01
}

/// Writes `events/<name>` with rows `ids`, last modified at `modified`.
fn write_events(dir: &Path, name: &str, ids: std::ops::RangeInclusive<u32>, modified: SystemTime) {
    let path = dir.join("events").join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let rows: String = ids.map(|id| format!("{id},k{id}\n")).collect();
    fs::write(&path, format!("id,kind\n{rows}")).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}

/// Runs `job`; the rows it loaded.
async fn run(client: &tokio_postgres::Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

/// Rows per file in the destination, `file name: count`.
async fn per_file(client: &tokio_postgres::Client) -> Vec<String> {
    rows(
        client,
        "SELECT _file, count(*) AS n, count(DISTINCT id) AS ids FROM warehouse.events GROUP BY _file ORDER BY _file",
    )
    .await
    .into_iter()
    .map(|r| {
        let file = r[0].clone().unwrap();
        let name = file.rsplit('/').next().unwrap().to_owned();
        assert_eq!(r[1], r[2], "{name}: a row loaded twice");
        format!("{name}: {}", r[1].as_deref().unwrap())
    })
    .collect()
}

async fn local_job(sluice: &Sluice, dir: &Path) -> tokio_postgres::Client {
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION landing TYPE local OPTIONS (path '{}', file_columns 'true'); \
             CREATE ETL JOB events FROM landing.files.events INTO warehouse.events INCREMENTAL BY _modified_at ALL;",
            dir.display()
        ))
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_sharing_a_modified_time_load_once_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let t = shared_time();
    write_events(dir.path(), "a.csv", 1..=2, t);
    write_events(dir.path(), "b.csv", 3..=4, t);
    let sluice = Sluice::start();
    let client = local_job(&sluice, dir.path()).await;
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM landing.files.events WHERE _file LIKE '/%/events/a.csv'"
        )
        .await,
        "2",
        "file_columns adds _file"
    );
    assert_eq!(run(&client, "events").await, "4");

    // A file that shows up later with the time the watermark is at.
    write_events(dir.path(), "c.csv", 5..=5, t);
    assert_eq!(run(&client, "events").await, "1", "the late file, and only it");
    assert_eq!(run(&client, "events").await, "0");
    let watermark = one(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'events'").await;
    assert!(
        watermark.starts_with("2026-01-01T00:00:00")
            && watermark.contains("with files [")
            && watermark.contains("/events/c.csv"),
        "the watermark names the files at its time: {watermark}"
    );

    // A changed file (new content, new time) is loaded again, whole.
    write_events(dir.path(), "a.csv", 11..=12, t + Duration::from_secs(3600));
    write_events(dir.path(), "d.csv", 13..=13, t + Duration::from_secs(3600));
    assert_eq!(run(&client, "events").await, "3");
    write_events(dir.path(), "e.csv", 14..=14, t + Duration::from_secs(3600));
    assert_eq!(run(&client, "events").await, "1");
    assert_eq!(run(&client, "events").await, "0");
    assert_eq!(
        per_file(&client).await,
        ["a.csv: 4", "b.csv: 2", "c.csv: 1", "d.csv: 1", "e.csv: 1"]
    );
    assert_eq!(
        one(&client, "SELECT count(DISTINCT id) FROM warehouse.events").await,
        "9",
        "the changed file's old and new rows, each once"
    );

    // EXPLAIN shows the files the next run skips at the watermark's time.
    let explained = rows(&client, "EXPLAIN ETL JOB events").await;
    assert!(
        format!("{explained:?}").contains("NOT IN")
            && format!("{explained:?}").contains("or = 2026-01-01T01:00:00Z for files other than the 3 it names"),
        "the source query skips the files at the watermark: {explained:?}"
    );
}

/// The server dies between two files of a run whose files share the
/// watermark's time; the re-run after the restart loads each file once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_run_then_a_rerun_loads_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = shared_time();
    write_events(dir.path(), "a.csv", 1..=2, t);
    write_events(dir.path(), "b.csv", 3..=4, t);
    let mut sluice = Sluice::start();
    let client = local_job(&sluice, dir.path()).await;
    assert_eq!(run(&client, "events").await, "4");
    for (name, id) in [("c.csv", 5), ("d.csv", 6), ("e.csv", 7)] {
        write_events(dir.path(), name, id..=id, t);
    }
    sluice
        .opts
        .envs
        .push(("SLUICE_FAILPOINTS".into(), "between_files".into()));
    sluice.restart();
    let client = sluice.client().await;
    sluice.run_into_failpoint(&client, "RUN ETL JOB events").await;
    assert!(
        sluice.log_contents().contains("failpoint hit"),
        "killed at the failpoint"
    );
    let client = sluice.restart_without_failpoints().await;
    assert_eq!(run(&client, "events").await, "3");
    assert_eq!(run(&client, "events").await, "0");
    assert_eq!(
        per_file(&client).await,
        ["a.csv: 2", "b.csv: 2", "c.csv: 1", "d.csv: 1", "e.csv: 1"]
    );
}

/// Uploads `in/<folder>/a.json` right after a second starts, waits for a
/// line on stdin, uploads `in/<folder>/b.json`, and prints both objects'
/// last-modified times (S3 keeps whole seconds).
const UPLOAD_TWICE: &str = r#"
import sys, time, boto3
endpoint, folder = sys.argv[1], sys.argv[2]
s3 = boto3.client('s3', endpoint_url=endpoint, aws_access_key_id='a', aws_secret_access_key='b', region_name='us-east-1')
time.sleep(1.02 - time.time() % 1)
s3.put_object(Bucket='landing', Key=f'in/{folder}/a.json', Body=b'{"id": 1}\n{"id": 2}\n')
print('uploaded', flush=True)
sys.stdin.readline()
s3.put_object(Bucket='landing', Key=f'in/{folder}/b.json', Body=b'{"id": 3}\n')
times = [s3.head_object(Bucket='landing', Key=f'in/{folder}/{n}.json')['LastModified'] for n in 'ab']
print(times[0] == times[1], flush=True)
"#;

/// S3 stamps objects with whole seconds: an object uploaded just after a
/// run read the bucket, in the same second as the newest object that run
/// loaded, has the watermark's very time. The next run loads it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_sharing_a_second_load_once_across_runs() {
    let moto = Emulator::moto();
    moto.create_bucket("landing");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE s3 OPTIONS (bucket 'landing', prefix 'in', endpoint '{}', \
             access_key_id 'a', secret_access_key 'b', region 'us-east-1')",
            moto.endpoint()
        ))
        .await
        .unwrap();
    // The run must read the bucket within the second of the first upload:
    // on a busy machine that takes a few tries, each in its own folder.
    for attempt in 1..=6 {
        let folder = format!("events{attempt}");
        moto.put_s3("landing", &format!("in/{folder}/0.json"), b"{\"id\": 0}\n");
        client
            .batch_execute(&format!(
                "CREATE ETL JOB {folder} FROM lake.files.{folder} INTO warehouse.{folder} \
                 INCREMENTAL BY _modified_at ALL WITH (guard_margin '0 seconds')"
            ))
            .await
            .unwrap();
        let mut upload = Command::new(python_path())
            .args(["-c", UPLOAD_TWICE, &moto.endpoint(), &folder])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(upload.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "uploaded");
        assert_eq!(run(&client, &folder).await, "3");
        writeln!(upload.stdin.take().unwrap()).unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(upload.wait().unwrap().success());
        assert_eq!(run(&client, &folder).await, "1", "the object of the same second, once");
        assert_eq!(run(&client, &folder).await, "0");
        let loaded = rows(
            &client,
            &format!("SELECT count(*), count(DISTINCT id) FROM warehouse.{folder}"),
        )
        .await;
        assert_eq!(loaded[0], ["4", "4"].map(|v| Some(v.to_owned())));
        if line.trim() == "True" {
            return;
        }
        eprintln!("attempt {attempt}: the second upload fell into the next second; trying again");
    }
    panic!("the run never read the bucket within the second of an upload");
}
