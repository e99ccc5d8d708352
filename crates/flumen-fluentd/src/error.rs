//! The one error type: where (file, line, column) and what ([`ErrorKind`]). Every error stops
//! the parse; there is nothing to skip to, since Fluentd would refuse the file too (or, where
//! noted on a kind, read it differently from what the author meant).

use std::path::PathBuf;

/// A configuration that cannot be read, and where.
///
/// Displays as `fluent.conf: line 7, column 3: ` followed by the [`ErrorKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: line {line}, column {column}: {kind}", file.display())]
pub struct ParseError {
    /// The file the error is in (an included file for an error inside it).
    pub file: PathBuf,
    /// From 1.
    pub line: usize,
    /// From 1, in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A quoted string the file ends in (double-quoted), or whose line ends in
    /// (single-quoted); the position is its opening quote.
    #[error("unterminated string: {}", if *.quote == '"' { "the file ends before its closing `\"`" } else { "a single-quoted string must end on its line" })]
    UnterminatedString {
        /// `"` or `'`.
        quote: char,
    },
    /// A line break inside a double-quoted string that Fluentd cannot read: an empty line, or a
    /// CRLF line end, inside the string.
    #[error(
        "Fluentd cannot read this line break inside a double-quoted string (an empty line or a CRLF line end)"
    )]
    LineBreakInString,
    /// `\` before a letter or digit that is not an escape Fluentd knows.
    #[error("unknown escape `\\{ch}` in a double-quoted string")]
    InvalidEscape {
        /// The character after the backslash.
        ch: char,
    },
    /// A JSON array or hash value the file ends in; the position is its `[` or `{`.
    #[error("unterminated JSON {}: the file ends before its closing `{}`", if *.array { "array" } else { "hash" }, if *.array { ']' } else { '}' })]
    UnterminatedJson {
        /// An array (`[`), else a hash (`{`).
        array: bool,
    },
    /// A value starting with `[` or `{` that is not JSON; the position is its first character.
    #[error(
        "a value starting with `[` or `{{` is read as JSON, and this is not JSON ({detail}); quote it to keep it as text"
    )]
    InvalidJson {
        /// What the JSON parser said.
        detail: String,
    },
    /// A `#{` the file ends in before its `}`.
    #[error("unterminated embedded Ruby code: no `}}` closes this `#{{`")]
    UnterminatedRuby,
    /// Embedded Ruby code this crate cannot evaluate (see the crate documentation).
    #[error(
        "embedded Ruby code `#{{{code}}}` cannot be evaluated here: only ENV['X'], ENV.fetch('X', 'default'), `||`, string literals, hostname, Socket.gethostname, worker_id, use_nil and use_default are understood"
    )]
    UnsupportedRuby {
        /// The code between `#{` and `}`.
        code: String,
    },
    /// `ENV.fetch('X')` without a default, and `X` is not set (Ruby raises `KeyError`).
    #[error("environment variable {name} is not set (ENV.fetch without a default)")]
    MissingEnv {
        /// The variable.
        name: String,
    },
    /// `hostname` or `Socket.gethostname` without [`crate::Loader::hostname`].
    #[error("`{code}` needs the host name, and none was given")]
    NoHostname {
        /// The code.
        code: String,
    },
    /// `use_nil` or `use_default` where a value cannot be "no value": inside a JSON value or in
    /// an element's argument.
    #[error("`{code}` cannot be used here, only in a parameter's double-quoted value")]
    MisplacedSpecial {
        /// The code.
        code: String,
    },
    /// `<` not followed by an element name (`<>`, `< match>`).
    #[error("expected an element name after `<`")]
    MissingElementName,
    /// An element's opening tag without its `>`.
    #[error("expected `>` to end `<{name}`")]
    ExpectedTagEnd {
        /// The element's name.
        name: String,
    },
    /// A closing tag without its `>` (`</match` and more).
    #[error("expected `>` to end `</{name}`")]
    ExpectedCloseEnd {
        /// The name as far as it was read.
        name: String,
    },
    /// Something other than a comment after a tag or a value on the same line.
    #[error("expected the end of the line after {after}")]
    ExpectedLineEnd {
        /// `the tag <match **>`, `the value of port`, ...
        after: String,
    },
    /// `</name>` where another element is open.
    #[error("`</{found}>` closes `{open}` opened at line {open_line}")]
    MismatchedClose {
        /// The name in the closing tag.
        found: String,
        /// The open element, as `<name arg>`.
        open: String,
        /// The line of the open element.
        open_line: usize,
    },
    /// `</name>` where no element is open.
    #[error("`</{found}>` closes nothing: no element is open here")]
    UnexpectedClose {
        /// The name in the closing tag.
        found: String,
    },
    /// The file ends inside an element; the position is the element's `<`.
    #[error("missing `</{name}>` for `{open}` at line {open_line}")]
    MissingClose {
        /// The element's name.
        name: String,
        /// The element, as `<name arg>`.
        open: String,
        /// Its line.
        open_line: usize,
    },
    /// A key starting with `@` that Fluentd reserves (`@type`, `@id`, `@label`, `@log_level`
    /// are the ones allowed), at the top level or in `<source>`, `<match>`, `<filter>` or
    /// `<system>`.
    #[error(
        "'@' is the system reserved prefix: `{key}` is not allowed here (only @type, @id, @label, @log_level and @include)"
    )]
    ReservedPrefix {
        /// The key.
        key: String,
    },
    /// Elements or includes nested deeper than [`crate::MAX_DEPTH`].
    #[error("nested deeper than {} levels", crate::MAX_DEPTH)]
    TooDeep,
    /// `@include` of a file that does not exist.
    #[error("@include {path}: file not found")]
    IncludeNotFound {
        /// The path as written.
        path: String,
    },
    /// `@include` of a URL other than `file:`.
    #[error(
        "@include {uri}: remote includes are not supported; download the file and include it by path"
    )]
    IncludeRemote {
        /// The URL as written.
        uri: String,
    },
    /// `@include` of a file that is already being included (directly or not).
    #[error("@include {path}: the file includes itself")]
    IncludeCycle {
        /// The file.
        path: String,
    },
    /// A file that cannot be read (or is not UTF-8), or a bad glob pattern.
    #[error("{path}: {message}")]
    Io {
        /// The file, or the include as written.
        path: String,
        /// What went wrong.
        message: String,
    },
}
