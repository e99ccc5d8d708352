//! Live streams over WebSocket: `GET /api/v1/tail` (flumen's events) and
//! `GET /loki/api/v1/tail` (Loki's shape, for Grafana's live view and `logcli --tail`).
//!
//! Both take what `GET /api/v1/stream` takes (`query`, `limit`, `since`/`start`/`end`, and
//! `after=POSITION` to resume; Loki's takes `query`, `limit`, `start` and `delay_for`), and
//! send the same stream in text frames:
//!
//! - `/api/v1/tail`: one event object per frame, with its `position`; a gap is
//!   `{"type":"gap","from":…,"to":…,"records":…}` (control frames have a `type`, events never
//!   do).
//! - `/loki/api/v1/tail`: `{"streams":[{"stream":{labels},"values":[["<ns>","<line>"]]},…]}`,
//!   one entry per element as Loki sends them, up to 100 per frame.
//!
//! A ping goes out after [`HEARTBEAT`](flumen_live::HEARTBEAT) without a frame. A stream ends
//! with a close frame whose code says why and whose reason is JSON,
//! `{"reason":…,"reconnect":…}`, at most 123 bytes:
//!
//! | code | when | reconnect |
//! |---|---|---|
//! | 1012 (service restart) | flumen stops | true, resuming `after` the last position |
//! | 1011 (internal error) | the stream cannot go on (the store failed) | true |
//! | 4400 | the request is wrong (a bad query or position) | false |
//! | 4429 | too many live streams | true, later |
//!
//! The request is checked after the upgrade, so that a browser, which cannot see an HTTP
//! status on a refused upgrade, gets the reason in the close frame.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use flumen_live::{Format, Message, Subscription};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::json;

use super::query::RangeParams;
use super::stream::{StreamParams, gap_json, subscribe};
use super::{ApiError, ApiState};

/// Close codes (see the module documentation).
const CLOSE_COMPLETE: u16 = 1000;
const CLOSE_SHUTTING_DOWN: u16 = 1012;
const CLOSE_FAILED: u16 = 1011;
const CLOSE_BAD_REQUEST: u16 = 4400;
const CLOSE_NOT_FOUND: u16 = 4404;
const CLOSE_TOO_MANY: u16 = 4429;
/// Entries per Loki frame at most, as Loki's own `tail`.
const LOKI_ENTRIES_PER_FRAME: usize = 100;
/// Frames written before one flush at most.
const FRAMES_PER_FLUSH: usize = 256;
/// A client only ever sends closes and pongs: a small read buffer, so that ten thousand
/// streams do not each hold the 128 KiB tungstenite reads into by default.
const CLIENT_MESSAGE_BYTES: usize = 16 << 10;
const READ_BUFFER_BYTES: usize = 4 << 10;
/// Loki refuses a `delay_for` above this many seconds.
const LOKI_MAX_DELAY_FOR: u64 = 5;

pub(crate) async fn tail(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<StreamParams>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let subscription = subscribe(&state, &params, None, Format::Event).await;
    small_buffers(upgrade).on_upgrade(move |socket| serve(socket, subscription, Framing::Events))
}

/// `GET /loki/api/v1/tail`'s parameters, as Loki documents them.
#[derive(Debug, Deserialize)]
pub(crate) struct LokiTailParams {
    query: Option<String>,
    limit: Option<usize>,
    start: Option<String>,
    delay_for: Option<String>,
}

pub(crate) async fn loki_tail(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<LokiTailParams>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let subscription = match loki_delay(params.delay_for.as_deref()) {
        Ok(()) => {
            let params = StreamParams {
                query: params.query,
                limit: params.limit,
                range: RangeParams::starting(params.start),
                ..StreamParams::default()
            };
            subscribe(&state, &params, None, Format::Loki).await
        }
        Err(error) => Err(error),
    };
    small_buffers(upgrade).on_upgrade(move |socket| serve(socket, subscription, Framing::Loki))
}

fn small_buffers(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(CLIENT_MESSAGE_BYTES)
        .max_frame_size(CLIENT_MESSAGE_BYTES)
}

/// Checks Loki's `delay_for`. flumen shows events once durable, in log order, so it has no
/// late arrivals to wait for: the delay is accepted and not applied.
fn loki_delay(delay_for: Option<&str>) -> Result<(), ApiError> {
    let Some(text) = delay_for else {
        return Ok(());
    };
    match text.parse::<u64>() {
        Ok(seconds) if seconds <= LOKI_MAX_DELAY_FOR => Ok(()),
        Ok(_) => Err(ApiError::BadRequest(format!(
            "delay_for can't be greater than {LOKI_MAX_DELAY_FOR}"
        ))),
        Err(_) => Err(ApiError::BadRequest(format!(
            "delay_for: {text:?} is not a number of seconds"
        ))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Events,
    Loki,
}

async fn serve(socket: WebSocket, subscription: Result<Subscription, ApiError>, framing: Framing) {
    let (mut sink, mut incoming) = socket.split();
    let mut subscription = match subscription {
        Ok(subscription) => subscription,
        Err(error) => {
            let (code, reconnect) = match error {
                ApiError::TooManyRequests(_) => (CLOSE_TOO_MANY, true),
                ApiError::NotFound(_) => (CLOSE_NOT_FOUND, false),
                ApiError::BadRequest(_) | ApiError::Conflict(_) | ApiError::PayloadTooLarge(_) => {
                    (CLOSE_BAD_REQUEST, false)
                }
                ApiError::Unavailable(_) => (CLOSE_FAILED, true),
            };
            let _ = sink.send(close(code, &error.to_string(), reconnect)).await;
            return;
        }
    };
    loop {
        let message = tokio::select! {
            message = subscription.next() => message,
            frame = incoming.next() => match frame {
                // What a client sends is not read, but its close (or its going) ends the stream.
                Some(Ok(Frame::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let Some(message) = message else { return };
        let mut frames = framing.frames(message, &mut subscription);
        let last = frames.pop();
        for frame in frames {
            if sink.feed(frame).await.is_err() {
                return;
            }
        }
        if let Some(last) = last
            && sink.send(last).await.is_err()
        {
            return;
        }
    }
}

impl Framing {
    /// The frames for `first` and whatever else the subscription has ready now.
    fn frames(self, first: Message, subscription: &mut Subscription) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut loki_entries = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match (self, message) {
                (Self::Events, Message::Event(event)) => {
                    if let Ok(text) = Utf8Bytes::try_from(event.body.clone()) {
                        frames.push(Frame::Text(text));
                    }
                }
                (Self::Loki, Message::Event(event)) => {
                    loki_entries.push(event);
                    if loki_entries.len() == LOKI_ENTRIES_PER_FRAME {
                        frames.push(loki_frame(&mut loki_entries));
                    }
                }
                (
                    Self::Events,
                    Message::Gap {
                        from,
                        to,
                        events_at_most,
                    },
                ) => {
                    let mut gap = gap_json(from, to, events_at_most);
                    gap["type"] = json!("gap");
                    frames.push(Frame::Text(gap.to_string().into()));
                }
                // Loki's dropped entries name each entry's time and labels, which a gap in
                // the log does not know.
                (Self::Loki, Message::Gap { .. }) => {}
                (_, Message::Heartbeat) => frames.push(Frame::Ping(Default::default())),
                (_, Message::Error(error)) => frames.push(close(CLOSE_FAILED, &error, true)),
                (_, Message::Closing) => {
                    frames.push(close(CLOSE_SHUTTING_DOWN, "shutting down", true));
                }
                (framing, Message::End(end)) => {
                    if matches!(framing, Self::Events) {
                        frames.push(Frame::Text(end.into()));
                    }
                    frames.push(close(CLOSE_COMPLETE, "deployment finished", false));
                }
            }
            if frames.len() < FRAMES_PER_FLUSH {
                next = subscription.try_next();
            }
        }
        if !loki_entries.is_empty() {
            // Before a close that may have ended the batch.
            let at = frames
                .iter()
                .position(|f| matches!(f, Frame::Close(_)))
                .unwrap_or(frames.len());
            frames.insert(at, loki_frame(&mut loki_entries));
        }
        frames
    }
}

/// `{"streams":[…]}` of the entries, which it empties.
fn loki_frame(entries: &mut Vec<Arc<flumen_live::Rendered>>) -> Frame {
    let mut out = b"{\"streams\":[".to_vec();
    for (i, entry) in entries.drain(..).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&entry.body);
    }
    out.extend_from_slice(b"]}");
    Frame::Text(String::from_utf8_lossy(&out).into_owned().into())
}

/// A close frame whose reason is `{"reason":…,"reconnect":…}`, the reason shortened to fit
/// the 123 bytes a close frame holds.
fn close(code: u16, reason: &str, reconnect: bool) -> Frame {
    const MAX_REASON: usize = 123;
    let mut text = reason.to_owned();
    loop {
        let json = json!({ "reason": text, "reconnect": reconnect }).to_string();
        if json.len() <= MAX_REASON {
            return Frame::Close(Some(CloseFrame {
                code,
                reason: json.into(),
            }));
        }
        text.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_close_reason_is_cut_to_valid_json_that_fits() {
        let Frame::Close(Some(frame)) = close(4400, &"é\"".repeat(100), false) else {
            panic!("a close frame");
        };
        assert!(frame.reason.len() <= 123);
        let json: serde_json::Value = serde_json::from_str(frame.reason.as_str()).unwrap();
        assert_eq!(json["reconnect"], false);
        assert!(json["reason"].as_str().unwrap().starts_with("é\"é"));
    }

    #[test]
    fn loki_delay_for_is_checked_as_loki_checks_it() {
        assert!(loki_delay(None).is_ok());
        assert!(loki_delay(Some("5")).is_ok());
        assert!(loki_delay(Some("6")).is_err());
        assert!(loki_delay(Some("soon")).is_err());
    }
}
