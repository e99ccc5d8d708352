//! Tag patterns, with Fluentd's `<match>` semantics: routes and processing steps both choose
//! events by tag with them.

use regex::Regex;

/// A Fluentd tag pattern.
///
/// - `*` matches one tag part (`a.*` matches `a.b`, not `a` nor `a.b.c`; `health*` matches
///   `healthcheck`);
/// - `**` matches zero or more parts (`a.**` matches `a`, `a.b` and `a.b.c`);
/// - `{x,y}` matches either (`{frontend,backend}.*`); alternatives may hold patterns.
#[derive(Debug, Clone)]
pub struct TagPattern {
    source: String,
    regex: Regex,
}

/// A pattern that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("invalid tag pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

impl TagPattern {
    /// Compiles a pattern.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let fail = |reason: &str| PatternError {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        if pattern.is_empty() {
            return Err(fail("empty pattern"));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut re = String::from("^");
        let mut depth = 0usize;
        let mut i = 0;
        while i < chars.len() {
            let rest = &chars[i..];
            match rest {
                // "**." : zero or more leading parts.
                ['*', '*', '.', ..] => {
                    re.push_str(r"(?:[^.]+\.)*");
                    i += 3;
                }
                // ".**" at the end of a part: zero or more trailing parts.
                ['.', '*', '*', ..] if matches!(rest.get(3), None | Some(',' | '}')) => {
                    re.push_str(r"(?:\.[^.]+)*");
                    i += 3;
                }
                ['*', '*', ..] => {
                    re.push_str(".*");
                    i += 2;
                }
                ['*', ..] => {
                    re.push_str("[^.]*");
                    i += 1;
                }
                ['{', ..] => {
                    depth += 1;
                    re.push_str("(?:");
                    i += 1;
                }
                [',', ..] if depth > 0 => {
                    re.push('|');
                    i += 1;
                }
                ['}', ..] => {
                    depth = depth.checked_sub(1).ok_or_else(|| fail("unbalanced '}'"))?;
                    re.push(')');
                    i += 1;
                }
                [c, ..] => {
                    re.push_str(&regex::escape(&c.to_string()));
                    i += 1;
                }
                [] => unreachable!("i < len"),
            }
        }
        if depth != 0 {
            return Err(fail("unbalanced '{'"));
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| fail(&e.to_string()))?;
        Ok(Self {
            source: pattern.to_owned(),
            regex,
        })
    }

    /// True if `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, tag: &str) -> bool {
        TagPattern::parse(pattern).unwrap().matches(tag)
    }

    #[test]
    fn fluentd_match_semantics() {
        let cases = [
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("a.**", "a", true),
            ("a.**", "a.b", true),
            ("a.**", "a.b.c", true),
            ("a.**", "ab", false),
            ("**", "anything.at.all", true),
            ("**.c", "c", true),
            ("**.c", "a.b.c", true),
            ("**.c", "a.bc", false),
            ("health*", "healthcheck", true),
            ("health*", "health.check", false),
            ("frontend*", "frontend-web", true),
            ("{a,b}.x", "b.x", true),
            ("{a,b}.x", "c.x", false),
            ("a.{b,c.**}", "a.c.d.e", true),
            ("a.{b,c.**}", "a.b", true),
            ("a.{b,c.**}", "a.d", false),
            ("a+b", "a+b", true),
            ("a+b", "aab", false),
        ];
        for (pattern, tag, expected) in cases {
            assert_eq!(matches(pattern, tag), expected, "{pattern} ~ {tag}");
        }
        assert!(TagPattern::parse("{a,b").is_err());
        assert!(TagPattern::parse("a}").is_err());
    }
}
