//! Tag templates: a tag with `{name}` placeholders filled in per event, as the syslog source
//! (`syslog.{facility}.{severity}`) and the Loki source (`loki.{job}`) take them. Each source
//! says which names it knows and what a placeholder's value is; this module parses the text
//! and renders tags that stay plain words.

use std::borrow::Cow;

/// A tag with placeholders of type `P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagTemplate<P>(Vec<Part<P>>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<P> {
    Text(String),
    Placeholder(P),
}

impl<P> TagTemplate<P> {
    /// Parses `text`; `placeholder` turns the name between braces into a placeholder, or says
    /// why the name is not one.
    pub fn parse(
        text: &str,
        placeholder: impl Fn(&str) -> Result<P, String>,
    ) -> Result<Self, String> {
        if text.is_empty() {
            return Err("tag is empty".to_owned());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("tag {text:?}: a {{ is not closed"))?;
            let name = &after[..close];
            parts.push(Part::Placeholder(
                placeholder(name).map_err(|why| format!("tag {text:?}: {why}"))?,
            ));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    /// The tag, with each placeholder's value from `value_of`: letters, digits, `-` and `_` as
    /// they are, anything else as `_`, and `unknown` for a missing or empty value.
    pub fn render<'v>(&self, value_of: impl Fn(&P) -> Option<Cow<'v, str>>) -> Cow<'_, str> {
        if let [Part::Text(text)] = self.0.as_slice() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(32);
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder(p) => match value_of(p) {
                    Some(value) if !value.is_empty() => out.extend(value.chars().map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })),
                    _ => out.push_str("unknown"),
                },
            }
        }
        Cow::Owned(out)
    }
}
