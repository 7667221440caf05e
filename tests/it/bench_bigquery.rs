//! A benchmark, not a test (ignored; `bench/bigquery.sh` runs it): issue
//! #16's BigQuery path. A `SNAPSHOT` run of one PostgreSQL table into
//! BigQuery (the local fake on loopback, which checks each load's columns
//! but keeps no rows) against the same run into the local warehouse,
//! alternating, `BENCH_RUNS` times each (default 5), `BENCH_ROWS` rows
//! (default 1,000,000, the `orders` shape of `bench/run.sh`). It prints the
//! median wall time, Sluice's CPU seconds, the fake's (this process's) CPU
//! seconds, the BigQuery run's ratio to the warehouse run, and Sluice's
//! peak resident memory over the runs of each path. Measures the
//! binary in `SLUICE_TEST_BIN` (the release build, from the script).

use std::time::Instant;

use crate::bigquery::setup;
use crate::common::*;

/// CPU seconds (user + system) of process `pid` (`self` for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Resets the peak resident memory of process `pid` to its current.
fn reset_peak(pid: &str) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// The peak resident memory of process `pid` since the last reset, in MB.
fn peak_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = (status.lines())
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// A path's measurements, one per run: wall seconds, Sluice's CPU
/// seconds, the fake's CPU seconds, Sluice's peak RSS.
#[derive(Default)]
struct Measured {
    wall: Vec<f64>,
    sluice_cpu: Vec<f64>,
    fake_cpu: Vec<f64>,
    peak_mb: Vec<f64>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/bigquery.sh"]
async fn bench_bigquery_path_against_the_warehouse() {
    let env_number = |name: &str, default: usize| std::env::var(name).map_or(default, |v| v.parse().unwrap());
    let (n, runs) = (env_number("BENCH_ROWS", 1_000_000), env_number("BENCH_RUNS", 5));
    let env = setup(&[]).await;
    env.fake.state.lock().unwrap().columns_only = true;
    env.pg.psql_admin_db(
        "shop",
        &format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, customer_id int, \
             amount numeric(12,2), status text, note text); \
             INSERT INTO t SELECT g, timestamptz '2024-01-01' + g * interval '1 second', g % 10000, \
             (g % 100000) / 100.0, (ARRAY['open','paid','shipped','refunded'])[1 + g % 4], 'order note number ' || g \
             FROM generate_series(1, {n}) g; VACUUM ANALYZE t;"
        ),
    );
    env.client
        .batch_execute(
            "CREATE ETL JOB to_warehouse FROM shop.public.t INTO bench_t SNAPSHOT; \
             CREATE ETL JOB to_bigquery FROM shop.public.t INTO wh.bench_t SNAPSHOT;",
        )
        .await
        .unwrap();
    let pid = env.sluice.pid().unwrap().to_string();
    let mut measured = [
        ("to_warehouse", Measured::default()),
        ("to_bigquery", Measured::default()),
    ];
    for _ in 0..runs {
        for (job, m) in &mut measured {
            reset_peak(&pid);
            let (cpu0, fake0, t0) = (cpu_seconds(&pid), cpu_seconds("self"), Instant::now());
            let run = rows(&env.client, &format!("RUN ETL JOB {job}")).await;
            m.wall.push(t0.elapsed().as_secs_f64());
            m.peak_mb.push(peak_mb(&pid));
            m.sluice_cpu.push(cpu_seconds(&pid) - cpu0);
            m.fake_cpu.push(cpu_seconds("self") - fake0);
            assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{job}: {run:?}");
            assert_eq!(run[0][2].as_deref(), Some(n.to_string().as_str()), "{job}: {run:?}");
        }
    }
    let loads = env
        .fake
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.contains(" /upload/"))
        .count();
    let warehouse_wall = median(measured[0].1.wall.clone());
    println!("{n} rows, {runs} runs each, medians; {loads} upload requests to the fake in all");
    println!(
        "{:<14} {:>8} {:>12} {:>10} {:>14} {:>12}",
        "path", "wall_s", "sluice_cpu_s", "fake_cpu_s", "vs_warehouse", "peak_rss_mb"
    );
    for (job, m) in measured {
        let wall = median(m.wall);
        println!(
            "{job:<14} {wall:>8.3} {:>12.2} {:>10.2} {:>14.2} {:>12.0}",
            median(m.sluice_cpu),
            median(m.fake_cpu),
            wall / warehouse_wall,
            m.peak_mb.iter().copied().fold(0.0, f64::max)
        );
    }
}
