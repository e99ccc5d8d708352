//! The Forward source over TLS (`tls = { … }`), in whole servers inside the test process, with
//! a rustls client: events and acknowledgements go over TLS, client certificates are checked,
//! a plaintext sender is refused, a bad certificate file stops the start. The Node
//! `fluent-logger` over TLS is in `tests/e2e/test_forward.py`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flumen_codec::forward::decode_ack;
use flumen_server::Server;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::tls::{certificates, tls_connect};
use common::{chunk, counter, forward_to_file, metrics, spec, start, wait_for_lines};

/// A server with a Forward source `fwd` over TLS (asking clients for a certificate when
/// `verify_clients`), every event to a file; what a client needs to connect.
struct TlsServer {
    server: Server,
    out: PathBuf,
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    /// A client certificate and key the CA signed, as PEM.
    client: (String, String),
}

async fn forward_tls_server(dir: &Path, verify_clients: bool) -> TlsServer {
    metrics();
    let (cert, key, ca_path, ca, client) = certificates(dir);
    let mut tls = format!("cert_file = {cert:?}, key_file = {key:?}");
    if verify_clients {
        tls += &format!(", ca_file = {ca_path:?}");
    }
    let out = dir.join("out.log");
    let server = start(dir, &forward_to_file(&format!("tls = {{ {tls} }}"), &out)).await;
    let addr = server.source_addr("fwd").expect("bound");
    TlsServer {
        server,
        out,
        addr,
        ca,
        client,
    }
}

/// Reads from `stream` until the acknowledgement of chunk `id` has arrived.
async fn read_ack<S: AsyncRead + Unpin>(stream: &mut S, id: &str) {
    let mut buf = Vec::new();
    let ack = async {
        loop {
            if let Some((acked, used)) = decode_ack(&buf).unwrap() {
                assert_eq!(acked, id.as_bytes());
                buf.drain(..used);
                return;
            }
            let mut byte = [0u8; 1];
            let n = stream.read(&mut byte).await.unwrap();
            assert!(n > 0, "the connection closed before the ack of {id}");
            buf.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ack)
        .await
        .unwrap_or_else(|_| panic!("no ack for {id}"));
}

/// Waits until the server closes `stream`; panics if it stays open.
async fn assert_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 256];
    let closed = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the server did not close the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_over_tls_are_stored_and_acknowledged_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = forward_tls_server(dir.path(), false).await;
    let mut stream = tls_connect(tls.addr, &tls.ca, None).await.unwrap();
    for (id, range) in [("first", 0..100), ("second", 100..250)] {
        stream
            .write_all(&chunk("tls.app", range, Some(id)))
            .await
            .unwrap();
        read_ack(&mut stream, id).await;
    }
    stream.shutdown().await.unwrap();
    let lines = wait_for_lines(&tls.out, 250).await;
    assert_eq!(lines.len(), 250);
    assert!(lines.iter().all(|line| line["tag"] == "tls.app"));
    assert_eq!(lines[249]["record"]["log"], "line 249");
    tls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_sender_on_the_tls_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = forward_tls_server(dir.path(), false).await;
    let refused = || {
        counter(
            "flumen_source_rejected_total",
            &[("source", "fwd"), ("reason", "tls")],
        )
    };
    let before = refused();
    let mut plain = TcpStream::connect(tls.addr).await.unwrap();
    plain
        .write_all(&chunk("plain", 0..3, Some("plain")))
        .await
        .unwrap();
    assert_closed(&mut plain).await;
    assert_eq!(refused(), before + 1);
    // The listener carries on for TLS senders, and nothing of the plaintext one was stored.
    let mut stream = tls_connect(tls.addr, &tls.ca, None).await.unwrap();
    stream
        .write_all(&chunk("tls", 0..2, Some("after")))
        .await
        .unwrap();
    read_ack(&mut stream, "after").await;
    let lines = wait_for_lines(&tls.out, 2).await;
    assert!(lines.iter().all(|line| line["tag"] == "tls"), "{lines:#?}");
    tls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ca_file_only_clients_with_a_signed_certificate_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let tls = forward_tls_server(dir.path(), true).await;
    // TLS 1.3 reports the refusal after the client's side of the handshake: it shows when
    // reading.
    if let Ok(mut anonymous) = tls_connect(tls.addr, &tls.ca, None).await {
        let _ = anonymous
            .write_all(&chunk("anonymous", 0..1, Some("a")))
            .await;
        let _ = anonymous.flush().await;
        assert_closed(&mut anonymous).await;
    }
    let mut known = tls_connect(tls.addr, &tls.ca, Some(&tls.client))
        .await
        .unwrap();
    known
        .write_all(&chunk("known", 0..1, Some("k")))
        .await
        .unwrap();
    read_ack(&mut known, "k").await;
    let lines = wait_for_lines(&tls.out, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["tag"], "known");
    tls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_file_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for (cert, expected) in [(&missing, "missing.pem"), (&empty, "no PEM CERTIFICATE")] {
        let body = forward_to_file(
            &format!("tls = {{ cert_file = {cert:?}, key_file = {cert:?} }}"),
            &dir.path().join("out.log"),
        );
        let Err(error) = Server::start(&spec(dir.path(), &body), None).await else {
            panic!("the server started with {cert:?} as its certificate");
        };
        let message = format!("{error:#}");
        assert!(message.contains("tls.cert_file"), "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(message.contains(&cert.display().to_string()), "{message}");
    }
}
