//! Whether the daemon could use the database, found out without changing it: `check`
//! and `run` refuse up front what [`super::Store::open`] or the first commit would fail on
//! later, such as a database the daemon's user cannot write or one from a newer maildesk.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::migrations::LATEST_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("database {} is not writable: {}: {source}", path.display(), at.display())]
    NotWritable {
        path: PathBuf,
        /// What could not be written: the database's directory or one of its files.
        at: PathBuf,
        source: std::io::Error,
    },
    #[error("database {} cannot be read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {} has schema version {found}, newer than this maildesk understands ({supported})",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

impl ProbeError {
    /// What the admin can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ProbeError::NotWritable { .. } => {
                "run maildesk as the user that owns the database, or give that user write access to it and to its directory (SQLite writes -wal and -shm files beside it)"
            }
            ProbeError::Unreadable { .. } => {
                "point `database` at a maildesk database, or at a new file"
            }
            ProbeError::TooNew { .. } => {
                "run the newer maildesk that wrote it, or restore a backup made by this version"
            }
        }
    }
}

/// Checks that `path` (existing or not) can be written by this process and, if it
/// exists, is not from a newer maildesk. Opens nothing for writing through SQLite: the
/// database and its WAL stay exactly as they were.
pub fn probe(path: &Path) -> Result<(), ProbeError> {
    let not_writable = |at: &Path| {
        let at = at.to_path_buf();
        move |source| ProbeError::NotWritable {
            path: path.to_path_buf(),
            at,
            source,
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // What really fails counts, not the permission bits: a read-only file system, another
    // owner, a directory where a file should be. So write: a file created and removed.
    let name = path
        .file_name()
        .map_or_else(|| "database".into(), |n| n.to_string_lossy().into_owned());
    let trial = dir.join(format!(".{name}.probe-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&trial)
        .map_err(not_writable(dir))?;
    let _ = std::fs::remove_file(&trial);
    if !path.exists() {
        return Ok(());
    }
    let files = [
        path.to_path_buf(),
        suffixed(path, "-wal"),
        suffixed(path, "-shm"),
    ];
    for file in files.iter().filter(|f| f.exists()) {
        OpenOptions::new()
            .write(true)
            .open(file)
            .map_err(not_writable(file))?;
    }
    let unreadable = |source| ProbeError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(unreadable)?;
    let found: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unreadable)?;
    if found > LATEST_VERSION {
        return Err(ProbeError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: LATEST_VERSION,
        });
    }
    Ok(())
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_or_current_database_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk.db");
        probe(&path).unwrap();
        assert!(!path.exists(), "the probe creates no database");
        drop(crate::store::Store::open(&path).unwrap());
        probe(&path).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("probe"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99;")
            .unwrap();
        let error = probe(&path).unwrap_err();
        assert!(
            matches!(error, ProbeError::TooNew { found: 99, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_directory_in_place_of_the_database_is_not_writable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk.db");
        std::fs::create_dir(&path).unwrap();
        let error = probe(&path).unwrap_err();
        let expected = format!(
            "database {0} is not writable: {0}: Is a directory (os error 21)",
            path.display()
        );
        assert_eq!(error.to_string(), expected);
    }
}
