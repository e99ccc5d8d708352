//! JSON lines, read by `serde_json` straight into record values (no `serde_json::Value` in
//! between).
//!
//! The line must be one object; its members become fields in the line's order (a repeated key
//! is kept once, the last value winning, as for all merged fields). Nested objects become maps,
//! arrays arrays; integers become `Int` (negative) or `UInt`, other numbers `Float` (numbers
//! beyond `u64` too). Nesting is limited to serde_json's 128 levels.

use std::fmt;

use flumen_event::record::Value;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Parses one JSON object line into `out`.
pub(crate) fn parse_json(line: &str, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    let first = line
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .bytes()
        .next();
    let kind = match first {
        None => return Err("invalid JSON: the line is empty".to_owned()),
        Some(b'{') => None,
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        Some(_) => None,
    };
    if let Some(kind) = kind {
        return Err(format!("JSON line is {kind}, not an object"));
    }
    let mut de = serde_json::Deserializer::from_str(line);
    ObjectSeed(out).deserialize(&mut de).map_err(describe)?;
    de.end().map_err(describe)
}

/// `invalid JSON at column 5: expected value` from serde_json's "expected value at line 1
/// column 5".
fn describe(e: serde_json::Error) -> String {
    let text = e.to_string();
    let reason = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    format!("invalid JSON at column {}: {reason}", e.column())
}

struct ObjectSeed<'a>(&'a mut Vec<(String, Value)>);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some(n) = map.size_hint() {
            self.0.reserve(n);
        }
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed)?;
            self.0.push((key, value));
        }
        Ok(())
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(if v >= 0 {
            Value::UInt(v as u64)
        } else {
            Value::Int(v)
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed)?;
            pairs.push((key, value));
        }
        Ok(Value::Map(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Vec<(String, Value)>, String> {
        let mut out = Vec::new();
        parse_json(line, &mut out).map(|()| out)
    }

    #[test]
    fn objects_become_fields() {
        let f = parse(
            r#"{"level":30,"time":1704103200123,"pid":7,"neg":-3,"ratio":0.5,"big":18446744073709551615,"huge":1e400,"ok":true,"none":null,"tags":["a",1],"req":{"method":"GET","headers":{"x":"é\n"}}}"#,
        );
        // 1e400 is out of f64 range: serde_json rejects it.
        assert!(f.unwrap_err().contains("number out of range"));
        let f = parse(
            r#" {"level":30,"pid":7,"neg":-3,"ratio":0.5,"big":18446744073709551615,"ok":true,"none":null,"tags":["a",1],"req":{"method":"GET","headers":{"x":"\u00e9\n"}}} "#,
        )
        .unwrap();
        assert_eq!(f[0], ("level".into(), Value::UInt(30)));
        assert_eq!(f[2].1, Value::Int(-3));
        assert_eq!(f[3].1, Value::Float(0.5));
        assert_eq!(f[4].1, Value::UInt(u64::MAX));
        assert_eq!(f[6].1, Value::Null);
        assert_eq!(f[7].1, Value::Array(vec![Value::from("a"), Value::UInt(1)]));
        assert_eq!(
            f[8].1,
            Value::Map(vec![
                ("method".into(), Value::from("GET")),
                (
                    "headers".into(),
                    Value::Map(vec![("x".into(), Value::from("é\n"))])
                ),
            ])
        );
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            parse("[1,2]").unwrap_err(),
            "JSON line is an array, not an object"
        );
        assert_eq!(
            parse(" 42").unwrap_err(),
            "JSON line is a number, not an object"
        );
        assert_eq!(
            parse("nope").unwrap_err(),
            "JSON line is null, not an object"
        );
        assert_eq!(
            parse("hello").unwrap_err(),
            "invalid JSON at column 1: expected value"
        );
        assert_eq!(
            parse(r#"{"a":1,"b":"#).unwrap_err(),
            "invalid JSON at column 11: EOF while parsing a value"
        );
        assert_eq!(
            parse(r#"{"a":1} x"#).unwrap_err(),
            "invalid JSON at column 9: trailing characters"
        );
        assert_eq!(
            parse("\"text\"").unwrap_err(),
            "JSON line is a string, not an object"
        );
        assert_eq!(parse("").unwrap_err(), "invalid JSON: the line is empty");
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).unwrap_err().contains("recursion limit"));
    }
}
