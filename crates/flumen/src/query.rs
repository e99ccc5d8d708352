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
    /// For metric queries: the step between points (30s, 5m); without it, one value per series
    /// at --to (or now).
    #[arg(long)]
    step: Option<String>,
    /// The flumen to ask: its API address.
    #[arg(long, env = "FLUMEN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Time, level, service and line, coloured on a terminal.
    Text,
    /// Each event as a JSON object, one per line.
    Json,
    /// Only each event's line.
    Raw,
}

pub fn run(args: &QueryArgs) -> anyhow::Result<()> {
    // A malformed query is reported by the server too; parsing here only picks the endpoint.
    if matches!(
        flumen_select::Query::parse(&args.query),
        Ok(flumen_select::Query::Metric(_))
    ) {
        return run_metric(args);
    }
    let mut url = format!(
        "{}/api/v1/query?query={}&limit={}&direction={}",
        args.server.trim_end_matches('/'),
        encode(&args.query),
        args.limit,
        if args.forward { "forward" } else { "backward" },
    );
    push_range(&mut url, args);
    let body = get(&url, &args.server)?;
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
    let printer = Printer::new(args.output);
    for event in &events {
        if !printer.print(event) {
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

/// Prints events as the command line asks.
pub(crate) struct Printer {
    output: OutputFormat,
    colour: bool,
}

impl Printer {
    /// Colours only text on a terminal, and not with `NO_COLOR` set.
    pub(crate) fn new(output: OutputFormat) -> Self {
        let colour = output == OutputFormat::Text
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none();
        Self { output, colour }
    }

    /// Prints one event; false when standard output is closed.
    pub(crate) fn print(&self, event: &Value) -> bool {
        let mut out = std::io::stdout().lock();
        let printed = match self.output {
            OutputFormat::Json => writeln!(out, "{event}"),
            OutputFormat::Raw => writeln!(out, "{}", text(event, "line")),
            OutputFormat::Text => writeln!(out, "{}", human_line(event, self.colour)),
        };
        printed.and_then(|()| out.flush()).is_ok()
    }
}

/// GETs `url` and returns the body; an answer other than 2xx is the error, with its text.
pub(crate) fn get(url: &str, server: &str) -> anyhow::Result<String> {
    let mut response = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .with_context(|| format!("cannot reach flumen at {server}"))?;
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
    Ok(body)
}

/// A metric query through Loki's query API, printed as a table: one row per series (and per
/// step, with --step).
fn run_metric(args: &QueryArgs) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let query = encode(&args.query);
    let url = match &args.step {
        None => {
            let mut url = format!("{base}/loki/api/v1/query?query={query}");
            if let Some(to) = &args.to {
                url.push_str(&format!("&time={}", encode(to)));
            }
            url
        }
        Some(step) => {
            let mut url = format!(
                "{base}/loki/api/v1/query_range?query={query}&step={}",
                encode(step)
            );
            push_range(&mut url, args);
            url
        }
    };
    let body: Value =
        serde_json::from_str(&get(&url, &args.server)?).context("flumen's answer is not JSON")?;
    let data = &body["data"];
    if args.output == OutputFormat::Json {
        println!("{data}");
        return Ok(());
    }
    let series = data["result"].as_array().cloned().unwrap_or_default();
    let mut names: Vec<String> = series
        .iter()
        .filter_map(|s| s["metric"].as_object())
        .flat_map(|m| m.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let with_time = args.step.is_some();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    if with_time {
        header.push("time".into());
    }
    header.extend(names.iter().cloned());
    header.push("value".into());
    for s in &series {
        let labels: Vec<String> = names
            .iter()
            .map(|n| s["metric"][n].as_str().unwrap_or("").to_owned())
            .collect();
        let points = match s.get("values") {
            Some(values) => values.as_array().cloned().unwrap_or_default(),
            None => vec![s["value"].clone()],
        };
        for point in points {
            let mut row = Vec::new();
            if with_time {
                row.push(rfc3339(point[0].as_f64().unwrap_or(0.0)));
            }
            row.extend(labels.iter().cloned());
            row.push(point[1].as_str().unwrap_or("").to_owned());
            rows.push(row);
        }
    }
    print_table(&header, &rows, args.output == OutputFormat::Raw);
    Ok(())
}

/// Columns aligned with spaces, or separated by tabs when `tabs` (for scripts).
fn print_table(header: &[String], rows: &[Vec<String>], tabs: bool) {
    let mut out = std::io::stdout().lock();
    if tabs {
        for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
            if writeln!(out, "{}", row.join("\t")).is_err() {
                return;
            }
        }
        return;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            std::iter::once(&header[i])
                .chain(rows.iter().map(|r| &r[i]))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        if writeln!(out, "{}", cells.join("  ").trim_end()).is_err() {
            return;
        }
    }
}

/// Unix seconds (as Prometheus samples carry them) as RFC 3339.
fn rfc3339(seconds: f64) -> String {
    let nanos = (seconds * 1e9).max(0.0) as u128;
    let time = flumen_event::EventTime::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    );
    time.to_string()
}

fn text<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `2026-12-03T12:00:00.123Z ERROR api  the line`, with the level coloured and each service
/// in a colour of its own (as `stern` colours pods).
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
    let service_colour = service_colour(service);
    format!(
        "\x1b[2m{time}\x1b[0m \x1b[{level_colour}m{level:<5}\x1b[0m \x1b[{service_colour}m{service}\x1b[0m {line}"
    )
}

/// A service's colour, the same every time: one of six (none red, which levels use), by a
/// hash of its name.
fn service_colour(service: &str) -> &'static str {
    const COLOURS: [&str; 6] = ["96", "95", "94", "92", "93", "36"];
    let hash = service.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    COLOURS[(hash % COLOURS.len() as u64) as usize]
}

/// Appends the time range the command line names (`since`, `start`, `end`) to `url`.
fn push_range(url: &mut String, args: &QueryArgs) {
    for (name, value) in [
        ("since", &args.since),
        ("start", &args.from),
        ("end", &args.to),
    ] {
        if let Some(value) = value {
            url.push_str(&format!("&{name}={}", encode(value)));
        }
    }
}

/// Percent-encodes a query-string value.
pub(crate) fn encode(value: &str) -> String {
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
