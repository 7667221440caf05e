//! What every source that splits a scan into key ranges shares
//! (`WITH (parallelism = n)`, a cluster's parts): the ranges' conditions,
//! each part's request, and the merge of the parts' streams.

use std::future::Future;

use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use futures::StreamExt;

use crate::contract::{Dialect, ScanPart, ScanRequest, SourceError, SplitScan, TableDescription};

/// Batches buffered per stream between its task and the consumer.
const BUFFERED_BATCHES: usize = 2;

/// The column a split scan splits on, which a source that splits by key
/// ranges needs.
pub(crate) fn required_split(description: &TableDescription, split: Option<usize>) -> Result<usize, SourceError> {
    split.ok_or_else(|| SourceError::Query {
        code: Some("0A000".into()),
        message: format!("{} needs a column to split on", description.table),
    })
}

/// The split column and the table, quoted in `dialect`, and the scan's
/// filter as a `WHERE` clause (empty without one).
pub(crate) fn split_parts(
    dialect: &dyn Dialect,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
) -> Result<(String, String, String), SourceError> {
    let column = description.columns.get(split).ok_or_else(|| SourceError::Query {
        code: None,
        message: format!("{} has no column number {split}", description.table),
    })?;
    let table = format!(
        "{}.{}",
        dialect.quote_ident(&description.table.schema),
        dialect.quote_ident(&description.table.name)
    );
    let filter = (request.filter.as_deref())
        .map(|f| format!(" WHERE {f}"))
        .unwrap_or_default();
    Ok((dialect.quote_ident(&column.name), table, filter))
}

/// Conditions on `column` (quoted in the source's dialect) that split
/// `[min, max]` into up to `parts` ranges of about equal width. The first
/// and last are open-ended, so together they cover every value; `None`
/// when one range is all there is.
pub(crate) fn ranges(column: &str, min: i64, max: i64, parts: usize) -> Vec<Option<String>> {
    let span = i128::from(max) - i128::from(min) + 1;
    let parts = (parts.max(1) as i128).min(span.max(1));
    let bounds: Vec<i64> = (1..parts)
        .map(|i| (i128::from(min) + span * i / parts) as i64)
        .collect();
    (0..bounds.len() + 1)
        .map(|i| {
            let lower = i.checked_sub(1).map(|j| bounds[j]);
            match (lower, bounds.get(i)) {
                (None, None) => None,
                (None, Some(upper)) => Some(format!("{column} < {upper}")),
                (Some(lower), None) => Some(format!("{column} >= {lower}")),
                (Some(lower), Some(upper)) => Some(format!("{column} >= {lower} AND {column} < {upper}")),
            }
        })
        .collect()
}

/// The request of one range: the scan's filter and the range's condition.
pub(crate) fn part_request(request: &ScanRequest, condition: Option<String>) -> ScanRequest {
    let filter = match (&request.filter, condition) {
        (Some(filter), Some(condition)) => Some(format!("({filter}) AND {condition}")),
        (filter, condition) => condition.or_else(|| filter.clone()),
    };
    ScanRequest {
        filter,
        ..request.clone()
    }
}

/// Reads every part of `planned` here (a parallel scan in one process):
/// opens each with `open`, ends the split's hold once all have opened
/// their snapshots, and merges their streams.
pub(crate) async fn read_here<F, Opened>(planned: SplitScan, open: F) -> Result<SendableRecordBatchStream, SourceError>
where
    F: Fn(ScanPart) -> Opened,
    Opened: Future<Output = Result<SendableRecordBatchStream, SourceError>>,
{
    let mut streams = Vec::with_capacity(planned.parts.len());
    for part in planned.parts.clone() {
        streams.push(open(part).await?);
    }
    drop(planned);
    Ok(merge(streams))
}

/// One stream of the batches of `streams` (at least one, all of one
/// schema), merged as they arrive, each stream polled in its own task.
pub(crate) fn merge(streams: Vec<SendableRecordBatchStream>) -> SendableRecordBatchStream {
    let schema = streams[0].schema();
    let mut merged = RecordBatchReceiverStream::builder(schema, BUFFERED_BATCHES * streams.len());
    for mut stream in streams {
        let tx = merged.tx();
        merged.spawn(async move {
            while let Some(batch) = stream.next().await {
                if tx.send(Ok(batch?)).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
    }
    merged.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_value_once() {
        assert_eq!(
            ranges("id", 1, 100, 4),
            [
                Some("id < 26".to_owned()),
                Some("id >= 26 AND id < 51".to_owned()),
                Some("id >= 51 AND id < 76".to_owned()),
                Some("id >= 76".to_owned()),
            ]
        );
        assert_eq!(ranges("id", 5, 5, 8), [None], "one value, one range");
        assert_eq!(ranges("id", 1, 3, 16).len(), 3, "no empty ranges");
        let wide = ranges("id", i64::MIN, i64::MAX, 2);
        assert_eq!(wide, [Some("id < 0".to_owned()), Some("id >= 0".to_owned())]);
        assert_eq!(ranges("id", -10, 10, 1), [None]);
    }

    #[test]
    fn a_part_keeps_the_scan_filter_and_adds_its_range() {
        let scan = ScanRequest {
            filter: Some("a = 1 OR b = 2".into()),
            ..ScanRequest::default()
        };
        let part = part_request(&scan, Some("id < 5".into()));
        assert_eq!(part.filter.as_deref(), Some("(a = 1 OR b = 2) AND id < 5"));
        assert_eq!(part_request(&scan, None).filter, scan.filter);
        let part = part_request(&ScanRequest::default(), Some("id >= 5".into()));
        assert_eq!(part.filter.as_deref(), Some("id >= 5"));
    }
}
