//! The syslog source in whole servers inside the test process: UDP, TCP (octet-counted and
//! newline-framed), TLS, RFC 5424 and RFC 3164, bad input and limits. Real senders (`logger`,
//! rsyslog) are in `tests/e2e/test_syslog.py`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flumen_server::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

mod common;

use common::tls::{certificates, tls_connect};
use common::{all_to_file, counter, metrics, start, wait_for_lines};

/// A server with one syslog source `name` (its `options` added) and every event to a file.
async fn syslog_server(dir: &Path, name: &str, options: &str) -> (Server, PathBuf, SocketAddr) {
    metrics();
    let out = dir.join("out.log");
    let server = start(
        dir,
        &format!(
            "[sources.{name}]\ntype = \"syslog\"\naddress = \"127.0.0.1:0\"\n{options}\n{}",
            all_to_file(&out)
        ),
    )
    .await;
    let addr = server.source_addr(name).expect("bound");
    (server, out, addr)
}

async fn udp_send(addr: SocketAddr, datagrams: &[&[u8]]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for datagram in datagrams {
        socket.send_to(datagram, addr).await.unwrap();
    }
}

/// Waits until the server closes `stream` (EOF or reset; bytes before, such as a TLS alert,
/// are skipped); panics if it stays open.
async fn assert_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 256];
    let closed = async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the server did not close the connection");
}

fn record(line: &Value) -> &serde_json::Map<String, Value> {
    line["record"].as_object().expect("a record")
}

fn by_message<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["record"]["message"] == message)
        .unwrap_or_else(|| panic!("no event with message {message:?} in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_rfc5424_with_structured_data_becomes_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (server, out, addr) = syslog_server(dir.path(), "udp5424", "").await;
    udp_send(
        addr,
        &[
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 4242 ID47 \
              [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]\
              [origin ip=\"192.0.2.1\"] \u{feff}An application event\n"
                .as_bytes(),
            b"<13>1 - - - - - - no header at all",
        ],
    )
    .await;
    let lines = wait_for_lines(&out, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let event = by_message(&lines, "An application event");
    assert_eq!(event["tag"], "syslog");
    assert_eq!(event["time"], "2003-10-11T22:14:15.003000000Z");
    assert_eq!(
        event["record"],
        json!({
            "facility": "local4",
            "severity": "notice",
            "level": "INFO",
            "timestamp": "2003-10-11T22:14:15.003Z",
            "hostname": "mymachine.example.com",
            "app_name": "evntslog",
            "proc_id": "4242",
            "msg_id": "ID47",
            "structured_data": {
                "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                "origin": {"ip": "192.0.2.1"}
            },
            "message": "An application event",
            "host": "mymachine.example.com",
            "source_address": "127.0.0.1"
        })
    );
    // Nil header fields are left out; without a timestamp the event time is the receive time.
    let bare = by_message(&lines, "no header at all");
    assert_eq!(
        bare["record"],
        json!({"facility": "user", "severity": "notice", "level": "INFO",
               "message": "no header at all", "source_address": "127.0.0.1"})
    );
    assert!(bare["time"].as_str().unwrap() > "2025");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_rfc3164_reads_the_bsd_time_in_the_configured_timezone_and_tags_by_priority() {
    let dir = tempfile::tempdir().unwrap();
    let (server, out, addr) = syslog_server(
        dir.path(),
        "udp3164",
        "timezone = \"+02:00\"\ntag = \"syslog.{facility}.{severity}\"",
    )
    .await;
    udp_send(
        addr,
        &[
            b"<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8",
            b"<131>Nov  2 01:02:03 vm myapp: line with\nan inner newline\n",
        ],
    )
    .await;
    let lines = wait_for_lines(&out, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let su = by_message(&lines, "'su root' failed for lonvick on /dev/pts/8");
    assert_eq!(su["tag"], "syslog.auth.crit");
    let r = record(su);
    assert_eq!(r["hostname"], "mymachine");
    assert_eq!(r["host"], "mymachine");
    assert_eq!(r["app_name"], "su");
    assert_eq!(r["proc_id"], "230");
    assert_eq!(r["level"], "FATAL");
    assert_eq!(r["timestamp"], "Oct 11 22:14:15");
    assert!(!r.contains_key("msg_id") && !r.contains_key("structured_data"));
    // 22:14:15 at +02:00 is 20:14:15 UTC (the year is inferred).
    assert!(
        su["time"]
            .as_str()
            .unwrap()
            .ends_with("-10-11T20:14:15.000000000Z"),
        "{}",
        su["time"]
    );
    // One datagram is one message, inner newlines included.
    let multi = by_message(&lines, "line with\nan inner newline");
    assert_eq!(multi["tag"], "syslog.local0.err");
    assert_eq!(multi["record"]["level"], "ERROR");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reads_octet_counted_and_newline_framed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (server, out, addr) = syslog_server(
        dir.path(),
        "tcp",
        "mode = \"tcp\"\ntag = \"syslog.{app_name}\"",
    )
    .await;
    let counted = |msg: &str| format!("{} {msg}", msg.len());
    // Octet counting, written in awkward pieces: the count split from its frame.
    let mut stream = String::new();
    for i in 0..50 {
        stream.push_str(&counted(&format!(
            "<14>1 2024-05-01T10:00:{:02}.5+02:00 web-1 api 77 REQ [req@1 id=\"{i}\"] counted {i}",
            i % 60
        )));
    }
    let mut octets = TcpStream::connect(addr).await.unwrap();
    for piece in stream.as_bytes().chunks(37) {
        octets.write_all(piece).await.unwrap();
        octets.flush().await.unwrap();
    }
    // Newline framing, RFC 3164 and RFC 5424, CRLF too, and one frame without its newline at
    // the end of the connection.
    let mut lines_conn = TcpStream::connect(addr).await.unwrap();
    lines_conn
        .write_all(
            b"<131>Nov 21 14:17:11 vm cron[12]: newline one\n\
              <131>1 2026-11-21T14:17:10.757250+00:00 vm cron - - - newline two\r\n\
              \n<131>Nov 21 14:17:11 vm cron: newline three",
        )
        .await
        .unwrap();
    lines_conn.shutdown().await.unwrap();
    // Both on one connection (auto framing decides per frame).
    let mut mixed = TcpStream::connect(addr).await.unwrap();
    let frame = "<30>1 - h mixed - - - counted";
    mixed
        .write_all(format!("{} {frame}<30>1 - h mixed - - - lined\n", frame.len()).as_bytes())
        .await
        .unwrap();
    mixed.shutdown().await.unwrap();
    octets.shutdown().await.unwrap();

    let lines = wait_for_lines(&out, 55).await;
    assert_eq!(lines.len(), 55, "{lines:#?}");
    let counted: Vec<_> = lines.iter().filter(|l| l["tag"] == "syslog.api").collect();
    assert_eq!(counted.len(), 50);
    for (i, line) in counted.iter().enumerate() {
        assert_eq!(line["record"]["message"], format!("counted {i}"));
        assert_eq!(
            line["record"]["structured_data"]["req@1"]["id"],
            i.to_string()
        );
        assert_eq!(line["record"]["app_name"], "api");
        assert_eq!(line["record"]["proc_id"], "77");
        assert_eq!(line["record"]["msg_id"], "REQ");
        assert_eq!(
            line["time"],
            format!("2024-05-01T08:00:{:02}.500000000Z", i % 60)
        );
    }
    let cron: Vec<_> = lines
        .iter()
        .filter(|l| l["tag"] == "syslog.cron")
        .map(|l| l["record"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(cron, ["newline one", "newline two", "newline three"]);
    assert_eq!(by_message(&lines, "newline one")["record"]["proc_id"], "12");
    let mixed: Vec<_> = lines
        .iter()
        .filter(|l| l["tag"] == "syslog.mixed")
        .map(|l| l["record"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(mixed, ["counted", "lined"]);
    assert!(lines.iter().all(|l| !record(l).contains_key("parse_error")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_takes_octet_counted_messages_and_checks_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca_path, ca, client) = certificates(dir.path());
    let (server, out, addr) = syslog_server(
        &dir.path().join("plain"),
        "tls_server",
        &format!("mode = \"tls\"\ntls = {{ cert = {cert:?}, key = {key:?} }}"),
    )
    .await;
    let mut stream = tls_connect(addr, &ca, None).await.unwrap();
    for i in 0..20 {
        let msg = format!("<86>1 2026-01-02T03:04:05Z tlshost sshd 99 - - secure {i}");
        stream
            .write_all(format!("{} {msg}", msg.len()).as_bytes())
            .await
            .unwrap();
    }
    stream
        .write_all(b"<86>Jan  2 03:04:05 tlshost sshd[99]: newline framed\n")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let lines = wait_for_lines(&out, 21).await;
    assert_eq!(lines.len(), 21, "{lines:#?}");
    for (i, line) in lines.iter().take(20).enumerate() {
        assert_eq!(line["record"]["message"], format!("secure {i}"));
        assert_eq!(line["record"]["facility"], "authpriv");
        assert_eq!(line["record"]["hostname"], "tlshost");
    }
    assert_eq!(lines[20]["record"]["message"], "newline framed");
    // Plain text on the TLS port is a failed handshake, counted; the listener carries on.
    let before = counter(
        "flumen_source_rejected_total",
        &[("source", "tls_server"), ("reason", "tls")],
    );
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"<13>1 - - - - - - not encrypted\n")
        .await
        .unwrap();
    assert_closed(&mut plain).await;
    assert_eq!(
        counter(
            "flumen_source_rejected_total",
            &[("source", "tls_server"), ("reason", "tls")]
        ),
        before + 1
    );
    server.shutdown().await;

    // With client_ca, only clients with a certificate the CA signed get in.
    let (server, out, addr) = syslog_server(
        &dir.path().join("mutual"),
        "mtls_server",
        &format!(
            "mode = \"tls\"\ntls = {{ cert = {cert:?}, key = {key:?}, client_ca = {ca_path:?} }}"
        ),
    )
    .await;
    // Without a client certificate: refused (TLS 1.3 reports it after the client's side of the
    // handshake, so the refusal shows when reading).
    if let Ok(mut anonymous) = tls_connect(addr, &ca, None).await {
        let _ = anonymous
            .write_all(b"9 <13>1 - - - - - - anonymous\n")
            .await;
        let _ = anonymous.flush().await;
        assert_closed(&mut anonymous).await;
    }
    let mut known = tls_connect(addr, &ca, Some(&client)).await.unwrap();
    known
        .write_all(b"<13>1 - client app - - - with a certificate\n")
        .await
        .unwrap();
    known.shutdown().await.unwrap();
    assert_eq!(wait_for_lines(&out, 1).await.len(), 1);
    // Nothing of the refused client arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = wait_for_lines(&out, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["record"]["message"], "with a certificate");
    assert_eq!(
        counter(
            "flumen_source_rejected_total",
            &[("source", "mtls_server"), ("reason", "tls")]
        ),
        1
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bogus_octet_count_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (server, out, addr) = syslog_server(
        dir.path(),
        "strict",
        "mode = \"tcp\"\nframing = \"octet_counting\"\nmax_message_size = \"1KiB\"",
    )
    .await;
    let frame = |msg: &str| format!("{} {msg}", msg.len());
    let mut expected = vec![
        "before".to_owned(),
        "after".to_owned(),
        "before the cut".to_owned(),
    ];
    let mut good = TcpStream::connect(addr).await.unwrap();
    good.write_all(frame("<13>1 - h good - - - before").as_bytes())
        .await
        .unwrap();
    for (bad_input, reason) in [
        // Not a count: a newline-framed sender pointed at an octet-counting listener.
        ("<13>1 - h bad - - - no count\n", "malformed"),
        // A count far above max_message_size.
        ("99999999 <13>1 - h bad - - - huge", "too_large"),
        ("0 <13>1", "malformed"),
    ] {
        let before = counter(
            "flumen_source_rejected_total",
            &[("source", "strict"), ("reason", reason)],
        );
        let mut bad = TcpStream::connect(addr).await.unwrap();
        // The messages before the bad frame are kept.
        let kept = format!("kept before {reason} {}", bad_input.len());
        expected.push(kept.clone());
        bad.write_all(
            format!(
                "{}{bad_input}",
                frame(&format!("<13>1 - h bad - - - {kept}"))
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        assert_closed(&mut bad).await;
        assert_eq!(
            counter(
                "flumen_source_rejected_total",
                &[("source", "strict"), ("reason", reason)]
            ),
            before + 1,
            "{bad_input}"
        );
    }
    // The stream ends inside a frame: what came before is kept, the rest is counted.
    let mut cut = TcpStream::connect(addr).await.unwrap();
    cut.write_all(
        format!(
            "{}40 <13>1 - h",
            frame("<13>1 - h bad - - - before the cut")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    cut.shutdown().await.unwrap();
    // The good connection never noticed.
    good.write_all(frame("<13>1 - h good - - - after").as_bytes())
        .await
        .unwrap();
    good.shutdown().await.unwrap();
    let lines = wait_for_lines(&out, 6).await;
    let mut messages: Vec<_> = lines
        .iter()
        .map(|l| l["record"]["message"].as_str().unwrap().to_owned())
        .collect();
    messages.sort();
    expected.sort();
    assert_eq!(messages, expected);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counter(
        "flumen_source_rejected_total",
        &[("source", "strict"), ("reason", "truncated")],
    ) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the cut frame was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_kept_with_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (server, out, addr) = syslog_server(dir.path(), "sloppy", "tag = \"sys.{app_name}\"").await;
    udp_send(
        addr,
        &[
            b"just some text\n",
            b"<999>1 - - app - - - bad priority",
            b"<13>1 - - app - - [unterminated sd",
            b"<13>1 not-a-time host app - - - odd time",
            b"<13>1 - host app - - - caf\xe9 latin-1",
        ],
    )
    .await;
    let lines = wait_for_lines(&out, 5).await;
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let text = by_message(&lines, "just some text");
    assert_eq!(text["tag"], "sys.unknown");
    assert_eq!(
        text["record"],
        json!({"message": "just some text", "source_address": "127.0.0.1",
               "parse_error": "not a syslog line: no <PRI> and no timestamp"})
    );
    let pri = by_message(&lines, "<999>1 - - app - - - bad priority");
    assert_eq!(pri["record"]["parse_error"], "invalid PRI <999>: above 191");
    let sd = by_message(&lines, "<13>1 - - app - - [unterminated sd");
    assert!(
        sd["record"]["parse_error"]
            .as_str()
            .unwrap()
            .contains("STRUCTURED-DATA")
    );
    // Parsed, but the time is not one: the fields are kept, the receive time used, and marked.
    let time = by_message(&lines, "odd time");
    assert_eq!(time["tag"], "sys.app");
    assert_eq!(time["record"]["timestamp"], "not-a-time");
    assert!(
        time["record"]["parse_error"]
            .as_str()
            .unwrap()
            .contains("timestamp \"not-a-time\" not understood")
    );
    let latin = by_message(&lines, "caf\u{fffd} latin-1");
    assert_eq!(latin["record"]["app_name"], "app");
    assert_eq!(
        latin["record"]["parse_error"],
        "not UTF-8; invalid bytes replaced"
    );
    assert_eq!(
        counter(
            "flumen_source_malformed_events_total",
            &[("source", "sloppy")]
        ),
        5
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_max_message_size_are_cut_and_the_stream_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (udp_server, udp_out, udp_addr) = syslog_server(
        &dir.path().join("udp"),
        "small_udp",
        "max_message_size = \"1KiB\"",
    )
    .await;
    let long = format!("<13>1 - host big - - - {}", "x".repeat(3000));
    udp_send(
        udp_addr,
        &[long.as_bytes(), b"<13>1 - host small - - - fits"],
    )
    .await;
    let lines = wait_for_lines(&udp_out, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let cut = lines
        .iter()
        .find(|l| l["record"]["app_name"] == "big")
        .unwrap();
    assert_eq!(cut["record"]["truncated"], true);
    assert_eq!(
        cut["record"]["message"].as_str().unwrap().len(),
        1024 - "<13>1 - host big - - - ".len()
    );
    assert_eq!(by_message(&lines, "fits")["record"].get("truncated"), None);
    udp_server.shutdown().await;

    let (server, out, addr) = syslog_server(
        &dir.path().join("tcp"),
        "small_tcp",
        "mode = \"tcp\"\nmax_message_size = \"1KiB\"",
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{long}\n<13>1 - host small - - - next line\n").as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let lines = wait_for_lines(&out, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0]["record"]["truncated"], true);
    assert_eq!(lines[0]["record"]["app_name"], "big");
    assert_eq!(lines[1]["record"]["message"], "next line");
    assert_eq!(
        counter(
            "flumen_source_truncated_events_total",
            &[("source", "small_tcp")]
        ),
        1
    );
    // An octet count above the limit cannot be skipped safely: that connection closes.
    let mut counted = TcpStream::connect(addr).await.unwrap();
    counted
        .write_all(format!("{} {long}", long.len()).as_bytes())
        .await
        .unwrap();
    assert_closed(&mut counted).await;
    assert_eq!(
        counter(
            "flumen_source_rejected_total",
            &[("source", "small_tcp"), ("reason", "too_large")]
        ),
        1
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_and_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, out, addr) = syslog_server(
        dir.path(),
        "limited",
        "mode = \"tcp\"\nmax_connections = 1\nidle_timeout = \"300ms\"",
    )
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(b"<13>1 - - a - - - first\n").await.unwrap();
    assert_eq!(wait_for_lines(&out, 1).await.len(), 1);
    // The second connection waits in the backlog while the first is open.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"<13>1 - - b - - - second\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(wait_for_lines(&out, 1).await.len(), 1);
    first.shutdown().await.unwrap();
    assert_eq!(wait_for_lines(&out, 2).await.len(), 2);
    // A silent connection is closed at the idle timeout; its unterminated line is kept.
    second
        .write_all(b"<13>1 - - b - - - no newline")
        .await
        .unwrap();
    assert_closed(&mut second).await;
    let lines = wait_for_lines(&out, 3).await;
    assert_eq!(lines[2]["record"]["message"], "no newline");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_stores_what_was_read_including_held_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (server, out, addr) = syslog_server(
        dir.path(),
        "held",
        "mode = \"tcp\"\n[[filters]]\ntype = \"multiline\"\nmatch = [\"syslog\"]\nmode = \"java\"\n\
         flush_timeout = \"1h\"",
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"<11>1 - h app - - - plain line\n\
              <11>1 - h app - - - java.lang.IllegalStateException: boom\n\
              <11>1 - h app - - - \tat com.example.Foo.bar(Foo.java:10)\n",
        )
        .await
        .unwrap();
    assert_eq!(wait_for_lines(&out, 1).await.len(), 1);
    // The connection stays open; the trace is held until the stop.
    server.shutdown().await;
    let lines = wait_for_lines(&out, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        lines[1]["record"]["message"],
        "java.lang.IllegalStateException: boom\n\tat com.example.Foo.bar(Foo.java:10)"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_mistakes_are_clear_errors() {
    use flumen_server::sources::syslog::{SyslogConfig, SyslogSource};
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for (options, expected) in [
        ("mode = \"tls\"", "mode = \"tls\" needs tls = {"),
        (
            "framing = \"newline\"",
            "framing applies to mode = \"tcp\" or \"tls\"",
        ),
        ("idle_timeout = \"1s\"", "idle_timeout applies to mode"),
        (
            "mode = \"tcp\"\ntls = { cert = \"a\", key = \"b\" }",
            "tls is set but mode is \"tcp\"",
        ),
        (
            "tag = \"syslog.{program}\"",
            "unknown placeholder {program}",
        ),
        ("timezone = \"Europe/Paris\"", "timezone"),
        ("max_message_size = \"0B\"", "max_message_size"),
        ("mode = \"tcp\"\nmax_connections = 0", "max_connections"),
        (
            &format!("mode = \"tls\"\ntls = {{ cert = {missing:?}, key = {missing:?} }}"),
            "tls.cert",
        ),
        (
            &format!("mode = \"tls\"\ntls = {{ cert = {empty:?}, key = {empty:?} }}"),
            "no PEM CERTIFICATE",
        ),
    ] {
        let config: SyslogConfig =
            toml::from_str(&format!("address = \"127.0.0.1:0\"\n{options}")).unwrap();
        let error = SyslogSource::bind("bad", &config).await.unwrap_err();
        let text = error.to_string();
        assert!(text.contains(expected), "{options}: {text}");
    }
    // Unknown keys are refused by the configuration itself.
    assert!(toml::from_str::<SyslogConfig>("port = 514").is_err());
    assert!(toml::from_str::<SyslogConfig>("mode = \"unix\"").is_err());
}
