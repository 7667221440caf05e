//! Durable commits in a local-directory warehouse. object_store's local
//! backend writes, renames and links files without `fsync`, so after a power
//! cut a manifest could be missing or torn while the catalog, synced on
//! every write, already holds the watermark it recorded. A commit therefore
//! syncs the files it wrote and every directory on their way up to the
//! warehouse root before it returns.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{self};

/// The local directory behind a warehouse, to sync what commits write.
#[derive(Debug, Clone)]
pub(super) struct LocalDisk {
    store: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl LocalDisk {
    pub fn new(store: Arc<LocalFileSystem>, root: PathBuf) -> Self {
        Self { store, root }
    }

    /// The warehouse's directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Syncs `files` to disk, then the directories that hold them and
    /// theirs, up to the warehouse root, so that the files and their names
    /// survive a power cut.
    pub async fn sync(&self, files: &[Path]) -> Result<(), object_store::Error> {
        let files = files
            .iter()
            .map(|file| self.store.path_to_filesystem(file))
            .collect::<Result<Vec<_>, _>>()?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sync_files_and_parents(&root, &files))
            .await
            .map_err(|e| generic(std::io::Error::other(e)))?
            .map_err(generic)
    }
}

fn sync_files_and_parents(root: &std::path::Path, files: &[PathBuf]) -> std::io::Result<()> {
    let mut dirs = BTreeSet::new();
    for file in files {
        sync_path(file)?;
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(root)) {
            dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    // Deepest first: a directory's entry in its parent is synced after it.
    for dir in dirs.iter().rev() {
        sync_path(dir)?;
    }
    Ok(())
}

/// `fsync` of one file or directory.
fn sync_path(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    #[cfg(test)]
    SYNCED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(path.to_path_buf());
    Ok(())
}

fn generic(source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(source),
    }
}

/// Every path synced by this process, for tests.
#[cfg(test)]
pub(super) static SYNCED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
