//! The server directories whose files connection options may name.
//!
//! Options such as a local connection's `path` or BigQuery's
//! `credentials_file` are read by the server, as its OS user; a client could
//! otherwise make it read any file it can. Each such path must lie inside
//! one of the allowed directories, compared after resolving `..` and
//! symlinks so neither can escape them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use sluice_catalog::OptionValue;

/// Connection options whose value is a path the server reads.
pub const PATH_OPTIONS: [&str; 4] = ["path", "credentials_file", "sslrootcert", "ssl_ca"];

/// A path option outside the allowed directories.
#[derive(Debug, thiserror::Error)]
#[error(
    "permission denied: option {option} '{path}' is outside the directories this server may read; start the server with its directory in --allowed-paths"
)]
pub struct PathNotAllowed {
    pub option: String,
    pub path: String,
}

/// The directories connection options may name files in.
#[derive(Debug, Clone)]
pub struct AllowedPaths {
    /// Resolved directories; `None` allows every path.
    dirs: Option<Vec<PathBuf>>,
}

impl AllowedPaths {
    /// Allows the files under `dirs` (relative ones against the working
    /// directory; they need not exist yet).
    pub fn new(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        Self {
            dirs: Some(dirs.into_iter().map(|dir| resolve(&dir)).collect()),
        }
    }

    /// Allows every path (for embedding and tests).
    pub fn any() -> Self {
        Self { dirs: None }
    }

    /// Checks `path`, the value of `option`.
    pub fn check(&self, option: &str, path: &str) -> Result<(), PathNotAllowed> {
        let Some(dirs) = &self.dirs else {
            return Ok(());
        };
        let resolved = resolve(Path::new(path));
        if dirs.iter().any(|dir| resolved.starts_with(dir)) {
            Ok(())
        } else {
            Err(PathNotAllowed {
                option: option.into(),
                path: path.into(),
            })
        }
    }

    /// Checks every path option among a connection's `options`.
    pub fn check_options(&self, options: &BTreeMap<String, OptionValue>) -> Result<(), PathNotAllowed> {
        for option in PATH_OPTIONS {
            if let Some(OptionValue::Text(path)) = options.get(option) {
                self.check(option, path)?;
            }
        }
        Ok(())
    }
}

/// `path` made absolute with symlinks and `..` resolved: the longest
/// existing ancestor is canonicalised and the rest appended lexically.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let mut resolved = loop {
        if let Ok(canonical) = existing.canonicalize() {
            break canonical;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            // `..` at the end of a missing path, or the root itself.
            _ => match existing.parent() {
                Some(parent) => {
                    rest.push("..".into());
                    existing = parent;
                }
                None => break existing.to_owned(),
            },
        }
    };
    for part in rest.iter().rev() {
        match Path::new(part).components().next() {
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            _ => resolved.push(part),
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_passes_and_escapes_are_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let allowed = root.path().join("allowed");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(allowed.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, allowed.join("link")).expect("symlink");
        let paths = AllowedPaths::new([allowed.clone()]);
        let text = |p: PathBuf| p.display().to_string();

        assert!(paths.check("path", &text(allowed.join("sub"))).is_ok());
        assert!(paths.check("path", &text(allowed.join("not/yet/there"))).is_ok());
        for escape in [
            outside.clone(),
            allowed.join("link"),
            allowed.join("link/file.csv"),
            allowed.join("../outside"),
            allowed.join("sub/../../outside"),
            allowed.join("missing/../../outside"),
            PathBuf::from("/etc/passwd"),
        ] {
            let refused = paths.check("path", &text(escape.clone())).expect_err("outside");
            assert_eq!(refused.option, "path", "{}", escape.display());
        }
        assert!(AllowedPaths::any().check("path", "/etc/passwd").is_ok());
    }
}
