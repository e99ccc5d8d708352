//! The `{{ … }}` placeholder syntax shared by the file output's path template and the
//! webhook's message template; each gives placeholders its own meaning.

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
