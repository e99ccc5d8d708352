//! Feeds arbitrary text (lossy UTF-8) to `flumen_fluentd::Loader::parse` — the Fluentd
//! configuration parser, with a fixed environment and host name; `@include`s are kept as
//! parameters, so no file is read.
//!
//! Beyond "no panic":
//! - an error's line is within the text (at most one past its last line) and its column is at
//!   least 1, and it displays;
//! - every element and parameter that parses has a position within the text (elements from
//!   line 1; the root at 0), nested elements come after their parent, and parsing the same text
//!   again gives the same tree.

#![no_main]

use std::path::Path;

use flumen_fluentd::{Element, Loader};
use libfuzzer_sys::fuzz_target;

fn loader() -> Loader {
    Loader::new()
        .env(|name| match name {
            "HOME" => Some("/home/fuzz".to_owned()),
            "SERVERENGINE_WORKER_ID" => Some("0".to_owned()),
            _ => None,
        })
        .hostname("fuzz-host")
}

fn check(element: &Element, lines: usize) {
    for param in &element.params {
        assert!(
            param.line >= 1 && param.line <= lines,
            "param line {} of {lines}",
            param.line
        );
        assert!(param.column >= 1);
    }
    for child in &element.elements {
        assert!(
            child.line >= 1 && child.line <= lines,
            "element line {} of {lines}",
            child.line
        );
        assert!(child.line > element.line || element.line == 0);
        assert!(child.column >= 1);
        check(child, lines);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.split('\n').count();
    let loader = loader();
    match loader.parse(&text, Path::new("fuzz.conf")) {
        Ok(config) => {
            check(&config.root, lines);
            let again = loader
                .parse(&text, Path::new("fuzz.conf"))
                .expect("parses twice");
            assert_eq!(config, again);
        }
        Err(error) => {
            assert!(
                error.line >= 1 && error.line <= lines,
                "error line {} of {lines}",
                error.line
            );
            assert!(error.column >= 1);
            let _ = error.to_string();
        }
    }
});
