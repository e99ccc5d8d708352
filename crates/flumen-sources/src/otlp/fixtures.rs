//! OTLP requests for tests: the `otlp` module's unit tests use it, and `tests/otlp.rs` includes
//! this file with `#[path]`. Compiled only for tests, so none of it is flumen-server's API; it
//! names `opentelemetry_proto` by its full paths so that it compiles in both crates.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

pub fn int(n: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(n)),
    }
}

pub fn map(pairs: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: pairs,
        })),
    }
}

pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

/// A request of `logs` from one resource with the attributes `resource`, logged through the
/// instrumentation scope `(name, version)`.
pub fn request(
    (name, version): (&str, &str),
    resource: Vec<KeyValue>,
    logs: Vec<LogRecord>,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    ..Default::default()
                }),
                log_records: logs,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
