//! How the `http_body` target reads its input as an HTTP request, shared with `gen_seeds` so
//! that seeds are laid out exactly as the target expects.
//!
//! Byte 0 selects the Content-Type (low 4 bits, an index into [`CONTENT_TYPES`]); with bit 4
//! set, the bytes up to the first newline are the query string. The rest is the body.

use std::borrow::Cow;

pub const CONTENT_TYPES: [Option<&str>; 16] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/json"),
    Some("application/vnd.api+json"),
    Some("application/x-ndjson"),
    Some("application/ndjson"),
    Some("application/jsonl"),
    Some("application/x-jsonlines"),
    Some("application/msgpack"),
    Some("application/x-msgpack"),
    Some("application/vnd.msgpack"),
    Some("application/x-www-form-urlencoded"),
    Some("Application/X-WWW-Form-Urlencoded ; charset=UTF-8"),
    Some("text/plain"),
    Some(""),
];

/// A request read from fuzz input.
pub struct FuzzRequest<'a> {
    pub content_type: Option<&'static str>,
    pub query: Option<Cow<'a, str>>,
    pub body: &'a [u8],
}

/// Splits fuzz input into a request; `None` for empty input.
pub fn split(data: &[u8]) -> Option<FuzzRequest<'_>> {
    let (&selector, rest) = data.split_first()?;
    let (query, body) = if selector & 0x10 != 0 {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(String::from_utf8_lossy(&rest[..i])), &rest[i + 1..]),
            None => (Some(String::from_utf8_lossy(rest)), &b""[..]),
        }
    } else {
        (None, rest)
    };
    Some(FuzzRequest {
        content_type: CONTENT_TYPES[usize::from(selector & 0x0f)],
        query,
        body,
    })
}
