//! Dead letters: what an output could not deliver within its retry budget, or what its
//! destination refused for good, is appended to `<data_dir>/dead-letter/<output>.jsonl` — one
//! JSON object per event with the error — and counted, never silently dropped.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::{Delivery, render_event};

/// The dead-letter file of one output.
#[derive(Debug)]
pub struct DeadLetter {
    path: PathBuf,
}

impl DeadLetter {
    /// The dead-letter file for output `name` under `data_dir`.
    pub fn new(data_dir: &std::path::Path, name: &str) -> Self {
        Self {
            path: data_dir.join("dead-letter").join(format!("{name}.jsonl")),
        }
    }

    /// Appends every event of `delivery` with the reason it was given up on.
    pub fn write(&self, delivery: &Delivery, error: &str) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut out = Vec::new();
        let mut line = Vec::new();
        let error_json = serde_json::to_string(error).expect("string");
        for (tag, entry) in delivery.events() {
            line.clear();
            render_event(&mut line, tag, &entry);
            if line.is_empty() {
                continue;
            }
            // {"tag":…} → {"error":"…","tag":…}
            out.extend_from_slice(b"{\"error\":");
            out.extend_from_slice(error_json.as_bytes());
            out.push(b',');
            out.extend_from_slice(&line[1..]);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&out)?;
        file.sync_data()
    }

    /// Where the file is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}
