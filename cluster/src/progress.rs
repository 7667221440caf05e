//! How far a run's Ballista job has got, while it runs: the scheduler's REST
//! API (served on its gRPC port) lists each stage's tasks with their status;
//! the tasks that succeeded are the parts done. Ballista's gRPC job status
//! says only "running", and its job metrics cover finished stages only.

use std::time::Duration;

use serde_json::Value;

/// How often a run asks the scheduler.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How long one question may take; a slow answer is skipped, not waited for.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Asks a scheduler how many tasks of a job have succeeded.
pub(crate) struct JobProgress {
    http: reqwest::Client,
    /// `http://host:port` of the scheduler.
    base: String,
}

impl JobProgress {
    /// For the scheduler at `url` (`df://host:port`).
    pub(crate) fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", url.strip_prefix("df://").unwrap_or(url)),
        }
    }

    /// The tasks of job `job_id` that have succeeded; `None` when the
    /// scheduler does not say.
    pub(crate) async fn tasks_done(&self, job_id: &str) -> Option<u64> {
        let url = format!("{}/api/job/{job_id}/stages", self.base);
        let response = self.http.get(url).timeout(ANSWER_WITHIN).send().await.ok()?;
        let stages: Value = response.error_for_status().ok()?.json().await.ok()?;
        Some(succeeded(&stages))
    }
}

/// The tasks of a `/api/job/{id}/stages` answer whose status is
/// `Successful`.
fn succeeded(stages: &Value) -> u64 {
    let successful = |status: &Value| match status {
        Value::String(s) => s.eq_ignore_ascii_case("successful"),
        Value::Object(o) => o.keys().any(|k| k.eq_ignore_ascii_case("successful")),
        _ => false,
    };
    (stages["stages"].as_array().into_iter().flatten())
        .flat_map(|stage| stage["tasks"].as_array().into_iter().flatten())
        .filter(|task| successful(&task["status"]))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn successful_tasks_of_every_stage_count() {
        let stages = json!({"stages": [
            {"stage_id": "1", "tasks": [
                {"id": 0, "status": "Successful"},
                {"id": 1, "status": "Running"},
                {"id": 2, "status": {"Failed": {"reason": "lost", "error": "x"}}},
                null,
            ]},
            {"stage_id": "2", "tasks": [{"id": 3, "status": "Successful"}]},
            {"stage_id": "3"},
        ]});
        assert_eq!(succeeded(&stages), 2);
        assert_eq!(succeeded(&json!({})), 0);
    }
}
