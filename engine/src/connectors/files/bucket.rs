//! The driver parts every bucket type shares: its live test and its source
//! are the file source's, over the backend its options build.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::Backend;
use crate::contract::{ConnectFailure, Connector, ResolvedOptions, Source};

/// A backend built from a connection's options, bounding its calls by
/// `timeout`.
pub(crate) trait FromOptions: Backend + Sized + 'static {
    fn from_options(options: &ResolvedOptions, timeout: Duration) -> Self;
}

/// The [`Connector`] of a bucket type: [`super::test`] over backend `B`.
pub(crate) struct BucketConnector<B>(pub(crate) PhantomData<fn() -> B>);

#[async_trait]
impl<B: FromOptions> Connector for BucketConnector<B> {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        super::check_options(options)?;
        super::test(&B::from_options(options, timeout), timeout).await
    }
}

/// Opens a connection of a bucket type as a source over backend `B`.
pub(crate) fn open_bucket<B: FromOptions>(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    super::open(
        Arc::new(B::from_options(options, timeout)),
        options.text(super::TABLES.name),
        super::parallel_reads(options),
        super::csv::CsvSyntax::from_options(options),
    )
}
