//! The filter sessions of the sources that answer requests (HTTP, OTLP), one per client address.
//!
//! A joining filter (multiline, Docker partials) must see each sender's lines apart: on one
//! shared session, client B's `\tat …` line joins client A's exception and is stored as A's.
//! Forward and syslog get a session per connection; HTTP and OTLP clients open and close
//! connections at will (and OTLP ones may send over HTTP and gRPC both), so theirs are kept by
//! the client's IP address instead. At most
//! [`MAX_CLIENT_SESSIONS`] are kept; one unused for [`IDLE_AFTER`] is closed, and when a new
//! client finds them all taken, the least recently used one not serving a request is closed
//! for it. Closing a session stores the events it still holds.
//!
//! A request whose tag no filter applies to needs no session: it gets an [`Ingest`] of its own
//! ([`RequestIngest::Own`]), so that such requests, even from one client, never wait for each
//! other.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{FLUSH_TICK, HeldEvents};
use crate::ingest::IngestCounters;
use crate::{Ingest, SourceShared};

/// The most client sessions a source keeps.
pub(crate) const MAX_CLIENT_SESSIONS: usize = 1024;

/// How long a client's session outlives its last request.
pub(crate) const IDLE_AFTER: Duration = Duration::from_secs(30);

/// How often idle sessions are looked for when no filter holds events.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// One client's session: its [`Ingest`], shared with the requests it serves.
type ClientIngest = Arc<Mutex<Ingest>>;

/// A session closed to make room for another, with its client's address.
type Closed = Option<(IpAddr, ClientIngest)>;

/// What one request's events go through.
#[derive(Debug)]
pub(crate) enum RequestIngest {
    /// Its client's filter session, shared with the client's other requests.
    Session(ClientIngest),
    /// An ingest of its own: no filter applies to its tag.
    Own(Box<Ingest>),
}

/// Every client was sending a request when a new client came (HTTP 503).
#[derive(Debug, thiserror::Error)]
#[error("{MAX_CLIENT_SESSIONS} other clients are sending at once; retry later")]
pub(crate) struct TooManyClients;

/// The address of the client of an HTTP request, as the listener recorded it
/// (`into_make_service_with_connect_info::<SocketAddr>`); `0.0.0.0` for a router served
/// without it, whose clients then share one session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl<S: Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |info| {
                info.0.ip()
            });
        Ok(Self(address))
    }
}

/// The sessions of one HTTP or OTLP source's clients.
#[derive(Debug)]
pub(crate) struct ClientSessions {
    source: String,
    label: String,
    shared: SourceShared,
    clients: std::sync::Mutex<HashMap<IpAddr, Client>>,
    counters: IngestCounters,
    gauge: metrics::Gauge,
}

#[derive(Debug)]
struct Client {
    ingest: ClientIngest,
    last_used: Instant,
}

impl Client {
    /// True while a request holds this session.
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.ingest) > 1
    }
}

impl ClientSessions {
    /// No sessions yet, for the source `source`, whose events carry `label`.
    pub(crate) fn new(source: &str, label: &str, shared: &SourceShared) -> Self {
        Self {
            source: source.to_owned(),
            label: label.to_owned(),
            shared: shared.clone(),
            clients: std::sync::Mutex::new(HashMap::new()),
            counters: IngestCounters::new(source),
            gauge: metrics::gauge!("flumen_source_client_sessions", "source" => source.to_owned()),
        }
    }

    /// What a request from `address` with events under `tag` goes through: its client's
    /// session when a filter applies to the tag (the filters see each client's events in
    /// order), otherwise an ingest of its own.
    pub(crate) async fn ingest_for(
        &self,
        address: IpAddr,
        tag: &str,
    ) -> Result<RequestIngest, TooManyClients> {
        if self.shared.pipeline.applies_to(tag) {
            Ok(RequestIngest::Session(self.session(address).await?))
        } else {
            Ok(RequestIngest::Own(Box::new(self.ingest())))
        }
    }

    /// Whether the log has room for `size` more bytes now.
    pub(crate) fn has_room(&self, size: usize) -> bool {
        self.shared.wal.has_room(size)
    }

    /// A new ingest of this source.
    fn ingest(&self) -> Ingest {
        Ingest::counted(self.counters.clone(), &self.label, &self.shared)
    }

    /// The session of the client at `address`, started if it has none.
    pub(crate) async fn session(&self, address: IpAddr) -> Result<ClientIngest, TooManyClients> {
        let (session, closed) = self.find_or_start(address.to_canonical())?;
        if let Some((address, closed)) = closed {
            self.close(address, closed).await;
        }
        Ok(session)
    }

    /// The session of `address`, and the session closed to make room for it, if one was.
    fn find_or_start(&self, address: IpAddr) -> Result<(ClientIngest, Closed), TooManyClients> {
        let mut clients = self.clients.lock().expect("client sessions lock");
        let now = Instant::now();
        if let Some(client) = clients.get_mut(&address) {
            client.last_used = now;
            return Ok((client.ingest.clone(), None));
        }
        let closed = if clients.len() >= MAX_CLIENT_SESSIONS {
            let oldest = clients
                .iter()
                .filter(|(_, client)| !client.in_use())
                .min_by_key(|(_, client)| client.last_used)
                .map(|(address, _)| *address)
                .ok_or(TooManyClients)?;
            clients
                .remove(&oldest)
                .map(|client| (oldest, client.ingest))
        } else {
            None
        };
        let ingest = Arc::new(Mutex::new(self.ingest()));
        clients.insert(
            address,
            Client {
                ingest: ingest.clone(),
                last_used: now,
            },
        );
        self.gauge.set(clients.len() as f64);
        Ok((ingest, closed))
    }

    /// Stores what the closed session of `address` still holds.
    async fn close(&self, address: IpAddr, session: ClientIngest) {
        if let Err(error) = session.lock().await.flush_all().await {
            tracing::error!(
                message = "Held events of a client could not be stored.",
                source = %self.source,
                client = %address,
                %error
            );
        }
    }

    /// Closes the sessions not used for [`IDLE_AFTER`].
    async fn close_idle(&self) {
        let idle: Vec<(IpAddr, ClientIngest)> = {
            let mut clients = self.clients.lock().expect("client sessions lock");
            let now = Instant::now();
            let addresses: Vec<IpAddr> = clients
                .iter()
                .filter(|(_, client)| {
                    !client.in_use() && now.duration_since(client.last_used) >= IDLE_AFTER
                })
                .map(|(address, _)| *address)
                .collect();
            let idle = addresses
                .into_iter()
                .filter_map(|address| clients.remove(&address).map(|c| (address, c.ingest)))
                .collect();
            self.gauge.set(clients.len() as f64);
            idle
        };
        for (address, session) in idle {
            self.close(address, session).await;
        }
    }

    /// Every session, as it is now.
    fn all(&self) -> Vec<(IpAddr, ClientIngest)> {
        let clients = self.clients.lock().expect("client sessions lock");
        clients
            .iter()
            .map(|(address, client)| (*address, client.ingest.clone()))
            .collect()
    }
}

impl HeldEvents for ClientSessions {
    async fn tick(&self) -> Option<Duration> {
        Some(if self.shared.pipeline.may_hold() {
            FLUSH_TICK
        } else {
            IDLE_TICK
        })
    }

    async fn flush_due(&self, source: &str) {
        let now = Instant::now();
        for (address, session) in self.all() {
            // A session serving a request is looked at again at the next tick.
            let Ok(mut ingest) = session.try_lock() else {
                continue;
            };
            if ingest.next_flush().is_some_and(|due| due <= now)
                && let Err(error) = ingest.flush_due().await
            {
                tracing::error!(message = "Held events could not be stored.", source = %source, client = %address, %error);
            }
        }
        self.close_idle().await;
    }

    async fn flush_all(&self, _source: &str) {
        for (address, session) in self.all() {
            self.close(address, session).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    use flumen_event::EventTime;
    use flumen_event::entry::write_entry;
    use flumen_process::{FilterConfig, Pipeline};
    use flumen_wal::{Persistence, Wal, WalConfig};

    use super::*;
    use crate::ingest::chunks::ChunkLedger;
    use crate::request::store_request;
    use flumen_routing::{RouteSpec, RouteTable};

    fn shared(dir: &std::path::Path) -> SourceShared {
        SourceShared {
            wal: Arc::new(Wal::open(WalConfig::new(dir.join("wal"))).unwrap()),
            routes: Arc::new(RouteTable::new(&[], &[]).unwrap()),
            pipeline: Arc::new(Pipeline::new(&[]).unwrap()),
            chunks: Arc::new(ChunkLedger::new(16)),
            data_dir: dir.to_owned(),
        }
    }

    /// What sources share with a filter on the tag `filtered` and a route taking every tag,
    /// over a log that acknowledges once written.
    fn shared_with_a_filter(dir: &std::path::Path) -> SourceShared {
        #[derive(serde::Deserialize)]
        struct Filters {
            filters: Vec<FilterConfig>,
        }
        let filters: Filters = toml::from_str(
            "[[filters]]\ntype = \"multiline\"\nmatch = [\"filtered\"]\nmode = \"java\"\n",
        )
        .unwrap();
        let route = RouteSpec {
            patterns: vec!["**".into()],
            outputs: vec!["out".into()],
            ..RouteSpec::default()
        };
        SourceShared {
            wal: Arc::new(
                Wal::open(WalConfig {
                    persistence: Persistence::Os,
                    ..WalConfig::new(dir.join("wal"))
                })
                .unwrap(),
            ),
            routes: Arc::new(RouteTable::new(&[route], &["out".to_owned()]).unwrap()),
            pipeline: Arc::new(Pipeline::new(&filters.filters).unwrap()),
            chunks: Arc::new(ChunkLedger::new(16)),
            data_dir: dir.to_owned(),
        }
    }

    fn one_event() -> Vec<u8> {
        let mut record = Vec::new();
        rmp::encode::write_map_len(&mut record, 1).unwrap();
        rmp::encode::write_str(&mut record, "log").unwrap();
        rmp::encode::write_str(&mut record, "a line").unwrap();
        let mut entries = Vec::new();
        write_entry(&mut entries, EventTime::new(1_700_000_000, 0), &record);
        entries
    }

    #[tokio::test]
    async fn a_request_no_filter_applies_to_is_stored_while_its_clients_session_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_with_a_filter(dir.path());
        let sessions = ClientSessions::new("web", "", &shared);
        let Ok(RequestIngest::Session(session)) = sessions.ingest_for(client(0), "filtered").await
        else {
            panic!("a filtered tag goes through the client's session")
        };
        // Another request of the same client is being filtered.
        let busy = session.lock().await;
        let mut ingest = sessions.ingest_for(client(0), "plain").await.unwrap();
        assert!(matches!(ingest, RequestIngest::Own(_)));
        let entries = one_event();
        let stored = tokio::time::timeout(
            Duration::from_secs(10),
            store_request(&mut ingest, "plain", 1, &entries),
        )
        .await;
        assert!(matches!(stored, Ok(Ok(()))), "{stored:?}");
        assert_eq!(shared.wal.stats().durable_end.get(), 1);
        drop(busy);
        assert_eq!(clients(&sessions).len(), 1, "no session for the plain tag");
        shared.wal.shutdown().await;
    }

    /// The n-th client: 127.0.0.1, 127.0.0.2, …
    fn client(n: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x7f00_0001 + n as u32))
    }

    fn clients(sessions: &ClientSessions) -> HashSet<IpAddr> {
        sessions
            .all()
            .into_iter()
            .map(|(address, _)| address)
            .collect()
    }

    #[tokio::test]
    async fn a_client_past_the_cap_closes_the_least_recently_used_session_not_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = ClientSessions::new("web", "", &shared(dir.path()));
        let mut serving = vec![sessions.session(client(0)).await.unwrap()];
        for n in 1..MAX_CLIENT_SESSIONS {
            sessions.session(client(n)).await.unwrap();
        }
        // Client 0 is the oldest but serving a request: client 1 makes room.
        serving.push(sessions.session(client(MAX_CLIENT_SESSIONS)).await.unwrap());
        let kept = clients(&sessions);
        assert_eq!(kept.len(), MAX_CLIENT_SESSIONS);
        assert!(
            kept.contains(&client(0)),
            "a session serving a request stays"
        );
        assert!(
            !kept.contains(&client(1)),
            "the least recently used one was closed"
        );

        // With every session serving a request, a new client is told to come back.
        for n in 2..MAX_CLIENT_SESSIONS {
            serving.push(sessions.session(client(n)).await.unwrap());
        }
        let newcomer = client(MAX_CLIENT_SESSIONS + 1);
        assert!(sessions.session(newcomer).await.is_err());
        drop(serving);
        assert!(sessions.session(newcomer).await.is_ok());
        assert_eq!(clients(&sessions).len(), MAX_CLIENT_SESSIONS);
    }
}
