//! The `flumen` binary: command-line parsing, logging and metrics set-up, signals. Everything
//! else lives in the library crates; `anyhow` stops here.

#![forbid(unsafe_code)]

mod bench;
mod deploy;
mod query;
mod run;
mod tail;

// glibc's allocator serves the log's ~100 KiB-1 MiB batch buffers with fresh mmaps, paying page
// faults and zeroing on every chunk; mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use flumen_config::ServerSpec;
use flumen_server::Server;

/// flumen: a log aggregator and live log streamer.
///
/// Point the Docker fluentd logging driver, Fluent Bit, Fluentd or any fluent-logger library at
/// port 24224 (Forward protocol), or POST to port 9880 as to Fluentd's in_http. Every event is
/// kept in a durable log before it is acknowledged, then routed by tag to outputs.
#[derive(Debug, Parser)]
#[command(name = "flumen", version, about, long_about)]
struct Cli {
    /// How flumen's own logs (on stderr) are written.
    #[arg(long, global = true, env = "FLUMEN_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Which of flumen's own logs to show: a level (error, warn, info, debug, trace) or a
    /// tracing filter such as "info,flumen_wal=debug". Default: info; for `run`, warnings only
    /// (the command's stderr is the terminal's), and no delivery retries, which `run` sums up
    /// once at the end.
    #[arg(long, global = true, env = "FLUMEN_LOG")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the aggregator. Without --config, runs the embedded default: Forward on 24224,
    /// HTTP on 9880, the API on 8080, data in ./flumen-data, every event kept in the
    /// embedded store (search it with `flumen query`).
    Serve {
        /// The TOML configuration file (see docs/configuration.md).
        #[arg(short, long, env = "FLUMEN_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides the configuration's data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check a configuration file and exit: 0 if valid, 1 with the line and the key if not.
    Validate {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Print the embedded default configuration, a starting point for your own.
    DefaultConfig,
    /// The tracer method built in: send sequence-numbered Forward traffic (at a rate or flat
    /// out, with or without acks), or receive it (--listen) and report events lost,
    /// duplicated, throughput and latency — for flumen or any Forward pipeline.
    Bench(Box<bench::BenchArgs>),
    /// Run a command (a deploy script, a migration) and send each line it prints, stdout and
    /// stderr, to an aggregator as an event with the deployment's fields, passing the output
    /// through as usual and exiting with the command's status.
    Run(Box<run::RunArgs>),
    /// Search a running flumen's store: `flumen query '{service="api"} |= "timeout"' --since
    /// 1h`.
    Query(Box<query::QueryArgs>),
    /// A running flumen's deployments: `flumen deploy start --service api --env prod`
    /// (prints the id), `finish ID --exit-code $?`, `list`, `show ID`.
    Deploy(Box<deploy::DeployArgs>),
    /// Follow a running flumen's events live: `flumen tail --deployment d-42 --level warn -n
    /// 100`; reconnects by itself and resumes where it was.
    Tail(Box<tail::TailArgs>),
    /// Print a completion script for a shell: `flumen completions bash >
    /// /etc/bash_completion.d/flumen`, `flumen completions zsh > "${fpath[1]}/_flumen"`,
    /// `flumen completions fish > ~/.config/fish/completions/flumen.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print flumen's man page (roff), or with --dir write one page per command there
    /// (flumen.1, flumen-serve.1, …): `flumen man | man -l -`.
    Man {
        /// Write flumen.1 and a page for each command into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // `flumen run` starts its command through this binary (see `run::signals`).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == run::EXEC_SUBCOMMAND)
        && argv.get(2).is_some_and(|a| a == "--")
    {
        return ExitCode::from(run::exec_unblocked(&argv[3..]));
    }
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) => "warn,flumen_sinks=error",
        _ => "info",
    };
    init_logging(
        cli.log_format,
        cli.log_level.as_deref().unwrap_or(default_level),
    );
    let result = match cli.command {
        Command::Serve { config, data_dir } => serve(config, data_dir),
        Command::Validate { file } => match ServerSpec::load(&file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                Ok(())
            }
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        },
        Command::DefaultConfig => {
            print!("{}", flumen_config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Bench(args) => bench::run(&args),
        Command::Query(args) => query::run(&args),
        Command::Tail(args) => tail::run(&args),
        Command::Deploy(args) => deploy::run(&args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "flumen", &mut script);
            print_all(&script).context("cannot write the completion script")
        }
        Command::Man { dir } => man_pages(dir.as_deref()),
        Command::Run(args) => match run::run(&args) {
            Ok(code) => return code,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Raises the soft limit on open files to the hard limit, as Go programs do by themselves:
/// every connection and live stream is a file, and the usual soft limit (1,024) is far below
/// the thousands of live streams one flumen serves.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(message = "Could not raise the limit on open files.", soft, hard, %error);
    }
}

fn serve(config_path: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    // Before the spec: checking it compiles the filters, which register their counters with
    // whatever recorder is installed at that moment.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    let mut spec = match &config_path {
        Some(path) => ServerSpec::load(path)?,
        None => ServerSpec::embedded_default(),
    };
    if let Some(dir) = data_dir {
        spec = spec.with_data_dir(dir);
    }
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flumen-worker")
        .build()?;
    let served = runtime.block_on(async {
        let server = Server::start(&spec, Some(handle)).await?;
        eprintln!("open {}", page_url(server.api_addr()));
        wait_for_signal().await?;
        server.shutdown().await;
        Ok(())
    });
    // Dropping the runtime would wait for every blocking call still running (a decode, a file
    // read of an aborted task) without a limit; none holds anything left to save, and the
    // process must end within its shutdown timeout.
    runtime.shutdown_background();
    served
}

/// The web page's address as a person types it: `localhost` for a listener on every address
/// or on loopback.
fn page_url(api: std::net::SocketAddr) -> String {
    let ip = api.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        format!("http://localhost:{}", api.port())
    } else {
        format!("http://{api}")
    }
}

/// Writes `text` to stdout; a reader that stops early (`flumen man | head`) is not an error.
fn print_all(text: &[u8]) -> std::io::Result<()> {
    match std::io::Write::write_all(&mut std::io::stdout(), text) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// The man page on stdout, or every command's page written into `dir`.
fn man_pages(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let command = <Cli as clap::CommandFactory>::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            print_all(&page).context("cannot write the man page")
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!(message = "Received SIGTERM."),
        _ = int.recv() => tracing::info!(message = "Received SIGINT."),
    }
    Ok(())
}
