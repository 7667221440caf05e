//! Positions in a source's change log (docs/design/cdc.md 2.1): where a
//! transaction sits, where a stream resumes after it, and the text each
//! change row carries in `_sluice_position`, which sorts like the log.

use serde::{Deserialize, Serialize};

use super::gtid::GtidState;

/// A point in a source's change log: the key of a transaction (known when
/// it begins) together with where the log continues after it (known at its
/// commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// PostgreSQL: the commit LSN of a transaction (`Begin.final_lsn`) and
    /// the end of its commit record (`Commit.end_lsn`), where streaming
    /// resumes. A snapshot's position has both at the slot's consistent
    /// point.
    Postgres { commit_lsn: u64, end_lsn: u64 },
    /// MySQL/MariaDB: the binlog file, the offset of the transaction's
    /// first event, the end offset of its last (XID/COMMIT) event, and the
    /// GTID state after it where the server has GTIDs. `shift` is added to
    /// the file's sequence number where positions are ordered: a stream
    /// that resumed by GTID on another server (a failover) whose binlog
    /// files are numbered lower raises it, so that positions keep growing.
    MySql {
        file: String,
        begin: u64,
        end: u64,
        gtid: Option<GtidState>,
        #[serde(default, skip_serializing_if = "is_zero")]
        shift: u64,
    },
}

impl Position {
    /// The position of a PostgreSQL snapshot taken at `consistent_point`:
    /// every transaction the stream delivers after it is newer.
    pub fn postgres_snapshot(consistent_point: u64) -> Self {
        Position::Postgres {
            commit_lsn: consistent_point,
            end_lsn: consistent_point,
        }
    }

    /// The position of a MySQL/MariaDB snapshot taken at binlog offset
    /// `offset` of `file`: the stream continues there (`end`), and the
    /// first transaction it delivers begins there. The snapshot's own rows
    /// sort just before that offset (`begin` is one less), so that they
    /// come before that transaction's changes in `_sluice_position` order.
    pub fn mysql_snapshot(file: String, offset: u64, gtid: Option<GtidState>) -> Self {
        Position::MySql {
            file,
            begin: offset.saturating_sub(1),
            end: offset,
            gtid,
            shift: 0,
        }
    }

    /// The compact JSON stored with a destination commit and in the catalog.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("positions always serialise")
    }

    /// Reads [`Position::to_json`]'s text back.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a change-log position ({e}): {text}"))
    }

    /// The `_sluice_position` of change number `seq` of this transaction:
    /// fixed-width, so text order is log order. PostgreSQL
    /// `00000001A2B3C4D8-0000002A`; MySQL `<file suffix + shift>-<offset>-<seq>`.
    pub fn row_position(&self, seq: u32) -> String {
        match self {
            Position::Postgres { commit_lsn, .. } => format!("{commit_lsn:016X}-{seq:08X}"),
            Position::MySql { file, begin, shift, .. } => {
                format!("{:010}-{begin:020}-{seq:08X}", file_number(file) + shift)
            }
        }
    }

    /// The bound above every change row of this position's transaction.
    pub fn committed_bound(&self) -> String {
        self.row_position(u32::MAX)
    }

    /// Whether the transaction whose key is `transaction` (its position at
    /// `Begin`) is already contained in what was committed up to `self`:
    /// the skip rule that makes re-delivery after a crash harmless. Binlog
    /// positions that both have GTID states compare by them (file names
    /// and offsets differ between the servers of a failover), others by
    /// file and offset. A position of another source kind never contains
    /// it.
    pub fn contains(&self, transaction: &Position) -> bool {
        match (self, transaction) {
            (Position::Postgres { end_lsn, .. }, Position::Postgres { commit_lsn, .. }) => commit_lsn < end_lsn,
            (
                Position::MySql { gtid: Some(state), .. },
                Position::MySql {
                    gtid: Some(transaction),
                    ..
                },
            ) => state.includes(transaction),
            (
                Position::MySql { file, end, shift, .. },
                Position::MySql {
                    file: t_file,
                    begin: t_begin,
                    shift: t_shift,
                    ..
                },
            ) => (file_number(t_file) + t_shift, *t_begin) < (file_number(file) + shift, *end),
            _ => false,
        }
    }
}

impl Position {
    /// The `shift` that a stream or snapshot at `offset` of `file`,
    /// shifted by `shift`, needs for its positions to sort after binlog
    /// position `earlier` (another server's, after a failover): `shift`
    /// where they do, else one that numbers `file` just after `earlier`'s
    /// file.
    pub fn shift_after(file: &str, offset: u64, shift: u64, earlier: &Position) -> u64 {
        let Position::MySql {
            file: earlier_file,
            end,
            shift: earlier_shift,
            ..
        } = earlier
        else {
            return shift;
        };
        let (number, earlier_number) = (file_number(file), file_number(earlier_file) + earlier_shift);
        match (number + shift, offset) < (earlier_number, *end) {
            true => earlier_number + 1 - number,
            false => shift,
        }
    }

    /// The order of binlog offset `offset` in file `file` among the
    /// positions of one server's binlog: by file sequence number, then
    /// offset.
    pub fn binlog_order(file: &str, offset: u64) -> (u64, u64) {
        (file_number(file), offset)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The sequence number of a binlog file name (`mysql-bin.000042` -> 42).
fn file_number(file: &str) -> u64 {
    file.rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn json_is_compact_and_round_trips() {
        let pg = Position::Postgres {
            commit_lsn: 0x1_A2B3_C4D8,
            end_lsn: 0x1_A2B3_C500,
        };
        assert_eq!(
            pg.to_json(),
            r#"{"postgres":{"commit_lsn":7024657624,"end_lsn":7024657664}}"#
        );
        assert_eq!(Position::from_json(&pg.to_json()).unwrap(), pg);
        let my = Position::MySql {
            file: "mysql-bin.000042".into(),
            begin: 123_456,
            end: 123_999,
            gtid: Some(GtidState::parse("0-1-77,1-2-5").unwrap()),
            shift: 0,
        };
        assert_eq!(
            my.to_json(),
            r#"{"my_sql":{"file":"mysql-bin.000042","begin":123456,"end":123999,"gtid":"0-1-77,1-2-5"}}"#,
            "no shift written while it is 0"
        );
        assert_eq!(Position::from_json(&my.to_json()).unwrap(), my);
        assert!(
            Position::from_json("{}")
                .unwrap_err()
                .contains("not a change-log position")
        );
    }

    #[test]
    fn row_positions_have_the_documented_shape() {
        let pg = Position::postgres_snapshot(0x1_A2B3_C4D8);
        assert_eq!(pg.row_position(42), "00000001A2B3C4D8-0000002A");
        assert_eq!(pg.row_position(0), "00000001A2B3C4D8-00000000");
        assert_eq!(pg.committed_bound(), "00000001A2B3C4D8-FFFFFFFF");
        let my = Position::MySql {
            file: "mysql-bin.000042".into(),
            begin: 123_456,
            end: 0,
            gtid: None,
            shift: 0,
        };
        assert_eq!(my.row_position(42), "0000000042-00000000000000123456-0000002A");
    }

    #[test]
    fn a_committed_position_contains_its_transaction_and_earlier_ones_only() {
        let committed = Position::Postgres {
            commit_lsn: 100,
            end_lsn: 120,
        };
        let begin = Position::postgres_snapshot;
        assert!(committed.contains(&begin(100)), "the committed transaction itself");
        assert!(committed.contains(&begin(50)));
        assert!(!committed.contains(&begin(120)), "the next one starts at the end");
        let snapshot = Position::postgres_snapshot(100);
        assert!(
            !snapshot.contains(&begin(100)),
            "nothing at the consistent point is in the snapshot"
        );
        let at = |file: &str, begin, end| Position::MySql {
            file: file.into(),
            begin,
            end,
            gtid: None,
            shift: 0,
        };
        let committed = at("bin.000002", 400, 500);
        assert!(committed.contains(&at("bin.000002", 400, 0)));
        assert!(committed.contains(&at("bin.000001", 9_000, 0)));
        assert!(!committed.contains(&at("bin.000002", 500, 0)));
        assert!(!committed.contains(&at("bin.000003", 4, 0)));
        assert!(!committed.contains(&begin(1)), "another kind of source");
        let snapshot = Position::mysql_snapshot("bin.000002".into(), 400, None);
        let first = at("bin.000002", 400, 0);
        assert!(
            !snapshot.contains(&first),
            "the stream starts with the next transaction"
        );
        assert!(
            snapshot.row_position(1) < first.row_position(0),
            "the snapshot's rows sort before the next transaction's"
        );
    }

    fn binlog(file: &str, begin: u64, end: u64, gtid: Option<&str>, shift: u64) -> Position {
        Position::MySql {
            file: file.into(),
            begin,
            end,
            gtid: gtid.map(|g| GtidState::parse(g).unwrap()),
            shift,
        }
    }

    #[test]
    fn binlog_positions_with_gtid_states_compare_by_them_across_servers() {
        // Committed on the old primary: domain 0 at 10, domain 1 at 5.
        let committed = binlog("old-bin.000007", 900, 1000, Some("0-1-10,1-2-5"), 0);
        // The same transactions and the next ones in the new primary's
        // binlog, whose files and offsets are smaller.
        let replayed = binlog("new-bin.000001", 300, 0, Some("0-1-10,1-2-5"), 0);
        let next = binlog("new-bin.000001", 400, 0, Some("0-1-10,1-2-6"), 0);
        let switched = binlog("new-bin.000001", 500, 0, Some("0-3-11,1-2-6"), 0);
        assert!(committed.contains(&replayed));
        assert!(committed.contains(&binlog("new-bin.000001", 200, 0, Some("0-1-9,1-2-5"), 0)));
        assert!(!committed.contains(&next), "domain 1 moved on");
        assert!(!committed.contains(&switched), "the new primary's own transaction");
        assert!(
            binlog("new-bin.000001", 500, 600, Some("0-3-11,1-2-6"), 0).contains(&next),
            "a switched server id still counts its domain's sequence"
        );
        assert!(
            committed.contains(&binlog("old-bin.000001", 4, 0, None, 0)),
            "without a state on both sides: by file and offset"
        );
    }

    #[test]
    fn a_shift_is_raised_only_for_positions_that_would_sort_before() {
        let earlier = binlog("old-bin.000007", 900, 1000, None, 2);
        assert_eq!(Position::shift_after("new-bin.000001", 300, 0, &earlier), 9);
        assert_eq!(
            Position::shift_after("new-bin.000009", 300, 0, &earlier),
            1,
            "the same file number"
        );
        assert_eq!(
            Position::shift_after("old-bin.000007", 1000, 2, &earlier),
            2,
            "where it left off"
        );
        assert_eq!(
            Position::shift_after("old-bin.000012", 4, 0, &earlier),
            0,
            "numbered higher"
        );
        let shifted = binlog("new-bin.000001", 300, 0, None, 9);
        assert!(earlier.committed_bound() < shifted.row_position(0));
        assert_eq!(
            Position::shift_after("x.000001", 4, 0, &Position::postgres_snapshot(1)),
            0
        );
    }

    #[test]
    fn a_shift_keeps_row_positions_growing_after_a_failover() {
        let old = binlog("old-bin.000007", 900, 1000, Some("0-1-10"), 0);
        let new = binlog("new-bin.000001", 300, 400, Some("0-1-11"), 7);
        assert!(old.committed_bound() < new.row_position(0));
        assert_eq!(new.row_position(0), "0000000008-00000000000000000300-00000000");
        assert!(new.to_json().contains(r#""shift":7"#));
        assert_eq!(Position::from_json(&new.to_json()).unwrap(), new);
        assert!(
            binlog("a.000002", 0, 50, None, 3).contains(&binlog("a.000004", 10, 0, None, 0)),
            "without states, shifted file numbers order"
        );
    }

    proptest! {
        #[test]
        fn row_positions_sort_like_the_log(a in any::<u64>(), s in any::<u32>(), b in any::<u64>(), t in any::<u32>()) {
            let (x, y) = (Position::postgres_snapshot(a).row_position(s), Position::postgres_snapshot(b).row_position(t));
            prop_assert_eq!(x.cmp(&y), (a, s).cmp(&(b, t)));
            prop_assert!(y <= Position::postgres_snapshot(b).committed_bound());
        }

        #[test]
        fn binlog_row_positions_sort_like_the_log(
            f in 0u64..1_000_000, a in any::<u64>(), s in any::<u32>(),
            g in 0u64..1_000_000, b in any::<u64>(), t in any::<u32>(),
        ) {
            let at = |file: u64, begin: u64| Position::MySql { file: format!("mysql-bin.{file:06}"), begin, end: 0, gtid: None, shift: 0 };
            prop_assert_eq!(at(f, a).row_position(s).cmp(&at(g, b).row_position(t)), (f, a, s).cmp(&(g, b, t)));
        }

        #[test]
        fn positions_round_trip_through_json(commit in any::<u64>(), end in any::<u64>()) {
            let position = Position::Postgres { commit_lsn: commit, end_lsn: end };
            prop_assert_eq!(Position::from_json(&position.to_json()).unwrap(), position);
        }
    }
}
