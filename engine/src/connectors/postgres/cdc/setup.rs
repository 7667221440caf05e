//! What a job needs at the source before and after it streams: the set-up
//! checks (each failure a typed [`CdcError`] with its SQLSTATE), the
//! publication, and dropping the slot and publication again.

use sluice_catalog::{CdcMode, CdcState};

use super::super::dialect::DIALECT;
use super::super::{Endpoint, PgConnection, query_error};
use crate::cdc::source_object_name;
use crate::contract::{Capture, CdcError, Dialect, Retention, SourceError, TableKind, TableRef};

/// Runs `work` on a fresh session and closes it.
async fn with_session<T>(
    endpoint: &Endpoint,
    work: impl AsyncFnOnce(&PgConnection) -> Result<T, CdcError>,
) -> Result<T, CdcError> {
    let connection = endpoint.connect().await?;
    let result = work(&connection).await;
    connection.close();
    result
}

/// Writes a non-transactional logical message with `prefix` into the WAL
/// on `connection`: the slot's stream delivers it after every transaction
/// committed before.
pub(super) async fn mark(connection: &PgConnection, prefix: &str) -> Result<(), CdcError> {
    connection
        .client
        .execute("SELECT pg_logical_emit_message(false, $1::text, ''::text)", &[&prefix])
        .await
        .map_err(query_error)?;
    Ok(())
}

fn quoted_table(table: &TableRef) -> String {
    format!(
        "{}.{}",
        DIALECT.quote_ident(&table.schema),
        DIALECT.quote_ident(&table.name)
    )
}

/// `wal_level`, the role's REPLICATION privilege, the table's key or
/// replica identity, ownership (to create the publication) or the named
/// publication, and a free replication slot, in that order.
pub(super) async fn check(endpoint: &Endpoint, capture: &Capture) -> Result<Vec<String>, CdcError> {
    let table = &capture.description.table;
    with_session(endpoint, async |connection| {
        let client = &connection.client;
        let server = client
            .query_one(
                "SELECT current_setting('wal_level'), current_user::text, \
                        (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), \
                        (SELECT count(*) FROM pg_replication_slots), \
                        current_setting('max_replication_slots')::int8",
                &[],
            )
            .await
            .map_err(query_error)?;
        let (wal_level, role): (String, String) = (server.get(0), server.get(1));
        if wal_level != "logical" {
            return Err(CdcError::WalLevel { found: wal_level });
        }
        if !server.get::<_, Option<bool>>(2).unwrap_or(false) {
            return Err(CdcError::NoReplicationPrivilege { role });
        }
        let relation = client
            .query_opt(
                "SELECT c.relreplident::text, \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)), \
                        pg_has_role(current_user, c.relowner, 'USAGE') \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(query_error)?
            .ok_or_else(|| SourceError::NotFound {
                kind: "table",
                name: table.to_string(),
                nearby: Vec::new(),
            })?;
        let (identity, has_key, owner): (String, bool, bool) = (relation.get(0), relation.get(1), relation.get(2));
        // NOTHING publishes no update or delete; DEFAULT without a primary
        // key makes the source refuse them once the table is published;
        // MERGE needs a key whatever the identity.
        let keyless = match identity.as_str() {
            "n" => true,
            "f" => capture.mode == CdcMode::Merge && !has_key,
            _ => !has_key,
        };
        if keyless {
            return Err(CdcError::NoKey {
                table: table.clone(),
                nothing: identity == "n",
            });
        }
        match &capture.publication {
            Some(name) => check_publication(connection, name, table).await?,
            None if !owner => {
                return Err(CdcError::NotTableOwner {
                    role,
                    table: table.clone(),
                });
            }
            None => {}
        }
        let (slots, max): (i64, i64) = (server.get(3), server.get(4));
        if slots >= max {
            return Err(CdcError::NoFreeSlot { max });
        }
        Ok(Vec::new())
    })
    .await
}

/// That publication `name` exists, publishes `table` and every kind of
/// change: a publication without deletes would drop them silently.
async fn check_publication(connection: &PgConnection, name: &str, table: &TableRef) -> Result<(), CdcError> {
    let publication = connection
        .client
        .query_opt(
            "SELECT pubinsert, pubupdate, pubdelete, to_jsonb(p) ->> 'pubtruncate', \
                    EXISTS (SELECT 1 FROM pg_publication_tables t \
                            WHERE t.pubname = p.pubname AND t.schemaname = $2 AND t.tablename = $3) \
             FROM pg_publication p WHERE p.pubname = $1",
            &[&name, &table.schema, &table.name],
        )
        .await
        .map_err(query_error)?
        .ok_or_else(|| CdcError::NoPublication {
            name: name.to_owned(),
            table: table.clone(),
        })?;
    let incomplete = |problem: String, fix: String| {
        Err(CdcError::PublicationIncomplete {
            name: name.to_owned(),
            problem,
            fix,
        })
    };
    if !publication.get::<_, bool>(4) {
        return incomplete(
            format!("does not publish {table}"),
            format!("have the publication's owner run ALTER PUBLICATION \"{name}\" ADD TABLE {table}"),
        );
    }
    // `pubtruncate` exists from PostgreSQL 11 on.
    let truncate = publication.get::<_, Option<String>>(3).is_none_or(|t| t == "true");
    let missing: Vec<&str> = [
        ("insert", publication.get::<_, bool>(0)),
        ("update", publication.get::<_, bool>(1)),
        ("delete", publication.get::<_, bool>(2)),
        ("truncate", truncate),
    ]
    .into_iter()
    .filter(|(_, published)| !published)
    .map(|(kind, _)| kind)
    .collect();
    if !missing.is_empty() {
        return incomplete(
            format!("does not publish {}: those changes would be lost", missing.join(", ")),
            format!(
                "have the publication's owner run ALTER PUBLICATION \"{name}\" SET (publish = 'insert, update, \
                 delete, truncate')"
            ),
        );
    }
    Ok(())
}

/// Names the job's slot and publication and creates the publication (if it
/// does not exist yet: a run interrupted after creating it), unless the
/// job streams from a publication of its own.
pub(super) async fn prepare(
    endpoint: &Endpoint,
    capture: &Capture,
    instance: &str,
    state: &mut CdcState,
) -> Result<(), CdcError> {
    let name = source_object_name(instance, &state.job);
    let description = &capture.description;
    if let Some(publication) = &capture.publication {
        with_session(endpoint, async |connection| {
            check_publication(connection, publication, &description.table).await
        })
        .await?;
        state.slot = Some(name);
        state.publication = Some(publication.clone());
        state.created_publication = false;
        return Ok(());
    }
    with_session(endpoint, async |connection| {
        let exists = connection
            .client
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
            .await
            .map_err(query_error)?
            .is_some();
        if !exists {
            let via_root = if description.kind == TableKind::Partitioned {
                " WITH (publish_via_partition_root = true)"
            } else {
                ""
            };
            connection
                .client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR TABLE {}{via_root}",
                    DIALECT.quote_ident(&name),
                    quoted_table(&description.table)
                ))
                .await
                .map_err(query_error)?;
        }
        Ok(())
    })
    .await?;
    state.slot = Some(name.clone());
    state.publication = Some(name);
    state.created_publication = true;
    Ok(())
}

/// How long a slot's last stream may take to let go of it.
pub(super) const SLOT_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Drops replication slot `slot` if it exists, once the session that
/// streamed it last has let go (a closed stream's server process may take
/// a moment to exit); a slot still in use after that is refused (`55006`).
pub(super) async fn drop_slot(endpoint: &Endpoint, slot: &str) -> Result<(), CdcError> {
    with_session(endpoint, async |connection| {
        let deadline = tokio::time::Instant::now() + SLOT_RELEASE_WAIT;
        loop {
            let active = connection
                .client
                .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
                .await
                .map_err(query_error)?;
            match active {
                Some(row) if row.get::<_, bool>(0) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                _ => break,
            }
        }
        connection
            .client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(query_error)?;
        Ok(())
    })
    .await
}

/// The WAL slot `slot` holds back: from its `restart_lsn` (what the
/// server keeps) and from its `confirmed_flush_lsn` (what the destination
/// has not confirmed) to the current end of the WAL, and whether the server
/// already removed WAL it needs (`wal_status`, PostgreSQL 13 and later,
/// read through `to_jsonb` so that older servers answer too); `None` when
/// the slot does not exist.
pub(super) async fn retained(connection: &PgConnection, slot: &str) -> Result<Option<Retention>, CdcError> {
    let row = connection
        .client
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::int8, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::int8, \
                    coalesce(to_jsonb(s) ->> 'wal_status', '') = 'lost' \
             FROM pg_replication_slots s WHERE s.slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(query_error)?;
    let bytes = |row: &tokio_postgres::Row, i: usize| row.get::<_, Option<i64>>(i).map(|b| b.max(0) as u64);
    Ok(row.map(|row| Retention {
        held: bytes(&row, 0),
        behind: bytes(&row, 1),
        lost: row.get::<_, bool>(2).then(|| {
            format!("the source removed WAL its replication slot \"{slot}\" still needed (wal_status = lost)")
        }),
    }))
}

/// Drops the job's slot, and its publication if Sluice created it.
pub(super) async fn release(endpoint: &Endpoint, state: &CdcState) -> Result<(), CdcError> {
    if let Some(slot) = &state.slot {
        drop_slot(endpoint, slot).await?;
    }
    if let (Some(publication), true) = (&state.publication, state.created_publication) {
        with_session(endpoint, async |connection| {
            connection
                .client
                .batch_execute(&format!(
                    "DROP PUBLICATION IF EXISTS {}",
                    DIALECT.quote_ident(publication)
                ))
                .await
                .map_err(query_error)
                .map_err(CdcError::from)
        })
        .await?;
    }
    Ok(())
}
