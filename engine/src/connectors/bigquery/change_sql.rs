//! The SQL of a CDC commit into BigQuery (docs/cdc.md, "BigQuery"): one
//! multi-statement transaction per batch, run as one query job.
//!
//! ```sql
//! BEGIN TRANSACTION;
//! DELETE FROM target WHERE TRUE;                          -- MERGE, a truncate in the batch
//! MERGE target T USING (SELECT ... FROM staging S) S ON T.key = S.key
//!   WHEN MATCHED AND S._sluice_op = 'delete' THEN DELETE  -- soft_delete: UPDATE SET _sluice_deleted_at ...
//!   WHEN MATCHED THEN UPDATE SET ...
//!   WHEN NOT MATCHED AND S._sluice_op = 'upsert' THEN INSERT ...;
//! -- or, HISTORY: INSERT INTO target (...) SELECT ... FROM staging S;
//! DELETE FROM position_table WHERE TRUE;
//! INSERT INTO position_table (...) VALUES (...);
//! COMMIT TRANSACTION;
//! ```
//!
//! Values a change did not carry come from the stored row the staged row
//! names ([`super::staged`]): a `LEFT JOIN` of the target (`MERGE`) or of
//! `<table>_current` (`HISTORY`), present only when some row needs it; a
//! row that is not stored fails the transaction with `ERROR()`.

use crate::cdc::{COMMIT_TS_COLUMN, DELETED_AT_COLUMN, OP_COLUMN, POSITION_COLUMN};
use crate::contract::Dialect;

use super::source::DIALECT;
use super::staged::{DELETE, FILL_COLUMN, FILL_KEY_PREFIX, UPSERT};

/// `HISTORY` table `<table>`'s view of its latest state.
pub(super) const CURRENT_VIEW_SUFFIX: &str = "_current";
/// The message of the `ERROR()` a stored row that is missing raises.
const NOT_STORED: &str = "sluice: a change leaves a value unchanged, but no earlier version of its row is stored";

fn q(ident: &str) -> String {
    DIALECT.quote_ident(ident)
}

fn lit(text: &str) -> String {
    DIALECT
        .literal(&datafusion::scalar::ScalarValue::Utf8(Some(text.to_owned())))
        .expect("strings are literals")
}

/// One statement per line, inside `BEGIN TRANSACTION` and `COMMIT
/// TRANSACTION`.
pub(super) fn transaction(statements: &[String]) -> String {
    let mut script = String::from("BEGIN TRANSACTION;\n");
    for statement in statements {
        script.push_str(statement);
        script.push_str(";\n");
    }
    script.push_str("COMMIT TRANSACTION;");
    script
}

/// The tables and columns of one table's CDC commit.
pub(super) struct ChangeSql<'a> {
    pub dataset: &'a str,
    pub table: &'a str,
    pub staging: &'a str,
    /// The captured columns.
    pub data: &'a [String],
    pub key: &'a [String],
    pub soft_delete: bool,
}

impl ChangeSql<'_> {
    fn table_ref(&self, table: &str) -> String {
        format!("{}.{}", q(self.dataset), q(table))
    }

    /// `DELETE FROM target WHERE TRUE`: a truncate.
    pub(super) fn truncate(&self) -> String {
        format!("DELETE FROM {} WHERE TRUE", self.table_ref(self.table))
    }

    /// The staged rows' values as the target takes them: `S.column`, or
    /// with `fills`, the stored row's value where the row names the column
    /// in `_sluice_fill`; then Sluice's columns `own`.
    fn select(&self, fills: bool, own: &[&str]) -> String {
        let mut items: Vec<String> = self
            .data
            .iter()
            .map(|c| {
                if fills {
                    format!(
                        "IF({} IN UNNEST(S.{}), IF(F.{} IS NULL, ERROR({}), F.{c}), S.{c}) AS {c}",
                        lit(c),
                        q(FILL_COLUMN),
                        q(&self.key[0]),
                        lit(NOT_STORED),
                        c = q(c)
                    )
                } else {
                    format!("S.{}", q(c))
                }
            })
            .collect();
        items.extend(own.iter().map(|c| format!("S.{}", q(c))));
        items.join(", ")
    }

    /// `FROM staging S`, with `fills` joined to `stored` on the key the
    /// staged row names.
    fn from(&self, fills: bool, stored: &str, live_only: bool) -> String {
        let mut from = format!("FROM {} S", self.table_ref(self.staging));
        if fills {
            let on: Vec<String> = self
                .key
                .iter()
                .map(|k| format!("F.{} = S.{}", q(k), q(&format!("{FILL_KEY_PREFIX}{k}"))))
                .collect();
            from.push_str(&format!(
                " LEFT JOIN {} F ON {}",
                self.table_ref(stored),
                on.join(" AND ")
            ));
            if live_only {
                from.push_str(&format!(" AND F.{} IS NULL", q(DELETED_AT_COLUMN)));
            }
        }
        from
    }

    /// The target's columns under `MERGE`.
    fn merge_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self.data.to_vec();
        columns.push(POSITION_COLUMN.into());
        columns.push(COMMIT_TS_COLUMN.into());
        if self.soft_delete {
            columns.push(DELETED_AT_COLUMN.into());
        }
        columns
    }

    /// The `MERGE` of the staged net changes into the target.
    pub(super) fn merge(&self, fills: bool) -> String {
        let columns = self.merge_columns();
        let mut own = vec![OP_COLUMN, POSITION_COLUMN, COMMIT_TS_COLUMN];
        if self.soft_delete {
            own.push(DELETED_AT_COLUMN);
        }
        let source = format!(
            "(SELECT {} {})",
            self.select(fills, &own),
            self.from(fills, self.table, self.soft_delete)
        );
        let on: Vec<String> = self.key.iter().map(|k| format!("T.{k} = S.{k}", k = q(k))).collect();
        let set = |names: &[String]| {
            names
                .iter()
                .map(|c| format!("{c} = S.{c}", c = q(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let delete = if self.soft_delete {
            let marked = [POSITION_COLUMN, COMMIT_TS_COLUMN, DELETED_AT_COLUMN].map(String::from);
            format!("UPDATE SET {}", set(&marked))
        } else {
            "DELETE".to_owned()
        };
        // A soft delete of a key that is not stored keeps it, marked.
        let insert_when = if self.soft_delete {
            String::new()
        } else {
            format!(" AND S.{} = {}", q(OP_COLUMN), lit(UPSERT))
        };
        let names: Vec<String> = columns.iter().map(|c| q(c)).collect();
        let values: Vec<String> = columns.iter().map(|c| format!("S.{}", q(c))).collect();
        format!(
            "MERGE {target} T USING {source} S ON {on} WHEN MATCHED AND S.{op} = {delete_op} THEN {delete} WHEN \
             MATCHED THEN UPDATE SET {update} WHEN NOT MATCHED{insert_when} THEN INSERT ({names}) VALUES ({values})",
            target = self.table_ref(self.table),
            on = on.join(" AND "),
            op = q(OP_COLUMN),
            delete_op = lit(DELETE),
            // The key is the one matched.
            update = set(&columns
                .iter()
                .filter(|c| !self.key.contains(c))
                .cloned()
                .collect::<Vec<_>>()),
            names = names.join(", "),
            values = values.join(", "),
        )
    }

    /// The `HISTORY` append of every staged change.
    pub(super) fn append_history(&self, fills: bool) -> String {
        let own = [OP_COLUMN, POSITION_COLUMN, COMMIT_TS_COLUMN];
        let mut names: Vec<String> = self.data.iter().map(|c| q(c)).collect();
        names.extend(own.iter().map(|c| q(c)));
        let current = format!("{}{CURRENT_VIEW_SUFFIX}", self.table);
        format!(
            "INSERT INTO {} ({}) SELECT {} {}",
            self.table_ref(self.table),
            names.join(", "),
            self.select(fills, &own),
            self.from(fills, &current, false)
        )
    }
}

/// The query of `HISTORY` table `table`'s `<table>_current` view: per key
/// its last change after the last `truncate`, unless that change is a
/// `delete`; `columns` are the table's columns but `_sluice_op`.
pub(super) fn current_view(project: &str, dataset: &str, table: &str, columns: &[String], key: &[String]) -> String {
    let history = format!("{}.{}.{}", q(project), q(dataset), q(table));
    let columns: Vec<String> = columns.iter().map(|c| q(c)).collect();
    let keys: Vec<String> = key.iter().map(|k| q(k)).collect();
    let (op, position) = (q(OP_COLUMN), q(POSITION_COLUMN));
    format!(
        "SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {position} DESC) AS \
         `_sluice_rank` FROM {history} WHERE {op} != 'truncate' AND {position} > IFNULL((SELECT MAX({position}) FROM \
         {history} WHERE {op} = 'truncate'), '')) WHERE `_sluice_rank` = 1 AND {op} != 'delete'",
        columns = columns.join(", "),
        keys = keys.join(", "),
    )
}

/// The rows of `staging` appended to, or in place of (`replace`), the
/// target's: a CDC first load.
pub(super) fn snapshot(dataset: &str, table: &str, staging: &str, columns: &[String], replace: bool) -> Vec<String> {
    let target = format!("{}.{}", q(dataset), q(table));
    let columns: Vec<String> = columns.iter().map(|c| q(c)).collect();
    let columns = columns.join(", ");
    let mut statements = Vec::new();
    if replace {
        statements.push(format!("DELETE FROM {target} WHERE TRUE"));
    }
    statements.push(format!(
        "INSERT INTO {target} ({columns}) SELECT {columns} FROM {}.{}",
        q(dataset),
        q(staging)
    ));
    statements
}

/// A SQL string literal of `text`.
pub(super) fn string_literal(text: &str) -> String {
    lit(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql<'a>(data: &'a [String], key: &'a [String], soft_delete: bool) -> ChangeSql<'a> {
        ChangeSql {
            dataset: "raw",
            table: "items",
            staging: "stage",
            data,
            key,
            soft_delete,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_merge_without_fills_reads_the_staging_table_alone() {
        let (data, key) = (names(&["id", "name"]), names(&["id"]));
        assert_eq!(
            sql(&data, &key, false).merge(false),
            "MERGE `raw`.`items` T USING (SELECT S.`id`, S.`name`, S.`_sluice_op`, S.`_sluice_position`, \
             S.`_sluice_commit_ts` FROM `raw`.`stage` S) S ON T.`id` = S.`id` WHEN MATCHED AND S.`_sluice_op` = \
             'delete' THEN DELETE WHEN MATCHED THEN UPDATE SET `name` = S.`name`, `_sluice_position` = \
             S.`_sluice_position`, `_sluice_commit_ts` = S.`_sluice_commit_ts` WHEN NOT MATCHED AND \
             S.`_sluice_op` = 'upsert' THEN INSERT (`id`, `name`, `_sluice_position`, `_sluice_commit_ts`) VALUES \
             (S.`id`, S.`name`, S.`_sluice_position`, S.`_sluice_commit_ts`)"
        );
    }

    #[test]
    fn a_soft_delete_merge_with_fills_marks_and_takes_stored_values() {
        let (data, key) = (names(&["a", "b", "big"]), names(&["a", "b"]));
        let merge = sql(&data, &key, true).merge(true);
        assert!(
            merge.contains(
                "IF('big' IN UNNEST(S.`_sluice_fill`), IF(F.`a` IS NULL, ERROR('sluice: a change leaves a value \
                 unchanged, but no earlier version of its row is stored'), F.`big`), S.`big`) AS `big`"
            ),
            "{merge}"
        );
        assert!(
            merge.contains(
                "FROM `raw`.`stage` S LEFT JOIN `raw`.`items` F ON F.`a` = S.`_sluice_fill_a` AND F.`b` = \
                 S.`_sluice_fill_b` AND F.`_sluice_deleted_at` IS NULL) S ON T.`a` = S.`a` AND T.`b` = S.`b`"
            ),
            "{merge}"
        );
        assert!(
            merge.contains(
                "WHEN MATCHED AND S.`_sluice_op` = 'delete' THEN UPDATE SET `_sluice_position` = \
                 S.`_sluice_position`, `_sluice_commit_ts` = S.`_sluice_commit_ts`, `_sluice_deleted_at` = \
                 S.`_sluice_deleted_at` WHEN MATCHED"
            ),
            "{merge}"
        );
        assert!(
            merge.contains("WHEN NOT MATCHED THEN INSERT (`a`, `b`, `big`, `_sluice_position`, `_sluice_commit_ts`, `_sluice_deleted_at`)"),
            "a soft delete of a key not stored keeps it, marked: {merge}"
        );
    }

    #[test]
    fn history_appends_with_values_from_the_current_view() {
        let (data, key) = (names(&["id", "big"]), names(&["id"]));
        assert_eq!(
            sql(&data, &key, false).append_history(false),
            "INSERT INTO `raw`.`items` (`id`, `big`, `_sluice_op`, `_sluice_position`, `_sluice_commit_ts`) SELECT \
             S.`id`, S.`big`, S.`_sluice_op`, S.`_sluice_position`, S.`_sluice_commit_ts` FROM `raw`.`stage` S"
        );
        let filled = sql(&data, &key, false).append_history(true);
        assert!(
            filled.ends_with("FROM `raw`.`stage` S LEFT JOIN `raw`.`items_current` F ON F.`id` = S.`_sluice_fill_id`"),
            "{filled}"
        );
    }

    #[test]
    fn a_script_is_one_transaction_of_one_line_statements() {
        let (data, key) = (names(&["id"]), names(&["id"]));
        let sql = sql(&data, &key, false);
        assert_eq!(
            transaction(&[sql.truncate(), "SELECT 1".into()]),
            "BEGIN TRANSACTION;\nDELETE FROM `raw`.`items` WHERE TRUE;\nSELECT 1;\nCOMMIT TRANSACTION;"
        );
        assert_eq!(
            snapshot("raw", "items", "stage", &data, true),
            [
                "DELETE FROM `raw`.`items` WHERE TRUE",
                "INSERT INTO `raw`.`items` (`id`) SELECT `id` FROM `raw`.`stage`"
            ]
        );
        assert_eq!(snapshot("raw", "items", "stage", &data, false).len(), 1);
    }

    #[test]
    fn the_current_view_keeps_the_latest_live_row_per_key_after_the_last_truncate() {
        let view = current_view("p", "raw", "h", &names(&["id", "_sluice_position"]), &names(&["id"]));
        assert_eq!(
            view,
            "SELECT `id`, `_sluice_position` FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY \
             `_sluice_position` DESC) AS `_sluice_rank` FROM `p`.`raw`.`h` WHERE `_sluice_op` != 'truncate' AND \
             `_sluice_position` > IFNULL((SELECT MAX(`_sluice_position`) FROM `p`.`raw`.`h` WHERE `_sluice_op` = \
             'truncate'), '')) WHERE `_sluice_rank` = 1 AND `_sluice_op` != 'delete'"
        );
    }
}
