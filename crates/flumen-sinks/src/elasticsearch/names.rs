//! Index and data stream names: templates of the event's time (strftime, UTC), its fields and
//! its tag, and the rules Elasticsearch holds an index name to.

use flumen_event::EventTime;
use flumen_event::record::Record;

use crate::template::field::FieldTemplate;
use crate::template::{Strftime, Token, split_placeholders};

/// The characters Elasticsearch refuses in an index name (and OpenSearch alike).
const REFUSED_CHARACTERS: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

/// The longest index name, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// A name template: text whose strftime specifiers (`%Y.%m.%d`) are the event's time in UTC,
/// and `{{…}}` placeholders as [`FieldTemplate`] reads them (`{{service}}`, `{{tag}}`,
/// `{{a|b|"none"}}`). The specifiers apply to the template's own text only: a `%` in a field's
/// value is kept as it is.
#[derive(Debug, Clone)]
pub(crate) struct NameTemplate {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    /// Text without specifiers.
    Text(String),
    /// Text with specifiers, parsed once.
    Time(Strftime),
    /// One placeholder: what it reads, and how it was written (for errors).
    Field(FieldTemplate, String),
}

impl NameTemplate {
    /// Parses `template`; the error says what is wrong.
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        if template.trim().is_empty() {
            return Err("empty".into());
        }
        let mut pieces = Vec::new();
        for token in split_placeholders(template) {
            match token? {
                Token::Text("") => {}
                Token::Text(text) if text.contains('%') => {
                    pieces.push(Piece::Time(Strftime::parse(text)?));
                }
                Token::Text(text) => pieces.push(Piece::Text(text.to_owned())),
                Token::Placeholder(inner) => {
                    let written = format!("{{{{{}}}}}", inner.trim());
                    pieces.push(Piece::Field(FieldTemplate::parse(&written)?, written));
                }
            }
        }
        Ok(Self { pieces })
    }

    /// True when it reads record fields (the record must be decoded to render it).
    pub(crate) fn reads_fields(&self) -> bool {
        self.pieces.iter().any(|piece| match piece {
            Piece::Field(template, _) => template.fields().next().is_some(),
            _ => false,
        })
    }

    /// Appends the name for one event to `out`, lowercased (Elasticsearch refuses upper case
    /// in names). A placeholder none of whose alternatives has a value is an error naming it.
    pub(crate) fn render(
        &self,
        out: &mut String,
        tag: &str,
        time: EventTime,
        record: &Record,
    ) -> Result<(), String> {
        let start = out.len();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Time(pattern) => pattern.write(out, time),
                Piece::Field(template, written) => {
                    let value = template.render(tag, time, record).next().ok_or_else(|| {
                        format!(
                            "the event has no value for {written} (give it an alternative: {})",
                            with_fallback(written)
                        )
                    })?;
                    out.push_str(value.as_ref());
                }
            }
        }
        if out[start..].bytes().any(|b| b.is_ascii_uppercase()) || !out[start..].is_ascii() {
            let lower = out[start..].to_lowercase();
            out.truncate(start);
            out.push_str(&lower);
        }
        Ok(())
    }
}

/// `{{a}}` → `{{a|"none"}}`: the advice an error about a missing field gives.
fn with_fallback(written: &str) -> String {
    let inner = written.trim_start_matches("{{").trim_end_matches("}}");
    format!("{{{{{inner}|\"none\"}}}}")
}

/// Why Elasticsearch would refuse `name` as an index or data stream name, if it would: empty,
/// `.` or `..`, starting with `-`, `_` or `+`, holding one of `\ / * ? " < > | , # :` or a
/// space, or longer than 255 bytes. Upper case is lowercased before this is asked.
pub(crate) fn refused_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an index name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} cannot be an index name"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Some(format!("index name {name:?} starts with {:?}", &name[..1]));
    }
    if let Some(c) = name.chars().find(|c| REFUSED_CHARACTERS.contains(c)) {
        return Some(format!("index name {name:?} contains {c:?}"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!(
            "index name {name:?} is longer than {MAX_NAME_BYTES} bytes"
        ));
    }
    None
}
