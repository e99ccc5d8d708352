//! Redaction: secrets replaced before anything is stored or streamed.
//!
//! Every string in the record (or in the configured `fields`, with everything nested in them)
//! is searched for the built-in patterns and the custom `patterns`; the secret part of each
//! match is replaced with `replacement` (default `[REDACTED]`). Strings that are not UTF-8
//! (`Value::Bin`) are searched too, as bytes.
//!
//! A string without a secret costs one (SIMD) Aho-Corasick pass for the built-ins' trigger
//! words, one pass of the card scanner, and one pass of a [`regex::bytes::RegexSet`] holding
//! every custom pattern. Only the built-in patterns whose trigger word occurs, and the custom
//! patterns the set matched, are run to find where. The trigger words (`bearer`, `basic`,
//! `://`, `@`, `passw`, `secret`, `session`, `api`, `token`, `akia`, `asia`, `eyJ`,
//! `private key`) are looked for in lower case, Capitalised and UPPER case — so a secret
//! labelled in odd casing such as `bEaReR` is not found — while the patterns themselves ignore
//! case where the table says so.
//!
//! # Built-in patterns
//!
//! | name | finds | replaces |
//! |---|---|---|
//! | `private_key` | `-----BEGIN … PRIVATE KEY-----` up to its `-----END … PRIVATE KEY-----`, or to the end of the string | all of it |
//! | `url_password` | `scheme://user:password@host` | the password |
//! | `bearer_token` | `Bearer <token>` (any case; `Authorization: Bearer …`), tokens of 8+ characters with a digit or symbol, or 20+ | the token |
//! | `basic_auth` | `Authorization: Basic <base64>` | the credentials |
//! | `aws_secret_key` | labelled AWS secrets: `aws_secret_access_key = …`, `AWS_SECRET_ACCESS_KEY=…`, `"SecretAccessKey": "…"`, `aws_session_token = …` | the value |
//! | `secret_assignment` | `password=…`, `passwd: …`, `"secret": "…"`, `client_secret`, `api_key`, `access_token`, `refresh_token`, `auth_token` (any case, `=` or `:`, quoted or not) | the value (up to a space, quote, `&`, `,` or `;`) |
//! | `aws_access_key` | AWS access key ids: `AKIA` or `ASIA` and 16 capitals or digits | the id |
//! | `jwt` | JSON Web Tokens: `eyJ….eyJ….…` | the token |
//! | `credit_card` | 13–19 digits, optionally grouped by spaces or dashes (one kind), starting with 2–6 (the card networks' ranges) and passing the Luhn check | the number |
//! | `email` | `local@domain.tld` | the address |
//!
//! `builtin` defaults to all of them; list some to keep only those, or `[]` for none.
//!
//! The Luhn check and the 2–6 first digit keep order ids, timestamps in milliseconds and other
//! long numbers as they are (a random number passes Luhn one time in ten). In a longer run of
//! digit groups, every group boundary is tried as a card's start and end (the longest card from
//! the leftmost group wins), so `4111 1111 1111 1111 2031` still loses the card.
//!
//! # Custom patterns
//!
//! `patterns` are regular expressions (Rust `regex` syntax, matched against UTF-8 text). A
//! capture group named `secret`, when the pattern has one and it took part in the match, is
//! what gets replaced; otherwise the whole match is.
//!
//! # Overlaps
//!
//! When two matches overlap, the one listed first above wins (custom patterns come last, in
//! their order): `postgres://app:s3cret@db.example.com` loses its password to `url_password`
//! and is not also taken for an e-mail address, and `Bearer eyJ…` is one bearer token, not a
//! token and a JWT.

use std::fmt;

use aho_corasick::{AhoCorasick, Input, MatchKind};
use flumen_event::record::{Event, Value};
use regex::bytes::{Regex, RegexSet};
use serde::Deserialize;

/// The built-in pattern names, in the order they win overlaps.
pub const BUILTIN: [&str; 10] = [
    "private_key",
    "url_password",
    "bearer_token",
    "basic_auth",
    "aws_secret_key",
    "secret_assignment",
    "aws_access_key",
    "jwt",
    "credit_card",
    "email",
];

/// Configuration of the redaction step: one `[[filters]]` table without `type`, `match` and
/// `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Built-in patterns to use (default: all of [`BUILTIN`]).
    pub builtin: Vec<String>,
    /// Custom regular expressions; a group named `secret` is the part replaced.
    pub patterns: Vec<String>,
    /// Fields to search (dotted paths reach into maps); empty (the default) searches every
    /// string field, recursively into maps and arrays.
    pub fields: Vec<String>,
    /// What replaces a secret (default `[REDACTED]`).
    pub replacement: String,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            builtin: BUILTIN.map(String::from).to_vec(),
            patterns: Vec::new(),
            fields: Vec::new(),
            replacement: "[REDACTED]".to_owned(),
        }
    }
}

/// Checks a built-in match: given the secret's bytes, whether to replace it.
type Validator = fn(&[u8]) -> bool;

/// How a built-in finds its secrets.
enum Find {
    /// A regular expression, run only when one of `triggers` (ASCII, any case) is in the text.
    Regex {
        pattern: &'static str,
        triggers: &'static [&'static str],
        validator: Option<Validator>,
    },
    /// The card-number scanner.
    Cards,
}

/// How the built-in `name` finds its secrets.
fn builtin(name: &str) -> Option<Find> {
    let regex = |pattern, triggers| Find::Regex {
        pattern,
        triggers,
        validator: None,
    };
    Some(match name {
        "private_key" => regex(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
            &["private key"],
        ),
        "url_password" => regex(
            r"(?-u)\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:(?P<secret>[^/?\s]+)@",
            &["://"],
        ),
        "bearer_token" => Find::Regex {
            pattern: r"(?i-u)\bbearer[ \t]+(?P<secret>[A-Za-z0-9\-._~+/]+=*)",
            triggers: &["bearer"],
            validator: Some(token_like),
        },
        "basic_auth" => regex(
            r#"(?i-u)\bauthorization["']?[ \t]*[:=][ \t]*["']?basic[ \t]+(?P<secret>[A-Za-z0-9+/]+=*)"#,
            &["basic"],
        ),
        "aws_secret_key" => regex(
            r#"(?i-u)(?:aws_?)?(?:secret_?access_?key|session_?token)\\?["']?[ \t]*[:=][ \t]*\\?["']?(?P<secret>[A-Za-z0-9/+=]{16,})"#,
            &["secret", "session"],
        ),
        "secret_assignment" => regex(
            r#"(?i-u)\b(?:password|passwd|secret|client_secret|api[_\-]?key|access[_\-]?token|refresh[_\-]?token|auth[_\-]?token)\\?["']?[ \t]*[:=][ \t]*\\?["']?(?P<secret>[^\s"'&,;\\]+)"#,
            &["passw", "secret", "api", "token"],
        ),
        "aws_access_key" => regex(r"(?-u)\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", &["akia", "asia"]),
        "jwt" => regex(
            r"(?-u)\beyJ[A-Za-z0-9_\-]{2,}\.eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*",
            &["eyJ"],
        ),
        "credit_card" => Find::Cards,
        "email" => regex(
            r"(?-u)\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b",
            &["@"],
        ),
        _ => return None,
    })
}

/// A bearer token: 8 or more characters with a digit or symbol, or 20 or more (so prose like
/// "the bearer of this letter" is left alone).
fn token_like(token: &[u8]) -> bool {
    let symbols = token.iter().any(|b| !b.is_ascii_alphabetic());
    token.len() >= 20 || (token.len() >= 8 && symbols)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Card numbers in `text`: runs of 13–19 digits between word boundaries, in groups split by
/// single spaces or dashes (one kind per number), starting with 2–6 and passing the Luhn check.
/// Within a longer run of digit groups, the longest such number from the leftmost group wins.
fn find_cards(text: &[u8], out: &mut Vec<(usize, usize)>) {
    if text.iter().filter(|b| b.is_ascii_digit()).count() < 13 {
        return;
    }
    let is_separator = |b: u8| b == b' ' || b == b'-';
    let mut i = 0;
    while i < text.len() {
        // A run: digit groups joined by single separators. Most runs are short numbers, so
        // they are only counted.
        while i < text.len() && !text[i].is_ascii_digit() {
            i += 1;
        }
        let start = i;
        let mut digits = 0;
        while i < text.len() {
            if text[i].is_ascii_digit() {
                digits += 1;
                i += 1;
            } else if is_separator(text[i]) && text.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
            } else {
                break;
            }
        }
        if digits >= 13 {
            cards_in_run(text, start, i, out);
        }
    }
}

/// The card numbers in the run of digit groups `text[start..end]`.
fn cards_in_run(text: &[u8], start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut group_start = start;
    for (at, b) in text[start..end].iter().enumerate() {
        if !b.is_ascii_digit() {
            groups.push((group_start, start + at));
            group_start = start + at + 1;
        }
    }
    groups.push((group_start, end));
    let run_start_ok = start == 0 || !is_word(text[start - 1]);
    let run_end_ok = end == text.len() || !is_word(text[end]);
    let mut g = 0;
    while g < groups.len() {
        let first = groups[g].0;
        if (g > 0 || run_start_ok) && (b'2'..=b'6').contains(&text[first]) {
            let mut digits = [0u8; 19];
            let mut n = 0;
            let mut separator = None;
            let mut best = None;
            for (h, &(s, e)) in groups.iter().enumerate().skip(g) {
                if h > g && *separator.get_or_insert(text[s - 1]) != text[s - 1] {
                    break;
                }
                if n + (e - s) > digits.len() {
                    break;
                }
                for &b in &text[s..e] {
                    digits[n] = b - b'0';
                    n += 1;
                }
                let end_ok = h + 1 < groups.len() || run_end_ok;
                if n >= 13 && end_ok && luhn(&digits[..n]) {
                    best = Some(h);
                }
            }
            if let Some(h) = best {
                out.push((first, groups[h].1));
                g = h + 1;
                continue;
            }
        }
        g += 1;
    }
}

/// The Luhn checksum of `digits` (each 0–9) is valid.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// One compiled pattern.
struct Pattern {
    /// `None` for the card scanner.
    regex: Option<Regex>,
    /// Where the `secret` group is, if the pattern has one.
    secret: Option<usize>,
    validator: Option<Validator>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("regex", &self.regex.as_ref().map(Regex::as_str))
            .field("secret", &self.secret)
            .finish()
    }
}

/// Compiled redaction rules, shared by every session.
#[derive(Debug)]
pub struct Redactor {
    /// The built-ins' trigger words (lower case, Capitalised, UPPER); a match of word `i`
    /// wakes the patterns in `woken[i]`.
    triggers: Option<AhoCorasick>,
    woken: Vec<u64>,
    /// The patterns woken by an `@` anywhere.
    woken_by_at: u64,
    /// The pattern index of the card scanner, when enabled.
    cards: Option<usize>,
    /// The custom patterns, all in one set; set index `i` is pattern `custom_from + i`.
    custom: Option<RegexSet>,
    custom_from: usize,
    /// Built-ins first (in [`BUILTIN`] order), then custom patterns: the order that wins
    /// overlaps.
    patterns: Vec<Pattern>,
    fields: Vec<String>,
    replacement: Vec<u8>,
}

/// A secret found: the match's span (for overlaps), the part to replace, and its rank.
#[derive(Debug, Clone, Copy)]
struct Found {
    rank: usize,
    start: usize,
    end: usize,
    secret_start: usize,
    secret_end: usize,
}

impl Redactor {
    /// Compiles `config`; errors name the key at fault.
    pub fn new(config: &RedactConfig) -> Result<Self, String> {
        for name in &config.builtin {
            if builtin(name).is_none() {
                return Err(format!(
                    "builtin: unknown pattern {name:?}; expected some of {}",
                    BUILTIN.join(", ")
                ));
            }
        }
        let mut patterns = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut woken: Vec<u64> = Vec::new();
        let mut woken_by_at = 0;
        let mut cards = None;
        // Built-ins in their fixed order, whatever order the configuration lists them in.
        for name in BUILTIN {
            if !config.builtin.iter().any(|n| n == name) {
                continue;
            }
            let rank = patterns.len();
            match builtin(name).expect("listed") {
                Find::Cards => {
                    cards = Some(rank);
                    patterns.push(Pattern {
                        regex: None,
                        secret: None,
                        validator: None,
                    });
                }
                Find::Regex {
                    pattern,
                    triggers,
                    validator,
                } => {
                    let regex = Regex::new(pattern).expect("built-in redaction patterns compile");
                    for word in triggers {
                        if *word == "@" {
                            woken_by_at |= 1 << rank;
                            continue;
                        }
                        let mut capitalised = word.to_string();
                        capitalised[..1].make_ascii_uppercase();
                        for variant in [word.to_string(), capitalised, word.to_ascii_uppercase()] {
                            match words.iter().position(|w| *w == variant) {
                                Some(i) => woken[i] |= 1 << rank,
                                None => {
                                    words.push(variant);
                                    woken.push(1 << rank);
                                }
                            }
                        }
                    }
                    patterns.push(Pattern {
                        secret: secret_group(&regex),
                        regex: Some(regex),
                        validator,
                    });
                }
            }
        }
        let triggers = if words.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&words)
                    .expect("trigger words compile"),
            )
        };
        let custom_from = patterns.len();
        for (i, pattern) in config.patterns.iter().enumerate() {
            let regex = Regex::new(pattern).map_err(|e| format!("patterns[{i}]: {e}"))?;
            patterns.push(Pattern {
                secret: secret_group(&regex),
                regex: Some(regex),
                validator: None,
            });
        }
        let custom = if config.patterns.is_empty() {
            None
        } else {
            Some(RegexSet::new(&config.patterns).map_err(|e| format!("patterns: {e}"))?)
        };
        for (i, field) in config.fields.iter().enumerate() {
            if field.is_empty() {
                return Err(format!("fields[{i}]: must not be empty"));
            }
        }
        Ok(Self {
            triggers,
            woken,
            woken_by_at,
            cards,
            custom,
            custom_from,
            patterns,
            fields: config.fields.clone(),
            replacement: config.replacement.clone().into_bytes(),
        })
    }

    /// Redacts secrets in place; returns how many were replaced.
    pub fn apply(&self, event: &mut Event) -> usize {
        if self.patterns.is_empty() {
            return 0;
        }
        if self.fields.is_empty() {
            return event
                .record
                .iter_mut()
                .map(|(_, value)| self.value(value))
                .sum();
        }
        let mut count = 0;
        for field in &self.fields {
            if let Some(value) = path_mut(&mut event.record, field) {
                count += self.value(value);
            }
        }
        count
    }

    /// Redacts one string; returns the new text and the count, or `None` when it holds no
    /// secret.
    pub fn redact_str(&self, text: &str) -> Option<(String, usize)> {
        let (bytes, count) = self.redact(text.as_bytes())?;
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Some((text, count))
    }

    fn value(&self, value: &mut Value) -> usize {
        match value {
            Value::Str(s) => match self.redact_str(s) {
                Some((text, count)) => {
                    *s = text;
                    count
                }
                None => 0,
            },
            Value::Bin(b) => match self.redact(b) {
                Some((bytes, count)) => {
                    *b = bytes;
                    count
                }
                None => 0,
            },
            Value::Array(items) => items.iter_mut().map(|v| self.value(v)).sum(),
            Value::Map(pairs) => pairs.iter_mut().map(|(_, v)| self.value(v)).sum(),
            _ => 0,
        }
    }

    fn redact(&self, text: &[u8]) -> Option<(Vec<u8>, usize)> {
        // Which built-in regexes have a reason to run.
        let mut awake = 0u64;
        if let Some(triggers) = &self.triggers {
            // Every start position, so that overlapping words are all seen.
            let mut at = 0;
            while let Some(m) = triggers.find(Input::new(text).range(at..)) {
                awake |= self.woken[m.pattern().as_usize()];
                at = m.start() + 1;
            }
        }
        if self.woken_by_at != 0 && memchr::memchr(b'@', text).is_some() {
            awake |= self.woken_by_at;
        }
        let mut found: Vec<Found> = Vec::new();
        let mut spans = Vec::new();
        for rank in 0..self.custom_from {
            if Some(rank) == self.cards {
                spans.clear();
                find_cards(text, &mut spans);
                found.extend(spans.iter().map(|&(start, end)| Found {
                    rank,
                    start,
                    end,
                    secret_start: start,
                    secret_end: end,
                }));
            } else if awake & (1 << rank) != 0 {
                self.find(rank, text, &mut found);
            }
        }
        if let Some(custom) = &self.custom {
            for i in custom.matches(text).iter() {
                self.find(self.custom_from + i, text, &mut found);
            }
        }
        if found.is_empty() {
            return None;
        }
        // Earlier patterns win overlaps (matches of one pattern never overlap each other).
        let mut kept: Vec<Found> = Vec::with_capacity(found.len());
        for f in found {
            if kept
                .iter()
                .all(|k| k.rank == f.rank || f.end <= k.start || k.end <= f.start)
            {
                kept.push(f);
            }
        }
        kept.sort_unstable_by_key(|f| f.secret_start);
        let mut out = Vec::with_capacity(text.len() + kept.len() * self.replacement.len());
        let mut at = 0;
        for f in &kept {
            out.extend_from_slice(&text[at..f.secret_start]);
            out.extend_from_slice(&self.replacement);
            at = f.secret_end;
        }
        out.extend_from_slice(&text[at..]);
        Some((out, kept.len()))
    }

    /// The matches of regex pattern `rank` in `text`.
    fn find(&self, rank: usize, text: &[u8], found: &mut Vec<Found>) {
        let pattern = &self.patterns[rank];
        let regex = pattern.regex.as_ref().expect("a regex pattern");
        for caps in regex.captures_iter(text) {
            let whole = caps.get(0).expect("group 0 always matches");
            let secret = pattern.secret.and_then(|i| caps.get(i)).unwrap_or(whole);
            if secret.is_empty() || pattern.validator.is_some_and(|ok| !ok(secret.as_bytes())) {
                continue;
            }
            found.push(Found {
                rank,
                start: whole.start(),
                end: whole.end(),
                secret_start: secret.start(),
                secret_end: secret.end(),
            });
        }
    }
}

fn secret_group(regex: &Regex) -> Option<usize> {
    regex
        .capture_names()
        .position(|name| name == Some("secret"))
}

/// The value at `path`: a top-level field named with the whole path, else a walk through
/// nested maps along its dots.
fn path_mut<'a>(record: &'a mut flumen_event::record::Record, path: &str) -> Option<&'a mut Value> {
    if record.get(path).is_some() {
        return record.get_mut(path);
    }
    let mut parts = path.split('.');
    let mut current = record.get_mut(parts.next()?)?;
    for part in parts {
        current = match current {
            Value::Map(pairs) => pairs.iter_mut().find(|(k, _)| k == part).map(|(_, v)| v)?,
            _ => return None,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_neighbours() {
        let digits = |s: &str| -> Vec<u8> { s.bytes().map(|b| b - b'0').collect() };
        for good in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
        ] {
            assert!(luhn(&digits(good)), "{good}");
        }
        for bad in ["4111111111111112", "5555555555554445", "1234567890123456"] {
            assert!(!luhn(&digits(bad)), "{bad}");
        }
    }

    fn cards(text: &str) -> Vec<&str> {
        let mut spans = Vec::new();
        find_cards(text.as_bytes(), &mut spans);
        spans.iter().map(|&(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn card_scanner() {
        assert_eq!(cards("4111 1111 1111 1111"), ["4111 1111 1111 1111"]);
        assert_eq!(cards("x=4111-1111-1111-1111;"), ["4111-1111-1111-1111"]);
        assert_eq!(cards("4111 1111-1111 1111"), Vec::<&str>::new());
        assert_eq!(cards("4111 1111 1111 1111 123"), ["4111 1111 1111 1111"]);
        assert_eq!(cards("12 4111 1111 1111 1111"), ["4111 1111 1111 1111"]);
        assert_eq!(cards("4111111111111112"), Vec::<&str>::new());
        assert_eq!(cards("a4111111111111111"), Vec::<&str>::new());
        assert_eq!(cards("4111111111111111b"), Vec::<&str>::new());
        assert_eq!(cards("1700000000000"), Vec::<&str>::new());
        assert_eq!(
            cards("5555555555554444 and 378282246310005"),
            ["5555555555554444", "378282246310005"]
        );
        // Many short groups do not blow up.
        let list = "1 ".repeat(10_000);
        assert!(cards(&list).is_empty());
    }
}
