//! The events the output benchmarks deliver: Docker-like records (service, level, a 64-hex
//! `container_id`, a 32-hex `trace_id`, a 120-byte access-log line in `log`) over 4 services.

use flumen_event::{BatchBuilder, EventTime, TenantId};
use flumen_sinks::Delivery;

/// Event `n`'s record, as msgpack.
pub fn docker_record(n: u64) -> Vec<u8> {
    let service = ["api", "web", "billing", "search"][(n % 4) as usize];
    let level = ["INFO", "INFO", "WARN", "ERROR"][(n % 4) as usize];
    let fields = [
        ("service", service.to_owned()),
        ("level", level.to_owned()),
        ("container_id", format!("{:064x}", n % 8)),
        ("trace_id", format!("{n:032x}")),
        (
            "log",
            format!(
                "{n} GET /api/v1/orders/{n}?page=2 HTTP/1.1 200 1532 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" 0.0{}",
                n % 10
            ),
        ),
    ];
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, fields.len() as u32).unwrap();
    for (k, v) in fields {
        rmp::encode::write_str(&mut out, k).unwrap();
        rmp::encode::write_str(&mut out, &v).unwrap();
    }
    out
}

/// One delivery of `events` events (a multiple of 1,000) tagged `docker.app`, in batches of
/// 1,000, a hundred a second from 2023-11-14T22:13:20Z.
pub fn docker_delivery(events: u64) -> Delivery {
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut delivery = Delivery::default();
    for seq in 0..events / 1000 {
        let mut entries = Vec::new();
        for n in seq * 1000..(seq + 1) * 1000 {
            flumen_event::entry::write_entry(
                &mut entries,
                EventTime::new(1_700_000_000 + n / 100, (n % 100) as u32 * 1000),
                &docker_record(n),
            );
        }
        let batch = builder.encode("docker.app", b"", 1000, &entries).unwrap();
        delivery.push(seq, batch.into(), 1000);
    }
    delivery
}
