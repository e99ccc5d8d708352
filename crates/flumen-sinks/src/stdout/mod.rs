//! The stdout output: one JSON object per line, `{"tag":…,"time":…,"record":{…}}`, with the
//! time in RFC 3339 UTC to the nanosecond.

use tokio::io::AsyncWriteExt;

use super::{Delivery, DeliveryError, Outcome, render_event};

/// Writes events to standard output.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    pub(crate) async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        self.buf.clear();
        for (tag, entry) in delivery.events() {
            render_event(&mut self.buf, tag, &entry);
        }
        let mut out = tokio::io::stdout();
        match out.write_all(&self.buf).await.and(out.flush().await) {
            Ok(()) => Outcome::delivered(),
            Err(e) => DeliveryError::retryable(format!("writing to stdout: {e}")).into(),
        }
    }
}
