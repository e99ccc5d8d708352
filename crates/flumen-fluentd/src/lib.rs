//! A parser for Fluentd's configuration format (`fluent.conf`, the v1 syntax that Fluentd has
//! read by default since v0.14): the first half of `flumen import-fluentd`. It turns the text
//! into a tree of [`Element`]s and [`Param`]s that keeps the order of the file and where every
//! piece came from (file, line, column), so that the mapper onto flumen's TOML can say
//! "line 12: `<filter>` of type `foo` has no flumen equivalent".
//!
//! It is **not** the mapper, and it knows nothing of plugins: `<match>`, `<source>`, `<buffer>`,
//! `<my_plugins_section>` are all just elements, `@type` is just a parameter whose key starts
//! with `@`, and no value is typed (`port 24224` is the text `"24224"`). It runs no Ruby.
//!
//! ```
//! use std::path::Path;
//!
//! let text = "\
//! <source>
//!   @type forward
//!   port 24224
//! </source>
//!
//! <match app.**>
//!   @type s3
//!   <buffer tag,time>
//!     timekey 3600 # one chunk per hour
//!   </buffer>
//! </match>
//! ";
//! let config = flumen_fluentd::parse(text, Path::new("fluent.conf")).unwrap();
//! let [source, output] = config.directives() else { panic!() };
//! assert_eq!(source.value("port"), Some("24224"));
//! assert_eq!((output.name.as_str(), output.arg.as_str()), ("match", "app.**"));
//! let buffer = &output.elements[0];
//! assert_eq!((buffer.arg.as_str(), buffer.line), ("tag,time", 8));
//! assert_eq!(buffer.value("timekey"), Some("3600"));
//! ```
//!
//! # The syntax, as Fluentd reads it
//!
//! The grammar is a port of Fluentd's own parser (`lib/fluent/config/v1_parser.rb`,
//! `literal_parser.rb` and `basic_parser.rb`), quirks included, so that a file means here what
//! it means to Fluentd:
//!
//! - **Elements**: `<name arg>` on a line of its own, up to `</name>`. The name is
//!   `[a-zA-Z0-9_]+`; the argument is everything up to `>` (`<match app.** system.*>`,
//!   `<buffer tag, time>`, `<label @mainstream>`, `<worker 0-3>`) or a quoted string.
//! - **Parameters**: `key value`. An unquoted value runs to the end of the line, trailing blanks
//!   removed; a `#` starts a comment only after a blank (`path /a#b` keeps `#b`, and so does
//!   `key #x`, whose value is `#x`). A key alone on its line has the value `""`.
//! - **Double-quoted** values know `\n \t \r \f \b \0 \" \' \\` (a backslash before any other
//!   letter or digit is an error; before a symbol it gives the symbol), may span lines (a line
//!   break is kept; a backslash before it removes both), and run the embedded Ruby of
//!   `#{...}` — see below. **Single-quoted** values know only `\'` and `\\` and end on their
//!   line.
//! - **JSON** values: a value starting with `[` or `{` is a JSON array or hash, which may span
//!   lines and hold `#` comments outside its strings; it is kept as compact JSON text
//!   (`[ "a", "b" ]` becomes `["a","b"]`), as Fluentd keeps it.
//! - **`@include path`**: a file, relative to the including file, or a glob
//!   (`conf.d/*.conf`, files in sorted order). Its elements and parameters go where the
//!   `@include` stands, even inside an element. [`Loader::load`] follows includes;
//!   [`Loader::parse`] reads no file and keeps each as a parameter `@include` with the path.
//! - `@type`, `@id`, `@label` and `@log_level` are parameters. Any other key starting with `@`
//!   at the top level or directly inside `<source>`, `<match>`, `<filter>` or `<system>` is an
//!   error, as in Fluentd.
//!
//! # Embedded Ruby
//!
//! Fluentd evaluates `#{...}` inside double-quoted strings as Ruby. This crate evaluates the
//! forms that configurations use and refuses the rest with the code's position
//! ([`ErrorKind::UnsupportedRuby`]):
//!
//! | code | value |
//! |---|---|
//! | `ENV['X']`, `ENV["X"]` | the variable, `""` when it is not set |
//! | `ENV.fetch('X', 'default')` | the variable, else the default |
//! | `ENV.fetch('X')` | the variable, else an error ([`ErrorKind::MissingEnv`]) |
//! | `a \|\| b` | `a` unless it is an unset variable (`nil`), then `b` |
//! | `'text'`, `"text"`, `nil` | that |
//! | `hostname`, `Socket.gethostname` | [`Loader::hostname`], else an error ([`ErrorKind::NoHostname`]) |
//! | `worker_id` | `ENV['SERVERENGINE_WORKER_ID']`, else `""` |
//! | `use_nil`, `use_default` | the parameter is marked [`Special::UseNil`] / [`Special::UseDefault`] |
//!
//! Variables come from the [`Loader`]'s lookup (the process environment unless told
//! otherwise). The host name is never guessed: a configuration imported on a laptop must not
//! carry the laptop's name. Every evaluated `#{...}` is listed in [`Param::embedded`], so the
//! mapper can point at values that came from the environment.
//!
//! # Where this differs from Fluentd
//!
//! It is stricter where Fluentd would quietly do something else: an element without a name
//! (`<>`, `< match>`) is an error; `@include missing.conf` (no wildcard) is an error, where
//! Fluentd includes nothing; an include that includes itself is an error, where Fluentd loops;
//! remote includes (`http://...`) are refused; elements nest at most [`MAX_DEPTH`] deep. It is
//! more lenient in one place: `#` comments inside JSON values are recognised at any depth
//! (Fluentd only recognises them where the JSON read so far can be closed). A UTF-8 byte order
//! mark at the start of a file is skipped. Line and column numbers count from 1, and columns
//! count characters (a tab is one).

#![deny(missing_docs)]

mod error;
mod parser;
mod ruby;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ErrorKind, ParseError};

/// How deep elements may nest (an `<a>` inside an `<a>` ... inside an `<a>`), and how deep
/// `@include`s may go; deeper is [`ErrorKind::TooDeep`]. Real configurations use 4 levels.
pub const MAX_DEPTH: usize = 64;

/// A parsed configuration: the root element and the files it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The top level of the file (name `ROOT`, as Fluentd calls it): its [`Element::elements`]
    /// are the directives (`<source>`, `<match>`, `<label>`, ...), its [`Element::params`] the
    /// rare parameters written outside any element.
    pub root: Element,
    /// Every file read, the main one first, then each included file in the order it was
    /// included. [`Loader::parse`] lists only the origin it was given.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// The top-level directives, in the order of the file (includes expanded in place).
    pub fn directives(&self) -> &[Element] {
        &self.root.elements
    }
}

/// One `<name arg> ... </name>` section, or the root.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// The name: `source`, `match`, `filter`, `label`, `system`, `worker`, `parse`, `buffer`,
    /// or any other; `ROOT` for the root.
    pub name: String,
    /// The text between the name and `>`, without the blanks around it: the match pattern
    /// (`app.** system.*`), the label (`@mainstream`), the buffer's chunk keys (`tag,time`),
    /// the worker range (`0-3`); `""` when there is none. A quoted argument is unquoted.
    pub arg: String,
    /// The parameters, in the order of the file. A key may repeat: Fluentd uses the last one,
    /// as [`Element::param`] does.
    pub params: Vec<Param>,
    /// The nested elements, in the order of the file.
    pub elements: Vec<Element>,
    /// The file the element's `<` is in.
    pub file: Arc<Path>,
    /// The line of its `<` (from 1; 0 for the root).
    pub line: usize,
    /// The column of its `<` (from 1, in characters; 0 for the root).
    pub column: usize,
}

impl Element {
    /// The parameter `key` as Fluentd sees it: the last one with that key.
    pub fn param(&self, key: &str) -> Option<&Param> {
        self.params.iter().rev().find(|p| p.key == key)
    }

    /// The value of the parameter `key` (the last one with that key).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.param(key).map(|p| p.value.as_str())
    }

    /// The nested elements named `name`, in order.
    pub fn elements_named<'e>(&'e self, name: &'e str) -> impl Iterator<Item = &'e Element> + 'e {
        self.elements.iter().filter(move |e| e.name == name)
    }

    /// `<name arg>` as it would be written, for messages.
    pub fn tag(&self) -> String {
        if self.arg.is_empty() {
            format!("<{}>", self.name)
        } else {
            format!("<{} {}>", self.name, self.arg)
        }
    }
}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The key, as written (`@type`, `port`, `@include` for an include [`Loader::parse`] did not
    /// follow).
    pub key: String,
    /// The value: unquoted, escapes and embedded Ruby evaluated; compact JSON for a JSON array
    /// or hash; `""` for a key alone on its line or when [`Param::special`] is set.
    pub value: String,
    /// Set when the value's embedded Ruby asked for "no value" or "the default".
    pub special: Option<Special>,
    /// Each `#{...}` that was evaluated to make the value (or the key), in order.
    pub embedded: Vec<Embedded>,
    /// The file the parameter is in.
    pub file: Arc<Path>,
    /// The line of its key (from 1).
    pub line: usize,
    /// The column of its key (from 1, in characters).
    pub column: usize,
}

/// What Fluentd's `use_nil` and `use_default` helpers make of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `"#{use_nil}"` (usually `"#{ENV['X'] || use_nil}"`): the parameter is set to `nil`,
    /// which for most parameters means "not set".
    UseNil,
    /// `"#{use_default}"`: the parameter takes the plugin's default, as if it were absent.
    UseDefault,
}

/// One evaluated `#{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The Ruby code between `#{` and `}`.
    pub code: String,
    /// The line of its `#` (from 1).
    pub line: usize,
    /// The column of its `#` (from 1, in characters).
    pub column: usize,
}

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Parsing options: where environment variables and the host name come from.
///
/// ```
/// use std::path::Path;
/// use flumen_fluentd::Loader;
///
/// let loader = Loader::new()
///     .env(|name| (name == "REGION").then(|| "eu-west-1".to_owned()))
///     .hostname("web-1");
/// let config = loader
///     .parse(
///         "<match **>\n  region \"#{ENV['REGION']}\"\n  host \"#{Socket.gethostname}\"\n</match>\n",
///         Path::new("fluent.conf"),
///     )
///     .unwrap();
/// let output = &config.directives()[0];
/// assert_eq!(output.value("region"), Some("eu-west-1"));
/// assert_eq!(output.value("host"), Some("web-1"));
/// ```
pub struct Loader {
    env: Box<EnvLookup>,
    hostname: Option<String>,
}

impl Loader {
    /// Variables from the process environment; no host name.
    pub fn new() -> Self {
        Loader {
            env: Box::new(|name| std::env::var(name).ok()),
            hostname: None,
        }
    }

    /// Looks environment variables up with `lookup` (`None`: not set).
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Box::new(lookup);
        self
    }

    /// The value of `hostname` and `Socket.gethostname` in embedded Ruby. Without it they are an
    /// error ([`ErrorKind::NoHostname`]).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = Some(name.into());
        self
    }

    /// Parses `text`, read from `origin` (which only names it in positions and errors). No file
    /// is read: each `@include` is kept as a parameter with the key `@include` and the path as
    /// its value.
    pub fn parse(&self, text: &str, origin: &Path) -> Result<Config, ParseError> {
        parser::parse_text(self, text, origin, false)
    }

    /// Reads and parses the file at `path`, following `@include`s.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Config, ParseError> {
        parser::load_file(self, path.as_ref())
    }

    pub(crate) fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    pub(crate) fn host(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new()
    }
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// Parses `text` (read from `origin`) with the process environment and no host name, keeping
/// `@include`s as parameters ([`Loader::parse`]).
pub fn parse(text: &str, origin: &Path) -> Result<Config, ParseError> {
    Loader::new().parse(text, origin)
}

/// Reads and parses the file at `path`, following `@include`s, with the process environment
/// and no host name ([`Loader::load`]).
pub fn load(path: impl AsRef<Path>) -> Result<Config, ParseError> {
    Loader::new().load(path)
}
