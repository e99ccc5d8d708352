//! Field edits: remove, rename and copy top-level fields.

use flumen_event::record::Record;
use indexmap::IndexMap;
use serde::Deserialize;

/// The `fields` step's configuration. Edits run in the order remove, rename, copy; renames
/// and copies in the order they are written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsConfig {
    /// Fields to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// `from = "to"`: renames, replacing any field already called `to`.
    #[serde(default)]
    pub rename: IndexMap<String, String>,
    /// `from = "to"`: copies, replacing any field already called `to`.
    #[serde(default)]
    pub copy: IndexMap<String, String>,
}

/// The compiled `fields` step.
#[derive(Debug)]
pub struct FieldEdits {
    config: FieldsConfig,
}

impl FieldEdits {
    /// Checks `config`.
    pub fn new(config: &FieldsConfig) -> Result<Self, String> {
        if config.remove.is_empty() && config.rename.is_empty() && config.copy.is_empty() {
            return Err("nothing to do: set remove, rename or copy".to_owned());
        }
        Ok(Self {
            config: config.clone(),
        })
    }

    /// Edits `record` in place.
    pub fn apply(&self, record: &mut Record) {
        for field in &self.config.remove {
            record.remove(field);
        }
        for (from, to) in &self.config.rename {
            record.rename(from, to);
        }
        for (from, to) in &self.config.copy {
            if let Some(value) = record.get(from).cloned() {
                record.insert(to.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::record::Value;

    #[test]
    fn removes_renames_and_copies() {
        let edits = FieldEdits::new(&FieldsConfig {
            remove: vec!["secret".into()],
            rename: [("msg".to_owned(), "message".to_owned())].into(),
            copy: [("message".to_owned(), "line".to_owned())].into(),
        })
        .unwrap();
        let mut record = Record::from(vec![
            ("msg".to_owned(), Value::from("hi")),
            ("secret".to_owned(), Value::from("x")),
        ]);
        edits.apply(&mut record);
        assert_eq!(record.to_json(), r#"{"message":"hi","line":"hi"}"#);
        assert!(FieldEdits::new(&FieldsConfig::default()).is_err());
    }

    #[test]
    fn renames_run_in_the_order_written() {
        let config: crate::FilterConfig =
            toml::from_str("type = \"fields\"\nrename = { b = \"c\", a = \"b\" }").unwrap();
        let crate::StepConfig::Fields(config) = config.step else {
            panic!("a fields step")
        };
        let mut record = Record::from(vec![
            ("a".to_owned(), Value::from("first")),
            ("b".to_owned(), Value::from("second")),
        ]);
        FieldEdits::new(&config).unwrap().apply(&mut record);
        assert_eq!(record.to_json(), r#"{"b":"first","c":"second"}"#);
    }
}
