//! Multiline joining: stack traces (Java, Python, Go, Ruby) and custom start patterns.
//!
//! Programs write a stack trace as many lines; Docker and most shippers send each line as its
//! own event. This step joins the lines of one trace back into one event, per stream: events
//! are told apart by their tag and the `stream_fields` (container, source, file), so traces of
//! two containers sharing a connection are never mixed.
//!
//! # The built-in modes
//!
//! The built-in modes are state machines in the manner of Fluent Bit's built-in multiline
//! parsers (which come from Google's `fluent-plugin-detect-exceptions`): a line that can start
//! a trace opens a group; each following line either continues the group (moving the machine
//! to another state) or ends it. A line that ends a group is looked at again as a possible
//! start. Lines that cannot start a group are released at once, so ordinary logging is never
//! delayed; only a possible trace is held, until the first line that does not continue it or
//! until `flush_timeout` after its first line, whichever comes first.
//!
//! - `java`: a line with `…Exception:`, `…Error:` or `…Throwable:` (or one of those words at the
//!   end of the line: `Exception in thread "main" java.lang.StackOverflowError`), then
//!   `\tat …`, `Caused by: …`, `Suppressed: …`, `\t... N more`, `… common frames omitted`,
//!   `nested exception is:` and the C# `--- End of … ---` lines. A blank line right after an
//!   exception header belongs to the trace only if the trace goes on after it.
//! - `python`: `Traceback (most recent call last):` (or an exception group's
//!   `+ Exception Group Traceback …`), then every indented line (`File …`, source lines, the
//!   3.11+ `^^^^` markers, exception-group bars), up to and including the final
//!   `SomeError: message` line (or a bare `KeyboardInterrupt`). Chained tracebacks — a blank
//!   line, `During handling of the above exception, another exception occurred:` or
//!   `The above exception was the direct cause of the following exception:`, a blank line and
//!   the next `Traceback` — stay in the same event.
//!
//!   **`logging.exception` is two events**: the log line before `Traceback …` (such as
//!   `ERROR:root:payment failed`) is not joined to the traceback. That is what Fluent Bit's
//!   `python` parser does, and it is the only choice that does not hold back every ordinary
//!   line waiting to see whether a traceback follows. To get one event, use `mode = "custom"`
//!   with a `start_pattern` that matches the start of your log lines (a timestamp, a level):
//!   the traceback lines do not match it and are joined to the log line before them.
//! - `go`: `panic: …` (anywhere in the line, as `log.Panic` prefixes it), `fatal error: …`,
//!   `http: panic serving …` or a bare `goroutine N [state]:` header, then `[signal …]`,
//!   nested `\tpanic: …`, blank lines between goroutines, `goroutine N [state]:` headers and the
//!   frames (a `function(args)` line, `created by …`, and the indented `file:line` line).
//! - `ruby`: `file.rb:NN:in 'method': message (ErrorClass)` (both the backtick quoting of Ruby
//!   ≤ 3.3 and the straight quotes of 3.4), then `\tfrom file.rb:NN:in …` and
//!   `\t ... N levels...` lines; the `error_highlight` snippet (a blank line, the source line,
//!   a `^^^^` line) and `Did you mean?` suggestions right after the header belong to the trace.
//!
//! # The custom mode
//!
//! `mode = "custom"` with a `start_pattern` works like Vector's `halt_before` mode: every line
//! matching the pattern starts a new event, every other line is appended to the current one.
//! Every group is held until the next start line of its stream or the timeout, because nothing
//! else can tell that an event is complete. Lines that arrive with no group open (the first
//! lines of a stream, or the tail of a group released by the timeout) form a group of their
//! own.
//!
//! # The joined event
//!
//! A joined event is the first line's event — its record, time and metadata — with the line
//! field set to the lines joined with `separator` (default `"\n"`); each line loses one trailing
//! `"\n"` (or `"\r\n"`) first, as Docker's `log` field ends with one, and nothing is added after
//! the last line. It carries the sequence number of its first line. A group of one line is
//! released unchanged.
//!
//! The line field is `field` when set, else the first of `log`, `message` and `msg` that holds
//! a string. An event without it (or whose value is not a string) cannot be part of a trace: it
//! ends its stream's group, which is released before it.
//!
//! # Limits
//!
//! A group is released as soon as it would pass `max_lines` lines or `max_bytes` bytes of
//! joined text; the line that did not fit starts a new group in the same state, so a
//! 5,000-line trace comes out as five events and nothing is lost. A single line longer than
//! `max_bytes` is never cut.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use flumen_event::record::{Event, Value};
use regex::Regex;
use serde::Deserialize;

use crate::joiner::{HeldGroup, HeldGroups};
use crate::{Joiner, Numbered};

/// Which lines make a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MultilineMode {
    /// Java (and JVM languages, C#, V8) stack traces.
    Java,
    /// Python tracebacks, chained ones included.
    Python,
    /// Go panics and goroutine dumps.
    Go,
    /// Ruby uncaught-exception backtraces.
    Ruby,
    /// Every line matching `start_pattern` starts an event; other lines continue it.
    Custom,
}

/// Configuration of the multiline step: one `[[filters]]` table without `type`, `match` and
/// `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// `java`, `python`, `go`, `ruby` or `custom`.
    pub mode: MultilineMode,
    /// The field holding the line; by default the first of `log`, `message`, `msg` present.
    #[serde(default)]
    pub field: Option<String>,
    /// For `custom` (required there, refused elsewhere): lines matching it start an event.
    #[serde(default)]
    pub start_pattern: Option<String>,
    /// The longest a group is held after its first line arrived (default 1s).
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// The fields that, with the tag, tell streams apart (missing fields are fine).
    #[serde(default = "default_stream_fields")]
    pub stream_fields: Vec<String>,
    /// The most lines in one joined event (default 1000).
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// The most bytes of joined text in one event (default 1 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Put between the joined lines (default `"\n"`).
    #[serde(default = "default_separator")]
    pub separator: String,
}

fn default_flush_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_stream_fields() -> Vec<String> {
    ["container_id", "source", "stream", "filename"]
        .map(String::from)
        .to_vec()
}

fn default_max_lines() -> usize {
    1000
}

fn default_max_bytes() -> ByteSize {
    ByteSize::mib(1)
}

fn default_separator() -> String {
    "\n".to_owned()
}

impl MultilineConfig {
    /// A configuration of `mode` with every other key at its default.
    pub fn new(mode: MultilineMode) -> Self {
        Self {
            mode,
            field: None,
            start_pattern: None,
            flush_timeout: default_flush_timeout(),
            stream_fields: default_stream_fields(),
            max_lines: default_max_lines(),
            max_bytes: default_max_bytes(),
            separator: default_separator(),
        }
    }
}

/// The fields tried, in order, when `field` is not set.
const DEFAULT_FIELDS: [&str; 3] = ["log", "message", "msg"];

/// A machine state; the start state is 0.
type State = u8;
const START: State = 0;

/// One transition: from any state in `from` (a bit set), a line matching `re` moves the group
/// to `to`. A `tentative` line belongs to the group only if a later line continues it.
#[derive(Debug)]
struct Rule {
    from: u32,
    re: Regex,
    to: State,
    tentative: bool,
}

#[derive(Debug)]
enum Rules {
    Machine {
        rules: Vec<Rule>,
        /// Bit set of the states some rule leaves; a group in any other state is complete.
        open: u32,
    },
    Custom(Regex),
}

/// Compiled multiline rules, shared by every session.
#[derive(Debug)]
pub struct Multiline {
    rules: Rules,
    fields: Vec<String>,
    stream_fields: Vec<String>,
    flush_timeout: Duration,
    max_lines: usize,
    max_bytes: usize,
    separator: String,
}

/// `(from states, pattern, to, tentative)`.
type RuleSpec = (&'static [State], &'static str, State, bool);

fn java_rules() -> &'static [RuleSpec] {
    const START_EXC: State = 1;
    const AFTER_EXC: State = 2;
    const FRAMES: State = 3;
    &[
        (
            &[START, START_EXC],
            r".(?:Exception|Error|Throwable|V8 errors stack trace)(?::|$)",
            AFTER_EXC,
            false,
        ),
        (
            &[AFTER_EXC],
            r"^[\t ]*nested exception is:[\t ]*",
            START_EXC,
            false,
        ),
        (&[AFTER_EXC], r"^[\t ]*$", AFTER_EXC, true),
        (&[AFTER_EXC, FRAMES], r"^[\t ]+(?:eval )?at ", FRAMES, false),
        (
            &[AFTER_EXC, FRAMES],
            r"^[\t ]+--- End of inner exception stack trace ---$",
            FRAMES,
            false,
        ),
        (
            &[AFTER_EXC, FRAMES],
            r"^--- End of stack trace from previous location(?: where exception was thrown)? ---$",
            FRAMES,
            false,
        ),
        (
            &[AFTER_EXC, FRAMES],
            r"^[\t ]*(?:Caused by|Suppressed):",
            AFTER_EXC,
            false,
        ),
        (
            &[AFTER_EXC, FRAMES],
            r"^[\t ]*\.\.\. \d+ (?:more|common frames omitted)",
            FRAMES,
            false,
        ),
    ]
}

fn python_rules() -> &'static [RuleSpec] {
    const FRAMES: State = 1;
    const END: State = 2;
    const END_BLANK: State = 3;
    const CHAIN: State = 4;
    &[
        (
            &[START, CHAIN],
            r"^(?:[\t ]*\+ )?(?:Exception Group )?Traceback \(most recent call last\):$",
            FRAMES,
            false,
        ),
        (&[FRAMES], r"^[\t ]", FRAMES, false),
        (&[FRAMES], r"^[A-Za-z_][A-Za-z0-9_.]*(?::|$)", END, false),
        (&[END], r"^$", END_BLANK, true),
        (
            &[END, END_BLANK],
            r"^(?:During handling of the above exception, another exception occurred|The above exception was the direct cause of the following exception):$",
            CHAIN,
            false,
        ),
        (&[CHAIN], r"^$", CHAIN, true),
    ]
}

fn go_rules() -> &'static [RuleSpec] {
    const AFTER_PANIC: State = 1;
    const AFTER_SIGNAL: State = 2;
    const GOROUTINE: State = 3;
    const FRAME_CALL: State = 4;
    const FRAME_FILE: State = 5;
    &[
        (
            &[START],
            r"(?-u:\b)panic: |^fatal error: ",
            AFTER_PANIC,
            false,
        ),
        (&[START], r"http: panic serving", GOROUTINE, false),
        (
            &[START, GOROUTINE],
            r"^goroutine \d+ (?:.* )?\[[^\]]*\]:$",
            FRAME_CALL,
            false,
        ),
        (&[AFTER_PANIC], r"^[\t ]+panic: ", AFTER_PANIC, false),
        (&[AFTER_PANIC], r"^\[signal ", AFTER_SIGNAL, false),
        (
            &[AFTER_PANIC, AFTER_SIGNAL, FRAME_CALL],
            r"^$",
            GOROUTINE,
            true,
        ),
        (
            &[FRAME_CALL],
            r"^\S+\(.*\)$|^created by ",
            FRAME_FILE,
            false,
        ),
        (
            &[FRAME_CALL],
            r"^\.\.\.additional frames elided\.\.\.$",
            FRAME_CALL,
            false,
        ),
        (&[FRAME_FILE], r"^\s", FRAME_CALL, false),
    ]
}

fn ruby_rules() -> &'static [RuleSpec] {
    const AFTER_EXC: State = 1;
    const SNIPPET_BLANK: State = 2;
    const SNIPPET_CODE: State = 3;
    const FRAMES: State = 4;
    const SUGGESTIONS: State = 5;
    &[
        (&[START], r"^.+:\d+:in\s", AFTER_EXC, false),
        (&[AFTER_EXC], r"^$", SNIPPET_BLANK, true),
        (&[SNIPPET_BLANK], r".", SNIPPET_CODE, true),
        (&[SNIPPET_CODE], r"^\s*\^+\s*$", AFTER_EXC, false),
        (&[AFTER_EXC], r"^Did you mean\?", SUGGESTIONS, false),
        (&[SUGGESTIONS], r"^\s+\S+$", SUGGESTIONS, false),
        (
            &[AFTER_EXC, FRAMES, SUGGESTIONS],
            r"^\s+from\s+.*:\d+:in\s+",
            FRAMES,
            false,
        ),
        (
            &[AFTER_EXC, FRAMES, SUGGESTIONS],
            r"^\s+\.\.\. \d+ levels\.\.\.$",
            FRAMES,
            false,
        ),
    ]
}

fn compile(specs: &[RuleSpec]) -> Rules {
    let mut open = 0;
    let rules = specs
        .iter()
        .map(|&(from, pattern, to, tentative)| {
            let from = from.iter().fold(0u32, |set, s| set | 1 << s);
            open |= from;
            Rule {
                from,
                re: Regex::new(pattern).expect("built-in multiline patterns compile"),
                to,
                tentative,
            }
        })
        .collect();
    Rules::Machine { rules, open }
}

impl Multiline {
    /// Compiles `config`; errors name the key at fault.
    pub fn new(config: &MultilineConfig) -> Result<Self, String> {
        let rules = match (config.mode, &config.start_pattern) {
            (MultilineMode::Custom, None) => {
                return Err("start_pattern: required when mode = \"custom\"".to_owned());
            }
            (MultilineMode::Custom, Some(pattern)) => {
                Rules::Custom(Regex::new(pattern).map_err(|e| format!("start_pattern: {e}"))?)
            }
            (_, Some(_)) => {
                return Err("start_pattern: only used with mode = \"custom\"".to_owned());
            }
            (MultilineMode::Java, None) => compile(java_rules()),
            (MultilineMode::Python, None) => compile(python_rules()),
            (MultilineMode::Go, None) => compile(go_rules()),
            (MultilineMode::Ruby, None) => compile(ruby_rules()),
        };
        if config.flush_timeout.is_zero() {
            return Err("flush_timeout: must be more than 0".to_owned());
        }
        if config.max_lines == 0 {
            return Err("max_lines: must be at least 1".to_owned());
        }
        if config.max_bytes.as_u64() == 0 {
            return Err("max_bytes: must be more than 0".to_owned());
        }
        let fields = match &config.field {
            Some(field) if field.is_empty() => return Err("field: must not be empty".to_owned()),
            Some(field) => vec![field.clone()],
            None => DEFAULT_FIELDS.map(String::from).to_vec(),
        };
        Ok(Self {
            rules,
            fields,
            stream_fields: config.stream_fields.clone(),
            flush_timeout: config.flush_timeout,
            max_lines: config.max_lines,
            max_bytes: usize::try_from(config.max_bytes.as_u64()).unwrap_or(usize::MAX),
            separator: config.separator.clone(),
        })
    }

    /// A joiner with its own state.
    pub fn joiner(self: &Arc<Self>) -> Box<dyn Joiner> {
        Box::new(MultilineJoiner {
            rules: Arc::clone(self),
            groups: HeldGroups::new(self.flush_timeout),
        })
    }

    /// The index (in `fields`) of the event's line field, when it holds a string.
    fn line_field(&self, event: &Event) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| matches!(event.record.get(f), Some(Value::Str(_))))
    }

    /// What `line` does to a group in `state`: the next state and whether the line is only
    /// tentatively part of it; `None` when it does not continue (or, from the start state,
    /// does not start) a group.
    fn step(&self, state: State, line: &str) -> Option<(State, bool)> {
        match &self.rules {
            Rules::Machine { rules, .. } => rules
                .iter()
                .find(|r| r.from & (1 << state) != 0 && r.re.is_match(line))
                .map(|r| (r.to, r.tentative)),
            Rules::Custom(start) => {
                if state == START {
                    // Every line opens a group when none is open.
                    Some((1, false))
                } else if start.is_match(line) {
                    None
                } else {
                    Some((1, false))
                }
            }
        }
    }

    /// True when a group in `state` can take no more lines.
    fn complete(&self, state: State) -> bool {
        match &self.rules {
            Rules::Machine { open, .. } => open & (1 << state) == 0,
            Rules::Custom(_) => false,
        }
    }
}

/// A line without its one trailing newline.
fn strip_newline(line: &str) -> &str {
    match line.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None => line,
    }
}

/// A group being held.
#[derive(Debug)]
struct Group {
    /// The first event, kept whole; its line field becomes the joined text.
    first: Numbered,
    /// Index into `Multiline::fields` of the first event's line field.
    field: usize,
    /// The joined text, built from the second line on.
    text: String,
    /// The joined text's length (also while `text` is still empty).
    bytes: usize,
    lines: usize,
    state: State,
    /// Lines that belong to the group only if a later line continues it.
    pending: Vec<Numbered>,
    /// The sequence number of the last line joined.
    last_seq: u64,
}

impl Group {
    /// A group with `event` (whose line field is `field`) as its first line.
    fn new(rules: &Multiline, event: Numbered, field: usize, state: State) -> Self {
        let bytes = match event.1.record.get(&rules.fields[field]) {
            Some(Value::Str(s)) => strip_newline(s).len(),
            _ => 0,
        };
        Group {
            last_seq: event.0,
            first: event,
            field,
            text: String::new(),
            bytes,
            lines: 1,
            state,
            pending: Vec::new(),
        }
    }
}

impl HeldGroup for Group {
    fn first_seq(&self) -> u64 {
        self.first.0
    }

    fn last_seq(&self) -> u64 {
        self.pending.last().map_or(self.last_seq, |(seq, _)| *seq)
    }
}

/// One session's multiline state.
#[derive(Debug)]
struct MultilineJoiner {
    rules: Arc<Multiline>,
    /// Held groups by stream key (tag, then the stream fields).
    groups: HeldGroups<Group>,
}

impl MultilineJoiner {
    /// The joined event of a group (its pending lines are the caller's). A stack trace the
    /// built-in rules joined is an error: it gets `level = "ERROR"` unless it already has a
    /// level, so that routes and alerts on errors see it (a parser later in the pipeline that
    /// finds a level in the text replaces it).
    fn finish(&self, group: Group) -> Numbered {
        let (seq, mut event) = group.first;
        if group.lines > 1 {
            let field = &self.rules.fields[group.field];
            if let Some(slot) = event.record.get_mut(field) {
                *slot = Value::Str(group.text);
            }
            if matches!(self.rules.rules, Rules::Machine { .. }) {
                event.record.insert_if_absent(
                    flumen_parse::LEVEL_FIELD,
                    flumen_parse::Level::Error.as_str(),
                );
            }
        }
        (seq, event)
    }

    /// Appends `event`'s line to the group of `key`, or — when that would pass a limit —
    /// releases the group into `out` and opens a new one with `event` in `state`.
    fn append(
        &mut self,
        key: &str,
        mut event: Numbered,
        field: usize,
        state: State,
        now: Instant,
        out: &mut Vec<Numbered>,
    ) {
        let rules = Arc::clone(&self.rules);
        let Some(Value::Str(line)) = event.1.record.get_mut(&rules.fields[field]) else {
            unreachable!("the line field was checked to hold a string");
        };
        let group = self.groups.get_mut(key).expect("the group is held");
        let piece = strip_newline(line).len();
        let bytes = group.bytes + rules.separator.len() + piece;
        if group.lines + 1 > rules.max_lines || bytes > rules.max_bytes {
            let next = Group::new(&rules, event, field, state);
            let group = self
                .groups
                .replace(key, next, now)
                .expect("the group is held");
            out.push(self.finish(group));
            return;
        }
        if group.lines == 1 {
            let first = match group.first.1.record.get(&rules.fields[group.field]) {
                Some(Value::Str(s)) => strip_newline(s),
                _ => "",
            };
            group.text.reserve(bytes);
            group.text.push_str(first);
        }
        group.text.push_str(&rules.separator);
        group.text.push_str(strip_newline(line));
        group.bytes = bytes;
        group.lines += 1;
        group.state = state;
        group.last_seq = event.0;
    }

    /// Takes one event of the stream `key`.
    fn push_line(
        &mut self,
        key: &str,
        tag_len: usize,
        event: Numbered,
        now: Instant,
        out: &mut Vec<Numbered>,
    ) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let rules = Arc::clone(&self.rules);
            let Some(field) = rules.line_field(&event.1) else {
                // Not a line: it ends the stream's group.
                if let Some(mut group) = self.groups.remove(key) {
                    let pending = std::mem::take(&mut group.pending);
                    out.push(self.finish(group));
                    out.extend(pending);
                }
                out.push(event);
                continue;
            };
            let line = match event.1.record.get(&rules.fields[field]) {
                Some(Value::Str(s)) => strip_newline(s),
                _ => unreachable!("line_field checked the value"),
            };
            let Some(group) = self.groups.get_mut(key) else {
                match rules.step(START, line) {
                    Some((state, _)) if !rules.complete(state) => {
                        let group = Group::new(&rules, event, field, state);
                        self.groups.insert(key, tag_len, group, now);
                    }
                    _ => out.push(event),
                }
                continue;
            };
            match rules.step(group.state, line) {
                Some((state, true)) => {
                    group.state = state;
                    group.pending.push(event);
                }
                Some((state, false)) => {
                    let pending = std::mem::take(&mut group.pending);
                    let group_state = group.state;
                    for line in pending {
                        let field = rules.line_field(&line.1).expect("pending lines are lines");
                        self.append(key, line, field, group_state, now, out);
                    }
                    self.append(key, event, field, state, now, out);
                    if rules.complete(state) {
                        let group = self.groups.remove(key).expect("the group is held");
                        out.push(self.finish(group));
                    }
                }
                None => {
                    // The group is over; its pending lines and this one are looked at anew.
                    let mut group = self.groups.remove(key).expect("the group is held");
                    let pending = std::mem::take(&mut group.pending);
                    out.push(self.finish(group));
                    queue.push_front(event);
                    for line in pending.into_iter().rev() {
                        queue.push_front(line);
                    }
                }
            }
        }
    }

    /// Releases `group` with its tag (its pending lines as they are).
    fn release(&self, tag: String, mut group: Group, out: &mut Vec<(String, Numbered)>) {
        let pending = std::mem::take(&mut group.pending);
        out.push((tag.clone(), self.finish(group)));
        out.extend(pending.into_iter().map(|e| (tag.clone(), e)));
    }
}

impl Joiner for MultilineJoiner {
    fn push(&mut self, tag: &str, event: Numbered, now: Instant, out: &mut Vec<Numbered>) {
        if self.groups.is_empty() {
            // Nothing held: a line that cannot start a group goes straight out.
            let rules = &self.rules;
            let starts = rules.line_field(&event.1).is_some_and(|field| {
                let line = match event.1.record.get(&rules.fields[field]) {
                    Some(Value::Str(s)) => strip_newline(s),
                    _ => "",
                };
                rules.step(START, line).is_some()
            });
            if !starts {
                out.push(event);
                return;
            }
        }
        let key = self
            .groups
            .stream_key(tag, &self.rules.stream_fields, &event.1);
        self.push_line(&key, tag.len(), event, now, out);
        self.groups.reuse_key(key);
    }

    fn flush_due(&mut self, now: Instant, out: &mut Vec<(String, Numbered)>) {
        while let Some((tag, group)) = self.groups.take_due(now) {
            self.release(tag, group, out);
        }
    }

    fn flush_all(&mut self, out: &mut Vec<(String, Numbered)>) {
        for (tag, group) in self.groups.take_all() {
            self.release(tag, group, out);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.groups.next_deadline()
    }

    fn holds(&self, seqs: std::ops::Range<u64>) -> bool {
        self.groups.holds(&seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::EventTime;
    use flumen_event::record::Record;

    fn line(container: &str, text: &str) -> Event {
        Event {
            time: EventTime::new(1_700_000_000, 0),
            record: Record::from(vec![
                ("container_id".to_owned(), Value::from(container)),
                ("log".to_owned(), Value::from(format!("{text}\n"))),
            ]),
            metadata: None,
        }
    }

    fn joiner(config: &str) -> Box<dyn Joiner> {
        let config: MultilineConfig = toml::from_str(config).expect("config");
        Arc::new(Multiline::new(&config).expect("compiles")).joiner()
    }

    fn logs(out: &[Numbered]) -> Vec<(u64, &str)> {
        out.iter()
            .map(|(seq, e)| (*seq, e.record.get("log").and_then(Value::as_str).unwrap()))
            .collect()
    }

    fn feed(j: &mut dyn Joiner, lines: &[&str], now: Instant) -> Vec<Numbered> {
        let mut out = Vec::new();
        for (i, text) in lines.iter().enumerate() {
            j.push("app", (i as u64, line("a", text)), now, &mut out);
        }
        out
    }

    #[test]
    fn ordinary_lines_are_not_held() {
        let mut j = joiner("mode = \"java\"");
        let now = Instant::now();
        let out = feed(&mut *j, &["INFO started", "INFO listening on :8080"], now);
        assert_eq!(
            logs(&out),
            [(0, "INFO started\n"), (1, "INFO listening on :8080\n")]
        );
        assert!(!j.holds(0..u64::MAX), "nothing is held");
        assert_eq!(j.next_deadline(), None);
        // A possible header is held until the next line says it is alone.
        let out = feed(&mut *j, &["java.io.IOException: reset"], now);
        assert!(out.is_empty());
        assert!(j.holds(0..1), "0 is the oldest held");
        assert_eq!(j.next_deadline(), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn a_blank_line_belongs_to_a_trace_only_if_the_trace_goes_on() {
        let mut j = joiner("mode = \"java\"");
        let now = Instant::now();
        let out = feed(
            &mut *j,
            &["java.io.IOException: reset", "", "INFO next"],
            now,
        );
        assert_eq!(
            logs(&out),
            [
                (0, "java.io.IOException: reset\n"),
                (1, "\n"),
                (2, "INFO next\n")
            ]
        );
        let out = feed(
            &mut *j,
            &[
                "java.io.IOException: reset",
                "",
                "\tat A.b(A.java:1)",
                "INFO next",
            ],
            now,
        );
        assert_eq!(
            logs(&out),
            [
                (0, "java.io.IOException: reset\n\n\tat A.b(A.java:1)"),
                (3, "INFO next\n")
            ]
        );
    }

    #[test]
    fn limits_split_a_group_without_losing_lines() {
        let trace = [
            "java.lang.IllegalStateException: boom",
            "\tat A.a(A.java:1)",
            "\tat A.b(A.java:2)",
            "\tat A.c(A.java:3)",
            "\tat A.d(A.java:4)",
        ];
        let mut j = joiner("mode = \"java\"\nmax_lines = 2");
        let mut out = feed(&mut *j, &trace, Instant::now());
        let mut rest = Vec::new();
        j.flush_all(&mut rest);
        out.extend(rest.into_iter().map(|(tag, e)| {
            assert_eq!(tag, "app");
            e
        }));
        assert_eq!(
            logs(&out),
            [
                (
                    0,
                    "java.lang.IllegalStateException: boom\n\tat A.a(A.java:1)"
                ),
                (2, "\tat A.b(A.java:2)\n\tat A.c(A.java:3)"),
                (4, "\tat A.d(A.java:4)\n"),
            ]
        );
        // The header (37 bytes) and a frame (1 + 17) fit in 60 bytes, a second frame does not.
        let mut j = joiner("mode = \"java\"\nmax_bytes = 60");
        let mut out = feed(&mut *j, &trace, Instant::now());
        assert_eq!(out.len(), 1);
        let mut rest = Vec::new();
        j.flush_all(&mut rest);
        out.extend(rest.into_iter().map(|(_, e)| e));
        assert_eq!(
            logs(&out),
            [
                (
                    0,
                    "java.lang.IllegalStateException: boom\n\tat A.a(A.java:1)"
                ),
                (
                    2,
                    "\tat A.b(A.java:2)\n\tat A.c(A.java:3)\n\tat A.d(A.java:4)"
                ),
            ]
        );
    }

    #[test]
    fn an_event_without_the_line_field_ends_the_group() {
        let mut j = joiner("mode = \"java\"");
        let now = Instant::now();
        let mut out = Vec::new();
        j.push(
            "app",
            (0, line("a", "java.io.IOException: x")),
            now,
            &mut out,
        );
        j.push("app", (1, line("a", "\tat A.a(A.java:1)")), now, &mut out);
        let mut odd = line("a", "");
        odd.record.remove("log");
        odd.record.insert("log", Value::UInt(7));
        j.push("app", (2, odd.clone()), now, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].1.record.get("log"),
            Some(&Value::from("java.io.IOException: x\n\tat A.a(A.java:1)"))
        );
        assert_eq!(out[1], (2, odd));
        assert!(!j.holds(0..u64::MAX), "nothing is held");
    }

    #[test]
    fn streams_are_kept_apart_by_tag_and_fields() {
        let mut j = joiner("mode = \"java\"");
        let now = Instant::now();
        let mut out = Vec::new();
        j.push(
            "app",
            (0, line("a", "java.io.IOException: a")),
            now,
            &mut out,
        );
        j.push(
            "app",
            (1, line("b", "java.io.IOException: b")),
            now,
            &mut out,
        );
        j.push(
            "other",
            (2, line("a", "\tat Other.x(Other.java:1)")),
            now,
            &mut out,
        );
        j.push("app", (3, line("b", "\tat B.b(B.java:1)")), now, &mut out);
        j.push("app", (4, line("a", "\tat A.a(A.java:1)")), now, &mut out);
        // `other`'s stray frame is not a start: released alone.
        assert_eq!(logs(&out), [(2, "\tat Other.x(Other.java:1)\n")]);
        assert!(j.holds(0..1), "0 is the oldest held");
        let mut rest = Vec::new();
        j.flush_all(&mut rest);
        let rest: Vec<_> = rest
            .iter()
            .map(|(tag, (seq, e))| {
                let log = e.record.get("log").and_then(Value::as_str).unwrap();
                (tag.as_str(), *seq, log)
            })
            .collect();
        assert_eq!(
            rest,
            [
                ("app", 0, "java.io.IOException: a\n\tat A.a(A.java:1)"),
                ("app", 1, "java.io.IOException: b\n\tat B.b(B.java:1)"),
            ]
        );
    }

    #[test]
    fn field_and_separator() {
        let mut j = joiner(
            "mode = \"custom\"\nstart_pattern = '^\\['\nfield = \"message\"\nseparator = \" | \"",
        );
        let now = Instant::now();
        let mut out = Vec::new();
        for (seq, text) in ["[1] a", "  more", "[2] b"].iter().enumerate() {
            let event = Event {
                time: EventTime::new(seq as u64, 0),
                record: Record::from(vec![("message".to_owned(), Value::from(*text))]),
                metadata: Some(vec![0x80]),
            };
            j.push("app", (seq as u64, event), now, &mut out);
        }
        assert_eq!(out.len(), 1);
        let (seq, event) = &out[0];
        assert_eq!(*seq, 0);
        assert_eq!(
            event.record.get("message"),
            Some(&Value::from("[1] a |   more"))
        );
        assert_eq!(event.time, EventTime::new(0, 0));
        assert_eq!(event.metadata, Some(vec![0x80]));
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |text: &str| {
            let config: MultilineConfig = toml::from_str(text).expect("parses");
            Multiline::new(&config).unwrap_err()
        };
        assert!(err("mode = \"custom\"").starts_with("start_pattern: required"));
        assert!(
            err("mode = \"custom\"\nstart_pattern = '(x'")
                .starts_with("start_pattern: regex parse error")
        );
        assert!(
            err("mode = \"java\"\nstart_pattern = 'x'").starts_with("start_pattern: only used")
        );
        assert!(err("mode = \"go\"\nmax_lines = 0").starts_with("max_lines: "));
        assert!(err("mode = \"go\"\nflush_timeout = \"0s\"").starts_with("flush_timeout: "));
        assert!(toml::from_str::<MultilineConfig>("mode = \"cobol\"").is_err());
        assert!(toml::from_str::<MultilineConfig>("mode = \"go\"\ntimeout = \"1s\"").is_err());
        let config: MultilineConfig =
            toml::from_str("mode = \"python\"\nflush_timeout = \"250ms\"\nmax_bytes = \"64 KiB\"")
                .unwrap();
        assert_eq!(config.flush_timeout, Duration::from_millis(250));
        assert_eq!(config.max_bytes, ByteSize::kib(64));
        assert_eq!(config.stream_fields, default_stream_fields());
    }
}
