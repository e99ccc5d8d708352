//! `flumen tail`: follow a running flumen's events live in the terminal, like `tail -f` or
//! `stern`: the last `-n` events, then each new one as it arrives, a colour per service and
//! levels highlighted. It reads `GET /api/v1/stream` (Server-Sent Events), and when the
//! connection drops or flumen restarts it says so, reconnects by itself and resumes after the
//! last event it printed (`Last-Event-ID`): no line missing, none twice.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use crate::query::{OutputFormat, Printer, encode, get};

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The query, such as '{deployment_id="d-42"} |= "timeout"' (default: every event); the
    /// flags below narrow its selector.
    query: Option<String>,
    /// Only this deployment's events, from its start (or the last -n); once it has finished
    /// and its last events are shown, says how it ended and exits: 0 if it succeeded, 1 if
    /// not.
    #[arg(long)]
    deployment: Option<String>,
    /// Only this service's events.
    #[arg(long)]
    service: Option<String>,
    /// Only this environment's events.
    #[arg(long)]
    environment: Option<String>,
    /// Only events of this level or a more severe one (debug, info, warn, error).
    #[arg(long)]
    level: Option<String>,
    /// How many past events to show first (default 10; with --deployment, all of it that
    /// the store returns at once).
    #[arg(short = 'n', long = "lines")]
    lines: Option<usize>,
    /// How far back those past events may be: 10m, 1h (default: an hour).
    #[arg(long)]
    since: Option<String>,
    /// Print the past events and stop, without following.
    #[arg(long)]
    no_follow: bool,
    /// How events are printed.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// The flumen to follow: its API address.
    #[arg(long, env = "FLUMEN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

/// Levels from the least to the most severe, each with the names it goes by.
const LEVELS: &[&[&str]] = &[
    &["trace"],
    &["debug"],
    &["info", "notice"],
    &["warn", "warning"],
    &["error", "err"],
    &["fatal", "critical", "crit", "alert", "emerg", "panic"],
];

/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub fn run(args: &TailArgs) -> anyhow::Result<()> {
    let server = args.server.trim_end_matches('/');
    let printer = Printer::new(args.output);
    let since = args.since.as_deref().unwrap_or("1h");
    if args.no_follow {
        let query = narrowed_query(args, true)?;
        return print_past(server, &query, args.lines.unwrap_or(10), since, &printer);
    }
    // A deployment's own stream: it starts with the deployment and ends after it.
    let query = narrowed_query(args, false)?;
    let mut last_id: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut url = format!("{server}/api/v1/stream?query={}", encode(&query));
        if let Some(deployment) = &args.deployment {
            url.push_str(&format!("&deployment={}", encode(deployment)));
        }
        if last_id.is_none() {
            match (args.lines, &args.deployment, &args.since) {
                (None, Some(_), None) => {}
                (lines, _, _) => url.push_str(&format!(
                    "&limit={}&since={}",
                    lines.unwrap_or(10),
                    encode(since)
                )),
            }
        }
        let mut request = ureq::get(&url);
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let ended = match request.config().http_status_as_error(false).build().call() {
            Ok(response) if response.status().is_success() => {
                backoff = Duration::from_millis(500);
                match follow(response, &printer, &mut last_id)? {
                    Ended::Finished(end) => return finished(&end),
                    Ended::Broken(why) => why,
                }
            }
            Ok(mut response) => {
                // A refusal (a bad query) does not get better by asking again.
                let body = response.body_mut().read_to_string().unwrap_or_default();
                anyhow::bail!("{}", body.trim());
            }
            Err(error) => format!("cannot reach flumen at {server} ({error})"),
        };
        let resume = match &last_id {
            Some(id) => format!("resuming after {id}"),
            None => "starting over".to_owned(),
        };
        eprintln!(
            "flumen tail: {ended}; reconnecting in {:.1}s, {resume}",
            backoff.as_secs_f64()
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How a stream ended.
enum Ended {
    /// The deployment it followed finished: the `end` message.
    Finished(String),
    /// The connection or flumen went away, for this reason: reconnect.
    Broken(String),
}

/// Says how the deployment ended; exits 0 if it succeeded, 1 if not.
fn finished(end: &str) -> anyhow::Result<()> {
    let end: Value = serde_json::from_str(end).context("flumen's end message is not JSON")?;
    let status = end["status"].as_str().unwrap_or("finished");
    let mut line = format!(
        "flumen tail: deployment {} {status}",
        end["deployment_id"].as_str().unwrap_or("?")
    );
    if let Some(message) = end["message"].as_str() {
        line.push_str(&format!(": {message}"));
    }
    eprintln!("{line}");
    std::process::exit(if status == "succeeded" { 0 } else { 1 });
}

/// Prints a stream's events until it ends; returns how it ended. `last_id` follows the last
/// event printed.
fn follow(
    response: ureq::http::Response<ureq::Body>,
    printer: &Printer,
    last_id: &mut Option<String>,
) -> anyhow::Result<Ended> {
    let mut reader = BufReader::new(response.into_body().into_reader());
    let (mut kind, mut id, mut data) = (String::new(), None::<String>, String::new());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(Ended::Broken("the connection closed".to_owned())),
            Ok(_) => {}
            Err(error) => return Ok(Ended::Broken(format!("the connection broke ({error})"))),
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() {
            // `field: value`; a line starting with `:` is a comment (a heartbeat).
            match line.split_once(':') {
                Some(("", _)) => {}
                Some((field, value)) => {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => kind = value.to_owned(),
                        "id" => id = Some(value.to_owned()),
                        "data" => data.push_str(value),
                        _ => {}
                    }
                }
                None => {}
            }
            continue;
        }
        // A blank line ends a message.
        match kind.as_str() {
            "" | "message" if !data.is_empty() => {
                let event: Value =
                    serde_json::from_str(&data).context("flumen sent an event that is not JSON")?;
                if !printer.print(&event) {
                    std::process::exit(0); // The reader went away (`| head`).
                }
                if id.is_some() {
                    *last_id = id.take();
                }
            }
            "close" => return Ok(Ended::Broken(format!("flumen closed the stream ({data})"))),
            "gap" => eprintln!("flumen tail: events were lost before this point ({data})"),
            "error" => return Ok(Ended::Broken(format!("flumen ended the stream ({data})"))),
            "end" => return Ok(Ended::Finished(data)),
            _ => {}
        }
        kind.clear();
        data.clear();
    }
}

/// The past events only: the newest `lines` in the last `since`, oldest first.
fn print_past(
    server: &str,
    query: &str,
    lines: usize,
    since: &str,
    printer: &Printer,
) -> anyhow::Result<()> {
    if lines == 0 {
        return Ok(());
    }
    let url = format!(
        "{server}/api/v1/query?query={}&limit={lines}&since={}",
        encode(query),
        encode(since)
    );
    let body = get(&url, server)?;
    let mut events: Vec<Value> = body
        .lines()
        .filter(|l| !l.is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("flumen's answer is not NDJSON")?;
    events.retain(|e| e.get("done").is_none());
    for event in events.iter().rev() {
        if !printer.print(event) {
            break;
        }
    }
    Ok(())
}

/// The query, with the flags' matchers added to its selector (the deployment's too with
/// `with_deployment`; a deployment's stream is scoped by flumen itself).
fn narrowed_query(args: &TailArgs, with_deployment: bool) -> anyhow::Result<String> {
    let mut matchers = Vec::new();
    let deployment = args.deployment.as_ref().filter(|_| with_deployment);
    for (name, value) in [
        ("deployment_id", &deployment.cloned()),
        ("service", &args.service),
        ("environment", &args.environment),
    ] {
        if let Some(value) = value {
            matchers.push(format!("{name}=\"{}\"", quoted(value)));
        }
    }
    if let Some(level) = &args.level {
        let wanted = level.to_ascii_lowercase();
        let rank = LEVELS
            .iter()
            .position(|names| names.contains(&wanted.as_str()))
            .with_context(|| {
                format!("--level {level}: not a level (trace, debug, info, warn, error, fatal)")
            })?;
        let names: Vec<&str> = LEVELS[rank..]
            .iter()
            .flat_map(|n| n.iter().copied())
            .collect();
        matchers.push(format!("level=~\"(?i){}\"", names.join("|")));
    }
    let query = args.query.as_deref().unwrap_or("{}").trim();
    if matchers.is_empty() {
        return Ok(query.to_owned());
    }
    let open = query
        .find('{')
        .context("the query must start with a selector, such as {service=\"api\"}")?;
    let rest = query[open + 1..].trim_start();
    let separator = if rest.starts_with('}') { "" } else { ", " };
    Ok(format!(
        "{}{{{}{separator}{rest}",
        &query[..open],
        matchers.join(", ")
    ))
}

/// `value` as the inside of a query's double-quoted string.
fn quoted(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tail: TailArgs,
    }

    fn narrowed(args: &[&str]) -> String {
        let cli = Cli::parse_from(std::iter::once("tail").chain(args.iter().copied()));
        narrowed_query(&cli.tail, true).unwrap()
    }

    #[test]
    fn flags_narrow_the_selector_and_the_result_parses() {
        assert_eq!(narrowed(&[]), "{}");
        assert_eq!(
            narrowed(&["--deployment", "d-42"]),
            r#"{deployment_id="d-42"}"#
        );
        // Following, flumen scopes a deployment's stream itself.
        let cli = Cli::parse_from(["tail", "--deployment", "d-42", "--service", "api"]);
        assert_eq!(
            narrowed_query(&cli.tail, false).unwrap(),
            r#"{service="api"}"#
        );
        assert_eq!(
            narrowed(&[r#"{env="x"} |= "a\"b""#, "--service", "a\"pi"]),
            r#"{service="a\"pi", env="x"} |= "a\"b""#
        );
        let warn = narrowed(&["--level", "WARN"]);
        assert_eq!(
            warn,
            r#"{level=~"(?i)warn|warning|error|err|fatal|critical|crit|alert|emerg|panic"}"#
        );
        for query in [warn, narrowed(&[r#"{a="b"}"#, "--service", "s"])] {
            flumen_select::Selector::parse(&query).unwrap();
        }
    }
}
