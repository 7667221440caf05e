//! The file source holds no listing in memory: an instrumented store
//! records, at each read of a file, how many entries the listing that
//! handed it out had produced past it (listed but not yet processed), and
//! the biggest listing result returned whole. The same store counts the
//! GETs in flight at once, to show that files are read in parallel, and
//! no more of them than the connection allows.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::object_store::memory::InMemory;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::csv::CsvSyntax;
use super::source::open;
use super::{Backend, Location, SCHEMA};
use crate::contract::{ConnectFailure, ConnectFailureKind, FilesRead, ScanRequest, TableRef};

/// What the instrumented store saw.
#[derive(Debug, Default)]
struct Seen {
    /// Entries produced so far, per listing.
    produced: Vec<usize>,
    /// Per path: the listing that last produced it, and its position there.
    listed_at: HashMap<Path, (usize, usize)>,
    /// The most entries a listing had produced past a file when it was read.
    max_ahead: usize,
    /// The most objects one `list_with_delimiter` returned at once.
    max_whole: usize,
    reads: usize,
    /// GETs of whole objects or ranges (not HEADs) in flight now, and the
    /// most at once.
    gets: usize,
    max_gets: usize,
    /// The prefix of every listing, in order.
    lists: Vec<String>,
    /// GETs of a range that reaches the object's end: footer reads.
    tails: usize,
}

impl Seen {
    fn read(&mut self, location: &Path) {
        self.reads += 1;
        if let Some(&(listing, position)) = self.listed_at.get(location) {
            let ahead = self.produced[listing] - position - 1;
            self.max_ahead = self.max_ahead.max(ahead);
        }
    }
}

#[derive(Debug, Default)]
struct Instrumented {
    inner: InMemory,
    seen: Arc<Mutex<Seen>>,
    /// How long each GET takes, as over a network.
    latency: Duration,
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let tail = match &options.range {
            Some(GetRange::Suffix(_) | GetRange::Offset(_)) => true,
            Some(GetRange::Bounded(range)) => self.inner.head(location).await.is_ok_and(|m| range.end == m.size),
            None => false,
        };
        if tail && !head {
            self.seen.lock().unwrap().tails += 1;
        }
        {
            let mut seen = self.seen.lock().unwrap();
            seen.read(location);
            if !head {
                seen.gets += 1;
                seen.max_gets = seen.max_gets.max(seen.gets);
            }
        }
        if !head {
            tokio::time::sleep(self.latency).await;
        }
        let result = self.inner.get_opts(location, options).await;
        if !head {
            self.seen.lock().unwrap().gets -= 1;
        }
        result
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = {
            let mut seen = self.seen.lock().unwrap();
            seen.lists.push(prefix.map(ToString::to_string).unwrap_or_default());
            seen.produced.push(0);
            seen.produced.len() - 1
        };
        let seen = self.seen.clone();
        let prefix = prefix.cloned();
        self.inner
            .list(prefix.as_ref())
            .map_ok(move |object| {
                let mut seen = seen.lock().unwrap();
                let position = seen.produced[listing];
                seen.produced[listing] += 1;
                // A listing of the object's own path is how a reader finds
                // it, not a listing that hands files out.
                if prefix.as_ref() != Some(&object.location) {
                    seen.listed_at.insert(object.location.clone(), (listing, position));
                }
                object
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let result = self.inner.list_with_delimiter(prefix).await?;
        let mut seen = self.seen.lock().unwrap();
        seen.lists.push(prefix.map(ToString::to_string).unwrap_or_default());
        seen.max_whole = seen.max_whole.max(result.objects.len());
        // Returned whole: every object is produced at once.
        seen.produced.push(result.objects.len());
        let listing = seen.produced.len() - 1;
        for (position, object) in result.objects.iter().enumerate() {
            seen.listed_at.insert(object.location.clone(), (listing, position));
        }
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

struct Bucket(Arc<Instrumented>);

#[async_trait]
impl Backend for Bucket {
    fn location(&self) -> std::result::Result<Location, ConnectFailure> {
        Ok(Location {
            store: self.0.clone(),
            prefix: Path::from("landing"),
            url: "mem://bucket/".into(),
        })
    }

    fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure {
        ConnectFailure::new(ConnectFailureKind::Other, error.to_string())
    }
}

/// Files in the folder table `events`, more than one listing page.
const FILES: usize = 1200;

/// Files the scan reads at once.
const PARALLEL_READS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_processed_as_they_stream_whatever_the_file_count() {
    let store = Arc::new(Instrumented::default());
    for i in 0..FILES {
        let path = Path::from(format!("landing/events/part-{i:05}.csv"));
        store.put(&path, format!("id\n{i}\n").into()).await.unwrap();
    }
    let source = open(
        Arc::new(Bucket(store.clone())),
        None,
        PARALLEL_READS,
        Ok(CsvSyntax::default()),
    );

    let tables = source.tables(None).await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].size_bytes, Some(store_size(FILES)));
    let whole = store.seen.lock().unwrap().max_whole;
    assert!(whole <= 1, "a listing returned {whole} objects at once");

    let table = TableRef {
        schema: SCHEMA.into(),
        name: "events".into(),
    };
    let description = source.describe(&table).await.unwrap();
    let ahead = std::mem::take(&mut *store.seen.lock().unwrap()).max_ahead;
    assert!(
        ahead <= super::source::INFER_CHUNK,
        "DESCRIBE had {ahead} files listed but not read"
    );

    let request = ScanRequest::every_column(&description);
    let batches: Vec<_> = source
        .scan(&description, &request)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), FILES);
    assert_eq!(
        source.files_read(),
        Some(FilesRead {
            done: FILES as u64,
            total: FILES as u64
        })
    );
    let seen = store.seen.lock().unwrap();
    assert!(seen.reads >= FILES, "every file is read: {}", seen.reads);
    // Each of the files read at once and the one the listing holds next,
    // with room for a file whose task starts late on a loaded machine while
    // the others finish and free their slots: far from the whole listing.
    assert!(
        seen.max_ahead <= 4 * PARALLEL_READS + 1,
        "the scan had {} files listed but not read",
        seen.max_ahead
    );
}

/// The bytes of the first `n` files.
fn store_size(n: usize) -> i64 {
    (0..n).map(|i| format!("id\n{i}\n").len() as i64).sum()
}

fn events() -> TableRef {
    TableRef {
        schema: SCHEMA.into(),
        name: "events".into(),
    }
}

/// The ids a scan of `events` returns, sorted.
async fn scanned_ids(source: &dyn crate::contract::Source, limit: Option<usize>) -> Result<Vec<i64>, String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    let description = source.describe(&events()).await.map_err(|e| e.to_string())?;
    let mut request = ScanRequest::every_column(&description);
    request.columns = vec![0];
    request.limit = limit;
    let mut stream = source.scan(&description, &request).await.map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = batch.column(0).as_primitive::<Int64Type>();
        ids.extend((0..column.len()).map(|i| column.value(i)));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// A store of `files` CSV files in `events`, ids `10 * file ..` (ten rows
/// each), whose GETs take 30 ms.
async fn slow_store(files: usize) -> Arc<Instrumented> {
    let store = Arc::new(Instrumented {
        latency: Duration::from_millis(30),
        ..Instrumented::default()
    });
    for file in 0..files {
        let rows: String = (0..10).map(|i| format!("{}\n", file * 10 + i)).collect();
        let path = Path::from(format!("landing/events/part-{file:03}.csv"));
        store.put(&path, format!("id\n{rows}").into()).await.unwrap();
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_read_in_parallel_up_to_the_limit_each_once() {
    const FILES: usize = 12;
    for parallel_reads in [1, 3] {
        let store = slow_store(FILES).await;
        let source = open(
            Arc::new(Bucket(store.clone())),
            None,
            parallel_reads,
            Ok(CsvSyntax::default()),
        );
        let ids = scanned_ids(source.as_ref(), None).await.unwrap();
        assert_eq!(ids, (0..FILES as i64 * 10).collect::<Vec<_>>(), "every row once");
        assert_eq!(
            source.files_read(),
            Some(FilesRead {
                done: FILES as u64,
                total: FILES as u64
            })
        );
        let most = store.seen.lock().unwrap().max_gets;
        if parallel_reads == 1 {
            assert_eq!(most, 1, "one file at a time");
        } else {
            assert!(
                (2..=parallel_reads).contains(&most),
                "{most} GETs at once, allowed {parallel_reads}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_reads_one_file_at_a_time() {
    let store = slow_store(6).await;
    let source = open(Arc::new(Bucket(store.clone())), None, 4, Ok(CsvSyntax::default()));
    let ids = scanned_ids(source.as_ref(), Some(5)).await.unwrap();
    assert_eq!(ids.len(), 5);
    let seen = store.seen.lock().unwrap();
    assert_eq!(seen.max_gets, 1, "a preview reads no file it does not need");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_fails_the_scan_among_parallel_reads() {
    let store = slow_store(8).await;
    let source = open(Arc::new(Bucket(store.clone())), None, 4, Ok(CsvSyntax::default()));
    let description = source.describe(&events()).await.unwrap();
    // Listed after DESCRIBE: its id is not the integer the table has.
    store
        .put(&Path::from("landing/events/part-004b.csv"), "id\nnot a number\n".into())
        .await
        .unwrap();
    let request = ScanRequest::every_column(&description);
    let results: Vec<_> = source.scan(&description, &request).await.unwrap().collect().await;
    assert!(
        results.iter().any(|r| r.is_err()),
        "the bad file's error reaches the scan's consumer"
    );
}

/// Describing and scanning one table lists the prefix's top level and that
/// table's folder only, never the other tables' folders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_is_found_by_listing_its_own_folder_only() {
    let store = slow_store(3).await;
    for (path, data) in [
        ("landing/other/a.csv", "id\n1\n"),
        ("landing/more/b.json", "{\"id\": 1}\n"),
        ("landing/top.csv", "id\n1\n"),
        ("landing/events.csv", "id\n1\n"),
    ] {
        store.put(&Path::from(path), data.into()).await.unwrap();
    }
    let source = open(Arc::new(Bucket(store.clone())), None, 2, Ok(CsvSyntax::default()));
    let lists = || std::mem::take(&mut store.seen.lock().unwrap().lists);

    let description = source.describe(&events()).await.unwrap();
    // The folder `events`, not the file `events.csv` (which is `events.csv`).
    assert_eq!(description.columns[0].name, "id");
    let described = lists();
    let request = ScanRequest::every_column(&description);
    let batches: Vec<_> = source
        .scan(&description, &request)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 30);
    for (step, lists) in [("DESCRIBE", described), ("the scan", lists())] {
        assert!(
            lists.iter().all(|p| p == "landing" || p == "landing/events"),
            "{step} listed other folders: {lists:?}"
        );
        let folder = lists.iter().filter(|p| *p == "landing/events").count();
        assert_eq!(
            folder, 2,
            "{step} lists the table's folder to find it, then to read it: {lists:?}"
        );
    }

    // A table that does not exist still names the ones that do.
    let missing = TableRef {
        schema: SCHEMA.into(),
        name: "event".into(),
    };
    let error = source.describe(&missing).await.unwrap_err().to_string();
    assert!(error.contains("events"), "{error}");
}

/// A bucket of its own URL, whose footers no other test shares.
struct Own(Arc<Instrumented>, &'static str);

#[async_trait]
impl Backend for Own {
    fn location(&self) -> std::result::Result<Location, ConnectFailure> {
        Ok(Location {
            store: self.0.clone(),
            prefix: Path::from("landing"),
            url: self.1.into(),
        })
    }

    fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure {
        ConnectFailure::new(ConnectFailureKind::Other, error.to_string())
    }
}

/// A Parquet file of the ids `ids`.
fn parquet(ids: std::ops::Range<i64>) -> PutPayload {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::parquet::arrow::ArrowWriter;

    let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from_iter_values(ids)) as _)]).unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_files_footer_is_read_once_while_it_is_unchanged() {
    let store = Arc::new(Instrumented::default());
    for i in 0..3 {
        let path = Path::from(format!("landing/events/part-{i}.parquet"));
        store.put(&path, parquet(i * 10..i * 10 + 10)).await.unwrap();
    }
    let backend = Arc::new(Own(store.clone(), "mem://footers-once/"));
    let tails = || std::mem::take(&mut store.seen.lock().unwrap().tails);

    // `CREATE ETL JOB` describes the table: its schema and row count, from
    // one read of each footer.
    let source = open(backend.clone(), None, 2, Ok(CsvSyntax::default()));
    let description = source.describe(&events()).await.unwrap();
    assert_eq!(description.estimated_rows, Some(30));
    assert_eq!(tails(), 3, "one read per footer");

    // The next run, on a source of its own, describes and reads every row
    // without reading a footer again.
    let source = open(backend.clone(), None, 2, Ok(CsvSyntax::default()));
    assert_eq!(
        scanned_ids(source.as_ref(), None).await.unwrap(),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(tails(), 0, "the footers were kept");

    // A file that changed is read again, and only that one.
    store
        .put(&Path::from("landing/events/part-1.parquet"), parquet(10..25))
        .await
        .unwrap();
    let source = open(backend, None, 2, Ok(CsvSyntax::default()));
    let ids = scanned_ids(source.as_ref(), None).await.unwrap();
    assert_eq!(ids.len(), 35);
    assert_eq!(tails(), 1, "the changed file's footer only");
}

/// The ids a stream reads, sorted.
async fn ids_of(stream: datafusion::execution::SendableRecordBatchStream) -> Vec<i64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    let batches: Vec<_> = stream.try_collect().await.unwrap();
    let mut ids: Vec<i64> = (batches.iter())
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_parallelism_reads_that_many_files_at_once() {
    const FILES: usize = 12;
    let store = slow_store(FILES).await;
    let source = open(Arc::new(Bucket(store.clone())), None, 1, Ok(CsvSyntax::default()));
    assert!(source.scans_in_segments());
    let description = source.describe(&events()).await.unwrap();
    let request = ScanRequest::every_column(&description);
    let ids = ids_of(source.scan_segments(&description, &request, 4).await.unwrap()).await;
    assert_eq!(ids, (0..FILES as i64 * 10).collect::<Vec<_>>(), "every row once");
    let most = store.seen.lock().unwrap().max_gets;
    assert!((2..=4).contains(&most), "{most} GETs at once, the job's parallelism 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_deals_each_file_to_one_part_which_reads_it_without_listing() {
    const FILES: usize = 11;
    let store = slow_store(FILES).await;
    let source = open(Arc::new(Bucket(store.clone())), None, 2, Ok(CsvSyntax::default()));
    assert!(source.supports_split_scan() && source.splits_itself());
    let description = source.describe(&events()).await.unwrap();
    let request = ScanRequest::every_column(&description);
    let split = source.split_scan(&description, &request, None, 4).await.unwrap();
    assert_eq!(split.parts.len(), 4);
    let lists = || std::mem::take(&mut store.seen.lock().unwrap().lists);
    lists();
    let mut all = Vec::new();
    for part in &split.parts {
        let ids = ids_of(
            (source
                .scan_part(&description, &part.request, part.snapshot.as_deref())
                .await)
                .unwrap(),
        )
        .await;
        assert!(
            (20..=30).contains(&ids.len()),
            "two or three files a part: {}",
            ids.len()
        );
        all.extend(ids);
    }
    all.sort_unstable();
    assert_eq!(all, (0..FILES as i64 * 10).collect::<Vec<_>>(), "every row once");
    assert_eq!(lists(), Vec::<String>::new(), "the parts listed nothing");
    // A file uploaded after the split is in no part.
    store
        .put(&Path::from("landing/events/part-999.csv"), "id\n99999\n".into())
        .await
        .unwrap();
    let part = &split.parts[0];
    let again = ids_of(
        (source
            .scan_part(&description, &part.request, part.snapshot.as_deref())
            .await)
            .unwrap(),
    )
    .await;
    assert!(!again.contains(&99999), "parts read the files listed at the split");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_deals_only_the_files_its_filter_can_keep() {
    let store = slow_store(12).await;
    let source = open(Arc::new(Bucket(store.clone())), None, 2, Ok(CsvSyntax::default()));
    let description = source.describe(&events()).await.unwrap();
    let read = async |filter: &str| {
        let request = ScanRequest {
            filter: Some(filter.to_owned()),
            ..ScanRequest::every_column(&description)
        };
        let split = source.split_scan(&description, &request, None, 4).await.unwrap();
        let mut ids = Vec::new();
        for part in &split.parts {
            let stream = source
                .scan_part(&description, &part.request, part.snapshot.as_deref())
                .await;
            ids.extend(ids_of(stream.unwrap()).await);
        }
        ids.sort_unstable();
        (split.parts.len(), ids)
    };
    // By file: only the two files it names are dealt, one a part.
    let (parts, ids) = read(r#""_file" LIKE '%part-003.csv' OR "_file" LIKE '%part-007.csv'"#).await;
    assert_eq!(parts, 2, "no part for files the filter excludes");
    assert_eq!(ids, (30..40).chain(70..80).collect::<Vec<_>>());
    // By a column of the files: every file is dealt, the rows filtered.
    let (parts, ids) = read(r#""id" >= 115"#).await;
    assert_eq!(parts, 4);
    assert_eq!(ids, (115..120).collect::<Vec<_>>());
}
