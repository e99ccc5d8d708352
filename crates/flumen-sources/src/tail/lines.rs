//! Cutting the bytes of a file into lines and lines into entries, without I/O.
//!
//! A line ends with `\n` (a `\r` before it is dropped too). Each becomes one entry,
//! `[time, {<field>: line, <path_field>: path}]`, written straight as msgpack. A line that is not
//! UTF-8 is kept with U+FFFD in place of what is not. A line longer than `max_line` bytes is cut
//! into pieces of at most `max_line` bytes (at a character boundary), or skipped, as the
//! configuration says; either way the reader never waits for a newline that may never come with
//! more than `max_line` bytes held. Bytes after the last newline are a partial line: they stay
//! unread (the caller keeps them) until their newline arrives, unless the caller says the file
//! is finished.

use flumen_event::msgpack::write_str;
use memchr::memchr;

use super::LongLines;

/// How lines become entries: the record's constant parts, encoded once per file.
#[derive(Debug, Clone)]
pub(super) struct EntryFormat {
    /// The map header and the line field's key.
    head: Vec<u8>,
    /// The path field, key and value, or nothing.
    tail: Vec<u8>,
}

impl EntryFormat {
    /// Entries whose record holds the line under `field` and, unless `path_field` is empty,
    /// `path` under `path_field`.
    pub(super) fn new(field: &str, path_field: &str, path: &str) -> Self {
        let mut head = Vec::with_capacity(field.len() + 8);
        head.push(if path_field.is_empty() { 0x81 } else { 0x82 });
        write_str(&mut head, field.as_bytes());
        let mut tail = Vec::new();
        if !path_field.is_empty() {
            write_str(&mut tail, path_field.as_bytes());
            write_str(&mut tail, path.as_bytes());
        }
        Self { head, tail }
    }

    /// Appends the entry of one line; `time` is an encoded EventTime. Returns whether the line
    /// was valid UTF-8.
    fn write(&self, out: &mut Vec<u8>, time: &[u8], line: &[u8]) -> bool {
        out.reserve(1 + time.len() + self.head.len() + line.len() + 5 + self.tail.len());
        out.push(0x92);
        out.extend_from_slice(time);
        out.extend_from_slice(&self.head);
        let valid = match std::str::from_utf8(line) {
            Ok(_) => {
                write_str(out, line);
                true
            }
            Err(_) => {
                write_str(out, String::from_utf8_lossy(line).as_bytes());
                false
            }
        };
        out.extend_from_slice(&self.tail);
        valid
    }
}

/// What [`Splitter::take`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Taken {
    /// Bytes of the input consumed: up to the end of the last line (or piece, or skipped part)
    /// taken. The rest is a partial line.
    pub consumed: usize,
    /// Entries written.
    pub entries: u32,
    /// Lines longer than the maximum (cut or skipped).
    pub long: u32,
    /// Lines with bytes that are not UTF-8.
    pub invalid_utf8: u32,
}

/// Cuts lines; one per file, as it remembers whether it is inside a long line being skipped.
#[derive(Debug, Clone)]
pub(super) struct Splitter {
    max_line: usize,
    long_lines: LongLines,
    /// Inside a line over the maximum that is being skipped: drop bytes up to its newline.
    skipping: bool,
}

impl Splitter {
    pub(super) fn new(max_line: usize, long_lines: LongLines) -> Self {
        Self {
            max_line: max_line.max(1),
            long_lines,
            skipping: false,
        }
    }

    /// Takes the lines at the front of `buf`, writing their entries to `out`. With `finished`,
    /// a last line without its newline is taken too (the file will not grow any more).
    pub(super) fn take(
        &mut self,
        buf: &[u8],
        finished: bool,
        format: &EntryFormat,
        time: &[u8],
        out: &mut Vec<u8>,
    ) -> Taken {
        let mut taken = Taken::default();
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            match memchr(b'\n', rest) {
                Some(end) => {
                    let next = pos + end + 1;
                    if self.skipping {
                        // The end of a long line being skipped.
                        self.skipping = false;
                    } else {
                        let line = &rest[..end];
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        self.line(line, format, time, out, &mut taken);
                    }
                    pos = next;
                }
                None => {
                    if self.skipping {
                        pos = buf.len();
                    } else if rest.len() > self.max_line {
                        match self.long_lines {
                            LongLines::Split => {
                                // Full pieces now; what is left waits for more bytes.
                                taken.long += 1;
                                let mut piece_start = pos;
                                while buf.len() - piece_start > self.max_line {
                                    let cut = cut_at(&buf[piece_start..], self.max_line);
                                    self.entry(
                                        &buf[piece_start..piece_start + cut],
                                        format,
                                        time,
                                        out,
                                        &mut taken,
                                    );
                                    piece_start += cut;
                                }
                                pos = piece_start;
                            }
                            LongLines::Skip => {
                                taken.long += 1;
                                self.skipping = true;
                                pos = buf.len();
                            }
                        }
                        if finished && pos < buf.len() {
                            self.entry(&buf[pos..], format, time, out, &mut taken);
                            pos = buf.len();
                        }
                    } else if finished {
                        let line = rest.strip_suffix(b"\r").unwrap_or(rest);
                        self.line(line, format, time, out, &mut taken);
                        pos = buf.len();
                    }
                    break;
                }
            }
        }
        taken.consumed = pos;
        taken
    }

    /// One whole line: an entry, pieces of it, or nothing (skipped).
    fn line(
        &mut self,
        line: &[u8],
        format: &EntryFormat,
        time: &[u8],
        out: &mut Vec<u8>,
        taken: &mut Taken,
    ) {
        if line.len() <= self.max_line {
            self.entry(line, format, time, out, taken);
            return;
        }
        taken.long += 1;
        if self.long_lines == LongLines::Skip {
            return;
        }
        let mut rest = line;
        while !rest.is_empty() {
            let cut = cut_at(rest, self.max_line);
            self.entry(&rest[..cut], format, time, out, taken);
            rest = &rest[cut..];
        }
    }

    fn entry(
        &self,
        line: &[u8],
        format: &EntryFormat,
        time: &[u8],
        out: &mut Vec<u8>,
        taken: &mut Taken,
    ) {
        if !format.write(out, time, line) {
            taken.invalid_utf8 += 1;
        }
        taken.entries += 1;
    }
}

/// Where to cut `bytes` into a piece of at most `max` bytes: before a UTF-8 continuation byte
/// when one is within reach, so that a character is not split between two pieces.
fn cut_at(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let mut cut = max;
    for _ in 0..3 {
        if cut > 1 && bytes[cut] & 0xc0 == 0x80 {
            cut -= 1;
        } else {
            break;
        }
    }
    if bytes[cut] & 0xc0 == 0x80 { max } else { cut }
}

/// True when the start of a file looks like a binary file rather than text: it holds NUL bytes
/// and is not UTF-8 (compressed, executable, image). UTF-16 text and the NUL runs a crash can
/// leave in a log are UTF-8 in this sense, and are read.
pub(super) fn looks_binary(prefix: &[u8]) -> bool {
    if memchr(0, prefix).is_none() {
        return false;
    }
    match std::str::from_utf8(prefix) {
        Ok(_) => false,
        // A character cut by the end of the prefix is not a reason.
        Err(error) => error.error_len().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use flumen_event::EntryIter;
    use flumen_event::record::Event;

    use super::*;

    fn lines(entries: &[u8]) -> Vec<String> {
        EntryIter::new(entries)
            .map(|e| {
                let event = Event::decode(&e.unwrap()).unwrap();
                event.record.get("log").unwrap().to_text().into_owned()
            })
            .collect()
    }

    fn take(splitter: &mut Splitter, buf: &[u8], finished: bool) -> (Taken, Vec<String>, Vec<u8>) {
        let format = EntryFormat::new("log", "filename", "/var/log/app.log");
        let mut time = Vec::new();
        flumen_event::EventTime::new(1, 2).write_msgpack(&mut time);
        let mut out = Vec::new();
        let taken = splitter.take(buf, finished, &format, &time, &mut out);
        (taken, lines(&out), out)
    }

    #[test]
    fn whole_lines_are_taken_and_a_partial_one_waits() {
        let mut s = Splitter::new(100, LongLines::Split);
        let (taken, got, out) = take(&mut s, b"one\ntwo\r\nthr", false);
        assert_eq!(got, ["one", "two"]);
        assert_eq!(taken.consumed, 9);
        assert_eq!(taken.entries, 2);
        let event = Event::decode(&EntryIter::new(&out).next().unwrap().unwrap()).unwrap();
        assert_eq!(
            event.record.get("filename").unwrap().as_str(),
            Some("/var/log/app.log")
        );
        assert_eq!(event.time, flumen_event::EventTime::new(1, 2));
        let (taken, got, _) = take(&mut s, b"thr", true);
        assert_eq!(got, ["thr"]);
        assert_eq!(taken.consumed, 3);
    }

    #[test]
    fn empty_lines_are_events() {
        let mut s = Splitter::new(100, LongLines::Split);
        let (_, got, _) = take(&mut s, b"\n\na\n", false);
        assert_eq!(got, ["", "", "a"]);
    }

    #[test]
    fn long_lines_are_cut_at_character_boundaries() {
        let mut s = Splitter::new(4, LongLines::Split);
        let (taken, got, _) = take(&mut s, "abcdefghij\nxé€yz\nok\n".as_bytes(), false);
        assert_eq!(
            got,
            ["abcd", "efgh", "ij", "x\u{e9}", "\u{20ac}y", "z", "ok"]
        );
        assert_eq!(taken.long, 2);
        assert_eq!(taken.invalid_utf8, 0);
    }

    #[test]
    fn a_long_partial_line_is_cut_without_waiting_for_its_newline() {
        let mut s = Splitter::new(4, LongLines::Split);
        let (taken, got, _) = take(&mut s, b"abcdefghij", false);
        assert_eq!(got, ["abcd", "efgh"]);
        assert_eq!(taken.consumed, 8);
        let (taken, got, _) = take(&mut s, b"ij\n", false);
        assert_eq!(got, ["ij"]);
        assert_eq!(taken.consumed, 3);
    }

    #[test]
    fn long_lines_can_be_skipped_even_across_reads() {
        let mut s = Splitter::new(4, LongLines::Skip);
        let (taken, got, _) = take(&mut s, b"ok\nabcdefghij\nfine\nabcdefgh", false);
        assert_eq!(got, ["ok", "fine"]);
        assert_eq!(taken.long, 2);
        assert_eq!(taken.consumed, 27);
        let (taken, got, _) = take(&mut s, b"more bytes\nnext\n", false);
        assert_eq!(got, ["next"]);
        assert_eq!(taken.long, 0);
        assert_eq!(taken.consumed, 16);
    }

    #[test]
    fn invalid_utf8_is_kept_with_replacement_characters() {
        let mut s = Splitter::new(100, LongLines::Split);
        let (taken, got, _) = take(&mut s, b"caf\xe9 ok\n\xff\xfe\n", false);
        assert_eq!(got, ["caf\u{fffd} ok", "\u{fffd}\u{fffd}"]);
        assert_eq!(taken.invalid_utf8, 2);
    }

    #[test]
    fn strings_of_every_msgpack_length_class_decode() {
        for len in [0, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
            let mut s = Splitter::new(100_000, LongLines::Split);
            let mut line = vec![b'x'; len];
            line.push(b'\n');
            let (_, got, _) = take(&mut s, &line, false);
            assert_eq!(got[0].len(), len);
        }
    }

    #[test]
    fn binary_files_are_told_from_text() {
        assert!(looks_binary(
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xfe"
        ));
        assert!(looks_binary(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\xc3\x28"));
        assert!(!looks_binary(b"plain text\n"));
        assert!(!looks_binary(b"\0\0\0\0text after a hole\n"));
        assert!(!looks_binary(b"h\0e\0l\0l\0o\0"));
    }
}
