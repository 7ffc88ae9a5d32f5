//! A Maildir as a source: messages are read from `new/` and moved to `cur/` (flagged seen)
//! once stored. A crash between the commit and the move leaves the file in `new/`; it is
//! read again next time and recognised by its content hash, so nothing is stored twice.

use std::io;
use std::path::{Path, PathBuf};

use super::SourceMessage;
use crate::config::Role;

pub struct Maildir {
    pub name: String,
    pub role: Role,
    pub path: PathBuf,
}

impl Maildir {
    /// Files waiting in `new/`, oldest first (Maildir names start with the delivery time).
    pub fn waiting(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(self.path.join("new"))? {
            let entry = entry?;
            let dotfile = entry.file_name().to_string_lossy().starts_with('.');
            if !dotfile && entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    pub fn read(&self, file: &Path) -> io::Result<SourceMessage> {
        Ok(SourceMessage {
            mailbox: self.name.clone(),
            role: self.role,
            key: unique_name(file),
            raw: std::fs::read(file)?,
            oversize: None,
            history: false,
        })
    }

    /// Moves a stored message to `cur/` with the Seen flag.
    pub fn acknowledge(&self, file: &Path) -> io::Result<()> {
        let target = self
            .path
            .join("cur")
            .join(format!("{}:2,S", unique_name(file)));
        std::fs::create_dir_all(self.path.join("cur"))?;
        std::fs::rename(file, target)
    }
}

/// The part of a Maildir file name that stays the same when flags are added.
fn unique_name(file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split_once(":2,") {
        Some((unique, _)) => unique.to_string(),
        None => name,
    }
}
