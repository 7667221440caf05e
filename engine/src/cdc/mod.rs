//! Helpers for change-data-capture connectors (issue #22,
//! docs/design/cdc.md): change rows as Arrow batches, the names of the
//! objects a capture creates at its source, and the session a change source
//! keeps for its markers. What such a connector
//! implements is [`ChangeSource`](crate::contract::ChangeSource); the
//! PostgreSQL and MySQL implementations live in `connectors/<type>/cdc/`.

pub(crate) mod batch;
pub(crate) mod kept;
pub(crate) mod layout;
pub(crate) mod spill;
#[cfg(test)]
pub(crate) mod workload;

pub use batch::{
    COMMIT_TS_COLUMN, ChangeBatchBuilder, ChangeOp, ChangeValue, DELETED_AT_COLUMN, OP_COLUMN, POSITION_COLUMN,
    TextColumns, TextDecoder, UNCHANGED_COLUMN, ValueColumns, change_schema, change_table_schema, snapshot_changes,
    snapshot_truncate,
};

/// The name of the replication slot and publication of job `job` of the
/// Sluice whose catalog instance id is `instance`:
/// `sluice_<instance[..8]>_<job, [a-z0-9_] only, ≤ 30>_<hash8(job)>`, at
/// most 63 characters, so an operator can tell which Sluice and job own
/// it, and two jobs whose names differ only in other characters do not
/// share one.
pub fn source_object_name(instance: &str, job: &str) -> String {
    let instance: String = instance
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let readable: String = job
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .take(30)
        .collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, job.as_bytes());
    let hash: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("sluice_{instance}_{readable}_{hash}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn source_objects_are_named_for_their_sluice_and_job() {
        assert_eq!(
            source_object_name("0123456789abcdef", "orders"),
            format!("sluice_01234567_orders_{}", &source_object_name("x", "orders")[16..])
        );
        let name = source_object_name("0123456789abcdef", "Orders-EU");
        assert!(name.starts_with("sluice_01234567_orders_eu_"), "{name}");
        assert_ne!(
            name,
            source_object_name("0123456789abcdef", "orders_eu"),
            "the hash tells them apart"
        );
    }

    proptest! {
        #[test]
        fn source_object_names_are_valid_postgres_identifiers(instance in "[0-9a-f]{16}", job in "\\PC{1,200}") {
            let name = source_object_name(&instance, &job);
            prop_assert!(name.len() <= 63, "{}", name);
            prop_assert!(name.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_')), "{}", name);
            prop_assert_eq!(&name, &source_object_name(&instance, &job));
        }
    }
}
