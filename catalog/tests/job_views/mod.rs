//! Listings of jobs with their facts, served from the catalog's in-memory
//! copy: each must equal a fresh read of the store after any write.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// The listing read straight from the store: a transaction's listing does
/// not use the in-memory copy.
fn fresh(catalog: &Catalog) -> Vec<(JobRecord, JobFacts)> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let views = runtime
        .block_on(Transaction::new().scope(async { catalog.job_views() }))
        .unwrap();
    values(&views)
}

fn values(views: &[JobView]) -> Vec<(JobRecord, JobFacts)> {
    views.iter().map(|v| ((*v.job).clone(), (*v.facts).clone())).collect()
}

/// The catalog's listing, checked against a fresh read.
fn listed(catalog: &Catalog) -> Vec<JobView> {
    let views = catalog.job_views().unwrap();
    assert_eq!(values(&views), fresh(catalog), "the listing is stale");
    views
}

fn view<'a>(views: &'a [JobView], name: &str) -> &'a JobView {
    views.iter().find(|v| v.job.name == name).unwrap()
}

fn watermark(job: &str, run_id: u64) -> Watermark {
    Watermark {
        job: job.into(),
        value: format!("2024-01-01 00:00:{:02}", run_id % 60),
        run_id,
        updated_at: chrono::DateTime::UNIX_EPOCH,
    }
}

fn finish(catalog: &Catalog, mut run: RunRecord, status: RunStatus) -> RunRecord {
    run.status = status;
    run.finished_at = Some(Utc::now());
    run.error = (status == RunStatus::Failed).then(|| "boom".to_owned());
    let watermark = watermark(&run.job, run.id);
    catalog
        .finish_run(&run, (status == RunStatus::Succeeded).then_some(&watermark))
        .unwrap();
    run
}

#[test]
fn a_listing_keeps_what_it_read_for_the_next_and_every_view_of_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "a");
    catalog.create_job(&job("b", "shop")).unwrap();
    let first = listed(&catalog);
    let again = catalog.namespace(DEFAULT_NAMESPACE).unwrap().job_views().unwrap();
    for (first, again) in first.iter().zip(&again) {
        assert!(Arc::ptr_eq(&first.job, &again.job) && Arc::ptr_eq(&first.facts, &again.facts));
    }
}

#[test]
fn each_write_of_a_job_or_its_runs_shows_in_the_next_listing_and_only_its_job_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "a");
    catalog.create_job(&job("b", "shop")).unwrap();
    let before = listed(&catalog);
    let untouched = |now: &[JobView]| {
        assert!(Arc::ptr_eq(&view(&before, "b").job, &view(now, "b").job));
        assert!(Arc::ptr_eq(&view(&before, "b").facts, &view(now, "b").facts));
    };
    let run = catalog.start_run("a", RunTrigger::Manual).unwrap();
    let now = listed(&catalog);
    assert_eq!(view(&now, "a").facts.runs.last().unwrap().status, RunStatus::Running);
    untouched(&now);

    let mut progressed = run.clone();
    progressed.rows = 7;
    catalog.update_run(&progressed).unwrap();
    assert_eq!(view(&listed(&catalog), "a").facts.runs.last().unwrap().rows, 7);
    let run = finish(&catalog, progressed, RunStatus::Succeeded);
    let now = listed(&catalog);
    assert_eq!(view(&now, "a").facts.watermark.as_ref().unwrap().run_id, run.id);
    untouched(&now);

    for _ in 0..3 {
        let failed = catalog.start_run("a", RunTrigger::Schedule).unwrap();
        finish(&catalog, failed, RunStatus::Failed);
    }
    assert_eq!(view(&listed(&catalog), "a").facts.runs.len(), 4);
    assert_eq!(catalog.prune_runs("a", 2).unwrap(), 2);
    assert_eq!(
        view(&listed(&catalog), "a").facts.runs.len(),
        2,
        "the success was pruned"
    );

    catalog.skip_run("a", RunTrigger::Schedule, "busy").unwrap();
    let queued = catalog.queue_run("a", RunTrigger::Schedule).unwrap();
    assert_eq!(
        view(&listed(&catalog), "a").facts.runs.last().unwrap().status,
        RunStatus::Queued
    );
    catalog.start_queued_run(queued.id).unwrap();
    assert_eq!(
        view(&listed(&catalog), "a").facts.runs.last().unwrap().status,
        RunStatus::Running
    );

    let state = ScheduleState {
        job: "a".into(),
        schedule: "MANUAL".into(),
        next_run_at: Some(Utc::now()),
        retry: None,
    };
    catalog.set_schedule_state(&state).unwrap();
    assert_eq!(view(&listed(&catalog), "a").facts.schedule.as_ref(), Some(&state));

    let mut altered = (*view(&listed(&catalog), "a").job).clone();
    altered.paused = true;
    catalog.replace_job(&altered).unwrap();
    assert!(view(&listed(&catalog), "a").job.paused);
    catalog.move_watermark(&altered, None, "reset").unwrap();
    assert!(view(&listed(&catalog), "a").facts.watermark.is_none());
    catalog.set_watermark(&watermark("a", 1)).unwrap();
    assert_eq!(view(&listed(&catalog), "a").facts.watermark, Some(watermark("a", 1)));
    catalog.record_schema_changes("a", &[], &[]).unwrap();
    let now = listed(&catalog);
    untouched(&now);

    catalog.drop_job("a", false).unwrap();
    let names: Vec<String> = listed(&catalog).iter().map(|v| v.job.name.clone()).collect();
    assert_eq!(names, ["b"]);
    catalog.create_job(&job("a", "shop")).unwrap();
    assert!(
        !view(&listed(&catalog), "a").job.paused,
        "the new job, not the dropped one"
    );
    catalog.drop_connection("shop", false, true).unwrap();
    assert!(listed(&catalog).is_empty());
}

#[test]
fn a_cdc_jobs_state_shows_as_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    create_shop(&catalog, "pw");
    let mut cdc = job("c", "shop");
    cdc.load = LoadType::Cdc { mode: CdcMode::Merge };
    catalog.create_job(&cdc).unwrap();
    assert!(view(&listed(&catalog), "c").facts.cdc.is_none());
    catalog.set_cdc_state(&CdcState::new("c")).unwrap();
    assert_eq!(
        view(&listed(&catalog), "c").facts.cdc.as_ref().unwrap().phase,
        CdcPhase::Created
    );
    catalog
        .update_cdc_state("c", |s| s.phase = CdcPhase::Streaming)
        .unwrap();
    assert_eq!(
        view(&listed(&catalog), "c").facts.cdc.as_ref().unwrap().phase,
        CdcPhase::Streaming
    );
}

#[tokio::test]
async fn a_transaction_lists_its_own_changes_and_a_rollback_leaves_the_listing_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "a");
    let names = |views: Vec<JobView>| views.into_iter().map(|v| v.job.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(catalog.job_views().unwrap()), ["a"]);

    let txn = Transaction::new();
    txn.scope(async {
        catalog.create_job(&job("b", "shop")).unwrap();
        catalog.drop_job("a", false).unwrap();
        assert_eq!(names(catalog.job_views().unwrap()), ["b"], "inside, its own changes");
    })
    .await;
    assert_eq!(names(catalog.job_views().unwrap()), ["a"], "outside, nothing yet");
    assert!(txn.rollback().is_empty());
    assert_eq!(names(catalog.job_views().unwrap()), ["a"]);

    let txn = Transaction::new();
    txn.scope(async {
        catalog.create_job(&job("b", "shop")).unwrap();
        catalog.drop_job("a", false).unwrap();
    })
    .await;
    assert_eq!(names(catalog.job_views().unwrap()), ["a"]);
    catalog.commit(&txn).unwrap();
    assert_eq!(names(catalog.job_views().unwrap()), ["b"], "committed");
}

#[test]
fn namespaces_list_their_own_jobs_and_a_dropped_one_comes_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    let default = open_with_job(dir.path(), "j");
    default.create_namespace("other", false).unwrap();
    let other = default.namespace("other").unwrap();
    create_shop(&other, "pw");
    let mut paused = job("j", "shop");
    paused.paused = true;
    other.create_job(&paused).unwrap();
    assert!(!listed(&default)[0].job.paused);
    assert!(listed(&other)[0].job.paused);
    // A write through another view of the namespace shows in this one's.
    let run = default
        .namespace("other")
        .unwrap()
        .start_run("j", RunTrigger::Manual)
        .unwrap();
    assert_eq!(listed(&other)[0].facts.runs, [run]);
    assert!(listed(&default)[0].facts.runs.is_empty());

    default.drop_namespace("other").unwrap();
    assert!(
        other.job_views().unwrap().is_empty(),
        "a dropped namespace lists nothing"
    );
    default.create_namespace("other", false).unwrap();
    assert!(default.namespace("other").unwrap().job_views().unwrap().is_empty());
    assert_eq!(listed(&default).len(), 1);
}

#[test]
fn a_reopened_catalog_lists_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let catalog = open_with_job(dir.path(), "a");
        listed(&catalog);
        let run = catalog.start_run("a", RunTrigger::Manual).unwrap();
        finish(&catalog, run, RunStatus::Succeeded);
        values(&listed(&catalog))
    };
    let catalog = open(dir.path());
    assert_eq!(values(&listed(&catalog)), before);
}

#[test]
fn a_lookup_by_name_reads_the_named_jobs_before_and_after_a_listing() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "a");
    catalog.create_job(&job("b", "shop")).unwrap();
    let named = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let views = catalog.job_views_named(&names).unwrap();
        views.into_iter().map(|v| v.job.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(named(&["b", "nope", "b"]), ["b"]);
    listed(&catalog);
    assert_eq!(named(&["b", "a"]), ["a", "b"]);
    catalog.drop_job("b", false).unwrap();
    assert!(named(&["b"]).is_empty());
    catalog.create_job(&job("c", "shop")).unwrap();
    assert_eq!(named(&["c"]), ["c"]);
}

/// A write to the catalog, of one of three jobs (`j0`, `j1`, `j2`).
#[derive(Debug, Clone)]
enum Write {
    Create(usize),
    Drop(usize),
    Pause(usize),
    Start(usize),
    /// Ends the job's newest running run, succeeded or failed.
    Finish(usize, bool),
    Skip(usize),
    Prune(usize, usize),
    Schedule(usize),
    SetWatermark(usize, u64),
    ResetWatermark(usize),
    /// Definitions changed in a transaction block, committed or not.
    Block(Vec<(usize, bool)>, bool),
    List,
}

fn write() -> impl Strategy<Value = Write> {
    let job = 0..3usize;
    prop_oneof![
        1 => job.clone().prop_map(Write::Create),
        1 => job.clone().prop_map(Write::Drop),
        1 => job.clone().prop_map(Write::Pause),
        1 => job.clone().prop_map(Write::Start),
        1 => (job.clone(), any::<bool>()).prop_map(|(j, ok)| Write::Finish(j, ok)),
        1 => job.clone().prop_map(Write::Skip),
        1 => (job.clone(), 0..3usize).prop_map(|(j, keep)| Write::Prune(j, keep)),
        1 => job.clone().prop_map(Write::Schedule),
        1 => (job.clone(), 1..60u64).prop_map(|(j, run)| Write::SetWatermark(j, run)),
        1 => job.clone().prop_map(Write::ResetWatermark),
        1 => (proptest::collection::vec((job, any::<bool>()), 1..3), any::<bool>())
            .prop_map(|(changes, commit)| Write::Block(changes, commit)),
        3 => Just(Write::List),
    ]
}

/// Applies `write`; writes the catalog refuses (a job that does not exist)
/// change nothing.
fn apply(catalog: &Catalog, runtime: &tokio::runtime::Runtime, write: &Write) {
    let name = |j: &usize| format!("j{j}");
    match write {
        Write::Create(j) => drop(catalog.create_job(&job(&name(j), "shop"))),
        Write::Drop(j) => drop(catalog.drop_job(&name(j), true)),
        Write::Pause(j) => {
            if let Some(mut job) = catalog.find_job(&name(j)).unwrap() {
                job.paused = !job.paused;
                catalog.replace_job(&job).unwrap();
            }
        }
        Write::Start(j) => drop(catalog.start_run(&name(j), RunTrigger::Manual)),
        Write::Finish(j, ok) => {
            let running = catalog.runs(Some(&name(j))).unwrap();
            if let Some(run) = running.into_iter().rev().find(|r| r.status == RunStatus::Running) {
                let status = if *ok { RunStatus::Succeeded } else { RunStatus::Failed };
                finish(catalog, run, status);
            }
        }
        Write::Skip(j) => drop(catalog.skip_run(&name(j), RunTrigger::Schedule, "busy")),
        Write::Prune(j, keep) => drop(catalog.prune_runs(&name(j), *keep).unwrap()),
        Write::Schedule(j) => {
            let state = ScheduleState {
                job: name(j),
                schedule: "MANUAL".into(),
                next_run_at: Some(Utc::now()),
                retry: None,
            };
            catalog.set_schedule_state(&state).unwrap();
        }
        Write::SetWatermark(j, run) => catalog.set_watermark(&watermark(&name(j), *run)).unwrap(),
        Write::ResetWatermark(j) => {
            if let Some(job) = catalog.find_job(&name(j)).unwrap() {
                catalog.move_watermark(&job, None, "reset").unwrap();
            }
        }
        Write::Block(changes, commit) => {
            let txn = Transaction::new();
            runtime.block_on(txn.scope(async {
                for (j, create) in changes {
                    match create {
                        true => drop(catalog.create_job(&job(&name(j), "shop"))),
                        false => drop(catalog.drop_job(&name(j), true)),
                    }
                    catalog.job_views().unwrap();
                }
            }));
            match commit {
                true => drop(catalog.commit(&txn)),
                false => drop(txn.rollback()),
            }
        }
        Write::List => drop(listed(catalog)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After any writes, in any order, with listings between them, the
    /// listing equals a fresh read of the store.
    #[test]
    fn a_listing_equals_a_fresh_read_after_any_writes(writes in proptest::collection::vec(write(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open(dir.path());
        create_shop(&catalog, "pw");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for write in &writes {
            apply(&catalog, &runtime, write);
        }
        listed(&catalog);
    }
}
