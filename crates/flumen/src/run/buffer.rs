//! The buffer directory: where `flumen run` keeps the durable log of events not yet delivered.
//!
//! ```text
//! <buffer-dir>/<target>/<slot>/lock      flock'ed by the flumen run using the slot
//! <buffer-dir>/<target>/<slot>/pending   present while the slot may hold undelivered events
//! <buffer-dir>/<target>/<slot>/wal/...   the log (data_dir of the in-process flumen's spec)
//! <buffer-dir>/<target>/<slot>/node-id   the slot's identity: prefixes the chunk ids it sends
//! ```
//!
//! `<target>` is the `--to` address made into a file name, so that events buffered for one
//! aggregator are never sent to another. A log has one writer, so two `flumen run`s at the
//! same time (parallel CI jobs) each lock a slot of their own; a run takes a free slot that
//! holds undelivered events first, and delivers them with its own.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use flumen_config::{
    ApiConfig, BatchConfig, DeploymentsConfig, LogConfig, OutputConfig, PersistenceMode,
    RetryConfig, RouteConfig, ServerConfig, ServerSpec, SourceConfig,
};
use flumen_server::outputs::forward::{ForwardOutputConfig, ForwardServerConfig};
use flumen_server::sources::forward::ForwardSourceConfig;
use nix::fcntl::{Flock, FlockArg};

/// At most this many slots per target (as many `flumen run`s at once).
const MAX_SLOTS: u32 = 64;

/// The in-process flumen's Forward source on a loopback port, which the sender writes to.
pub const LOOPBACK_SOURCE: &str = "run";

/// The in-process flumen's output to `--to`.
const AGGREGATOR_OUTPUT: &str = "aggregator";

/// The name of the marker of a slot that may hold undelivered events.
const PENDING: &str = "pending";

/// The default buffer directory: `$XDG_STATE_HOME/flumen/run`, `~/.local/state/flumen/run`,
/// or (no home, or it cannot be created) `/tmp/flumen-run-<uid>`.
pub fn default_root() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".local/state"))
        });
    if let Some(state) = state {
        let root = state.join("flumen/run");
        if fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .is_ok()
        {
            return root;
        }
    }
    tmp_root()
}

fn tmp_root() -> PathBuf {
    std::env::temp_dir().join(format!("flumen-run-{}", nix::unistd::getuid()))
}

/// The directory for one target inside `root`, created (private to the user when it is the
/// shared /tmp fallback).
pub fn target_dir(root: &Path, to: &str) -> anyhow::Result<PathBuf> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("cannot create the buffer directory {}", root.display()))?;
    if root == tmp_root() {
        // Anyone can create a directory in /tmp: only use it if it is ours and private.
        let meta = fs::symlink_metadata(root)
            .with_context(|| format!("cannot read {}", root.display()))?;
        anyhow::ensure!(
            meta.is_dir()
                && meta.uid() == nix::unistd::getuid().as_raw()
                && meta.mode() & 0o077 == 0,
            "{} is not a private directory of this user",
            root.display()
        );
    }
    Ok(root.join(target_name(to)))
}

/// `--to` as a directory name: `host:port` becomes `host_port`; anything else that is not a
/// letter, a digit, `.` or `-` becomes `_`, and then a hash of the address is added so that
/// two addresses never share a directory.
pub fn target_name(to: &str) -> String {
    let (host, port) = match to.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (to, None),
    };
    let clean = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !s.starts_with('.')
    };
    if clean(host) && port.is_none_or(clean) {
        return match port {
            Some(port) => format!("{host}_{port}"),
            None => host.to_owned(),
        };
    }
    let mut name: String = to
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = to.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    name.push_str(&format!("_{hash:016x}"));
    name
}

/// A slot this process holds (its lock is released when the slot is dropped, or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct Slot {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

impl Slot {
    /// Locks a free slot under `target`: one marked pending first, the lowest-numbered
    /// otherwise, a new one if all are taken.
    pub fn acquire(target: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let existing = slots(target)?;
        let (pending, idle): (Vec<_>, Vec<_>) = existing
            .iter()
            .partition(|(_, dir)| dir.join(PENDING).exists());
        for (_, dir) in pending.into_iter().chain(idle) {
            if let Some(slot) = Self::try_lock(dir)? {
                return Ok(slot);
            }
        }
        let mut next = existing.last().map_or(0, |(n, _)| n + 1);
        while next < MAX_SLOTS {
            let dir = target.join(next.to_string());
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
            if let Some(slot) = Self::try_lock(&dir)? {
                return Ok(slot);
            }
            next += 1;
        }
        anyhow::bail!(
            "all {MAX_SLOTS} buffer slots in {} are in use",
            target.display()
        )
    }

    /// Every free slot under `target` marked pending, locked (for `--flush`).
    pub fn acquire_pending(target: &Path) -> anyhow::Result<Vec<Self>> {
        if !target.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (_, dir) in slots(target)? {
            if dir.join(PENDING).exists()
                && let Some(slot) = Self::try_lock(&dir)?
            {
                out.push(slot);
            }
        }
        Ok(out)
    }

    fn try_lock(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Self {
                dir: dir.to_owned(),
                _lock: lock,
            })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(anyhow::anyhow!("cannot lock {}: {errno}", path.display())),
        }
    }

    /// Marks the slot as possibly holding undelivered events.
    pub fn mark_pending(&self) -> anyhow::Result<()> {
        let path = self.dir.join(PENDING);
        fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))
    }

    /// Everything the slot held was delivered.
    pub fn clear_pending(&self) {
        let _ = fs::remove_file(self.dir.join(PENDING));
    }

    /// The in-process flumen: the log in this slot, a forward output to `to` with
    /// acknowledgements, and (`with_source`) a Forward source on a loopback port.
    pub fn server_spec(&self, to: &str, with_source: bool) -> anyhow::Result<ServerSpec> {
        // Far away: `flumen run` bounds the flush itself (and knows then that everything was
        // delivered), and the output never dead-letters: what it cannot deliver stays in the
        // log for the next run.
        let never = Duration::from_secs(3650 * 24 * 60 * 60);
        let sources = with_source
            .then(|| {
                let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                let source = SourceConfig::Forward(ForwardSourceConfig::listening_on(loopback));
                (LOOPBACK_SOURCE.to_owned(), source)
            })
            .into_iter()
            .collect();
        let aggregator = ForwardOutputConfig {
            require_ack: true,
            connect_timeout: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(10),
            recover_wait: Duration::from_secs(1),
            batch: BatchConfig {
                max_events: 5000,
                max_bytes: ByteSize::mib(4),
                timeout: Duration::from_millis(50),
                // A command's lines reach the aggregator in the order it printed them.
                max_in_flight: Some(1),
            },
            retry: RetryConfig {
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                max_duration: never,
            },
            ..ForwardOutputConfig::new(vec![ForwardServerConfig::new(to)])
        };
        let config = ServerConfig {
            data_dir: self.dir.clone(),
            // Acknowledgements from the loopback source wait for the next fsync (at most 50 ms
            // away; one per interval however many lines arrive), so what the command printed
            // survives a power loss once it is acknowledged.
            log: LogConfig {
                persistence: PersistenceMode::Interval,
                fsync_interval: Duration::from_millis(50),
                max_size: ByteSize::gib(1),
                segment_size: ByteSize::mib(16),
                ..LogConfig::default()
            },
            api: ApiConfig {
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                ..ApiConfig::default()
            },
            sources,
            // flumen run's own pipeline keeps no catalogue: the aggregator does.
            deployments: DeploymentsConfig {
                database: "off".into(),
            },
            outputs: [(
                AGGREGATOR_OUTPUT.to_owned(),
                OutputConfig::Forward(aggregator),
            )]
            .into(),
            routes: vec![RouteConfig {
                label: None,
                patterns: vec!["**".to_owned()],
                select: None,
                outputs: vec![AGGREGATOR_OUTPUT.to_owned()],
            }],
            filters: Vec::new(),
            shutdown_timeout: never,
            // The local buffer only forwards; the aggregator keeps and searches.
            store: None,
        };
        config
            .check()
            .context("the buffer's in-process flumen is misconfigured")
    }
}

/// The numbered slot directories under `target`, in order.
fn slots(target: &Path) -> anyhow::Result<Vec<(u32, PathBuf)>> {
    let mut found = Vec::new();
    for entry in
        fs::read_dir(target).with_context(|| format!("cannot read {}", target.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read {}", target.display()))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_never_collide() {
        assert_eq!(target_name("127.0.0.1:24224"), "127.0.0.1_24224");
        assert_eq!(
            target_name("logs.example.com:24224"),
            "logs.example.com_24224"
        );
        let odd = target_name("[::1]:24224");
        assert!(odd.starts_with("___1__24224_"), "{odd}");
        assert_ne!(target_name("a_b"), target_name("a:b"));
        assert_ne!(target_name("../x:1"), "../x_1");
        assert!(!target_name("../x:1").contains('/'));
    }

    #[test]
    fn slots_are_exclusive_and_pending_ones_come_first() {
        let dir = std::env::temp_dir().join(format!("flumen-run-test-{}", fastrand::u64(..)));
        let first = Slot::acquire(&dir).unwrap();
        let second = Slot::acquire(&dir).unwrap();
        assert_ne!(first.dir, second.dir);
        second.mark_pending().unwrap();
        drop(second);
        drop(first);
        let again = Slot::acquire(&dir).unwrap();
        assert!(again.dir.ends_with("1"), "{}", again.dir.display());
        let pending = Slot::acquire_pending(&dir).unwrap();
        assert!(pending.is_empty(), "the pending slot is locked");
        drop(again);
        assert_eq!(Slot::acquire_pending(&dir).unwrap().len(), 1);
        let spec = Slot::acquire(&dir)
            .unwrap()
            .server_spec("h\"ost:1", true)
            .unwrap();
        assert!(spec.sources().contains_key(LOOPBACK_SOURCE));
        // The address reaches the output as given: there is no text format to escape it for.
        let flumen_config::SinkSpec::Forward(output) = &spec.outputs()[AGGREGATOR_OUTPUT].sink
        else {
            panic!("a forward output");
        };
        assert_eq!(output.servers[0].address, "h\"ost:1");
        assert!(output.require_ack);
        let flush = Slot::acquire(&dir)
            .unwrap()
            .server_spec("h:1", false)
            .unwrap();
        assert!(flush.sources().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
