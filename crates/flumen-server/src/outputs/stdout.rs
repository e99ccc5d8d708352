//! The stdout output: one JSON object per line, `{"tag":…,"time":…,"record":{…}}`, with the
//! time in RFC 3339 UTC to the nanosecond.

use flumen_event::json::write_event_line;
use tokio::io::AsyncWriteExt;

use super::{Delivery, DeliveryError};

/// Writes events to standard output.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    pub(crate) async fn deliver(&mut self, delivery: &Delivery) -> Result<(), DeliveryError> {
        self.buf.clear();
        render_json_lines(delivery, &mut self.buf);
        let mut out = tokio::io::stdout();
        out.write_all(&self.buf)
            .await
            .and(out.flush().await)
            .map_err(|e| DeliveryError::retryable(format!("writing to stdout: {e}")))
    }
}

/// Renders every event of a delivery as a JSON line; an entry that cannot be rendered (the log
/// only holds validated entries, so this means a bug) is logged and skipped.
pub(crate) fn render_json_lines(delivery: &Delivery, out: &mut Vec<u8>) {
    for (seq, batch) in delivery.iter() {
        for entry in batch.iter() {
            let rendered = entry.map_err(|e| e.to_string()).and_then(|entry| {
                write_event_line(out, batch.tag, &entry).map_err(|e| e.to_string())
            });
            if let Err(error) = rendered {
                tracing::error!(message = "Skipping an entry that cannot be rendered.", seq, %error);
            }
        }
    }
}
