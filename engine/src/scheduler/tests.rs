//! The scheduler loop against a real catalog, local-files source and local
//! warehouse, with a clock moved by hand: no sleeping through hours.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_catalog::{Catalog, JobDestination, JobSource, MasterKey, OptionValue, RunRecord, RunStatus, RunTrigger};

use super::{ManualClock, RunPool, Scheduler, SchedulerConfig};
use crate::destinations::LocalWarehouse;
use crate::error::EngineError;
use crate::jobs::{CreateJob, JobChange, JobManager, LoadRequest};
use crate::metrics::EngineMetrics;
use crate::{AlterConnection, ConnectionManager, CreateConnection};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

struct Fixture {
    jobs: Arc<JobManager>,
    connections: Arc<ConnectionManager>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A catalog with a `files` connection over one CSV and the given
    /// snapshot jobs, each with `schedule`.
    async fn new(jobs: &[(&str, &str)]) -> Self {
        Self::in_namespace(jobs, None).await
    }

    /// [`Fixture::new`] in namespace `namespace` (`None`: the default).
    async fn in_namespace(jobs: &[(&str, &str)], namespace: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        std::fs::write(files.join("orders.csv"), "id,amount\n1,10\n2,20\n3,30\n").unwrap();
        let key = MasterKey::from_hex(&"22".repeat(32)).unwrap();
        let mut catalog = Catalog::open(&dir.path().join("catalog"), key).unwrap();
        if let Some(namespace) = namespace {
            catalog.create_namespace(namespace, false).unwrap();
            catalog = catalog.namespace(namespace).unwrap();
        }
        let connections = Arc::new(ConnectionManager::new(Arc::new(catalog), Duration::from_secs(10)));
        connections
            .create(CreateConnection {
                name: "files".into(),
                type_name: "local".into(),
                options: BTreeMap::from([("path".to_owned(), OptionValue::Text(files.display().to_string()))]),
                if_not_exists: false,
                validate: true,
            })
            .await
            .unwrap();
        let warehouse = LocalWarehouse::open_dir(&dir.path().join("warehouse")).unwrap();
        let manager = Arc::new(JobManager::new(connections.clone(), Arc::new(warehouse)));
        for (name, schedule) in jobs {
            manager
                .create_job(CreateJob {
                    name: (*name).into(),
                    if_not_exists: false,
                    source: JobSource {
                        connection: "files".into(),
                        schema: "files".into(),
                        table: "orders".into(),
                        columns: None,
                    },
                    destination: Some(JobDestination {
                        connection: None,
                        table: format!("bq_{name}"),
                    }),
                    load: LoadRequest::Snapshot,
                    column_overrides: vec![],
                    schedule: schedule.parse().unwrap(),
                    settings: vec![],
                })
                .await
                .unwrap();
        }
        Self {
            jobs: manager,
            connections,
            clock: Arc::new(ManualClock::new(at("2026-03-01T10:07:00Z"))),
            _dir: dir,
        }
    }

    fn scheduler(&self, config: SchedulerConfig) -> Arc<Scheduler> {
        Scheduler::new(
            self.jobs.clone(),
            self.clock.clone(),
            config,
            Arc::new(EngineMetrics::default()),
        )
    }

    fn runs(&self) -> Vec<RunRecord> {
        self.jobs.catalog().runs(None).unwrap()
    }

    /// Waits until no scheduled run is in flight.
    async fn settle(&self, scheduler: &Scheduler) {
        for _ in 0..500 {
            if scheduler.pool.in_flight().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("scheduled runs did not finish");
    }
}

fn statuses(runs: &[RunRecord]) -> Vec<(String, &'static str, &'static str)> {
    runs.iter()
        .map(|r| (r.job.clone(), r.trigger.as_str(), r.status.as_str()))
        .collect()
}

#[tokio::test]
async fn fires_each_due_tick_once_and_plans_the_next() {
    let f = Fixture::new(&[("every5", "EVERY 5 MINUTES")]).await;
    let scheduler = f.scheduler(SchedulerConfig::default());

    assert_eq!(scheduler.tick().unwrap(), Some(at("2026-03-01T10:10:00Z")));
    assert!(f.runs().is_empty());

    f.clock.set(at("2026-03-01T10:10:00Z"));
    assert_eq!(scheduler.tick().unwrap(), Some(at("2026-03-01T10:15:00Z")));
    f.settle(&scheduler).await;
    // Ticking again at the same moment does not fire twice.
    scheduler.tick().unwrap();
    f.settle(&scheduler).await;
    assert_eq!(statuses(&f.runs()), [("every5".to_owned(), "schedule", "succeeded")]);
    let state = f.jobs.catalog().schedule_state("every5").unwrap().unwrap();
    assert_eq!(state.next_run_at, Some(at("2026-03-01T10:15:00Z")));
}

#[tokio::test]
async fn a_restart_after_downtime_runs_once_not_a_burst() {
    let f = Fixture::new(&[("every5", "EVERY 5 MINUTES")]).await;
    f.scheduler(SchedulerConfig::default()).tick().unwrap();
    // Down for three hours: 36 ticks missed.
    f.clock.set(at("2026-03-01T13:07:30Z"));
    let restarted = f.scheduler(SchedulerConfig::default());
    assert_eq!(restarted.tick().unwrap(), Some(at("2026-03-01T13:10:00Z")));
    f.settle(&restarted).await;
    restarted.tick().unwrap();
    f.settle(&restarted).await;
    assert_eq!(statuses(&f.runs()), [("every5".to_owned(), "schedule", "succeeded")]);
}

#[tokio::test]
async fn paused_jobs_do_not_fire_and_resume_from_now() {
    let f = Fixture::new(&[("every5", "EVERY 5 MINUTES")]).await;
    let scheduler = f.scheduler(SchedulerConfig::default());
    scheduler.tick().unwrap();
    f.jobs.alter_job("every5", JobChange::Pause).unwrap();
    f.clock.set(at("2026-03-01T11:00:00Z"));
    assert_eq!(scheduler.tick().unwrap(), None);
    assert!(f.runs().is_empty());
    let state = f.jobs.catalog().schedule_state("every5").unwrap().unwrap();
    assert_eq!(state.next_run_at, None);

    f.jobs.alter_job("every5", JobChange::Resume).unwrap();
    assert_eq!(scheduler.tick().unwrap(), Some(at("2026-03-01T11:05:00Z")));
    assert!(f.runs().is_empty(), "ticks missed while paused do not fire");
}

#[tokio::test]
async fn the_pool_bounds_concurrent_runs_and_due_jobs_wait_for_a_slot() {
    let f = Fixture::new(&[("a", "EVERY 5 MINUTES"), ("b", "EVERY 5 MINUTES")]).await;
    let scheduler = f.scheduler(SchedulerConfig {
        max_concurrent_runs: 1,
        ..SchedulerConfig::default()
    });
    scheduler.tick().unwrap();
    f.clock.set(at("2026-03-01T10:10:00Z"));
    scheduler.tick().unwrap();
    // One run started; the other job is still due.
    assert_eq!(scheduler.pool.in_flight().len(), 1);
    let waiting: Vec<&str> = ["a", "b"]
        .into_iter()
        .filter(|job| {
            let state = f.jobs.catalog().schedule_state(job).unwrap().unwrap();
            state.next_run_at == Some(at("2026-03-01T10:10:00Z"))
        })
        .collect();
    assert_eq!(waiting.len(), 1);
    // The waiting job's run is visible as queued, and keeps its id.
    let queued = f.runs().into_iter().find(|r| r.job == waiting[0]).unwrap();
    assert_eq!(queued.status, RunStatus::Queued);
    f.settle(&scheduler).await;
    scheduler.tick().unwrap();
    f.settle(&scheduler).await;
    let mut done = statuses(&f.runs());
    done.sort();
    assert_eq!(
        done,
        [
            ("a".to_owned(), "schedule", "succeeded"),
            ("b".to_owned(), "schedule", "succeeded")
        ]
    );
    assert_eq!(f.jobs.catalog().run(queued.id).unwrap().status, RunStatus::Succeeded);
}

#[tokio::test]
async fn namespaces_share_the_pool_and_a_freed_slot_wakes_the_other_namespace() {
    let default = Fixture::new(&[("a", "EVERY 5 MINUTES")]).await;
    let model_5 = Fixture::in_namespace(&[("a", "EVERY 5 MINUTES")], Some("model_5")).await;
    let pool = Arc::new(RunPool::default());
    let config = SchedulerConfig {
        max_concurrent_runs: 1,
        ..SchedulerConfig::default()
    };
    let scheduler = |f: &Fixture| {
        Scheduler::in_pool(
            f.jobs.clone(),
            f.clock.clone(),
            config.clone(),
            Arc::new(EngineMetrics::default()),
            pool.clone(),
        )
    };
    let (first, second) = (scheduler(&default), scheduler(&model_5));
    first.tick().unwrap();
    second.tick().unwrap();
    default.clock.set(at("2026-03-01T10:10:00Z"));
    model_5.clock.set(at("2026-03-01T10:10:00Z"));
    let mut woken = pool.watch_freed();
    woken.borrow_and_update();
    first.tick().unwrap();
    second.tick().unwrap();
    assert_eq!(
        pool.in_flight().keys().cloned().collect::<Vec<_>>(),
        [("sluice".to_owned(), "a".to_owned())],
        "model_5's job of the same name waits for the only slot"
    );
    assert_eq!(statuses(&model_5.runs()), [("a".to_owned(), "schedule", "queued")]);
    // The run's end signals every namespace's scheduler.
    tokio::time::timeout(Duration::from_secs(10), woken.changed())
        .await
        .expect("the end of a run signals the schedulers")
        .unwrap();
    default.settle(&first).await;
    second.tick().unwrap();
    model_5.settle(&second).await;
    assert_eq!(statuses(&default.runs()), [("a".to_owned(), "schedule", "succeeded")]);
    assert_eq!(statuses(&model_5.runs()), [("a".to_owned(), "schedule", "succeeded")]);
}

/// A job due at 10:10 queued behind another run that holds the only slot.
async fn one_queued_behind_another() -> (Fixture, Arc<Scheduler>, RunRecord) {
    let f = Fixture::new(&[("every5", "EVERY 5 MINUTES")]).await;
    let scheduler = f.scheduler(SchedulerConfig {
        max_concurrent_runs: 1,
        ..SchedulerConfig::default()
    });
    scheduler.tick().unwrap();
    f.clock.set(at("2026-03-01T10:10:00Z"));
    scheduler
        .pool
        .in_flight()
        .insert(("sluice".into(), "other".into()), vec![]);
    scheduler.tick().unwrap();
    let runs = f.runs();
    assert_eq!(statuses(&runs), [("every5".to_owned(), "schedule", "queued")]);
    let queued = runs.into_iter().next().unwrap();
    (f, scheduler, queued)
}

#[tokio::test]
async fn a_queued_run_can_be_cancelled_and_its_tick_is_not_run() {
    let (f, scheduler, queued) = one_queued_behind_another().await;
    f.jobs.cancel_run(queued.id).unwrap();
    assert!(matches!(
        f.jobs.cancel_run(queued.id),
        Err(EngineError::RunNotRunning {
            status: "cancelled",
            ..
        })
    ));
    scheduler.pool.in_flight().clear();
    scheduler.tick().unwrap();
    f.settle(&scheduler).await;
    assert_eq!(statuses(&f.runs()), [("every5".to_owned(), "schedule", "cancelled")]);
    let state = f.jobs.catalog().schedule_state("every5").unwrap().unwrap();
    assert_eq!(state.next_run_at, Some(at("2026-03-01T10:15:00Z")), "the tick is done");
}

#[tokio::test]
async fn a_queued_run_of_a_paused_job_ends_skipped() {
    let (f, scheduler, queued) = one_queued_behind_another().await;
    f.jobs.alter_job("every5", JobChange::Pause).unwrap();
    scheduler.tick().unwrap();
    let run = f.jobs.catalog().run(queued.id).unwrap();
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(run.error.unwrap().contains("no longer due"));
}

#[tokio::test]
async fn queued_runs_of_a_stopped_server_end_skipped_and_the_tick_runs_after_restart() {
    let (f, scheduler, queued) = one_queued_behind_another().await;
    drop(scheduler);
    assert!(f.jobs.reconcile().await.unwrap().is_empty(), "nothing to re-run");
    let run = f.jobs.catalog().run(queued.id).unwrap();
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(run.error.unwrap().contains("stopped before the run started"));
    let restarted = f.scheduler(SchedulerConfig::default());
    restarted.tick().unwrap();
    f.settle(&restarted).await;
    let runs = f.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[1].trigger, runs[1].status),
        (RunTrigger::Schedule, RunStatus::Succeeded)
    );
}

#[tokio::test]
async fn a_tick_while_the_job_runs_is_recorded_as_skipped() {
    let f = Fixture::new(&[("every5", "EVERY 5 MINUTES")]).await;
    let scheduler = f.scheduler(SchedulerConfig::default());
    scheduler.tick().unwrap();
    f.clock.set(at("2026-03-01T10:10:00Z"));
    // A manual run holds the job while the tick comes.
    let claimed = f.jobs.hold_running("every5");
    scheduler.tick().unwrap();
    drop(claimed);
    let runs = f.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Skipped);
    assert!(runs[0].error.as_deref().unwrap().contains("still running"), "{runs:?}");
    let state = f.jobs.catalog().schedule_state("every5").unwrap().unwrap();
    assert_eq!(state.next_run_at, Some(at("2026-03-01T10:15:00Z")));
}

#[tokio::test]
async fn a_connection_option_limits_its_concurrent_scheduled_runs() {
    let f = Fixture::new(&[("a", "EVERY 5 MINUTES"), ("b", "EVERY 5 MINUTES")]).await;
    let limit = |n: i64| AlterConnection {
        name: "files".into(),
        set: BTreeMap::from([("max_concurrent_runs".to_owned(), OptionValue::Integer(n))]),
        reset: vec![],
        validate: true,
    };
    f.connections.alter(limit(1)).await.unwrap();
    // The server default (2 per connection) would let both jobs run.
    let scheduler = f.scheduler(SchedulerConfig::default());
    scheduler.tick().unwrap();
    f.clock.set(at("2026-03-01T10:10:00Z"));
    scheduler.tick().unwrap();
    assert_eq!(scheduler.pool.in_flight().len(), 1);
    assert_eq!(scheduler.queued.lock().unwrap().len(), 1, "the other job waits");
    f.settle(&scheduler).await;

    f.connections.alter(limit(2)).await.unwrap();
    f.clock.set(at("2026-03-01T10:15:00Z"));
    scheduler.tick().unwrap();
    assert_eq!(scheduler.pool.in_flight().len(), 2);
    f.settle(&scheduler).await;
}

/// The `sluice_scheduler_pass_jobs` histogram's (count, sum) so far.
fn passes(metrics: &EngineMetrics) -> (u64, f64) {
    let mut registry = prometheus_client::registry::Registry::with_prefix("sluice");
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let value = |name: &str| {
        (text.lines())
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap()
    };
    (
        value("sluice_scheduler_pass_jobs_count") as u64,
        value("sluice_scheduler_pass_jobs_sum"),
    )
}

#[tokio::test]
async fn a_pass_after_a_run_ends_looks_only_at_due_and_ended_jobs_and_a_change_at_all() {
    let f = Fixture::new(&[
        ("due", "EVERY 5 MINUTES"),
        ("hourly", "EVERY 1 HOURS"),
        ("daily", "DAILY AT '03:00'"),
    ])
    .await;
    let metrics = Arc::new(EngineMetrics::default());
    let scheduler = Scheduler::new(
        f.jobs.clone(),
        f.clock.clone(),
        SchedulerConfig::default(),
        metrics.clone(),
    );
    scheduler.tick().unwrap();
    assert_eq!(passes(&metrics), (1, 3.0), "the first pass plans every job");

    f.clock.set(at("2026-03-01T10:10:00Z"));
    scheduler.tick().unwrap();
    assert_eq!(passes(&metrics), (2, 4.0), "then only the due job");
    f.settle(&scheduler).await;
    // The run's end wakes the scheduler: only the job whose run ended is
    // read again (a load may make it due for verification).
    assert_eq!(scheduler.tick().unwrap(), Some(at("2026-03-01T10:15:00Z")));
    assert_eq!(passes(&metrics), (3, 5.0));
    assert_eq!(statuses(&f.runs()), [("due".to_owned(), "schedule", "succeeded")]);

    // A change of jobs makes the next pass look at all of them again, and
    // a paused job leaves the agenda.
    f.jobs.alter_job("due", JobChange::Pause).unwrap();
    assert_eq!(scheduler.tick().unwrap(), Some(at("2026-03-01T11:00:00Z")));
    assert_eq!(passes(&metrics), (4, 8.0));
    f.clock.set(at("2026-03-01T10:20:00Z"));
    scheduler.tick().unwrap();
    assert_eq!(passes(&metrics), (5, 8.0), "the paused job is not looked at");
    assert_eq!(f.runs().len(), 1);
}
