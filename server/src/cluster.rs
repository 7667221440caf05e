//! The cluster flags and commands of the command line: `sluice serve
//! --cluster`, `sluice scheduler` and `sluice executor`, run by the
//! [`ClusterSupport`] of the `cluster` build (`docs/cluster.md`).

use std::path::{Path, PathBuf};

use sluice_catalog::MasterKey;
use sluice_engine::jobs::cluster::{ClusterHandle, ClusterSupport};

use crate::startup_error::StartupError;

/// What a build without the `cluster` feature says to a cluster flag.
pub const NOT_BUILT: &str = "this sluice was built without the cluster feature; build it with \
                             `cargo build --release --features cluster` to use --cluster, `sluice scheduler` \
                             and `sluice executor`";

/// `sluice serve --cluster ...`.
#[derive(Debug, Clone)]
pub struct ServeCluster {
    /// The scheduler, `df://host:port`.
    pub url: String,
    /// The cluster key's file; created (mode 0600) when missing.
    pub key_file: PathBuf,
    /// Tasks of a run whose job sets no `parallelism`.
    pub tasks: usize,
}

/// The server's cluster, connected; a local warehouse is refused, since
/// executors cannot write into it.
pub async fn connect(
    support: Option<&dyn ClusterSupport>,
    cluster: &ServeCluster,
    warehouse: Option<&str>,
) -> Result<ClusterHandle, StartupError> {
    let support = support.ok_or_else(|| StartupError::Config(NOT_BUILT.into()))?;
    let shared = warehouse.is_some_and(|location| {
        ["s3://", "gs://", "az://", "abfs://", "abfss://", "azure://", "https://"]
            .iter()
            .any(|scheme| location.starts_with(scheme))
    });
    if !shared {
        return Err(StartupError::Config(
            "--cluster needs a warehouse every executor can write to: give --warehouse s3://bucket/prefix, \
             gs://bucket/prefix or az://container/prefix (a local directory cannot be shared)"
                .into(),
        ));
    }
    let key = key(&cluster.key_file, true)?;
    let client = (support.connect(&cluster.url).await)
        .map_err(|e| StartupError::Config(format!("--cluster {}: {e}", cluster.url)))?;
    Ok(ClusterHandle {
        cluster: client,
        key,
        tasks: cluster.tasks.max(1),
    })
}

/// The cluster key: `SLUICE_CLUSTER_KEY` (64 hex digits), else the key
/// file, created when missing if `create` (the server's), else required
/// (an executor's copy).
pub fn key(file: &Path, create: bool) -> Result<MasterKey, StartupError> {
    if let Some(hex) = std::env::var("SLUICE_CLUSTER_KEY").ok().filter(|k| !k.is_empty()) {
        return Ok(MasterKey::from_hex(&hex)?);
    }
    if !create && !file.exists() {
        return Err(StartupError::Config(format!(
            "the cluster key file {} does not exist: copy the server's (DATA_DIR/cluster.key) to every executor, \
             or set SLUICE_CLUSTER_KEY",
            file.display()
        )));
    }
    Ok(MasterKey::load_or_create_file(file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ServeCluster {
        ServeCluster {
            url: "df://127.0.0.1:1".into(),
            key_file: PathBuf::from("/nonexistent/cluster.key"),
            tasks: 4,
        }
    }

    #[tokio::test]
    async fn a_build_without_the_feature_says_how_to_get_it() {
        let error = connect(None, &cluster(), Some("s3://b/p")).await.err().unwrap();
        assert!(error.to_string().contains("--features cluster"), "{error}");
    }

    #[test]
    fn an_executor_without_the_key_file_is_told_where_it_comes_from() {
        let dir = tempfile::tempdir().unwrap();
        let error = key(&dir.path().join("cluster.key"), false).err().unwrap();
        assert!(error.to_string().contains("copy the server's"), "{error}");
        assert!(!dir.path().join("cluster.key").exists());
        key(&dir.path().join("cluster.key"), true).unwrap();
        key(&dir.path().join("cluster.key"), false).unwrap();
    }
}
