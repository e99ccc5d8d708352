//! The batch: the unit the durable log stores and outputs read.
//!
//! A batch is a run of entries that share a tenant, a tag and a route label — one forward chunk,
//! one HTTP request. Outputs route a batch by its header alone; the entries are copied as they
//! arrived and are only walked by outputs that need the records.
//!
//! # Format (version 1), all integers little-endian
//!
//! ```text
//! u8   version         = 1
//! u8   flags           bit 0: the chunk id field ends with a 12-byte fingerprint of the
//!                      entries as the sender sent them (set when processing changed them)
//! u64  received_at     Unix nanoseconds when flumen accepted the batch
//! u32  entry_count
//! u8   tenant length,   then the tenant name (UTF-8)
//! u8   label length,    then the route label (UTF-8, empty = the default routes)
//! u8   chunk id length, then the sender's Forward `chunk` option (empty = none)
//! u16  tag length,      then the tag (UTF-8)
//! ...  the entries, msgpack, laid end to end (see `entry`)
//! ```

use crate::{EventTime, TenantId};

const VERSION: u8 = 1;
const FLAG_FINGERPRINT: u8 = 1;
/// The length of a received-entries fingerprint kept in the header.
pub const FINGERPRINT_LEN: usize = 12;
const FIXED_HEADER: usize = 1 + 1 + 8 + 4;

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
}

impl BatchBuilder {
    /// Batches for `tenant` routed under `label` (empty for the default routes).
    pub fn new(tenant: TenantId, label: &str) -> Result<Self, BatchError> {
        check_len("tenant", tenant.as_str().len(), u8::MAX as usize)?;
        check_len("label", label.len(), u8::MAX as usize)?;
        Ok(Self {
            tenant,
            label: label.to_owned(),
        })
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
        check_len("tag", tag.len(), u16::MAX as usize)?;
        let fingerprint = fingerprint.filter(|_| !chunk_id.is_empty());
        let chunk_field_len = chunk_id.len() + fingerprint.map_or(0, |f| f.len());
        check_len("chunk id", chunk_field_len, u8::MAX as usize)?;
        let tenant = self.tenant.as_str().as_bytes();
        let header_len = FIXED_HEADER + 3 + 2 + tenant.len() + self.label.len() + chunk_field_len;
        let mut out = Vec::with_capacity(header_len + tag.len() + entries.len());
        out.push(VERSION);
        out.push(if fingerprint.is_some() {
            FLAG_FINGERPRINT
        } else {
            0
        });
        out.extend_from_slice(&(EventTime::now().as_unix_nanos() as u64).to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for field in [tenant, self.label.as_bytes()] {
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        out.push(chunk_field_len as u8);
        out.extend_from_slice(chunk_id);
        if let Some(fingerprint) = fingerprint {
            out.extend_from_slice(&fingerprint);
        }
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(entries);
        Ok(out)
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
    /// The tag.
    pub tag: &'a str,
    /// The entries, msgpack, end to end.
    pub entries: &'a [u8],
}

impl<'a> BatchRef<'a> {
    /// Reads a batch's header; the entries are not walked.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let short = BatchError::Malformed("truncated header");
        let fixed = bytes.get(..FIXED_HEADER).ok_or(short.clone())?;
        if fixed[0] != VERSION {
            return Err(BatchError::Malformed("unknown version"));
        }
        let received_at = u64::from_le_bytes(fixed[2..10].try_into().expect("8 bytes"));
        let entry_count = u32::from_le_bytes(fixed[10..14].try_into().expect("4 bytes"));
        let mut pos = FIXED_HEADER;
        let mut field = |len_bytes: usize| -> Result<&'a [u8], BatchError> {
            let len = match len_bytes {
                1 => usize::from(*bytes.get(pos).ok_or(short.clone())?),
                _ => usize::from(u16::from_le_bytes(
                    bytes
                        .get(pos..pos + 2)
                        .ok_or(short.clone())?
                        .try_into()
                        .expect("2 bytes"),
                )),
            };
            pos += len_bytes;
            let value = bytes.get(pos..pos + len).ok_or(short.clone())?;
            pos += len;
            Ok(value)
        };
        let utf8 = |b: &'a [u8]| {
            std::str::from_utf8(b).map_err(|_| BatchError::Malformed("header field is not UTF-8"))
        };
        let tenant = utf8(field(1)?)?;
        let label = utf8(field(1)?)?;
        let chunk_field = field(1)?;
        let tag = utf8(field(2)?)?;
        let (chunk_id, received_fingerprint) = if fixed[1] & FLAG_FINGERPRINT != 0 {
            let split =
                chunk_field
                    .len()
                    .checked_sub(FINGERPRINT_LEN)
                    .ok_or(BatchError::Malformed(
                        "chunk field shorter than its fingerprint",
                    ))?;
            let (id, fingerprint) = chunk_field.split_at(split);
            (id, Some(fingerprint))
        } else {
            (chunk_field, None)
        };
        Ok(Self {
            received_at,
            entry_count,
            tenant,
            label,
            chunk_id,
            received_fingerprint,
            tag,
            entries: &bytes[pos..],
        })
    }

    /// The entries of this batch.
    pub fn iter(&self) -> crate::EntryIter<'a> {
        crate::EntryIter::new(self.entries)
    }
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
    fn rejects_truncated_headers() {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
        let bytes = builder.encode("tag", b"", 0, b"").unwrap();
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
