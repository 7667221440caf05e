//! What BigQuery's error reasons mean: which failures may pass by
//! themselves, the SQLSTATE a client sees and the hint it gets. The engine
//! and the server read these from the error ([`RemoteDiagnosis`]) and never
//! look at BigQuery's reason strings themselves.

use crate::contract::{DestinationError, RemoteDiagnosis};

/// Reasons BigQuery (or the transport to it) gives for failures that may
/// pass by themselves.
pub(super) const TRANSIENT: &[&str] = &[
    "backendError",
    "rateLimitExceeded",
    "internalError",
    "timeout",
    "transport",
    "badResponse",
];

/// A failed BigQuery request or job (`job_id`), in BigQuery's own words.
pub(super) fn remote_error(job_id: Option<String>, reason: String, message: String) -> DestinationError {
    DestinationError::Remote {
        service: "BigQuery",
        diagnosis: Box::new(diagnose(&reason, job_id.as_deref())),
        job_id,
        reason,
        message,
    }
}

fn diagnose(reason: &str, job_id: Option<&str>) -> RemoteDiagnosis {
    let sqlstate = match reason {
        "accessDenied" => "42501",
        "quotaExceeded" | "rateLimitExceeded" => "53400",
        "timeout" | "transport" => "08006",
        _ => "58030",
    };
    RemoteDiagnosis {
        transient: TRANSIENT.contains(&reason),
        sqlstate,
        hint: job_id.map(|id| format!("The job id finds the job in the BigQuery console or with `bq show -j {id}`.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(reason: &str, job_id: Option<&str>) -> DestinationError {
        remote_error(job_id.map(str::to_owned), reason.into(), "m".into())
    }

    #[test]
    fn only_reasons_that_may_pass_are_transient() {
        assert!(remote("backendError", None).is_transient());
        assert!(remote("rateLimitExceeded", None).is_transient());
        assert!(!remote("accessDenied", None).is_transient());
        assert!(!remote("invalid", None).is_transient());
    }

    #[test]
    fn reasons_have_their_sqlstate_and_jobs_a_hint() {
        let diagnosis = |reason: &str, job_id: Option<&str>| diagnose(reason, job_id);
        assert_eq!(diagnosis("accessDenied", None).sqlstate, "42501");
        assert_eq!(diagnosis("quotaExceeded", None).sqlstate, "53400");
        assert_eq!(diagnosis("rateLimitExceeded", None).sqlstate, "53400");
        assert_eq!(diagnosis("transport", None).sqlstate, "08006");
        assert_eq!(diagnosis("duplicate", None).sqlstate, "58030");
        assert_eq!(diagnosis("invalid", None).hint, None);
        assert!(
            diagnosis("invalid", Some("job_1"))
                .hint
                .unwrap()
                .contains("bq show -j job_1")
        );
    }
}
