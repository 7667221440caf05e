//! The internal scheduler: one task that fires due jobs into a bounded pool
//! of runs, never two runs of a job at once, retrying transient failures
//! with backoff. Decisions are pure ([`plan`]); this module carries them out.

mod clock;
mod plan;
mod pool;
mod retry;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice_catalog::{JobRecord, OptionValue, RunRecord, RunStatus, RunTrigger, ScheduleState, VerifySchedule};
use tracing::{Instrument, info, info_span, warn};

pub use crate::schedule::{ParsedSchedules, Schedule, ScheduleError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use pool::RunPool;
pub use retry::Backoff;

use crate::contract::MAX_CONCURRENT_RUNS;
use crate::error::EngineError;
use crate::jobs::{CursorWindow, JobManager, continuous};
use crate::metrics::EngineMetrics;
use plan::{Action, Situation};

/// The longest the scheduler sleeps without looking at the catalog again.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// How long a continuous job's stream runs before a failure counts as the
/// first of a new series (its retry waits the shortest backoff again).
const STREAM_SETTLED: Duration = Duration::from_secs(10 * 60);

/// Limits and policies of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Scheduled runs in progress at once, over all jobs.
    pub max_concurrent_runs: usize,
    /// Scheduled runs in progress at once that use the same connection,
    /// unless its `max_concurrent_runs` option says otherwise.
    pub max_runs_per_connection: usize,
    pub backoff: Backoff,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_runs: 4,
            max_runs_per_connection: 2,
            backoff: Backoff::default(),
        }
    }
}

/// Fires the jobs of one namespace on their schedules.
pub struct Scheduler {
    jobs: Arc<JobManager>,
    /// The namespace of `jobs`, its runs' part of the pool's keys.
    namespace: String,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    metrics: Arc<EngineMetrics>,
    started_at: DateTime<Utc>,
    /// Scheduled runs in flight, shared with the other namespaces' schedulers.
    pool: Arc<RunPool>,
    /// Due runs waiting for a slot: job name -> the queued run's id.
    queued: Mutex<HashMap<String, u64>>,
    /// Serialises reads and writes of schedule states.
    states: Mutex<()>,
    /// When the scheduler last started verifying each job (`verify = 'daily'`).
    verify_attempts: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Schedules parsed so far, by their text: a pass over thousands of
    /// jobs parses each distinct schedule once, not once per job and pass.
    schedules: Mutex<HashMap<String, Schedule>>,
    /// When each job is due next, as the passes so far planned it.
    agenda: Mutex<Agenda>,
}

/// What the last passes planned, so that a pass woken by a run's end looks
/// only at the jobs that are due (or waiting for a slot), not at all of them.
#[derive(Default)]
struct Agenda {
    /// Job name -> when it is due next (a run, a retry or a verification).
    due: HashMap<String, DateTime<Utc>>,
    /// The job definitions' generation the last full pass saw.
    generation: Option<u64>,
    /// When the last full pass ran (a monotonic instant: a full pass at
    /// least every `MAX_IDLE` of real time, whatever the clock says).
    full_at: Option<Instant>,
}

impl Scheduler {
    /// A scheduler over `jobs`, with a pool of its own; ticks due before
    /// now count as missed.
    pub fn new(
        jobs: Arc<JobManager>,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
        metrics: Arc<EngineMetrics>,
    ) -> Arc<Self> {
        Self::in_pool(jobs, clock, config, metrics, Arc::default())
    }

    /// A scheduler over `jobs` (one namespace's) whose runs take their
    /// slots in `pool`, shared with the other namespaces' schedulers.
    pub fn in_pool(
        jobs: Arc<JobManager>,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
        metrics: Arc<EngineMetrics>,
        pool: Arc<RunPool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            started_at: clock.now(),
            namespace: jobs.catalog().namespace_name().to_owned(),
            jobs,
            clock,
            config,
            metrics,
            pool,
            queued: Mutex::new(HashMap::new()),
            states: Mutex::new(()),
            verify_attempts: Mutex::new(HashMap::new()),
            schedules: Mutex::new(HashMap::new()),
            agenda: Mutex::default(),
        })
    }

    /// Owes an immediate retry to every scheduled run a crash interrupted
    /// (as reported by [`JobManager::reconcile`]), so it is re-run once.
    pub fn resume_interrupted(&self, interrupted: &[RunRecord]) -> Result<(), EngineError> {
        let _states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let catalog = self.jobs.catalog();
        for run in interrupted.iter().filter(|r| r.trigger != RunTrigger::Manual) {
            let Some(mut state) = catalog.schedule_state(&run.job)? else {
                continue;
            };
            if state.retry.is_none() {
                state.retry = Some(sluice_catalog::PendingRetry {
                    attempt: 1,
                    at: self.clock.now(),
                });
                catalog.set_schedule_state(&state)?;
                info!(job = %run.job, run_id = run.id, "an interrupted scheduled run will be re-run");
            }
        }
        Ok(())
    }

    /// Runs the scheduler until `stop` resolves (its namespace is dropped)
    /// or the process ends.
    pub async fn run_until(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = self.run_forever() => {}
            () = stop => {}
        }
    }

    /// Runs the scheduler, and the WAL guardian's watch over the slots of
    /// CDC jobs between their runs, until the process ends.
    pub async fn run_forever(self: Arc<Self>) {
        tokio::join!(Arc::clone(&self).fire_due_jobs(), self.watch_idle_slots());
    }

    /// Looks at the slots of the CDC jobs that are not running, once a
    /// minute (see [`JobManager::watch_idle_slots`]).
    async fn watch_idle_slots(&self) {
        let every = crate::jobs::idle_watch_every();
        loop {
            tokio::time::sleep(every).await;
            match self.jobs.watch_idle_slots().await {
                Ok(given_up) if given_up.is_empty() => {}
                Ok(given_up) => {
                    warn!(jobs = ?given_up, "the WAL guardian gave up the slots of jobs that were not running");
                }
                Err(e) => warn!(error = %e, "the WAL guardian could not look at the jobs' slots"),
            }
        }
    }

    /// Fires due jobs, pass after pass.
    async fn fire_due_jobs(self: Arc<Self>) {
        let mut freed = self.pool.watch_freed();
        loop {
            freed.borrow_and_update();
            let next = match self.tick() {
                Ok(next) => next,
                Err(e) => {
                    warn!(error = %e, "scheduler pass failed; retrying shortly");
                    Some(self.clock.now() + chrono::Duration::seconds(5))
                }
            };
            let wait = next
                .map(|t| (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_IDLE)
                .min(MAX_IDLE);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.jobs.changed() => {}
                // The sender lives as long as the pool this scheduler holds.
                _ = freed.changed() => {}
            }
        }
    }

    /// One pass: starts or skips what is due, saves the plan, and returns
    /// the earliest time something is due next. The pass looks at every job
    /// when job definitions changed since the last such pass (or it is
    /// `MAX_IDLE` old); otherwise, as after a run's end, only at the jobs
    /// due by now, those waiting for a slot and those whose runs ended.
    pub fn tick(self: &Arc<Self>) -> Result<Option<DateTime<Utc>>, EngineError> {
        let started = Instant::now();
        let catalog = self.jobs.catalog();
        let generation = self.jobs.definitions_generation();
        let now = self.clock.now();
        let mut agenda = self.agenda.lock().unwrap_or_else(|p| p.into_inner());
        let full = agenda.generation != Some(generation)
            || agenda.full_at.is_none_or(|at| started.duration_since(at) >= MAX_IDLE);
        let ended = self.jobs.take_ended_runs();
        let jobs = if full {
            agenda.due.clear();
            catalog.jobs()?
        } else {
            let queued: Vec<String> = self
                .queued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            let mut names: Vec<String> = (agenda.due.iter())
                .filter(|(_, due)| **due <= now)
                .map(|(name, _)| name.clone())
                .chain(queued)
                .chain(ended)
                .collect();
            names.sort();
            names.dedup();
            let mut jobs = Vec::with_capacity(names.len());
            for name in names {
                match catalog.find_job(&name)? {
                    Some(job) => jobs.push(job),
                    None => {
                        agenda.due.remove(&name);
                    }
                }
            }
            jobs
        };
        if full {
            // Forget schedules no job uses any more, now and then.
            let mut schedules = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
            if schedules.len() > jobs.len() + 64 {
                schedules.clear();
            }
        }
        let mut verified = None;
        for job in &jobs {
            match self.job_pass(job, &mut verified)? {
                Some(due) => agenda.due.insert(job.name.clone(), due),
                None => agenda.due.remove(&job.name),
            };
        }
        if full {
            agenda.generation = Some(generation);
            agenda.full_at = Some(started);
        }
        self.metrics.scheduler_pass(started.elapsed(), jobs.len());
        Ok(agenda.due.values().min().copied())
    }

    /// Starts or skips what is due of one job; when it is due next.
    fn job_pass(
        self: &Arc<Self>,
        job: &JobRecord,
        verified: &mut Option<HashMap<String, DateTime<Utc>>>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        let Some(schedule) = self.schedule(job) else {
            return Ok(None);
        };
        let verify_due = match job.verify {
            VerifySchedule::Daily => {
                // Read once per pass, and only when a job verifies daily.
                let verified = match verified {
                    Some(verified) => verified,
                    None => verified.insert(self.last_verifications()?),
                };
                self.verify_if_due(job, verified.get(&job.name).copied())?
            }
            VerifySchedule::Off => None,
        };
        Ok([self.step(job, &schedule)?, verify_due].into_iter().flatten().min())
    }

    /// The job's parsed schedule; `None` (and a warning) when it cannot be read.
    fn schedule(&self, job: &JobRecord) -> Option<Schedule> {
        let mut schedules = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(schedule) = schedules.get(&job.schedule) {
            return Some(schedule.clone());
        }
        match job.schedule.parse::<Schedule>() {
            Ok(schedule) => {
                schedules.insert(job.schedule.clone(), schedule.clone());
                Some(schedule)
            }
            Err(e) => {
                warn!(job = %job.name, error = %e, "cannot read the job's schedule; it is not scheduled");
                None
            }
        }
    }

    /// When each job was last verified.
    fn last_verifications(&self) -> Result<HashMap<String, DateTime<Utc>>, EngineError> {
        let mut last = HashMap::new();
        for verification in self.jobs.catalog().verifications()? {
            let at = last.entry(verification.job).or_insert(verification.verified_at);
            *at = (*at).max(verification.verified_at);
        }
        Ok(last)
    }

    /// Starts verifying a `verify = 'daily'` job (last verified at
    /// `verified`) when it is due and not running; returns when it is due next.
    fn verify_if_due(
        self: &Arc<Self>,
        job: &JobRecord,
        verified: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        let catalog = self.jobs.catalog();
        // The newest successful load: read newest first, stop at it.
        let mut last_load = None;
        for run in catalog.runs_newest_first(&job.name) {
            let run = run?;
            if run.status == RunStatus::Succeeded && run.trigger != RunTrigger::Repair && run.finished_at.is_some() {
                last_load = run.finished_at;
                break;
            }
        }
        let attempted = self
            .verify_attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job.name)
            .copied();
        let verified = verified.into_iter().chain(attempted).max();
        let Some(due) = verify::due(last_load, verified) else {
            return Ok(None);
        };
        let now = self.clock.now();
        if due > now {
            return Ok(Some(due));
        }
        if self.jobs.running_run(&job.name).is_some() {
            // Its end wakes the scheduler up.
            return Ok(None);
        }
        self.verify_attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.name.clone(), now);
        let this = Arc::clone(self);
        let name = job.name.clone();
        let span = info_span!("scheduled_verify", job = %name);
        tokio::spawn(
            async move {
                match this.jobs.verify_job(&name, &CursorWindow::default(), None).await {
                    Ok(result) => info!(
                        buckets = result.buckets,
                        differing = result.differences.len(),
                        "scheduled verification done"
                    ),
                    Err(e) => warn!(error = %e, "scheduled verification failed; the next one is due a day later"),
                }
            }
            .instrument(span),
        );
        Ok(None)
    }

    /// Decides and acts for one job; returns when it is due next.
    fn step(self: &Arc<Self>, job: &JobRecord, schedule: &Schedule) -> Result<Option<DateTime<Utc>>, EngineError> {
        let catalog = self.jobs.catalog();
        let _states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = catalog.schedule_state(&job.name)?;
        let now = self.clock.now();
        let decision = plan::decide(&Situation {
            job,
            schedule,
            state: state.as_ref(),
            now,
            started_at: self.started_at,
            // A statement holding a continuous job's stream stopped counts
            // as a run.
            running: (self.jobs.running_run(&job.name)).or_else(|| self.jobs.stream_held(&job.name).then_some(0)),
            // Read for the jobs it changes the decision of.
            needs_resync: schedule.is_continuous() && self.jobs.needs_resync(&job.name)?,
        });
        match decision.action {
            Action::Wait => {
                self.unqueue(&job.name, "the job is no longer due (paused, or its schedule changed)")?;
            }
            Action::Skip { reason } => {
                // A queued run of the tick becomes its skip record.
                if !self.unqueue(&job.name, &reason)? {
                    let run = catalog.skip_run(&job.name, RunTrigger::Schedule, &reason)?;
                    self.metrics.run_finished(&self.namespace, &run);
                }
                self.jobs.prune_runs(&job.name);
                info!(job = %job.name, %reason, "scheduled tick skipped");
            }
            Action::Run { trigger, attempt, due } => {
                let run_id = self.queue(&job.name, trigger)?;
                // A continuous job's stream is always on: it takes no slot
                // of the bounded pool (the source's replication limits
                // bound how many there are).
                if !schedule.is_continuous() && !self.try_reserve(job)? {
                    // No free slot: stay due and queued; a finishing run wakes us.
                    return Ok(None);
                }
                self.queued.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.name);
                self.metrics
                    .scheduler_lateness((now - due).to_std().unwrap_or_default());
                self.spawn_run(job.clone(), run_id, attempt);
            }
        }
        if state.as_ref() != Some(&decision.state) {
            catalog.set_schedule_state(&decision.state)?;
        }
        Ok(decision.state.due_at())
    }

    /// The job's queued run, queued now if it has none.
    fn queue(&self, job: &str, trigger: RunTrigger) -> Result<u64, EngineError> {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&run_id) = queued.get(job) {
            return Ok(run_id);
        }
        let run = self.jobs.catalog().queue_run(job, trigger)?;
        queued.insert(job.to_owned(), run.id);
        Ok(run.id)
    }

    /// Ends the job's queued run, if any, as skipped for `reason`; true if
    /// there was one still queued.
    fn unqueue(&self, job: &str, reason: &str) -> Result<bool, EngineError> {
        let run_id = self.queued.lock().unwrap_or_else(|p| p.into_inner()).remove(job);
        match run_id {
            Some(run_id) => self.jobs.end_queued_run(run_id, RunStatus::Skipped, reason),
            None => Ok(false),
        }
    }

    /// Takes a pool slot and a slot on each of the job's connections
    /// (connections are per namespace).
    fn try_reserve(&self, job: &JobRecord) -> Result<bool, EngineError> {
        let mut in_flight = self.pool.in_flight();
        let key = self.run_key(&job.name);
        if in_flight.contains_key(&key) || in_flight.len() >= self.config.max_concurrent_runs {
            return Ok(false);
        }
        let connections: Vec<String> = job.connections().map(str::to_owned).collect();
        for connection in &connections {
            let busy = (in_flight.iter())
                .filter(|((namespace, _), used)| *namespace == self.namespace && used.contains(connection))
                .count();
            if busy >= self.connection_limit(connection)? {
                return Ok(false);
            }
        }
        in_flight.insert(key, connections);
        Ok(true)
    }

    fn run_key(&self, job: &str) -> pool::RunKey {
        (self.namespace.clone(), job.to_owned())
    }

    /// Scheduled runs that may use `connection` at once: its
    /// `max_concurrent_runs` option, else the server's default.
    fn connection_limit(&self, connection: &str) -> Result<usize, EngineError> {
        let option = self.jobs.catalog().find_connection(connection)?.and_then(|record| {
            match record.options.get(MAX_CONCURRENT_RUNS.name) {
                Some(OptionValue::Integer(n)) => usize::try_from(*n).ok(),
                _ => None,
            }
        });
        Ok(option.unwrap_or(self.config.max_runs_per_connection))
    }

    fn spawn_run(self: &Arc<Self>, job: JobRecord, run_id: u64, attempt: u32) {
        let this = Arc::clone(self);
        let span = info_span!("scheduled_run", job = %job.name, run_id, attempt);
        // Released when the task ends, however it ends (a panic included).
        let slot = Slot {
            scheduler: Arc::clone(self),
            job: job.name.clone(),
        };
        tokio::spawn(
            async move {
                let _slot = slot;
                let started = Instant::now();
                let result = this.jobs.run_queued(&job.name, run_id).await;
                // A stream that ran for a while before it failed starts a
                // new series of retries.
                let attempt = if continuous::is_continuous(&job) && started.elapsed() >= STREAM_SETTLED {
                    0
                } else {
                    attempt
                };
                if let Err(e) = this.after_run(&job, run_id, attempt, result.err()) {
                    warn!(error = %e, "could not record the outcome of a scheduled run");
                }
            }
            .instrument(span),
        );
    }

    /// Plans a retry after a transient failure; reports a failure no retry
    /// follows to the alerts.
    fn after_run(
        &self,
        job: &JobRecord,
        run_id: u64,
        attempt: u32,
        error: Option<EngineError>,
    ) -> Result<(), EngineError> {
        let Some(error) = error else { return Ok(()) };
        match &error {
            // A manual run started between the decision and this run: the
            // queued run ended skipped.
            EngineError::JobRunning { .. } => return Ok(()),
            EngineError::RunNotQueued { run_id, .. } => {
                info!(job = %job.name, run_id, "a queued run was cancelled before it started");
                return Ok(());
            }
            // A continuous job's stream stopped during its first load (a
            // PAUSE, an ALTER): not a failure; the scheduler decides again.
            EngineError::Cancelled { .. } if continuous::is_continuous(job) => return Ok(()),
            _ => {}
        }
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let catalog = self.jobs.catalog();
        let continuous = continuous::is_continuous(job);
        let retry = if continuous {
            plan::continuous_retry(
                attempt,
                self.jobs.needs_resync(&job.name)?,
                self.clock.now(),
                &self.config.backoff,
            )
        } else {
            plan::retry_after_failure(
                job,
                attempt,
                error.is_transient(),
                self.clock.now(),
                &self.config.backoff,
            )
        };
        // A stream is retried for ever: report it once per series, when the
        // failure needs a person (not transient) or retries ran out. One
        // that needs a resync is not retried: reported below.
        let report = if error.is_transient() {
            attempt == job.max_retries
        } else {
            attempt == 0
        };
        if continuous && retry.is_some() && report {
            warn!(job = %job.name, attempt, error = %error, "the job's stream keeps failing; it is retried");
            if let Some(alerts) = self.jobs.alerts() {
                alerts.run_failed(&job.name, run_id, &error.to_string());
            }
        }
        match (catalog.schedule_state(&job.name)?, retry) {
            (Some(mut state), Some(retry)) => {
                info!(job = %job.name, attempt = retry.attempt, at = %retry.at, error = %error, "run failed; retry planned");
                state.retry = Some(retry);
                catalog.set_schedule_state(&state)?;
                // The agenda is locked after the states, never while holding them.
                drop(states);
                let mut agenda = self.agenda.lock().unwrap_or_else(|p| p.into_inner());
                let due = agenda.due.entry(job.name.clone()).or_insert(retry.at);
                *due = (*due).min(retry.at);
            }
            _ => {
                warn!(job = %job.name, error = %error, "scheduled run failed; no retry");
                if let Some(alerts) = self.jobs.alerts() {
                    alerts.run_failed(&job.name, run_id, &error.to_string());
                }
            }
        }
        Ok(())
    }
}

/// A job's place in the pool of scheduled runs (see
/// [`Scheduler::try_reserve`]), given back when dropped.
struct Slot {
    scheduler: Arc<Scheduler>,
    job: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.scheduler.pool.release(&self.scheduler.run_key(&self.job));
        self.scheduler.jobs.notify_run_ended(&self.job);
    }
}

/// When the scheduler will next run `job`: its saved plan, or for a job it
/// has not planned yet the next tick after `now` (its schedule parsed
/// through `schedules`); `None` when paused or MANUAL.
pub fn next_run_at(
    job: &JobRecord,
    state: Option<&ScheduleState>,
    now: DateTime<Utc>,
    schedules: &mut ParsedSchedules,
) -> Option<DateTime<Utc>> {
    if job.paused {
        return None;
    }
    match state.filter(|s| s.schedule == job.schedule && s.next_run_at.is_some()) {
        Some(state) => state.due_at(),
        None => schedules.get(&job.schedule)?.next_after(now),
    }
}

#[cfg(test)]
mod tests;
