//! Signals: what `flumen run` receives goes to the command, once.
//!
//! The signals below are blocked in every thread (the mask is set before the first thread
//! starts, and threads inherit it) and read from a `signalfd`, which also says where each came
//! from. A child inherits the mask too, and `std::process` does not reset it: the command is
//! started through `flumen __run-exec`, which unblocks them and `exec`s it in the same process
//! (see [`unblocked_command`]), so that it gets them as it would from a shell.
//!
//! - **On a terminal** (flumen run is in the terminal's foreground process group), the command
//!   stays in flumen run's process group, so it stays in the foreground: it can read the
//!   terminal, and Ctrl-C / Ctrl-\ reach it straight from the terminal. Those signals come from
//!   the kernel, and forwarding them would deliver them twice, so only signals sent by a process
//!   (`kill <pid of flumen run>`) are forwarded, to the command's process.
//! - **Otherwise** (CI, a service manager, a pipeline in the background) the command gets a
//!   process group of its own and every signal is forwarded to that group: a runner that signals
//!   flumen run (or flumen run's group) reaches the command and whatever it started, once.
//!
//! A signal that arrives before the command has started is forwarded as soon as it has. A
//! signal that arrives after the command ended stops the wait for delivery instead.

use std::sync::{Arc, Mutex};

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, killpg, pthread_sigmask};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

/// The signals forwarded to the command.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The hidden subcommand that unblocks the forwarded signals and becomes the command.
pub const EXEC_SUBCOMMAND: &str = "__run-exec";

/// A `Command` that runs `argv` with the forwarded signals unblocked: `flumen __run-exec --
/// argv...`, which `exec`s it (same pid). When the program cannot be found or this binary
/// cannot be named, the command is started directly, so that `spawn` reports why as usual.
pub fn unblocked_command(argv: &[String]) -> std::process::Command {
    let program = &argv[0];
    let trampoline = std::env::current_exe().ok().filter(|_| resolves(program));
    match trampoline {
        Some(flumen) => {
            let mut command = std::process::Command::new(flumen);
            command.arg(EXEC_SUBCOMMAND).arg("--").args(argv);
            command
        }
        None => {
            let mut command = std::process::Command::new(program);
            command.args(&argv[1..]);
            command
        }
    }
}

/// True when `program` names an executable file, as `execvp` looks for it.
fn resolves(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

/// `flumen __run-exec -- PROGRAM ARGS...`: unblocks the forwarded signals and becomes the
/// program. Returns only if that failed: the exit code then (127 not found, 126 otherwise).
pub fn exec_unblocked(argv: &[std::ffi::OsString]) -> u8 {
    let mut mask = SigSet::empty();
    for signal in FORWARDED {
        mask.add(signal);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
    let Some((program, args)) = argv.split_first() else {
        eprintln!("flumen run: no command");
        return 127;
    };
    // std's exec restores what the Rust runtime changed (SIGPIPE ignored) before it execs.
    let error =
        std::os::unix::process::CommandExt::exec(std::process::Command::new(program).args(args));
    eprintln!(
        "flumen run: cannot run {}: {error}",
        program.to_string_lossy()
    );
    if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// Whether flumen run is in the foreground process group of its controlling terminal.
pub fn foreground_on_terminal() -> bool {
    let Ok(tty) = std::fs::File::open("/dev/tty") else {
        return false;
    };
    nix::unistd::tcgetpgrp(&tty).is_ok_and(|group| group == nix::unistd::getpgrp())
}

#[derive(Debug, Default)]
struct State {
    /// The command, once started: its pid, and whether it leads a process group of its own.
    child: Option<(Pid, bool)>,
    /// The command ended (it may not be reaped yet: its pid is still its own).
    exited: bool,
    /// Signals received before the command started.
    early: Vec<Signal>,
}

/// The signal forwarder.
#[derive(Debug, Clone)]
pub struct Forwarder {
    state: Arc<Mutex<State>>,
}

impl Forwarder {
    /// Blocks the forwarded signals in this thread (and so in every thread started after) and
    /// starts reading them. `after_exit` runs for each signal received once the command ended.
    /// Must be called before any other thread starts.
    pub fn start(after_exit: impl Fn() + Send + 'static) -> anyhow::Result<Self> {
        let mut mask = SigSet::empty();
        for signal in FORWARDED {
            mask.add(signal);
        }
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
        let fd = SignalFd::new(&mask)?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::Builder::new()
            .name("flumen-run-signals".into())
            .spawn(move || {
                loop {
                    let info = match fd.read_signal() {
                        Ok(Some(info)) => info,
                        Ok(None) => continue,
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(error) => {
                            tracing::warn!(message = "Cannot read signals any more.", %error);
                            return;
                        }
                    };
                    let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    // Signals a terminal generates come from the kernel; kill(2) and friends
                    // say which process sent them.
                    let from_terminal = info.ssi_code == libc::SI_KERNEL;
                    let mut state = shared.lock().expect("signal state");
                    if state.exited {
                        drop(state);
                        after_exit();
                        continue;
                    }
                    match state.child {
                        None => state.early.push(signal),
                        Some((pid, own_group)) => {
                            if own_group || !from_terminal {
                                send(pid, own_group, signal);
                            } else {
                                tracing::debug!(message = "Not forwarding a signal the terminal sent to the command too.", signal = signal.as_str());
                            }
                        }
                    }
                }
            })?;
        Ok(Self { state })
    }

    /// The command started: forward what arrived before, and from now on.
    pub fn child_started(&self, pid: u32, own_group: bool) {
        let pid = Pid::from_raw(pid as i32);
        let mut state = self.state.lock().expect("signal state");
        state.child = Some((pid, own_group));
        for signal in std::mem::take(&mut state.early) {
            send(pid, own_group, signal);
        }
    }

    /// The command ended; call before reaping it, so that no signal goes to a reused pid.
    pub fn child_exited(&self) {
        self.state.lock().expect("signal state").exited = true;
    }
}

fn send(pid: Pid, own_group: bool, signal: Signal) {
    tracing::debug!(
        message = "Forwarding a signal to the command.",
        signal = signal.as_str(),
        pid = pid.as_raw(),
        group = own_group
    );
    let sent = if own_group {
        killpg(pid, signal).or_else(|_| kill(pid, signal))
    } else {
        kill(pid, signal)
    };
    if let Err(error) = sent {
        tracing::debug!(message = "Could not forward a signal.", signal = signal.as_str(), %error);
    }
}

/// A signal's name, e.g. `SIGTERM`, or its number.
pub fn name(number: i32) -> String {
    Signal::try_from(number).map_or_else(|_| number.to_string(), |s| s.as_str().to_owned())
}
