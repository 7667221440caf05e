//! Each namespace's warehouse: `.namespaces/<name>` under the server's.
//! No table name starts with a dot, so no table of the default namespace
//! can collide with the folder.

use datafusion::object_store::{self as object_store, path::Path};
use futures::TryStreamExt;

use super::LocalWarehouse;
use crate::contract::DestinationError;

/// The folder, under the default namespace's warehouse, of the others'.
const NAMESPACES_DIR: &str = ".namespaces";

impl LocalWarehouse {
    /// Namespace `name`'s warehouse, in the same directory or bucket.
    pub fn for_namespace(&self, name: &str) -> Result<Self, DestinationError> {
        let warehouse = match &self.disk {
            Some(disk) => Self::open_dir(&disk.root().join(NAMESPACES_DIR).join(name))?,
            None => {
                let warehouse = Self::new(self.store.clone(), self.namespace_prefix(name));
                match &self.shared.location {
                    Some(location) => warehouse.shared_at(format!("{location}/{NAMESPACES_DIR}/{name}")),
                    None => warehouse,
                }
            }
        };
        Ok(warehouse.with_file_limits(self.limits))
    }

    /// Deletes every file of namespace `name`'s warehouse (and, on a
    /// local disk, its folder).
    pub async fn drop_namespace(&self, name: &str) -> Result<(), DestinationError> {
        if let Some(disk) = &self.disk {
            let dir = disk.root().join(NAMESPACES_DIR).join(name);
            return match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                }
                .into()),
                _ => Ok(()),
            };
        }
        let prefix = self.namespace_prefix(name);
        let files: Vec<Path> = (self.store.list(Some(&prefix)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        self.delete_all(files).await
    }

    fn namespace_prefix(&self, name: &str) -> Path {
        self.prefix.clone().join(NAMESPACES_DIR).join(name)
    }
}
