//! The command's output: each of its pipes is read by a thread that writes every chunk straight
//! to flumen run's own stdout or stderr (unbuffered, as soon as it is read) and hands complete
//! lines to the queue. The queue is bounded in bytes; a line that does not fit is dropped and
//! counted, so that the command never waits for the log.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use flumen_event::EventTime;

use super::events::Stream;

/// Lines longer than this are cut into events of this size (the first ones marked `partial`).
pub const MAX_LINE: usize = 64 * 1024;

/// The most bytes of lines waiting for the log, counted with [`LINE_OVERHEAD`] each.
pub const QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// What a queued line costs besides its text.
pub const LINE_OVERHEAD: usize = 64;

/// What goes to the sender.
#[derive(Debug)]
pub enum Message {
    /// A line the command printed.
    Line {
        time: EventTime,
        stream: Stream,
        text: Vec<u8>,
        partial: bool,
    },
    /// A whole record (the lifecycle events), never dropped.
    Record { time: EventTime, record: Vec<u8> },
    /// Nothing follows.
    End,
}

impl Message {
    /// What the message counts against [`QUEUE_BYTES`].
    pub fn cost(&self) -> usize {
        match self {
            Message::Line { text, .. } => text.len() + LINE_OVERHEAD,
            Message::Record { .. } | Message::End => 0,
        }
    }
}

/// State the readers, the sender and the main thread share.
#[derive(Debug, Default)]
pub struct Queue {
    /// Bytes of lines queued (see [`Message::cost`]).
    pub queued: AtomicUsize,
    /// Lines read (pieces of cut lines counted each).
    pub lines: AtomicU64,
    /// Lines dropped because the queue was full.
    pub dropped: AtomicU64,
    /// No more lines are taken: the command's end was reported, or nothing is being sent.
    pub closed: AtomicBool,
}

impl Queue {
    fn offer(&self, tx: &Sender<Message>, message: Message) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let cost = message.cost();
        if self.queued.fetch_add(cost, Ordering::Relaxed) + cost > QUEUE_BYTES {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if tx.send(message).is_err() {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// flumen run's own stdout or stderr, unbuffered (a duplicate of the descriptor), or `None` if
/// it is closed.
pub fn passthrough(stream: Stream) -> Option<File> {
    let fd = match stream {
        Stream::Stdout => std::io::stdout().as_fd().try_clone_to_owned(),
        Stream::Stderr => std::io::stderr().as_fd().try_clone_to_owned(),
    };
    fd.ok().map(File::from)
}

/// Writes all of `data`; false if the destination is gone.
fn write_through(out: &mut File, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match out.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A descriptor someone made non-blocking: wait for room, as a blocking write would.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return false,
        }
    }
    true
}

/// Reads `pipe` to its end: passes it through to `out` and queues its lines.
pub fn pump(
    mut pipe: impl Read,
    mut out: Option<File>,
    stream: Stream,
    tx: &Sender<Message>,
    queue: &Queue,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let emit = |text: &[u8], partial: bool| {
        let text = match text {
            [rest @ .., b'\r'] if !partial => rest,
            _ => text,
        };
        queue.offer(
            tx,
            Message::Line {
                time: EventTime::now(),
                stream,
                text: text.to_vec(),
                partial,
            },
        );
    };
    // A complete line, in pieces if it is too long.
    let emit_line = |mut text: &[u8]| {
        while text.len() > MAX_LINE {
            let cut = char_boundary(text, MAX_LINE);
            emit(&text[..cut], true);
            text = &text[cut..];
        }
        emit(text, false);
    };
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if let Some(o) = &mut out
            && !write_through(o, chunk)
        {
            // Where the command's output was going is gone (`flumen run ... | head`): stop
            // reading, so that the command learns it as it would have (EPIPE, SIGPIPE).
            line.extend_from_slice(chunk);
            break;
        }
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            if line.is_empty() {
                emit_line(&rest[..at]);
            } else {
                line.extend_from_slice(&rest[..at]);
                emit_line(&line);
                line.clear();
            }
            rest = &rest[at + 1..];
        }
        line.extend_from_slice(rest);
        // Past the limit (not at it: the next byte says whether the cut splits a character).
        while line.len() > MAX_LINE {
            let cut = char_boundary(&line, MAX_LINE);
            emit(&line[..cut], true);
            line.drain(..cut);
        }
    }
    drop(pipe);
    // The end of the output (or what was read when its destination went away): a last line
    // without a newline is a line all the same.
    let mut pieces = line.split(|&b| b == b'\n').peekable();
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_some() || !piece.is_empty() {
            emit_line(piece);
        }
    }
}

/// The largest index `<= at` that does not cut a UTF-8 sequence (when `text` is UTF-8 there).
fn char_boundary(text: &[u8], at: usize) -> usize {
    let mut cut = at.min(text.len());
    let floor = cut.saturating_sub(3);
    while cut > floor && cut < text.len() && (text[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    if cut == 0 { at } else { cut }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let queue = Queue::default();
        pump(input, None, Stream::Stdout, &tx, &queue);
        drop(tx);
        rx.into_iter()
            .map(|m| match m {
                Message::Line { text, partial, .. } => (text, partial),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn lines_are_split_and_the_last_one_needs_no_newline() {
        let got = lines_of(b"one\r\ntwo\n\nthree");
        let texts: Vec<&[u8]> = got.iter().map(|(t, _)| t.as_slice()).collect();
        assert_eq!(texts, [&b"one"[..], b"two", b"", b"three"]);
    }

    #[test]
    fn long_lines_are_cut_between_characters() {
        let mut input = vec![b'a'; MAX_LINE - 1];
        input.extend_from_slice("é".as_bytes());
        input.extend_from_slice(b"tail\n");
        let got = lines_of(&input);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), MAX_LINE - 1);
        assert!(got[0].1);
        assert_eq!(got[1].0, "étail".as_bytes());
        assert!(!got[1].1);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = std::sync::mpsc::channel();
        let queue = Queue::default();
        queue.queued.store(QUEUE_BYTES - 10, Ordering::Relaxed);
        pump(&b"x\ny\n"[..], None, Stream::Stderr, &tx, &queue);
        drop(tx);
        assert_eq!(rx.into_iter().count(), 0);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(queue.lines.load(Ordering::Relaxed), 2);
    }
}
