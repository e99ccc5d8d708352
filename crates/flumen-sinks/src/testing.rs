//! What the HTTP outputs' tests share: deliveries of events with string fields, and a small
//! HTTP server that answers as a test tells it to and keeps what it was sent.

use flumen_event::{BatchBuilder, EventTime, TenantId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Delivery;

/// A msgpack map of string fields.
pub(crate) fn record(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, fields.len() as u32).unwrap();
    for (k, v) in fields {
        rmp::encode::write_str(&mut out, k).unwrap();
        rmp::encode::write_str(&mut out, v).unwrap();
    }
    out
}

/// An event: seconds, nanoseconds, string fields.
pub(crate) type TestEvent<'a> = (u64, u32, Vec<(&'a str, &'a str)>);

/// One batch of tag `tag` with `events`.
pub(crate) fn delivery(tag: &str, events: &[TestEvent<'_>]) -> Delivery {
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut entries = Vec::new();
    for (secs, nanos, fields) in events {
        flumen_event::entry::write_entry(
            &mut entries,
            EventTime::new(*secs, *nanos),
            &record(fields),
        );
    }
    let count = events.len() as u32;
    let batch = builder.encode(tag, b"", count, &entries).unwrap();
    let mut delivery = Delivery::default();
    delivery.push(0, batch.into(), count);
    delivery
}

/// A one-connection-at-a-time HTTP server answering each request with the next of `answers`
/// (status, extra headers, body), and the requests it read (head, lowercased; body).
pub(crate) async fn server(
    answers: Vec<(u16, &str, &str)>,
) -> (String, tokio::task::JoinHandle<Vec<(String, Vec<u8>)>>) {
    let answers: Vec<(u16, String, String)> = answers
        .into_iter()
        .map(|(status, headers, body)| (status, headers.to_owned(), body.to_owned()))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (status, headers, body) in answers {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            let (head, length) = loop {
                let n = socket.read(&mut buf).await.unwrap();
                data.extend_from_slice(&buf[..n]);
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    data.drain(..end + 4);
                    break (head, length);
                }
            };
            while data.len() < length {
                let n = socket.read(&mut buf).await.unwrap();
                data.extend_from_slice(&buf[..n]);
            }
            seen.push((head, data));
            let answer = format!(
                "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        }
        seen
    });
    (url, task)
}
