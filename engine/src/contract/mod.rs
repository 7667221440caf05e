//! The contract between the engine and its connectors: the traits a
//! connection type implements and the types and errors they exchange.
//!
//! - [`ConnectionType`] and its [`Driver`]: a [`Connector`] that tests a
//!   connection live, and factories of its [`Source`], [`Destination`]
//!   and [`ChangeSource`];
//! - [`Source`] and its SQL [`Dialect`]: schemas, tables, descriptions and
//!   scans as Arrow streams (or whole files, [`ScanPiece`]);
//! - [`Destination`] and [`LoadTransaction`]: tables, and loads published
//!   atomically with their watermark;
//! - [`ChangeSource`] and [`ChangeStream`]: a source's change log;
//! - [`OptionSpec`] and [`ResolvedOptions`]: a type's options and their
//!   values;
//! - typed errors that say themselves what they mean: [`ConnectFailure`]
//!   (its kind carries the SQLSTATE, hint and whether to retry),
//!   [`SourceError`], [`DestinationError`] (a remote service's failure
//!   carries a [`RemoteDiagnosis`]) and [`CdcError`].
//!
//! This module is a leaf: it names no other engine module but the plain
//! data of [`type_mapping`](crate::type_mapping), [`schedule`](crate::schedule)
//! and [`scrub`](crate::scrub) (`scripts/module-deps.py` checks it), so a
//! connector folder depends on it and on nothing of the engine's jobs,
//! connections or server.

mod cdc_error;
mod change_source;
mod connector;
mod deal;
mod destination;
mod failure;
mod gtid;
mod nearby;
mod options;
mod position;
mod shared_load;
mod shipping;
mod source;
mod table_options;
mod whole_file;

pub use cdc_error::CdcError;
pub use change_source::{Capture, ChangeEvent, ChangeSource, ChangeStream, Retention};
pub use connector::{
    Category, ChangeSourceFactory, ConnectionType, Connector, DestinationDriver, DestinationFactory, Driver,
    SourceFactory, TypeStatus,
};
pub use deal::deal_by_size;
pub use destination::{
    ChangeSpec, CommitReport, CommitState, Destination, DestinationError, LoadTransaction, RemoteDiagnosis, TableSetup,
    TableSpec, WriteMode,
};
pub use failure::{ConnectFailure, ConnectFailureKind};
pub(crate) use failure::{error_chain, network_failure_kind, request_failure};
pub use gtid::GtidState;
pub use nearby::closest;
pub use options::{MAX_CONCURRENT_RUNS, OptionKind, OptionSpec, ResolvedOptions};
pub use position::Position;
pub use shared_load::{PartWriter, PartWriterFactory, SharedStore, SharedTarget, WrittenFile};
pub use shipping::{Activity, Busy, LoadJobs, ShipProgress, Shipped};
pub use source::{
    ColumnInfo, CommitHorizon, Dialect, FILE_COLUMN, FILE_MODIFIED_TYPE, FILE_URL_TYPE, FilesRead, OpenTransaction,
    QueryBuilder, ScanPart, ScanRequest, Segment, Source, SourceError, SourceInstant, SplitScan, SqlFamily,
    TableDescription, TableInfo, TableKind, TableRef, TextRows, excerpt, integer_literal, quote_with, scan_sql,
};
pub use table_options::{SettingValue, TableOption, TableOptions, option_sql};
pub use whole_file::{PieceStream, ScanPiece, WholeFile, footer_columns, parquet_footer, same_columns};
