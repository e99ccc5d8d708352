//! The `{{ … }}` placeholder syntax shared by the file output's path template, the webhook's
//! message template, Loki's label and metadata templates, Elasticsearch's index names and S3's
//! keys; each gives placeholders its own meaning. The webhook, Loki, Elasticsearch and S3 give
//! them the same one: [`field::FieldTemplate`] (S3's keys with strftime specifiers in their
//! text as well).

/// A piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    /// Text outside placeholders, as written (possibly empty).
    Text(&'a str),
    /// What is between `{{` and `}}`, as written (not trimmed).
    Placeholder(&'a str),
}

/// The tokens of `template`, in order: text, then a placeholder and text for each placeholder
/// (so it starts and ends with a possibly empty text). An unclosed `{{` yields an error (and
/// ends the tokens) where it stands, so a caller checking placeholders as they come reports
/// the first error in the template.
pub(super) fn split_placeholders(template: &str) -> Tokens<'_> {
    Tokens {
        template,
        rest: Some(template),
        placeholder: None,
    }
}

/// The iterator of [`split_placeholders`].
#[derive(Debug)]
pub(super) struct Tokens<'a> {
    template: &'a str,
    /// What is left to read; `None` once done.
    rest: Option<&'a str>,
    /// A placeholder to yield before reading on.
    placeholder: Option<&'a str>,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Result<Token<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(inner) = self.placeholder.take() {
            return Some(Ok(Token::Placeholder(inner)));
        }
        let rest = self.rest.take()?;
        let Some(start) = rest.find("{{") else {
            return Some(Ok(Token::Text(rest)));
        };
        let Some(end) = rest[start..].find("}}").map(|end| end + start) else {
            return Some(Err(format!("unclosed '{{{{' in {:?}", self.template)));
        };
        self.placeholder = Some(&rest[start + 2..end]);
        self.rest = Some(&rest[end + 2..]);
        Some(Ok(Token::Text(&rest[..start])))
    }
}

/// Text with strftime specifiers (`%Y.%m.%d`), parsed once, that an event's time in UTC fills
/// in: the time pieces of S3's keys and Elasticsearch's index names.
#[cfg(any(feature = "s3", feature = "elasticsearch"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Strftime(Vec<chrono::format::Item<'static>>);

#[cfg(any(feature = "s3", feature = "elasticsearch"))]
impl Strftime {
    /// Parses `text`; the error names it.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        chrono::format::StrftimeItems::new(text)
            .parse_to_owned()
            .map(Self)
            .map_err(|_| format!("invalid strftime specifier in {text:?}"))
    }

    /// Appends `text` with the specifiers filled in from `time`.
    pub(crate) fn write(&self, out: &mut String, time: flumen_event::EventTime) {
        use std::fmt::Write;
        let datetime = time.to_datetime().unwrap_or_default();
        write!(out, "{}", datetime.format_with_items(self.0.iter())).expect("String write");
    }
}

/// Templates of fields, the tag, the time and constants, for the webhook, Loki, Elasticsearch
/// and S3.
#[cfg(any(
    feature = "webhook",
    feature = "loki",
    feature = "elasticsearch",
    feature = "s3"
))]
pub(crate) mod field {
    use std::borrow::Cow;

    use flumen_event::EventTime;
    use flumen_event::record::Record;

    use super::{Token, split_placeholders};

    /// A parsed template of event fields: text with `{{…}}` placeholders.
    ///
    /// `{{field}}` is a record field, `{{a.b}}` a nested one (a top-level field named `a.b`
    /// wins), `{{tag}}` the event's tag, `{{time}}` its time (RFC 3339), `{{record.tag}}` a
    /// record field named `tag`. `{{a|b|"text"}}` takes the first alternative present and not
    /// blank; a quoted alternative (`"…"` or `'…'`, which cannot hold `|` or `}}`) is literal
    /// text, present as written. Text outside placeholders is kept as written. Values render
    /// as [`flumen_event::record::Value::to_text`] does: strings as they are, numbers and
    /// booleans in decimal, maps and arrays as JSON.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct FieldTemplate {
        pieces: Vec<Piece>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Piece {
        Text(String),
        /// Text with strftime specifiers (`%Y`), parsed once, which the event's time in UTC
        /// fills in.
        #[cfg(feature = "s3")]
        Strftime(super::Strftime),
        /// Alternatives; the first present and not blank wins.
        Field(Vec<Source>),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Source {
        Tag,
        Time,
        /// A record field, by dotted path.
        Path(String),
        Literal(String),
    }

    /// What a piece of a [`FieldTemplate`] comes to for one event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Rendered<'a> {
        /// The template's own text, as written.
        Text(&'a str),
        /// A placeholder's value.
        Value(Cow<'a, str>),
    }

    impl AsRef<str> for Rendered<'_> {
        fn as_ref(&self) -> &str {
            match self {
                Self::Text(text) => text,
                Self::Value(value) => value,
            }
        }
    }

    impl FieldTemplate {
        /// Parses `template` (an empty one has no pieces); the error says what is wrong.
        #[cfg(any(feature = "webhook", feature = "loki", feature = "elasticsearch", test))]
        pub(crate) fn parse(template: &str) -> Result<Self, String> {
            Self::parse_inner(template, false)
        }

        /// Parses `template`, whose text outside placeholders may hold strftime specifiers
        /// (`logs/%Y/%m/%d/`: the event's time in UTC; `%%` is a `%`).
        #[cfg(feature = "s3")]
        pub(crate) fn parse_with_strftime(template: &str) -> Result<Self, String> {
            Self::parse_inner(template, true)
        }

        #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
        fn parse_inner(template: &str, strftime: bool) -> Result<Self, String> {
            let mut pieces = Vec::new();
            for token in split_placeholders(template) {
                match token? {
                    Token::Text("") => {}
                    #[cfg(feature = "s3")]
                    Token::Text(text) if strftime && text.contains('%') => {
                        pieces.push(Piece::Strftime(super::Strftime::parse(text)?));
                    }
                    Token::Text(text) => pieces.push(Piece::Text(text.to_owned())),
                    Token::Placeholder(inner) => {
                        let sources = inner
                            .split('|')
                            .map(|alternative| Source::parse(alternative.trim()))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| format!("{e} in {{{{{inner}}}}}"))?;
                        pieces.push(Piece::Field(sources));
                    }
                }
            }
            Ok(Self { pieces })
        }

        /// The record fields it reads (dotted paths).
        #[cfg(any(feature = "loki", feature = "elasticsearch", feature = "s3"))]
        pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
            self.pieces
                .iter()
                .filter_map(|piece| match piece {
                    Piece::Field(sources) => Some(sources),
                    _ => None,
                })
                .flatten()
                .filter_map(|source| match source {
                    Source::Path(path) => Some(path.as_str()),
                    _ => None,
                })
        }

        /// True when it reads the event time.
        #[cfg(feature = "loki")]
        pub(crate) fn reads_time(&self) -> bool {
            self.pieces
                .iter()
                .any(|piece| matches!(piece, Piece::Field(s) if s.contains(&Source::Time)))
        }

        /// Its pieces for one event, in order: the text as written, and each placeholder's
        /// value, the first alternative present and not blank (a literal as written); a
        /// placeholder without one yields nothing.
        pub(crate) fn render<'a>(
            &'a self,
            tag: &'a str,
            time: EventTime,
            record: &'a Record,
        ) -> impl Iterator<Item = Rendered<'a>> {
            self.pieces.iter().filter_map(move |piece| match piece {
                Piece::Text(text) => Some(Rendered::Text(text)),
                #[cfg(feature = "s3")]
                Piece::Strftime(pattern) => {
                    let mut text = String::new();
                    pattern.write(&mut text, time);
                    Some(Rendered::Value(Cow::Owned(text)))
                }
                Piece::Field(sources) => sources
                    .iter()
                    .find_map(|source| {
                        let text = match source {
                            Source::Tag => Cow::Borrowed(tag),
                            Source::Time => Cow::Owned(time.to_string()),
                            Source::Path(path) => record.get_path(path)?.to_text(),
                            Source::Literal(text) => return Some(Cow::Borrowed(text.as_str())),
                        };
                        (!text.trim().is_empty()).then_some(text)
                    })
                    .map(Rendered::Value),
            })
        }
    }

    impl Source {
        fn parse(alternative: &str) -> Result<Self, String> {
            for quote in ['"', '\''] {
                if let Some(text) = alternative
                    .strip_prefix(quote)
                    .and_then(|a| a.strip_suffix(quote))
                {
                    return Ok(Self::Literal(text.to_owned()));
                }
            }
            if alternative.is_empty() {
                return Err("an empty placeholder".into());
            }
            if alternative.starts_with(['"', '\'']) {
                return Err(format!("an unclosed quote {alternative:?}"));
            }
            if alternative.split('.').any(str::is_empty) {
                return Err(format!("{alternative:?} is not a field path"));
            }
            Ok(match alternative {
                "tag" => Self::Tag,
                "time" => Self::Time,
                path => Self::Path(path.strip_prefix("record.").unwrap_or(path).to_owned()),
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use flumen_event::record::Value;

        #[test]
        fn templates_read_fields_the_tag_and_constants() {
            let record = Record::from(vec![
                ("service".to_owned(), Value::from("api")),
                (
                    "k8s".to_owned(),
                    Value::Map(vec![("ns".to_owned(), Value::from("prod"))]),
                ),
                ("n".to_owned(), Value::UInt(7)),
                ("blank".to_owned(), Value::from(" ")),
            ]);
            let render = |t: &str| {
                let template = FieldTemplate::parse(t).unwrap();
                let mut out = String::new();
                for piece in template.render("app.web", EventTime::new(0, 0), &record) {
                    out.push_str(piece.as_ref());
                }
                out
            };
            assert_eq!(render("{{service}}"), "api");
            assert_eq!(render("{{k8s.ns}}-{{n}}"), "prod-7");
            assert_eq!(render("{{tag}}"), "app.web");
            assert_eq!(render("shop"), "shop");
            assert_eq!(render("{{missing|blank|'none'}}"), "none");
            assert_eq!(
                render("{{missing|' '}}"),
                " ",
                "a literal is taken as written"
            );
            assert_eq!(render("{{missing}}"), "");
            assert_eq!(render(""), "");
            assert!(FieldTemplate::parse("{{a").is_err());
        }

        #[cfg(feature = "s3")]
        #[test]
        fn strftime_specifiers_in_the_text_are_the_event_time() {
            let template =
                FieldTemplate::parse_with_strftime("logs/{{tag}}/dt=%Y-%m-%d/hour=%H/100%%")
                    .unwrap();
            // 2026-12-04T17:05:00Z
            let time = EventTime::new(1_796_403_900, 0);
            let mut key = String::new();
            for piece in template.render("app.web", time, &Record::new()) {
                key.push_str(piece.as_ref());
            }
            assert_eq!(key, "logs/app.web/dt=2026-12-04/hour=17/100%");
            let error = FieldTemplate::parse_with_strftime("x/%Q/{{tag}}").unwrap_err();
            assert_eq!(error, "invalid strftime specifier in \"x/%Q/\"");
            // Without strftime, % is text.
            let plain = FieldTemplate::parse("%Y").unwrap();
            let empty = Record::new();
            let text: Vec<_> = plain.render("t", time, &empty).collect();
            assert_eq!(text, [Rendered::Text("%Y")]);
        }

        #[cfg(feature = "loki")]
        #[test]
        fn templates_tell_what_they_read() {
            let template = FieldTemplate::parse("{{a.b|tag}}x{{c}}").unwrap();
            assert_eq!(template.fields().collect::<Vec<_>>(), ["a.b", "c"]);
            assert!(!template.reads_time());
            assert!(FieldTemplate::parse("{{n|time}}").unwrap().reads_time());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(template: &str) -> Result<Vec<Token<'_>>, String> {
        split_placeholders(template).collect()
    }

    #[test]
    fn text_and_placeholders_alternate() {
        use Token::{Placeholder as P, Text as T};
        assert_eq!(tokens(""), Ok(vec![T("")]));
        assert_eq!(tokens("plain"), Ok(vec![T("plain")]));
        assert_eq!(
            tokens("{{ a }}-{{b|c}}"),
            Ok(vec![T(""), P(" a "), T("-"), P("b|c"), T("")])
        );
        assert_eq!(tokens("x{{}}}y"), Ok(vec![T("x"), P(""), T("}y")]));
    }

    #[test]
    fn an_unclosed_placeholder_is_an_error_where_it_stands() {
        assert_eq!(
            tokens("a{{b}}c{{d"),
            Err("unclosed '{{' in \"a{{b}}c{{d\"".to_owned())
        );
        let mut iter = split_placeholders("a{{b}}c{{d");
        assert_eq!(iter.next(), Some(Ok(Token::Text("a"))));
        assert_eq!(iter.next(), Some(Ok(Token::Placeholder("b"))));
        assert!(matches!(iter.next(), Some(Err(_))));
        assert_eq!(iter.next(), None);
    }
}
