//! `flumen query`: search a running flumen's store from the terminal, through its API.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The query: a selector with stages, such as '{service="api"} |= "timeout"'.
    query: String,
    /// Events from this long ago until now (or --to): 10m, 1h, 2d.
    #[arg(long, conflicts_with = "from")]
    since: Option<String>,
    /// Events from this time: RFC 3339 (2026-12-03T12:00:00Z) or a Unix time.
    #[arg(long)]
    from: Option<String>,
    /// Events until this time (default: now).
    #[arg(long)]
    to: Option<String>,
    /// At most this many events: the newest ones, printed oldest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// The oldest events of the range instead of the newest.
    #[arg(long)]
    forward: bool,
    /// How events are printed.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// The flumen to ask: its API address.
    #[arg(long, env = "FLUMEN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// Time, level, service and line, coloured on a terminal.
    Text,
    /// Each event as a JSON object, one per line.
    Json,
    /// Only each event's line.
    Raw,
}

pub fn run(args: &QueryArgs) -> anyhow::Result<()> {
    let mut url = format!(
        "{}/api/v1/query?query={}&limit={}&direction={}",
        args.server.trim_end_matches('/'),
        encode(&args.query),
        args.limit,
        if args.forward { "forward" } else { "backward" },
    );
    for (name, value) in [
        ("since", &args.since),
        ("start", &args.from),
        ("end", &args.to),
    ] {
        if let Some(value) = value {
            url.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    let mut response = ureq::get(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .with_context(|| format!("cannot reach flumen at {}", args.server))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .context("reading flumen's answer")?;
    if !status.is_success() {
        bail!("{}", body.trim());
    }
    let mut events: Vec<Value> = Vec::new();
    let mut closing = Value::Null;
    for line in body.lines().filter(|l| !l.is_empty()) {
        let value: Value = serde_json::from_str(line).context("flumen's answer is not NDJSON")?;
        if value.get("done").is_some() {
            closing = value;
        } else {
            events.push(value);
        }
    }
    if !args.forward {
        events.reverse();
    }
    let colour = args.output == OutputFormat::Text
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    for event in &events {
        let printed = match args.output {
            OutputFormat::Json => writeln!(out, "{event}"),
            OutputFormat::Raw => writeln!(out, "{}", text(event, "line")),
            OutputFormat::Text => writeln!(out, "{}", human_line(event, colour)),
        };
        if printed.is_err() {
            return Ok(()); // The reader went away (`| head`).
        }
    }
    if closing.get("truncated").is_some_and(|t| !t.is_null()) {
        eprintln!("flumen: the search ran out of time; these are the events found so far.");
    }
    if closing.get("next").is_some_and(|n| !n.is_null()) {
        eprintln!(
            "flumen: {} events shown; more match (raise --limit or narrow the range).",
            events.len()
        );
    }
    Ok(())
}

fn text<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `2026-12-03T12:00:00.123Z ERROR api  the line`, with the level coloured.
fn human_line(event: &Value, colour: bool) -> String {
    let labels = event.get("labels");
    let record = event.get("record");
    let field = |name: &str| {
        labels
            .and_then(|l| l.get(name))
            .or_else(|| record.and_then(|r| r.get(name)))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let level = field("level");
    let service = field("service");
    let time = text(event, "time");
    let line = text(event, "line");
    if !colour {
        return format!("{time} {level:<5} {service} {line}");
    }
    let level_colour = match level.to_ascii_lowercase().as_str() {
        "error" | "err" | "fatal" | "critical" | "crit" | "alert" | "emerg" | "panic" => "31",
        "warn" | "warning" => "33",
        "info" | "notice" => "32",
        "debug" | "trace" => "90",
        _ => "0",
    };
    format!(
        "\x1b[2m{time}\x1b[0m \x1b[{level_colour}m{level:<5}\x1b[0m \x1b[36m{service}\x1b[0m {line}"
    )
}

/// Percent-encodes a query-string value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
