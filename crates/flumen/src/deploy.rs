//! `flumen deploy`: a running flumen's deployments from a pipeline or a terminal, through its
//! API — `start` (prints the id, for `ID=$(flumen deploy start ...)`), `finish`, `list` and
//! `show`. `flumen run --server` does `start` and `finish` by itself around a command.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::query::{encode, get};

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    command: DeployCommand,
    /// The flumen to ask: its API address.
    #[arg(
        long,
        global = true,
        env = "FLUMEN_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
}

#[derive(Debug, Subcommand)]
enum DeployCommand {
    /// Start a deployment; prints its id.
    Start(StartArgs),
    /// Finish a deployment: --status, or --exit-code (0 succeeded, anything else failed).
    Finish(FinishArgs),
    /// List deployments, newest first.
    List(ListArgs),
    /// Show one deployment and its events by level.
    Show {
        /// The deployment's id.
        id: String,
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// The fields of a deployment to start, as `flumen deploy start` and `flumen run` take them.
#[derive(Debug, Clone, Default, Args)]
pub struct StartArgs {
    /// Its id (default: generated, `d-` and 16 hex digits).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The service deployed.
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// The environment deployed to.
    #[arg(long = "env")]
    pub(crate) environment: Option<String>,
    /// The version deployed.
    #[arg(long = "version")]
    pub(crate) service_version: Option<String>,
    /// The commit deployed (default: $GITHUB_SHA or $CI_COMMIT_SHA when set).
    #[arg(long)]
    pub(crate) commit: Option<String>,
    /// Who started it (default: $GITHUB_ACTOR, $GITLAB_USER_LOGIN or $USER).
    #[arg(long)]
    pub(crate) by: Option<String>,
    /// Metadata (repeatable): --meta pr=1234.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub(crate) metadata: Vec<(String, String)>,
    /// How long its events are kept, when not the default (30d, 12h).
    #[arg(long)]
    pub(crate) retention: Option<String>,
}

#[derive(Debug, Args)]
struct FinishArgs {
    /// The deployment's id.
    id: String,
    #[arg(
        long,
        value_enum,
        required_unless_present = "exit_code",
        conflicts_with = "exit_code"
    )]
    status: Option<FinalStatus>,
    /// The exit code of what deployed: 0 is succeeded, anything else failed.
    #[arg(long)]
    exit_code: Option<i32>,
    /// Why, in a few words.
    #[arg(long)]
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FinalStatus {
    Succeeded,
    Failed,
    Cancelled,
}

impl FinalStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Args)]
struct ListArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long = "env")]
    environment: Option<String>,
    /// running, succeeded, failed or cancelled.
    #[arg(long)]
    status: Option<String>,
    /// Only those started this long ago or since (1h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For people.
    Text,
    /// The API's JSON.
    Json,
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

pub fn run(args: &DeployArgs) -> anyhow::Result<()> {
    let server = args.server.trim_end_matches('/');
    match &args.command {
        DeployCommand::Start(start) => {
            let deployment = start_deployment(server, start, None)?;
            println!("{}", deployment["id"].as_str().unwrap_or_default());
        }
        DeployCommand::Finish(finish) => {
            let status = match (finish.status, finish.exit_code) {
                (Some(status), _) => status,
                (None, Some(0)) => FinalStatus::Succeeded,
                (None, _) => FinalStatus::Failed,
            };
            let message = finish
                .message
                .clone()
                .or_else(|| finish.exit_code.map(|code| format!("exit code {code}")));
            let deployment = finish_deployment(server, &finish.id, status, message.as_deref())?;
            eprintln!("{}", summary(&deployment));
        }
        DeployCommand::List(list) => {
            let mut url = format!("{server}/api/v1/deployments?limit={}", list.limit);
            for (key, value) in [
                ("service", &list.service),
                ("environment", &list.environment),
                ("status", &list.status),
                ("since", &list.since),
            ] {
                if let Some(value) = value {
                    url.push_str(&format!("&{key}={}", encode(value)));
                }
            }
            let page: Value = serde_json::from_str(&get(&url, server)?)?;
            match list.output {
                Output::Json => println!("{page}"),
                Output::Text => print_table(page["deployments"].as_array().map_or(&[], |v| v)),
            }
        }
        DeployCommand::Show { id, output } => {
            let url = format!("{server}/api/v1/deployments/{}", encode(id));
            let deployment: Value = serde_json::from_str(&get(&url, server)?)?;
            match output {
                Output::Json => println!("{deployment}"),
                Output::Text => print_details(&deployment),
            }
        }
    }
    Ok(())
}

/// Starts a deployment; `id` (from `flumen run --deployment`) wins over `start.id`.
pub fn start_deployment(
    server: &str,
    start: &StartArgs,
    id: Option<&str>,
) -> anyhow::Result<Value> {
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    };
    let metadata: serde_json::Map<String, Value> = start
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let body = json!({
        "id": id.map(str::to_owned).or_else(|| start.id.clone()),
        "service": start.service,
        "environment": start.environment,
        "version": start.service_version,
        "commit": start.commit.clone().or_else(|| env(&["GITHUB_SHA", "CI_COMMIT_SHA"])),
        "started_by": start.by.clone().or_else(|| env(&["GITHUB_ACTOR", "GITLAB_USER_LOGIN", "USER"])),
        "metadata": metadata,
        "retention": start.retention,
    });
    post_json(&format!("{server}/api/v1/deployments"), server, &body)
}

/// Finishes a deployment.
pub fn finish_deployment(
    server: &str,
    id: &str,
    status: FinalStatus,
    message: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{server}/api/v1/deployments/{}/finish", encode(id));
    let body = json!({ "status": status.as_str(), "message": message });
    post_json(&url, server, &body)
}

/// POSTs `body` as JSON and returns the JSON answer; an answer other than 2xx is the error,
/// with its text.
fn post_json(url: &str, server: &str, body: &Value) -> anyhow::Result<Value> {
    let mut response = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .header("content-type", "application/json")
        .send(body.to_string())
        .with_context(|| format!("cannot reach flumen at {server}"))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .context("reading flumen's answer")?;
    if !status.is_success() {
        return Err(Refused {
            status: status.as_u16(),
            reason: format!("{} ({status})", text.trim()),
        }
        .into());
    }
    serde_json::from_str(&text).context("flumen's answer is not JSON")
}

/// flumen answered, and refused the request.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    reason: String,
}

/// "deployment d-42 of api 1.4.2 to staging: failed after 1m 3s (exit code 3), 1234 events, 2 errors".
fn summary(deployment: &Value) -> String {
    let text = |key: &str| deployment[key].as_str().unwrap_or("");
    let mut line = format!("deployment {}", text("id"));
    if !text("service").is_empty() {
        line.push_str(&format!(" of {}", text("service")));
    }
    if !text("version").is_empty() {
        line.push_str(&format!(" {}", text("version")));
    }
    if !text("environment").is_empty() {
        line.push_str(&format!(" to {}", text("environment")));
    }
    line.push_str(&format!(": {} after {}", text("status"), took(deployment)));
    if !text("message").is_empty() {
        line.push_str(&format!(" ({})", text("message")));
    }
    let events = &deployment["events"];
    line.push_str(&format!(
        ", {} events, {} errors",
        events["total"].as_u64().unwrap_or(0),
        events["errors"].as_u64().unwrap_or(0)
    ));
    line
}

fn took(deployment: &Value) -> String {
    let ms = deployment["duration_ms"].as_u64().unwrap_or(0);
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn print_table(deployments: &[Value]) {
    let rows: Vec<[String; 7]> = deployments
        .iter()
        .map(|d| {
            let text = |key: &str| d[key].as_str().unwrap_or("-").to_owned();
            [
                text("id"),
                text("service"),
                text("environment"),
                text("version"),
                text("status"),
                took(d),
                d["events"]["errors"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "SERVICE",
        "ENVIRONMENT",
        "VERSION",
        "STATUS",
        "DURATION",
        "ERRORS",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |cells: [&str; 7]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(header);
    for row in &rows {
        print(row.each_ref().map(String::as_str));
    }
}

fn print_details(deployment: &Value) {
    println!("{}", summary(deployment));
    for key in [
        "started_at",
        "finished_at",
        "commit",
        "started_by",
        "retention",
    ] {
        if let Some(value) = deployment[key].as_str() {
            println!("  {key:12} {value}");
        }
    }
    if let Some(metadata) = deployment["metadata"].as_object().filter(|m| !m.is_empty()) {
        println!("  {:12} {}", "metadata", Value::Object(metadata.clone()));
    }
    if let Some(levels) = deployment["events"]["by_level"].as_object() {
        for (level, count) in levels {
            println!("  {level:12} {count}");
        }
    }
}
