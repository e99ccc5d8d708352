//! Embeds the web page: every file under `assets/` becomes an entry of a table that
//! `src/api/page.rs` serves, with an ETag made of its content's hash. A file added to the folder
//! is served without naming it anywhere else, and `cargo build` alone makes a binary with the
//! page in it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    // A folder: cargo looks at every file under it for changes.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file
            .strip_prefix(&root)
            .expect("under assets/")
            .to_str()
            .expect("asset names are UTF-8")
            .replace('\\', "/");
        writeln!(
            table,
            "    EmbeddedAsset {{ path: {name:?}, bytes: include_bytes!({file:?}), etag: \"\\\"{:016x}\\\"\" }},",
            fnv1a(&bytes),
        )
        .expect("writing to a String");
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("page_assets.rs");
    std::fs::write(out, table).expect("writing the asset table");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("reading assets/").path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// FNV-1a, 64 bits: enough to tell one version of a file from another in an ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
