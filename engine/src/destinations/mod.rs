//! The engine's own destination, the local Parquet warehouse
//! ([`LocalWarehouse`], readable with SQL through [`WarehouseSchema`]), and
//! what the engine wraps around any
//! [`Destination`](crate::contract::Destination): secret scrubbing, schema comparison.

mod compare;
pub(crate) mod dictionary;
mod scrubbed;
mod warehouse;

pub use scrubbed::ScrubbedDestination;
pub use warehouse::{
    CURRENT_VIEW_SUFFIX, FileLimits, LocalWarehouse, SharedWriter, TableShare, WarehouseSchema, display_location,
};
