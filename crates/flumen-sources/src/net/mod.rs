//! The network layer every listening source uses: binding (errors name the address),
//! accepting with the sender's address, TLS, and the connection's identity ([`Peer`]).
//!
//! A stream source binds a [`Listener`] (TCP, with TLS when its `tls` table is set) and hands
//! [`Listener::serve`] a function that makes a [`FramedConnection`] for each accepted peer. A
//! connection flows: accept → TLS handshake (within [`HANDSHAKE_TIMEOUT`], a plaintext client
//! refused with a log line that says so) → [`Peer`] → the source's [`FrameProtocol`] in the
//! one framed-stream driver → `Ingest` → the log. HTTP and OTLP bind here and serve with axum
//! and tonic; UDP sockets bind here too.
//!
//! This is a module of the sources crate, not a crate of its own: only sources listen for
//! senders today. The API server binds its own plain HTTP listener; should it need TLS or the
//! caller's identity, this module moves into a crate both depend on.

mod framed;
mod tls;

pub(crate) use framed::count_rejected;
use framed::log_closing;
pub use framed::{Closing, ConnectionLimits, FrameProtocol, FramedConnection, Link, StreamEnd};
pub use tls::{HANDSHAKE_TIMEOUT, TlsConfig};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flumen_event::TenantId;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::stopped;

/// Who is at the other end of a connection: what the connection code knows of its sender.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The sender's address.
    pub address: SocketAddr,
    /// The certificate the client presented, when the listener asks for one (`tls.ca_file`)
    /// and the client's TLS handshake passed.
    pub client_certificate: Option<CertificateDer<'static>>,
    /// The tenant the sender's credentials map to. Always `None` for now: no credential maps
    /// to a tenant yet, and this is the place where that mapping will put its answer.
    pub tenant: Option<TenantId>,
}

impl Peer {
    /// Adds the certificate the client presented in its TLS handshake, if any.
    fn with_certificate(mut self, stream: &TlsStream<TcpStream>) -> Self {
        let (_, session) = stream.get_ref();
        self.client_certificate = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned());
        self
    }

    /// A sender known by its address alone.
    pub fn at(address: SocketAddr) -> Self {
        Self {
            address,
            client_certificate: None,
            tenant: None,
        }
    }
}

/// Names the address in a bind error ("cannot listen on ADDR: …").
fn listening_on(address: SocketAddr) -> impl FnOnce(std::io::Error) -> std::io::Error {
    move |error| std::io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
}

/// A configuration error (the caller names the source).
pub(crate) fn invalid(message: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message.to_string())
}

/// Binds a TCP listener; the error names the address.
pub async fn bind_tcp(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(listening_on(address))
}

/// Binds a UDP socket; the error names the address.
pub async fn bind_udp(address: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(address)
        .await
        .map_err(listening_on(address))
}

/// Binds a TCP listener and a UDP socket on the same port. With port 0 the kernel picks a TCP
/// port that may be taken for UDP; then another port is tried, a few times.
async fn bind_tcp_and_udp(address: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut attempts = 0;
    loop {
        let tcp = bind_tcp(address).await?;
        match UdpSocket::bind(tcp.local_addr()?).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(error) if address.port() == 0 && attempts < 8 => {
                tracing::debug!(message = "The UDP port is taken; trying another.", %error);
                attempts += 1;
            }
            Err(error) => return Err(listening_on(address)(error)),
        }
    }
}

/// A bound TCP listener, with TLS when it was configured.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.tcp.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Listener {
    /// Reads the certificate files of `tls` (an error names the file), then binds `address`
    /// (an error names the address).
    pub async fn bind(address: SocketAddr, tls: Option<&TlsConfig>) -> std::io::Result<Self> {
        let tls = tls.map(TlsConfig::acceptor).transpose().map_err(invalid)?;
        Ok(Self {
            tcp: bind_tcp(address).await?,
            tls,
        })
    }

    /// As [`Listener::bind`], with a UDP socket on the same port (the Forward heartbeat).
    pub async fn bind_with_udp(
        address: SocketAddr,
        tls: Option<&TlsConfig>,
    ) -> std::io::Result<(Self, UdpSocket)> {
        let tls = tls.map(TlsConfig::acceptor).transpose().map_err(invalid)?;
        let (tcp, udp) = bind_tcp_and_udp(address).await?;
        Ok((Self { tcp, tls }, udp))
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether connections speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts connections until `stop` turns true (at most `max_connections` served at once;
    /// more wait in the listen backlog), serving each on a task of its own with the connection
    /// `connect` makes for its peer (after the TLS handshake, which tells who the client is).
    /// Then waits for every connection to finish the frames it read.
    pub async fn serve<P, C>(
        self,
        source: &str,
        max_connections: Option<usize>,
        mut stop: watch::Receiver<bool>,
        connect: C,
    ) where
        P: FrameProtocol,
        C: Fn(&Peer) -> FramedConnection<P> + Send + Sync + 'static,
    {
        let connect = Arc::new(connect);
        let source: Arc<str> = source.into();
        let open = metrics::gauge!("flumen_source_connections", "source" => source.to_string());
        let mut connections = JoinSet::new();
        loop {
            let room = max_connections.is_none_or(|max| connections.len() < max);
            tokio::select! {
                _ = stopped(&mut stop) => break,
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((stream, address)) => {
                        let _ = stream.set_nodelay(true);
                        let tls = self.tls.clone();
                        let connect = connect.clone();
                        let source = source.clone();
                        let open = open.clone();
                        let mut stop = stop.clone();
                        open.increment(1.0);
                        connections.spawn(async move {
                            let peer = Peer::at(address);
                            match tls {
                                None => connect(&peer).serve(stream, stop).await,
                                Some(acceptor) => {
                                    let refused = |reason: &str| {
                                        count_rejected(&source, "tls");
                                        log_closing(&source, P::NAME, address, "tls", reason);
                                    };
                                    tokio::select! {
                                        _ = stopped(&mut stop) => {}
                                        done = handshake(&acceptor, stream, refused) => {
                                            if let Some(stream) = done {
                                                let peer = peer.with_certificate(&stream);
                                                connect(&peer).serve(stream, stop).await;
                                            }
                                        }
                                    }
                                }
                            }
                            open.decrement(1.0);
                        });
                    }
                    Err(error) => {
                        tracing::warn!(message = %format!("Failed to accept a {} connection.", P::NAME), source = %source, %error);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.tcp);
        while connections.join_next().await.is_some() {}
    }
}

/// Runs the server side of a TLS handshake on `stream`, within [`HANDSHAKE_TIMEOUT`]; on a
/// failure, `refused` is told why (and that the client speaks plaintext when it does).
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    refused: impl FnOnce(&str),
) -> Option<TlsStream<TcpStream>> {
    // `refused` runs while the connection is still open, so that whoever sees it close (a
    // client, a test) finds the refusal already counted and logged.
    let started = tokio::time::Instant::now();
    let first_byte = async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => Err("the connection closed before a TLS handshake".to_owned()),
            Ok(_) if first[0] != tls::TLS_HANDSHAKE_RECORD => Err(format!(
                "not a TLS handshake (first byte {:#04x}): the client sends plaintext to a TLS \
                 listener",
                first[0]
            )),
            Ok(_) => Ok(()),
            Err(error) => Err(format!("TLS handshake failed: {error}")),
        }
    };
    let no_handshake = || format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
    let checked = tokio::time::timeout(HANDSHAKE_TIMEOUT, first_byte)
        .await
        .unwrap_or_else(|_| Err(no_handshake()));
    if let Err(reason) = checked {
        refused(&reason);
        return None;
    }
    let accept = acceptor.accept(stream).into_fallible();
    match tokio::time::timeout_at(started + HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err((error, stream))) => {
            refused(&format!("TLS handshake failed: {error}"));
            drop(stream);
            None
        }
        // The client said nothing more for the whole timeout; its connection went with the
        // handshake that waited for it.
        Err(_) => {
            refused(&no_handshake());
            None
        }
    }
}
