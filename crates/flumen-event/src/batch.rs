//! The batch: the unit the durable log stores and outputs read.
//!
//! A batch is a run of entries that share a tenant, a tag and a route label — one forward chunk,
//! one HTTP request. Outputs route a batch by its header alone; the entries are copied as they
//! arrived and are only walked by outputs that need the records.
//!
//! # Format (version 2), all integers little-endian
//!
//! ```text
//! u8   version         = 2
//! u8   flags           bit 0: a 12-byte fingerprint of the entries as the sender sent them
//!                      follows the chunk id (set when processing changed them)
//! u64  received_at     Unix nanoseconds when flumen accepted the batch
//! u32  entry_count
//! u8   tenant length,   then the tenant name (UTF-8)
//! u8   label length,    then the route label (UTF-8, empty = the default routes)
//! u8   chunk id length, then the sender's Forward `chunk` option (empty = none)
//! [12] fingerprint      only with flag bit 0
//! u8   origin length,   then the sender's IP address (4 or 16 bytes; empty = unknown)
//! u16  tag length,      then the tag (UTF-8)
//! ...  the entries, msgpack, laid end to end (see `entry`)
//! ```
//!
//! Version 1, which logs written before may still hold, has no origin field and keeps the
//! fingerprint inside the chunk id field (its last 12 bytes, with flag bit 0), so that a chunk id
//! and its fingerprint together had to fit in 255 bytes. It is still read.

use std::net::IpAddr;

use crate::{EventTime, TenantId};

const VERSION: u8 = 2;
/// The format before the origin field and the separate fingerprint.
const VERSION_1: u8 = 1;
const FLAG_FINGERPRINT: u8 = 1;
/// The length of a received-entries fingerprint kept in the header.
pub const FINGERPRINT_LEN: usize = 12;
const FIXED_HEADER: usize = 1 + 1 + 8 + 4;
/// The longest tag a batch holds.
pub const MAX_TAG_LEN: usize = u16::MAX as usize;
/// The longest chunk id a batch holds.
pub const MAX_CHUNK_ID_LEN: usize = u8::MAX as usize;

/// A batch header field did not fit, or a stored batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A field is longer than the format allows.
    #[error("{field} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The format's limit.
        max: usize,
    },
    /// Stored bytes are not a batch of a known version.
    #[error("malformed batch: {0}")]
    Malformed(&'static str),
}

/// Builds batches for one source: everything but the tag and the entries is fixed per sender.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    tenant: TenantId,
    label: String,
    origin: Vec<u8>,
}

impl BatchBuilder {
    /// Batches for `tenant` routed under `label` (empty for the default routes).
    pub fn new(tenant: TenantId, label: &str) -> Result<Self, BatchError> {
        check_len("tenant", tenant.as_str().len(), u8::MAX as usize)?;
        check_len("label", label.len(), u8::MAX as usize)?;
        Ok(Self {
            tenant,
            label: label.to_owned(),
            origin: Vec::new(),
        })
    }

    /// The same builder for batches received from `origin` (the sender's address).
    pub fn from_origin(mut self, origin: IpAddr) -> Self {
        self.origin = origin_bytes(origin);
        self
    }

    /// The origin batches are stamped with, as stored (empty when unknown).
    pub fn origin(&self) -> &[u8] {
        &self.origin
    }

    /// Encodes a batch of `count` entries (already validated) under `tag`.
    pub fn encode(
        &self,
        tag: &str,
        chunk_id: &[u8],
        count: u32,
        entries: &[u8],
    ) -> Result<Vec<u8>, BatchError> {
        self.encode_with(tag, chunk_id, None, count, entries)
    }

    /// Encodes a batch whose entries are not the ones the sender sent (processing changed
    /// them), keeping the `fingerprint` of what was sent so a resend can still be recognised.
    pub fn encode_processed(
        &self,
        tag: &str,
        chunk_id: &[u8],
        fingerprint: [u8; FINGERPRINT_LEN],
        count: u32,
        entries: &[u8],
    ) -> Result<Vec<u8>, BatchError> {
        self.encode_with(tag, chunk_id, Some(fingerprint), count, entries)
    }

    fn encode_with(
        &self,
        tag: &str,
        chunk_id: &[u8],
        fingerprint: Option<[u8; FINGERPRINT_LEN]>,
        count: u32,
        entries: &[u8],
    ) -> Result<Vec<u8>, BatchError> {
        check_len("tag", tag.len(), MAX_TAG_LEN)?;
        check_len("chunk id", chunk_id.len(), MAX_CHUNK_ID_LEN)?;
        let fingerprint = fingerprint.filter(|_| !chunk_id.is_empty());
        let tenant = self.tenant.as_str().as_bytes();
        let header_len = FIXED_HEADER
            + 4
            + 2
            + tenant.len()
            + self.label.len()
            + chunk_id.len()
            + FINGERPRINT_LEN
            + self.origin.len();
        let mut out = Vec::with_capacity(header_len + tag.len() + entries.len());
        out.push(VERSION);
        out.push(if fingerprint.is_some() {
            FLAG_FINGERPRINT
        } else {
            0
        });
        out.extend_from_slice(&(EventTime::now().as_unix_nanos() as u64).to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for field in [tenant, self.label.as_bytes(), chunk_id] {
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        if let Some(fingerprint) = fingerprint {
            out.extend_from_slice(&fingerprint);
        }
        out.push(self.origin.len() as u8);
        out.extend_from_slice(&self.origin);
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(entries);
        Ok(out)
    }
}

/// How an origin is stored: the address's octets, an IPv4 address seen through IPv6 as IPv4.
fn origin_bytes(origin: IpAddr) -> Vec<u8> {
    match origin.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// A copy of the stored batch `bytes` holding only `count` of its entries, `entries` (for
/// outputs that take part of a batch).
pub fn with_entries(bytes: &[u8], count: u32, entries: &[u8]) -> Result<Vec<u8>, BatchError> {
    let batch = BatchRef::parse(bytes)?;
    let header = &bytes[..bytes.len() - batch.entries.len()];
    let mut out = Vec::with_capacity(header.len() + entries.len());
    out.extend_from_slice(header);
    out[10..14].copy_from_slice(&count.to_le_bytes());
    out.extend_from_slice(entries);
    Ok(out)
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), BatchError> {
    if len > max {
        return Err(BatchError::TooLong { field, len, max });
    }
    Ok(())
}

/// A stored batch, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRef<'a> {
    /// Unix nanoseconds when flumen accepted the batch.
    pub received_at: u64,
    /// How many entries follow.
    pub entry_count: u32,
    /// The tenant's name.
    pub tenant: &'a str,
    /// The route label (empty for the default routes).
    pub label: &'a str,
    /// The sender's chunk id, empty if none.
    pub chunk_id: &'a [u8],
    /// A fingerprint of the entries as the sender sent them, when processing changed them.
    pub received_fingerprint: Option<&'a [u8]>,
    /// The sender's IP address as stored (4 or 16 bytes), empty when unknown (version 1
    /// batches, sources without one); see [`BatchRef::origin`].
    pub origin: &'a [u8],
    /// The tag.
    pub tag: &'a str,
    /// The entries, msgpack, end to end.
    pub entries: &'a [u8],
}

/// Reads a batch header's fields one after another.
struct HeaderReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> HeaderReader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], BatchError> {
        let value = self
            .bytes
            .get(self.pos..self.pos + len)
            .ok_or(BatchError::Malformed("truncated header"))?;
        self.pos += len;
        Ok(value)
    }

    /// A field after its one-byte length.
    fn short_field(&mut self) -> Result<&'a [u8], BatchError> {
        let len = self.take(1)?[0];
        self.take(usize::from(len))
    }

    /// A field after its two-byte length.
    fn long_field(&mut self) -> Result<&'a [u8], BatchError> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes"));
        self.take(usize::from(len))
    }

    fn utf8(&mut self, field: &'a [u8]) -> Result<&'a str, BatchError> {
        std::str::from_utf8(field).map_err(|_| BatchError::Malformed("header field is not UTF-8"))
    }
}

impl<'a> BatchRef<'a> {
    /// Reads a batch's header (version 2 or 1); the entries are not walked.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let mut header = HeaderReader { bytes, pos: 0 };
        let fixed = header.take(FIXED_HEADER)?;
        let (version, flags) = (fixed[0], fixed[1]);
        if version != VERSION && version != VERSION_1 {
            return Err(BatchError::Malformed("unknown version"));
        }
        let with_fingerprint = flags & FLAG_FINGERPRINT != 0;
        let received_at = u64::from_le_bytes(fixed[2..10].try_into().expect("8 bytes"));
        let entry_count = u32::from_le_bytes(fixed[10..14].try_into().expect("4 bytes"));
        let tenant = header.short_field()?;
        let tenant = header.utf8(tenant)?;
        let label = header.short_field()?;
        let label = header.utf8(label)?;
        let chunk_field = header.short_field()?;
        let (chunk_id, received_fingerprint, origin) = if version == VERSION_1 {
            let (id, fingerprint) = split_v1_chunk_field(chunk_field, with_fingerprint)?;
            (id, fingerprint, &b""[..])
        } else {
            let fingerprint = if with_fingerprint {
                Some(header.take(FINGERPRINT_LEN)?)
            } else {
                None
            };
            (chunk_field, fingerprint, header.short_field()?)
        };
        let tag = header.long_field()?;
        let tag = header.utf8(tag)?;
        Ok(Self {
            received_at,
            entry_count,
            tenant,
            label,
            chunk_id,
            received_fingerprint,
            origin,
            tag,
            entries: &bytes[header.pos..],
        })
    }

    /// The entries of this batch.
    pub fn iter(&self) -> crate::EntryIter<'a> {
        crate::EntryIter::new(self.entries)
    }

    /// The sender's IP address, when the batch keeps one.
    pub fn origin(&self) -> Option<IpAddr> {
        match self.origin.len() {
            4 => Some(IpAddr::from(
                <[u8; 4]>::try_from(self.origin).expect("4 bytes"),
            )),
            16 => Some(IpAddr::from(
                <[u8; 16]>::try_from(self.origin).expect("16 bytes"),
            )),
            _ => None,
        }
    }
}

/// A version 1 chunk id field: the id, then (with the fingerprint flag) its last 12 bytes are the
/// fingerprint.
fn split_v1_chunk_field(
    field: &[u8],
    with_fingerprint: bool,
) -> Result<(&[u8], Option<&[u8]>), BatchError> {
    if !with_fingerprint {
        return Ok((field, None));
    }
    let split = field
        .len()
        .checked_sub(FINGERPRINT_LEN)
        .ok_or(BatchError::Malformed(
            "chunk field shorter than its fingerprint",
        ))?;
    let (id, fingerprint) = field.split_at(split);
    Ok((id, Some(fingerprint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_header() {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "mainstream").unwrap();
        let bytes = builder.encode("app.web", b"chunk-1", 2, b"xyz").unwrap();
        let batch = BatchRef::parse(&bytes).unwrap();
        assert_eq!(batch.tenant, "default");
        assert_eq!(batch.label, "mainstream");
        assert_eq!(batch.chunk_id, b"chunk-1");
        assert_eq!(batch.tag, "app.web");
        assert_eq!(batch.entry_count, 2);
        assert_eq!(batch.entries, b"xyz");
        assert!(batch.received_at > 0);
    }

    #[test]
    fn keeps_the_received_fingerprint_and_takes_part_of_a_batch() {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
        let bytes = builder
            .encode_processed("app", b"id", [7; FINGERPRINT_LEN], 3, b"abc")
            .unwrap();
        let batch = BatchRef::parse(&bytes).unwrap();
        assert_eq!(batch.chunk_id, b"id");
        assert_eq!(
            batch.received_fingerprint,
            Some(&[7u8; FINGERPRINT_LEN][..])
        );
        let part = with_entries(&bytes, 1, b"b").unwrap();
        let part = BatchRef::parse(&part).unwrap();
        assert_eq!(
            (part.entry_count, part.entries, part.tag),
            (1, &b"b"[..], "app")
        );
        assert_eq!(part.chunk_id, b"id");
        // No chunk id, no fingerprint.
        let bytes = builder
            .encode_processed("app", b"", [7; FINGERPRINT_LEN], 0, b"")
            .unwrap();
        assert_eq!(BatchRef::parse(&bytes).unwrap().received_fingerprint, None);
    }

    #[test]
    fn a_chunk_id_of_255_bytes_is_stored_beside_its_fingerprint() {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
        for len in [243, 244, 250, 255] {
            let id = vec![b'x'; len];
            let bytes = builder
                .encode_processed("app", &id, [7; FINGERPRINT_LEN], 1, b"e")
                .unwrap_or_else(|e| panic!("a {len}-byte chunk id: {e}"));
            let batch = BatchRef::parse(&bytes).unwrap();
            assert_eq!(batch.chunk_id, &id[..]);
            assert_eq!(
                batch.received_fingerprint,
                Some(&[7u8; FINGERPRINT_LEN][..])
            );
            assert_eq!(batch.entries, b"e");
        }
        assert!(matches!(
            builder.encode("app", &[b'x'; 256], 0, b""),
            Err(BatchError::TooLong {
                field: "chunk id",
                ..
            })
        ));
    }

    #[test]
    fn keeps_the_senders_address() {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "")
            .unwrap()
            .from_origin("::ffff:127.0.0.2".parse().unwrap());
        let bytes = builder.encode("app", b"id", 1, b"e").unwrap();
        let batch = BatchRef::parse(&bytes).unwrap();
        assert_eq!(batch.origin(), Some("127.0.0.2".parse().unwrap()));
        let part = with_entries(&bytes, 1, b"f").unwrap();
        assert_eq!(BatchRef::parse(&part).unwrap().origin, batch.origin);
        let v6 = BatchBuilder::new(TenantId::default_tenant(), "")
            .unwrap()
            .from_origin("fd00::7".parse().unwrap());
        let bytes = v6.encode("app", b"", 1, b"e").unwrap();
        assert_eq!(
            BatchRef::parse(&bytes).unwrap().origin(),
            Some("fd00::7".parse().unwrap())
        );
        let bytes = BatchBuilder::new(TenantId::default_tenant(), "")
            .unwrap()
            .encode("app", b"", 1, b"e")
            .unwrap();
        assert_eq!(BatchRef::parse(&bytes).unwrap().origin(), None);
    }

    /// A version 1 batch as flumen wrote them before the origin field.
    fn version_1(chunk_field: &[u8], flags: u8, tag: &str, entries: &[u8]) -> Vec<u8> {
        let mut out = vec![1, flags];
        out.extend_from_slice(&42u64.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        for field in [&b"default"[..], b"lbl", chunk_field] {
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(entries);
        out
    }

    #[test]
    fn reads_version_1_batches() {
        let plain = version_1(b"id-1", 0, "app", b"abc");
        let batch = BatchRef::parse(&plain).unwrap();
        assert_eq!(
            (
                batch.received_at,
                batch.entry_count,
                batch.tenant,
                batch.label
            ),
            (42, 3, "default", "lbl")
        );
        assert_eq!(
            (batch.chunk_id, batch.tag, batch.entries),
            (&b"id-1"[..], "app", &b"abc"[..])
        );
        assert_eq!((batch.received_fingerprint, batch.origin()), (None, None));

        let mut field = b"id-2".to_vec();
        field.extend_from_slice(&[9; FINGERPRINT_LEN]);
        let processed = version_1(&field, FLAG_FINGERPRINT, "app", b"abc");
        let batch = BatchRef::parse(&processed).unwrap();
        assert_eq!(batch.chunk_id, b"id-2");
        assert_eq!(
            batch.received_fingerprint,
            Some(&[9u8; FINGERPRINT_LEN][..])
        );
        let part = with_entries(&processed, 1, b"b").unwrap();
        let part = BatchRef::parse(&part).unwrap();
        assert_eq!(
            (part.chunk_id, part.entry_count, part.entries),
            (&b"id-2"[..], 1, &b"b"[..])
        );
    }

    #[test]
    fn rejects_truncated_headers() {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
        let bytes = builder
            .from_origin("127.0.0.1".parse().unwrap())
            .encode_processed("tag", b"id", [1; FINGERPRINT_LEN], 0, b"")
            .unwrap();
        for cut in 0..bytes.len() {
            assert!(BatchRef::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn long_tags_are_refused() {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
        let tag = "t".repeat(70_000);
        assert!(matches!(
            builder.encode(&tag, b"", 0, b""),
            Err(BatchError::TooLong { field: "tag", .. })
        ));
    }
}
