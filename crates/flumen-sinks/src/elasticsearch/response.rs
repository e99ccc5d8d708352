//! The bulk API's answer, item by item: which documents were taken, which may be sent again,
//! which were refused for good and why.
//!
//! The answer is `{"took":…,"errors":bool,"items":[{"<action>":{"status":…,"error":{…}}},…]}`,
//! one item per document in the order sent. The `errors` flag only says whether some item
//! failed; each item's `status` is what counts.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::{DeliveryError, Items, Outcome};

/// A document of a bulk request: its position in the delivery, and whether it was sent with
/// an `_id` (so that a 409 to `create` means it is there already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentDocument {
    /// Its position in the delivery.
    pub(crate) position: usize,
    /// True when the action line named its `_id`.
    pub(crate) has_id: bool,
}

#[derive(Deserialize)]
struct BulkAnswer {
    items: Vec<Item>,
}

/// One item of the answer: `{"<action>": {…}}`; only the inside matters.
struct Item(ItemResult);

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

/// An item's `error`: an object (`type`, `reason`, `caused_by`), or text in old versions.
#[derive(Deserialize)]
#[serde(untagged)]
enum ItemError {
    Object(ErrorObject),
    Text(String),
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    caused_by: Option<Box<ErrorObject>>,
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneAction;
        impl<'de> Visitor<'de> for OneAction {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with one action, such as {\"index\":{\"status\":201}}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                let (_, result): (IgnoredAny, ItemResult) = map
                    .next_entry()?
                    .ok_or_else(|| de::Error::custom("an item without an action"))?;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Item(result))
            }
        }
        deserializer.deserialize_map(OneAction)
    }
}

impl fmt::Display for ErrorObject {
    /// `type: reason (caused by type: reason)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.kind.is_empty() {
            "error"
        } else {
            &self.kind
        })?;
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        if let Some(cause) = &self.caused_by {
            write!(f, " (caused by {cause})")?;
        }
        Ok(())
    }
}

impl ItemResult {
    /// What the item's error says, or its status when it says nothing.
    fn reason(&self) -> String {
        match &self.error {
            Some(ItemError::Object(error)) => error.to_string(),
            Some(ItemError::Text(text)) => text.clone(),
            None => format!("status {}", self.status),
        }
    }
}

/// Adds to `outcome` what the bulk answer `body` (from `endpoint`, redacted) says of the
/// documents `sent`, with `create` as the action when `create` is true: a 2xx item was taken,
/// as was a 409 to a `create` with an `_id` (the document is there already: a resend);
/// 408, 429 and 5xx items may be sent again; any other item was refused for good, with the
/// item's `type: reason`. An answer that cannot be read, or whose items do not match the
/// documents one for one, leaves every document to be sent again.
pub(crate) fn judge(
    outcome: Outcome,
    body: &[u8],
    sent: &[SentDocument],
    create: bool,
    endpoint: &str,
) -> Outcome {
    let all = || Items::positions(sent.iter().map(|document| document.position));
    let answer: BulkAnswer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(error) => {
            let error = DeliveryError::retryable(format!(
                "cannot read the bulk answer from {endpoint} ({error}); its documents are sent again"
            ));
            return outcome.fail(all(), error);
        }
    };
    if answer.items.len() != sent.len() {
        let error = DeliveryError::retryable(format!(
            "the bulk answer from {endpoint} has {} items for {} documents; they are sent again",
            answer.items.len(),
            sent.len()
        ));
        return outcome.fail(all(), error);
    }
    let mut again: Vec<usize> = Vec::new();
    let mut first_again: Option<String> = None;
    // By reason, so that documents refused alike share one failure.
    let mut refused: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (Item(item), document) in answer.items.iter().zip(sent) {
        match item.status {
            200..=299 => {}
            409 if create && document.has_id => {}
            408 | 429 | 500..=599 => {
                again.push(document.position);
                first_again.get_or_insert_with(|| format!("{} {}", item.status, item.reason()));
            }
            _ => refused
                .entry(item.reason())
                .or_default()
                .push(document.position),
        }
    }
    let mut outcome = outcome;
    for (reason, positions) in refused {
        outcome = outcome.fail(
            Items::positions(positions),
            DeliveryError::permanent(reason),
        );
    }
    if let Some(first) = first_again {
        let error = DeliveryError::retryable(format!(
            "{endpoint} did not take {} of {} documents for now and they are sent again (the first: {first})",
            again.len(),
            sent.len()
        ));
        outcome = outcome.fail(Items::positions(again), error);
    }
    outcome
}
