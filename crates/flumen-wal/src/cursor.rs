//! Persisted reader cursors: `cursors/<reader>.cursor` holds the next sequence number the reader
//! needs, as decimal text. Written to a temporary file and renamed over the old one, so a crash
//! leaves either the old or the new cursor, never a torn one.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::WalError;

/// A reader's name is an output's name (letters, digits, `_`, `-`, `.`, not starting with a
/// dot), or such a name after `@` for flumen's own readers (the store's `@store`), which no
/// output can be named.
fn cursor_path(dir: &Path, name: &str) -> Result<PathBuf, WalError> {
    let name_part = name.strip_prefix('@').unwrap_or(name);
    let valid = !name_part.is_empty()
        && name_part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name_part.starts_with('.');
    if !valid {
        return Err(WalError::Config(format!(
            "reader name {name:?} must be letters, digits, '_', '-' or '.', after an optional '@'"
        )));
    }
    Ok(dir.join(format!("{name}.cursor")))
}

pub(crate) fn load(dir: &Path, name: &str) -> Result<Option<u64>, WalError> {
    let path = cursor_path(dir, name)?;
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(seq) => Ok(Some(seq)),
            Err(_) => {
                // Cursors are renamed into place without an fsync: after a power loss one may
                // be empty. Starting from the oldest record redelivers rather than loses.
                tracing::warn!(
                    message = "Unreadable cursor file; the reader starts at the oldest record.",
                    path = %path.display(),
                );
                Ok(Some(0))
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io(&path, e)),
    }
}

/// Every persisted cursor in `dir`, by reader name.
pub(crate) fn load_all(dir: &Path) -> Result<Vec<(String, u64)>, WalError> {
    let mut cursors = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".cursor")) else {
            continue;
        };
        if let Some(seq) = load(dir, name)? {
            cursors.push((name.to_owned(), seq));
        }
    }
    Ok(cursors)
}

pub(crate) fn store(dir: &Path, name: &str, next_seq: u64) -> Result<(), WalError> {
    let path = cursor_path(dir, name)?;
    let tmp = path.with_extension("cursor.tmp");
    fs::write(&tmp, format!("{next_seq}\n")).map_err(|e| WalError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| WalError::io(&path, e))
}

pub(crate) fn retain(dir: &Path, keep: &[&str]) -> Result<(), WalError> {
    for entry in fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".cursor")) else {
            continue;
        };
        if !keep.contains(&name) {
            tracing::info!(
                message = "Dropping the cursor of a removed output.",
                output = name
            );
            fs::remove_file(entry.path()).map_err(|e| WalError::io(&entry.path(), e))?;
        }
    }
    Ok(())
}
