//! One daemon per database. Two would read the same mailboxes and deliver the same outbox
//! rows, so each mail would go out twice. The lock is an advisory `flock` on
//! `<database>.lock`, held for the life of the process: the kernel drops it when the
//! process ends however it ends, so a crash never leaves a stale lock behind. The file
//! holds the owner's pid, for the message that refuses a second daemon.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{database} is in use by another maildesk (pid {pid}, lock {lock}); \
         stop it first (systemctl stop maildesk, or kill {pid}), or point this one at another database"
    )]
    Held {
        database: String,
        pid: String,
        lock: String,
    },
    #[error("cannot lock {lock}: {error}")]
    Io { lock: String, error: std::io::Error },
}

/// Held while the daemon runs; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

/// The lock file of `database`.
pub fn lock_file(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DatabaseLock {
    /// Takes the lock at once or says who holds it; never waits.
    pub fn acquire(database: &Path) -> Result<DatabaseLock, LockError> {
        let path = lock_file(database);
        let io = |error| LockError::Io {
            lock: path.display().to_string(),
            error,
        };
        // Not truncated on open: the file holds the running daemon's pid until we own it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    database: database.display().to_string(),
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                    lock: path.display().to_string(),
                });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DatabaseLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_owner_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("desk.db");
        let first = DatabaseLock::acquire(&db).unwrap();
        let error = DatabaseLock::acquire(&db).unwrap_err().to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        assert!(error.contains("desk.db.lock"), "{error}");
        drop(first);
        DatabaseLock::acquire(&db).unwrap();
    }
}
