//! `flumen run`: runs a command (a deploy script, a migration), passes its output through, and
//! sends every line it prints to an aggregator as an event carrying the deployment's fields.
//!
//! - **The command comes first.** Its stdout and stderr are pipes read by one thread each,
//!   which writes every chunk straight to flumen run's own stdout or stderr as soon as it is
//!   read, then queues the chunk's complete lines (`output.rs`). The queue is bounded in
//!   bytes: when the log cannot keep up, lines are dropped and counted rather than the command
//!   waiting. Its stdin is flumen run's, so interactive scripts work. flumen run exits with
//!   the command's status (128 + the signal's number when a signal killed it).
//! - **The pipeline is flumen's own** (`ship.rs`): an in-process flumen with a Forward source
//!   on a loopback port, its durable log in a buffer directory (`buffer.rs`) and a forward
//!   output with acknowledgements to `--to`. A sender thread writes the queued lines to the
//!   source, chunk by acknowledged chunk. Without an aggregator, lines wait in the log; what
//!   is not delivered when flumen run exits is delivered by the next flumen run with the same
//!   buffer directory and `--to`.
//! - **Signals** go to the command once (`signals.rs`).
//! - **Lifecycle events**: `command_started` first and `command_finished` (exit code, signal,
//!   duration, line counts) last, on the same tag as the lines.

mod buffer;
mod events;
mod output;
mod ship;
mod signals;

pub use signals::{EXEC_SUBCOMMAND, exec_unblocked};

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flumen_event::EventTime;

use crate::deploy::{self, FinalStatus, StartArgs};
use events::{StaticFields, Stream, Value};
use output::Message;
use ship::{Delivery, Shared};

/// `flumen run` options.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  flumen run --deployment d-42 --service api --env staging --version 1.4.2 -- ./deploy.sh --canary
  flumen run --to logs.internal:24224 --service billing --field team=payments -- make migrate
  flumen run --flush --to logs.internal:24224

Every line the command prints becomes an event
  {message, source: stdout|stderr, deployment_id, service, environment, version, host,
   command, pid, run_id, <--field>s}
(a line over 64 KiB is cut into several events, all but the last with partial: true;
bytes that are not UTF-8 are replaced), plus two lifecycle events on the same tag:
  {event: command_started, message, args, cwd, ...} and
  {event: command_finished, message, exit_code, signal?, core_dumped?, error?, duration_ms,
   lines, dropped_lines, ...}.

The output passes through unchanged and the command is never held up by logging: lines
that cannot be queued in time are dropped and counted (reported on stderr at the end).
Without a reachable aggregator the events wait in the buffer directory; flumen run waits at
most --flush-timeout after the command ended, and the events still there are sent by the
next flumen run with the same --buffer-dir and --to (or by `flumen run --flush`).

Signals (INT, TERM, HUP, QUIT, USR1, USR2) sent to flumen run are forwarded to the command.
On a terminal the command stays in the foreground: Ctrl-C reaches it from the terminal,
once. Elsewhere it runs in a process group of its own, which gets every signal flumen run
gets. flumen run exits with the command's status, 128 + N if signal N killed it, 127 if it
could not be found.

Once the command has exited, flumen run reads what is left in its output for at most a
second more and exits: a process it left running in the background that still writes to
the same stdout or stderr gets EPIPE from then on (redirect its output: `daemon >log 2>&1 &`).

flumen run prints nothing on stdout but the command's output; its own messages go to
stderr: warnings only, unless --log-level says otherwise.")]
pub struct RunArgs {
    /// The deployment this run is part of: `deployment_id` on every event.
    #[arg(long, value_name = "ID")]
    deployment: Option<String>,
    /// The service being deployed: `service` on every event, and part of the default tag.
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// The environment deployed to: `environment` on every event, and part of the default tag.
    #[arg(long = "env", value_name = "ENV")]
    environment: Option<String>,
    /// The version being deployed: `version` on every event.
    #[arg(long = "version", value_name = "VERSION")]
    service_version: Option<String>,
    /// Where to send: host:port of a Forward receiver (a flumen, Fluentd or Fluent Bit). Each
    /// address has its own buffer.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "FLUMEN_RUN_TO",
        default_value = "127.0.0.1:24224",
        value_parser = parse_to
    )]
    to: String,
    /// The events' tag. Default: deploy.<service>.<env> (the parts given; `deploy` alone
    /// without --service and --env).
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    tag: Option<String>,
    /// A field to add to every event (repeatable), e.g. --field team=payments.
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = parse_field)]
    fields: Vec<(String, String)>,
    /// Where events wait until they are delivered, one subdirectory per --to address.
    /// Default: $XDG_STATE_HOME/flumen/run, ~/.local/state/flumen/run, or
    /// /tmp/flumen-run-<uid>. Events an earlier flumen run could not deliver are sent by the
    /// next one that uses the same directory and --to.
    #[arg(long, value_name = "DIR", env = "FLUMEN_RUN_BUFFER_DIR")]
    buffer_dir: Option<PathBuf>,
    /// After the command ended, how long to wait at most for the events to be delivered
    /// before exiting anyway (the rest stays in the buffer), e.g. 5s, 500ms, 0.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        value_parser = humantime::parse_duration
    )]
    flush_timeout: Duration,
    /// Run no command: deliver what earlier runs left in the buffer for --to, waiting at most
    /// --flush-timeout. Exits 0 when nothing is left, 1 otherwise.
    #[arg(long, conflicts_with = "command")]
    flush: bool,
    /// A flumen API to register the run with as a deployment (e.g. http://127.0.0.1:8080):
    /// started before the command (with --deployment as its id, or a generated one), and
    /// finished once the command's events are delivered — succeeded on exit code 0,
    /// cancelled when a signal (INT, TERM, HUP) ended it, failed otherwise. Without it, the
    /// events carry the deployment's fields and nothing is registered.
    #[arg(long, value_name = "URL", env = "FLUMEN_SERVER")]
    server: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(
        trailing_var_arg = true,
        required_unless_present = "flush",
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

fn parse_to(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(text.to_owned())
        }
        _ => Err(format!("{text:?} is not HOST:PORT")),
    }
}

fn parse_field(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has no key"));
    }
    if events::RESERVED_KEYS.contains(&key) {
        return Err(format!("{key:?} is a field flumen run sets itself"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// How long, after the command ended, its output pipes may stay open (held by something it
/// started in the background) before flumen run stops waiting for their end.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// Runs the command; exits with its status.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let root = args.buffer_dir.clone().unwrap_or_else(buffer::default_root);
    if args.flush {
        return ship::flush_buffered(root, &args.to, args.flush_timeout);
    }
    let shared = Arc::new(Shared::default());
    // Before any other thread starts: they inherit the blocked signals.
    let signals = {
        let shared = shared.clone();
        match signals::Forwarder::start(move || shared.stop_waiting()) {
            Ok(forwarder) => Some(forwarder),
            Err(error) => {
                tracing::warn!(message = "Cannot forward signals.", %error);
                None
            }
        }
    };
    let own_group = !signals::foreground_on_terminal();
    let run_id = format!("{:016x}", fastrand::u64(..));
    let tag = args.tag.clone().unwrap_or_else(|| {
        events::default_tag(args.service.as_deref(), args.environment.as_deref())
    });
    let (tx, rx) = mpsc::channel();
    let fields = Arc::new(OnceLock::new());
    let plan = ship::Plan {
        to: args.to.clone(),
        root,
        tag,
        run_id: run_id.clone(),
    };
    let reports = match ship::spawn(plan, rx, shared.clone(), fields.clone()) {
        Ok(reports) => Some(reports),
        Err(error) => {
            shared.queue.closed.store(true, Ordering::Relaxed);
            tracing::warn!(message = "The command's output is not being sent.", %error);
            None
        }
    };

    let registered = args
        .server
        .as_deref()
        .and_then(|server| register(server, args));
    let deployment_id = registered.as_deref().or(args.deployment.as_deref());
    let command_line = events::shell_join(&args.command);
    let mut command = signals::unblocked_command(&args.command);
    command
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        command.process_group(0);
    }
    let started_at = EventTime::now();
    let started = Instant::now();
    let spawned = command.spawn();
    let pid = spawned.as_ref().ok().map(Child::id);

    let host = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned());
    let mut statics = StaticFields::default();
    statics
        .str("deployment_id", deployment_id)
        .str("service", args.service.as_deref())
        .str("environment", args.environment.as_deref())
        .str("version", args.service_version.as_deref())
        .str("host", host.as_deref())
        .str("command", Some(&command_line))
        .uint("pid", pid.map(u64::from))
        .str("run_id", Some(&run_id));
    for (key, value) in &args.fields {
        statics.str(key, Some(value));
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let started_record = statics.lifecycle_record(&[
        ("event", Value::Str("command_started")),
        (
            "message",
            Value::Str(&format!("command started: {command_line}")),
        ),
        ("args", Value::Strs(&args.command)),
        ("cwd", Value::Str(&cwd)),
    ]);
    let _ = fields.set(statics);
    let _ = tx.send(Message::Record {
        time: started_at,
        record: started_record,
    });

    let end = match spawned {
        Ok(child) => watch(child, own_group, signals.as_ref(), &tx, &shared),
        Err(error) => {
            eprintln!("flumen run: cannot run {}: {error}", args.command[0]);
            End {
                code: if error.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
                status: None,
                error: Some(error.to_string()),
            }
        }
    };
    let duration = started.elapsed();
    let ended = Instant::now();

    // The end: no more lines, the finished event last.
    shared.set_deadlines(ended, args.flush_timeout);
    shared.queue.closed.store(true, Ordering::Relaxed);
    let lines = shared.queue.lines.load(Ordering::Relaxed);
    let dropped = shared.queue.dropped.load(Ordering::Relaxed);
    let signal = end.status.and_then(|s| s.signal()).map(signals::name);
    let core_dumped = end.status.is_some_and(|s| s.core_dumped());
    let took = humantime::format_duration(round_ms(duration));
    let message = match (&end.error, &signal) {
        (Some(error), _) => format!("command could not start: {error}"),
        (None, Some(signal)) => format!(
            "command killed by {signal} (exit code {}) after {took}",
            end.code
        ),
        (None, None) => format!("command finished with exit code {} after {took}", end.code),
    };
    let mut pairs = vec![
        ("event", Value::Str("command_finished")),
        ("message", Value::Str(&message)),
        ("exit_code", Value::Uint(u64::from(end.code))),
    ];
    if let Some(signal) = &signal {
        pairs.push(("signal", Value::Str(signal)));
    }
    if core_dumped {
        pairs.push(("core_dumped", Value::Bool(true)));
    }
    if let Some(error) = &end.error {
        pairs.push(("error", Value::Str(error)));
    }
    pairs.extend([
        ("duration_ms", Value::Uint(duration.as_millis() as u64)),
        ("lines", Value::Uint(lines)),
        ("dropped_lines", Value::Uint(dropped)),
    ]);
    let finished_record = fields.get().expect("set above").lifecycle_record(&pairs);
    let _ = tx.send(Message::Record {
        time: EventTime::now(),
        record: finished_record,
    });
    let _ = tx.send(Message::End);
    drop(tx);

    let report = reports.and_then(|reports| {
        let until = shared.buffer_by().unwrap_or(ended) + Duration::from_secs(2);
        let report = reports.recv_timeout(until.saturating_duration_since(Instant::now()));
        if report.is_err() {
            tracing::warn!(
                message = "Gave up waiting for the buffer; lines it had not taken yet are lost."
            );
        }
        report.ok()
    });
    if dropped > 0 {
        tracing::warn!(
            message = format!(
                "{dropped} of {lines} lines were not sent: the command printed them faster than they could be buffered."
            )
        );
    }
    if let Some(report) = report {
        if report.unbuffered > 0 {
            tracing::warn!(
                message = format!(
                    "{} lines were not sent: the buffer did not take them in time.",
                    report.unbuffered
                )
            );
        }
        if !matches!(report.delivery, Delivery::Delivered | Delivery::NotStarted) {
            let dir = report
                .slot
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            tracing::warn!(
                message = format!(
                    "Events not delivered to {} yet ({}) are kept in {dir}; the next flumen run with the same --to and --buffer-dir (or `flumen run --flush`) sends them.",
                    args.to,
                    ship::why(&report.delivery, args.flush_timeout)
                )
            );
        }
    }
    if let (Some(server), Some(id)) = (args.server.as_deref(), registered.as_deref()) {
        // Ended by an interrupt, a hangup or a termination: of the signal, or exiting as a
        // shell does when one reached it (128 + its number).
        let status = match (signal.as_deref(), end.code) {
            (Some("SIGINT" | "SIGTERM" | "SIGHUP"), _) | (None, 129 | 130 | 143) => {
                FinalStatus::Cancelled
            }
            (_, 0) => FinalStatus::Succeeded,
            _ => FinalStatus::Failed,
        };
        let server = server.trim_end_matches('/');
        if let Err(error) = deploy::finish_deployment(server, id, status, Some(&message)) {
            tracing::warn!(
                message = format!("Deployment {id} not finished at {server}: {error:#}")
            );
        }
    }
    Ok(ExitCode::from(end.code))
}

/// Starts the run's deployment at `server`: its id, which flumen run finishes at the end; or
/// `None` if it was started already (a pipeline's earlier `flumen deploy start`: whoever
/// started it finishes it) or could not be (with a warning).
fn register(server: &str, args: &RunArgs) -> Option<String> {
    let start = StartArgs {
        service: args.service.clone(),
        environment: args.environment.clone(),
        service_version: args.service_version.clone(),
        ..StartArgs::default()
    };
    let server = server.trim_end_matches('/');
    match deploy::start_deployment(server, &start, args.deployment.as_deref()) {
        Ok(deployment) => deployment["id"].as_str().map(str::to_owned),
        Err(error)
            if error
                .downcast_ref::<deploy::Refused>()
                .is_some_and(|refused| refused.status == 409) =>
        {
            tracing::info!(message = "The deployment was started already; flumen run joins it.");
            None
        }
        Err(error) => {
            tracing::warn!(
                message = format!("The deployment is not registered at {server}: {error:#}")
            );
            None
        }
    }
}

fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// How the command ended.
#[derive(Debug)]
struct End {
    /// flumen run's exit code.
    code: u8,
    status: Option<ExitStatus>,
    /// It could not be started.
    error: Option<String>,
}

/// Passes the command's output through and queues its lines until it ends.
fn watch(
    mut child: Child,
    own_group: bool,
    signals: Option<&signals::Forwarder>,
    tx: &Sender<Message>,
    shared: &Arc<Shared>,
) -> End {
    if let Some(signals) = signals {
        signals.child_started(child.id(), own_group);
    }
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut readers = 0;
    let pipes = [
        (child.stdout.take().map(OwnedFd::from), Stream::Stdout),
        (child.stderr.take().map(OwnedFd::from), Stream::Stderr),
    ];
    for (pipe, stream) in pipes {
        let Some(pipe) = pipe else { continue };
        let (tx, shared, done) = (tx.clone(), shared.clone(), done_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("flumen-run-{}", stream.name()))
            .spawn(move || {
                output::pump(
                    File::from(pipe),
                    output::passthrough(stream),
                    stream,
                    &tx,
                    &shared.queue,
                );
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => readers += 1,
            Err(error) => {
                tracing::warn!(message = "Cannot read the command's output.", %error)
            }
        }
    }
    drop(done_tx);

    // Wait without reaping first, so that no signal is forwarded to a pid reused meanwhile.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    loop {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => break,
        }
    }
    if let Some(signals) = signals {
        signals.child_exited();
    }
    let status = child.wait();

    // Whatever the command printed last is still in the pipes: read it to the end, unless
    // something the command left running in the background holds them open.
    let grace = Instant::now() + PIPE_GRACE;
    for _ in 0..readers {
        if done_rx
            .recv_timeout(grace.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    match status {
        Ok(status) => End {
            code: exit_code(status),
            status: Some(status),
            error: None,
        },
        Err(error) => End {
            code: 1,
            status: None,
            error: Some(format!("cannot wait for the command: {error}")),
        },
    }
}

/// The command's exit code, or 128 + the signal's number, as a shell reports it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => (128 + signal).min(255) as u8,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn the_address_needs_a_port() {
        assert!(parse_to("127.0.0.1:24224").is_ok());
        assert!(parse_to("[::1]:24224").is_ok());
        assert!(parse_to("logs").is_err());
        assert!(parse_to("logs:http").is_err());
        assert!(parse_to(":24224").is_err());
    }

    #[test]
    fn fields_are_key_value_and_not_reserved() {
        assert_eq!(
            parse_field("team=pay=ments").unwrap(),
            ("team".into(), "pay=ments".into())
        );
        assert!(parse_field("team").is_err());
        assert!(parse_field("=x").is_err());
        assert!(parse_field("message=x").is_err());
    }
}
