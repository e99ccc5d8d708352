//! The webhook output against a real HTTP server on 127.0.0.1, port 0, started by each test:
//! the exact bodies of the JSON, Slack and PagerDuty shapes, templates, how failures are
//! classified, retries, and the alert limit (with an injected clock for its minute).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flumen_event::record::{Event, Record, Value};
use flumen_event::{BatchBuilder, EventTime, TenantId};
use flumen_server::outputs::Delivery;
use flumen_server::outputs::webhook::{
    PAGERDUTY_EVENTS_URL, WebhookConfig, WebhookFormat, WebhookSink,
};

const TIME: &str = "2023-11-14T22:13:20.000000123Z";
const TIME_MS: &str = "2023-11-14T22:13:20.000Z";

fn time() -> EventTime {
    EventTime::new(1_700_000_000, 123)
}

/// A record from `(name, value)` pairs.
fn rec(fields: &[(&str, Value)]) -> Record {
    Record::from(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<Vec<_>>(),
    )
}

fn s(text: &str) -> Value {
    Value::from(text)
}

/// A delivery of one batch per `(tag, records)`, at log positions no other delivery uses.
fn delivery(batches: &[(&str, Vec<Record>)]) -> Delivery {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut delivery = Delivery::default();
    for (tag, records) in batches {
        let mut entries = Vec::new();
        for record in records {
            Event {
                time: time(),
                record: record.clone(),
                metadata: None,
            }
            .write_entry(&mut entries);
        }
        let batch = builder
            .encode(tag, b"", records.len() as u32, &entries)
            .unwrap();
        delivery.push(
            SEQ.fetch_add(1, Ordering::Relaxed),
            Bytes::from(batch),
            records.len() as u32,
        );
    }
    delivery
}

/// What the test server received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// An answer the test server gives.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

#[derive(Clone)]
struct ServerState {
    received: Arc<Mutex<Vec<Received>>>,
    /// Answers to give, in order; then `default`.
    answers: Arc<Mutex<VecDeque<Answer>>>,
    default: Answer,
}

/// A recording HTTP server.
struct TestServer {
    addr: SocketAddr,
    state: ServerState,
}

impl TestServer {
    /// A server answering `default` unless told otherwise.
    async fn start(default: Answer) -> Self {
        let state = ServerState {
            received: Arc::default(),
            answers: Arc::default(),
            default,
        };
        let app = axum::Router::new()
            .fallback(record_request)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer_next(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.answers.lock().unwrap().extend(answers);
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.state.received.lock().unwrap())
    }
}

async fn record_request(
    State(state): State<ServerState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    let answer = state
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.default.clone());
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A webhook configuration from TOML (the keys as a user writes them).
fn config(toml_text: &str) -> WebhookConfig {
    toml::from_str(toml_text).unwrap()
}

fn sink(name: &str, toml_text: &str) -> WebhookSink {
    WebhookSink::new(name, &config(toml_text)).unwrap()
}

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<Mutex<Instant>>);

impl TestClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn install(&self, sink: WebhookSink) -> WebhookSink {
        let now = self.0.clone();
        sink.with_clock(Arc::new(move || *now.lock().unwrap()))
    }
}

#[tokio::test]
async fn json_posts_one_array_of_events_per_delivery() {
    let server = TestServer::start(answer(200, "")).await;
    let mut sink = sink(
        "alerts",
        &format!(
            "url = {:?}\n[headers]\nAuthorization = \"Bearer s3cret\"\nX-Team = \"payments\"\n",
            server.url("/hooks/alerts")
        ),
    );
    let nested = Value::Map(vec![
        ("pod".into(), s("api-1")),
        ("restarts".into(), Value::UInt(2)),
    ]);
    let delivery = delivery(&[
        (
            "app.api",
            vec![
                rec(&[
                    ("level", s("error")),
                    ("message", s("db down")),
                    ("k8s", nested),
                ]),
                rec(&[("log", s("panic\n"))]),
            ],
        ),
        (
            "app.db",
            vec![rec(&[("n", Value::Int(-1)), ("ok", Value::Bool(false))])],
        ),
    ]);
    sink.deliver(&delivery).await.into_result().unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.path, "/hooks/alerts");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["authorization"], "Bearer s3cret");
    assert_eq!(request.headers["x-team"], "payments");
    assert!(
        request.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("flumen/")
    );
    assert_eq!(
        request.body,
        format!(
            "[{{\"tag\":\"app.api\",\"time\":\"{TIME}\",\"record\":{{\"level\":\"error\",\"message\":\"db down\",\"k8s\":{{\"pod\":\"api-1\",\"restarts\":2}}}}}},\
             {{\"tag\":\"app.api\",\"time\":\"{TIME}\",\"record\":{{\"log\":\"panic\\n\"}}}},\
             {{\"tag\":\"app.db\",\"time\":\"{TIME}\",\"record\":{{\"n\":-1,\"ok\":false}}}}]"
        )
    );
}

#[tokio::test]
async fn json_with_a_template_adds_the_rendered_message() {
    let server = TestServer::start(answer(204, "")).await;
    let mut sink = sink(
        "alerts",
        &format!(
            "url = {:?}\ntemplate = '{{{{level}}}} in {{{{service}}}} ({{{{environment}}}}): {{{{message}}}} [{{{{kubernetes.labels.app}}}}] {{{{tag}}}} {{{{time}}}}'\n",
            server.url("/")
        ),
    );
    let labels = Value::Map(vec![(
        "labels".into(),
        Value::Map(vec![("app".into(), s("checkout-v2"))]),
    )]);
    sink.deliver(&delivery(&[(
        "k8s.checkout",
        vec![rec(&[
            ("level", s("error")),
            ("service", s("checkout")),
            ("message", s("payment \"declined\"")),
            ("kubernetes", labels),
        ])],
    )]))
    .await
    .into_result()
    .unwrap();
    let received = server.received();
    assert_eq!(
        received[0].body,
        format!(
            "[{{\"tag\":\"k8s.checkout\",\"time\":\"{TIME}\",\
             \"message\":\"error in checkout (): payment \\\"declined\\\" [checkout-v2] k8s.checkout {TIME}\",\
             \"record\":{{\"level\":\"error\",\"service\":\"checkout\",\"message\":\"payment \\\"declined\\\"\",\
             \"kubernetes\":{{\"labels\":{{\"app\":\"checkout-v2\"}}}}}}}}]"
        )
    );
}

#[tokio::test]
async fn slack_sends_one_message_per_delivery_listing_its_alerts() {
    let server = TestServer::start(answer(200, "ok")).await;
    let mut sink = sink(
        "slack",
        &format!(
            "url = {:?}\nformat = \"slack\"\n",
            server.url("/services/T000/B000/XXXX")
        ),
    );
    let mut records = vec![
        rec(&[
            ("level", s("error")),
            ("service", s("api")),
            ("message", s("db down")),
        ]),
        // No level: the default template says "alert". Mentions in log lines are escaped.
        rec(&[("app", s("web")), ("msg", s("<!channel> & <@U123>"))]),
        // No service: the tag. A stack trace: its first line.
        rec(&[("log", s("panic: nil map\ngoroutine 1 [running]:\n"))]),
    ];
    for i in 0..22 {
        records.push(rec(&[
            ("level", s("warn")),
            ("service", Value::Map(vec![("name".into(), s("db"))])),
            ("message", s(&format!("slow query {i}"))),
        ]));
    }
    sink.deliver(&delivery(&[("docker.worker", records)]))
        .await
        .into_result()
        .unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/services/T000/B000/XXXX");
    assert_eq!(received[0].headers["content-type"], "application/json");
    let mut lines = vec![
        "[error] api: db down".to_owned(),
        "[alert] web: &lt;!channel&gt; &amp; &lt;@U123&gt;".to_owned(),
        "[alert] docker.worker: panic: nil map …".to_owned(),
    ];
    lines.extend((0..17).map(|i| format!("[warn] db: slow query {i}")));
    lines.push("… and 5 more".to_owned());
    assert_eq!(
        received[0].body,
        serde_json::json!({ "text": lines.join("\n") }).to_string()
    );
}

#[tokio::test]
async fn slack_templates_render_nested_and_missing_fields() {
    let server = TestServer::start(answer(200, "ok")).await;
    let mut sink = sink(
        "slack",
        &format!(
            "url = {:?}\nformat = \"slack\"\ntemplate = '<!here> {{{{level}}}} in {{{{service}}}} ({{{{environment}}}}): {{{{error.kind|\"unknown\"}}}} {{{{message}}}} on {{{{k8s.pod}}}}'\n",
            server.url("/")
        ),
    );
    let k8s = Value::Map(vec![("pod".into(), s("api-7"))]);
    sink.deliver(&delivery(&[(
        "app",
        vec![rec(&[
            ("level", s("error")),
            ("service", s("api")),
            ("message", s("a > b")),
            ("k8s", k8s),
        ])],
    )]))
    .await
    .into_result()
    .unwrap();
    assert_eq!(
        server.received()[0].json(),
        serde_json::json!({ "text": "<!here> error in api (): unknown a &gt; b on api-7" })
    );
}

#[tokio::test]
async fn pagerduty_sends_one_event_per_alert() {
    let server = TestServer::start(answer(
        202,
        r#"{"status":"success","message":"Event processed"}"#,
    ))
    .await;
    let mut sink = sink(
        "pager",
        &format!(
            "url = {:?}\nformat = \"pagerduty\"\nrouting_key = \"R0UT1NGKEY\"\n",
            server.url("/v2/enqueue")
        ),
    );
    let db_down = |host: &str| {
        rec(&[
            ("level", s("ERROR")),
            ("host", s(host)),
            ("service", s("api")),
            ("message", s("db down\n  at pool.rs:10")),
        ])
    };
    let delivery1 = delivery(&[
        // The same error from two hosts: one alert (PagerDuty would merge them anyway).
        ("app.api", vec![db_down("web-1"), db_down("web-2")]),
        (
            "app.db",
            vec![rec(&[
                ("level", Value::UInt(60)),
                ("hostname", s("db-1")),
                ("msg", s("disk full")),
            ])],
        ),
    ]);
    sink.deliver(&delivery1).await.into_result().unwrap();

    let received = server.take();
    assert_eq!(received.len(), 2);
    let keys: Vec<String> = received
        .iter()
        .map(|r| r.json()["dedup_key"].as_str().unwrap().to_owned())
        .collect();
    for key in &keys {
        assert!(key.starts_with("flumen-") && key.len() == 23, "{key}");
    }
    assert_ne!(keys[0], keys[1]);
    assert_eq!(received[0].path, "/v2/enqueue");
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert_eq!(
        received[0].body,
        format!(
            "{{\"routing_key\":\"R0UT1NGKEY\",\"event_action\":\"trigger\",\"dedup_key\":\"{}\",\
             \"client\":\"flumen\",\"payload\":{{\"summary\":\"[ERROR] api: db down …\",\
             \"source\":\"web-1\",\"severity\":\"error\",\"timestamp\":\"{TIME_MS}\",\"component\":\"api\",\
             \"custom_details\":{{\"level\":\"ERROR\",\"host\":\"web-1\",\"service\":\"api\",\
             \"message\":\"db down\\n  at pool.rs:10\"}}}}}}",
            keys[0]
        )
    );
    assert_eq!(
        received[1].body,
        format!(
            "{{\"routing_key\":\"R0UT1NGKEY\",\"event_action\":\"trigger\",\"dedup_key\":\"{}\",\
             \"client\":\"flumen\",\"payload\":{{\"summary\":\"[60] app.db: disk full\",\
             \"source\":\"db-1\",\"severity\":\"critical\",\"timestamp\":\"{TIME_MS}\",\
             \"custom_details\":{{\"level\":60,\"hostname\":\"db-1\",\"msg\":\"disk full\"}}}}}}",
            keys[1]
        )
    );

    // The same error later, from another host, has the same dedup_key: one incident.
    sink.deliver(&delivery(&[("app.api", vec![db_down("web-3")])]))
        .await
        .into_result()
        .unwrap();
    let received = server.take();
    assert_eq!(received[0].json()["dedup_key"], keys[0].as_str());
    assert_eq!(received[0].json()["payload"]["source"], "web-3");
}

#[tokio::test]
async fn pagerduty_summaries_are_capped_and_dedup_keys_can_be_templated() {
    let server = TestServer::start(answer(202, "{}")).await;
    let mut sink = sink(
        "pager",
        &format!(
            "url = {:?}\nformat = \"pagerduty\"\nrouting_key = \"k\"\ntemplate = '{{{{message}}}}'\ndedup_key = '{{{{service}}}}/{{{{error.kind|\"none\"}}}}'\n",
            server.url("/")
        ),
    );
    let long = "x".repeat(3000);
    sink.deliver(&delivery(&[(
        "app",
        vec![
            rec(&[("service", s("api")), ("message", s(&long))]),
            rec(&[
                ("service", s("api")),
                ("message", s("other text, same key")),
            ]),
        ],
    )]))
    .await
    .into_result()
    .unwrap();
    let received = server.received();
    assert_eq!(received.len(), 1);
    let event = received[0].json();
    assert_eq!(event["dedup_key"], "api/none");
    let summary = event["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with("x…"));
    assert_eq!(event["payload"]["source"], "api");
    assert_eq!(event["payload"]["severity"], "error");
}

#[tokio::test]
async fn answers_are_classified_retryable_or_permanent() {
    let server = TestServer::start(answer(200, "ok")).await;
    let mut sink = sink(
        "slack",
        &format!(
            "url = {:?}\nformat = \"slack\"\nmax_alerts_per_minute = 0\n",
            server.url("/services/T0/B0/SECRETTOKEN")
        ),
    );
    let long_body = format!("{}TAIL", "e".repeat(300));
    let cases = [
        (500, "rollup_error", true),
        (502, "", true),
        (503, "unavailable", true),
        (429, "rate_limited", true),
        (408, "", true),
        (400, "invalid_payload", false),
        (403, "action_prohibited", false),
        (404, "no_service", false),
        (410, "channel_is_archived", false),
        (401, long_body.as_str(), false),
        (301, "", false),
    ];
    for (status, body, retryable) in cases {
        server.answer_next([answer(status, body)]);
        let error = sink
            .deliver(&delivery(&[("app", vec![rec(&[("message", s("x"))])])]))
            .await
            .into_result()
            .unwrap_err();
        assert_eq!(error.retryable, retryable, "{status}: {}", error.message);
        assert!(
            error.message.starts_with(&format!("HTTP {status} ")),
            "{}",
            error.message
        );
        assert!(
            error
                .message
                .contains(&format!("from http://{}/…", server.addr)),
            "{}",
            error.message
        );
        assert!(!error.message.contains("SECRETTOKEN"), "{}", error.message);
        assert!(
            error.message.contains(&body[..body.len().min(200)]),
            "{}",
            error.message
        );
        assert!(!error.message.contains("TAIL"), "{}", error.message);
    }
    assert_eq!(server.received().len(), cases.len());
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut sink = sink(
        "alerts",
        &format!("url = \"http://127.0.0.1:{port}/secret-path\"\n"),
    );
    let error = sink
        .deliver(&delivery(&[("app", vec![rec(&[("message", s("x"))])])]))
        .await
        .into_result()
        .unwrap_err();
    assert!(error.retryable, "{}", error.message);
    assert!(
        error
            .message
            .starts_with(&format!("POST to http://127.0.0.1:{port}/… failed")),
        "{}",
        error.message
    );
    assert!(!error.message.contains("secret-path"), "{}", error.message);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_retryably() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    let mut sink = sink(
        "alerts",
        &format!("url = \"http://{addr}/\"\ntimeout = \"300ms\"\n"),
    );
    let started = Instant::now();
    let error = sink
        .deliver(&delivery(&[("app", vec![rec(&[("message", s("x"))])])]))
        .await
        .into_result()
        .unwrap_err();
    assert!(error.retryable, "{}", error.message);
    assert_eq!(
        error.message,
        format!("POST to http://{addr} timed out after 300ms")
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_retried_delivery_resumes_where_it_failed() {
    let server = TestServer::start(answer(202, "{}")).await;
    let clock = TestClock::new();
    let mut sink = clock.install(sink(
        "pager",
        &format!(
            "url = {:?}\nformat = \"pagerduty\"\nrouting_key = \"k\"\nmax_alerts_per_minute = 3\n",
            server.url("/")
        ),
    ));
    let alerts = delivery(&[(
        "app",
        (0..3)
            .map(|i| rec(&[("message", s(&format!("error {i}")))]))
            .collect(),
    )]);
    server.answer_next([answer(202, "{}"), answer(500, "oops")]);
    let outcome = sink.deliver(&alerts).await;
    let parts = outcome.undelivered(&alerts);
    let [(rest, error)] = parts.as_slice() else {
        panic!("one part to retry: {parts:?}");
    };
    assert!(error.retryable);
    // The driver retries what was not accepted: the accepted first alert is not sent again.
    sink.deliver(rest).await.into_result().unwrap();
    let summaries: Vec<String> = server
        .take()
        .iter()
        .map(|r| r.json()["payload"]["summary"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        summaries,
        [
            "[alert] app: error 0",
            "[alert] app: error 1",
            "[alert] app: error 1",
            "[alert] app: error 2"
        ]
    );
    // Three alerts were sent, not four: the limit is used up, and the next one is suppressed.
    sink.deliver(&delivery(&[(
        "app",
        vec![rec(&[("message", s("error 3"))])],
    )]))
    .await
    .into_result()
    .unwrap();
    assert!(server.received().is_empty());
    clock.advance(Duration::from_secs(60));
    sink.deliver(&delivery(&[(
        "app",
        vec![rec(&[("message", s("error 4"))])],
    )]))
    .await
    .into_result()
    .unwrap();
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn a_retried_message_is_the_same_message() {
    let server = TestServer::start(answer(200, "ok")).await;
    let clock = TestClock::new();
    let mut sink = clock.install(sink(
        "slack",
        &format!(
            "url = {:?}\nformat = \"slack\"\nmax_alerts_per_minute = 1\n",
            server.url("/")
        ),
    ));
    let two = delivery(&[(
        "app",
        vec![rec(&[("message", s("a"))]), rec(&[("message", s("b"))])],
    )]);
    server.answer_next([answer(503, ""), answer(502, "")]);
    let outcome = sink.deliver(&two).await;
    // The driver retries what was not taken: the alert sent, not the one suppressed.
    let rest = Delivery::merged(outcome.undelivered(&two).into_iter().map(|(part, _)| part));
    assert!(outcome.into_result().unwrap_err().retryable);
    assert_eq!(rest.events, 1);
    // A retry in the next minute, when the limit has room again, sends the same text: the
    // suppressed alert is still reported until a message carrying the note gets through.
    clock.advance(Duration::from_secs(120));
    assert!(
        sink.deliver(&rest)
            .await
            .into_result()
            .unwrap_err()
            .retryable
    );
    sink.deliver(&rest).await.into_result().unwrap();
    let received = server.take();
    assert_eq!(received.len(), 3);
    let expected = serde_json::json!({
        "text": "[alert] app: a\n1 alert suppressed by the rate limit (at most 1 per minute)"
    });
    for request in &received {
        assert_eq!(request.json(), expected);
    }
}

#[tokio::test]
async fn retry_after_is_handed_to_the_driver_to_wait_out() {
    let server = TestServer::start(answer(200, "ok")).await;
    let url = server.url("/");
    let one = || delivery(&[("app", vec![rec(&[("message", s("x"))])])]);
    let limited = |status, seconds: &str| Answer {
        headers: vec![("retry-after", seconds.to_owned())],
        ..answer(status, "rate_limited")
    };
    let mut sink = sink("slack", &format!("url = {url:?}\nformat = \"slack\"\n"));
    // The sink does not wait itself (the driver does, capped by retry.max_backoff): it says how
    // long, for a 429 or a 503 only.
    let waits = [(429, "1"), (503, "3600"), (500, "5")];
    server.answer_next(waits.map(|(status, seconds)| limited(status, seconds)));
    let mut said = Vec::new();
    for _ in waits {
        let started = Instant::now();
        let outcome = sink.deliver(&one()).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the sink waited"
        );
        said.push(outcome.wait().map(|wait| wait.as_secs()));
        assert!(outcome.into_result().unwrap_err().retryable);
    }
    assert_eq!(said, [Some(1), Some(3600), None]);
    sink.deliver(&one()).await.into_result().unwrap();
    assert_eq!(server.received().len(), 4);
}

#[tokio::test]
async fn the_limit_suppresses_counts_and_reports_slack_alerts() {
    let server = TestServer::start(answer(200, "ok")).await;
    let clock = TestClock::new();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let mut sink = metrics::with_local_recorder(&recorder, || {
        clock.install(sink(
            "slack-limited",
            &format!(
                "url = {:?}\nformat = \"slack\"\nmax_alerts_per_minute = 5\ntemplate = '{{{{message}}}}'\n",
                server.url("/")
            ),
        ))
    });
    let alerts = |range: std::ops::Range<u32>| {
        delivery(&[(
            "app",
            range
                .map(|i| rec(&[("message", s(&format!("e{i}")))]))
                .collect(),
        )])
    };

    // 8 alerts, 5 allowed: one message, with the 3 others reported.
    sink.deliver(&alerts(0..8)).await.into_result().unwrap();
    // Within the minute: nothing is sent, and that is not a failure.
    clock.advance(Duration::from_secs(30));
    sink.deliver(&alerts(8..12)).await.into_result().unwrap();
    clock.advance(Duration::from_secs(29));
    sink.deliver(&alerts(12..13)).await.into_result().unwrap();
    assert_eq!(server.received().len(), 1);
    // A minute after the first message, the window has room again.
    clock.advance(Duration::from_secs(1));
    sink.deliver(&alerts(13..15)).await.into_result().unwrap();
    // And the report is not repeated.
    clock.advance(Duration::from_secs(60));
    sink.deliver(&alerts(15..16)).await.into_result().unwrap();

    let texts: Vec<String> = server
        .received()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        [
            "e0\ne1\ne2\ne3\ne4\n3 alerts suppressed by the rate limit (at most 5 per minute)",
            "e13\ne14\n5 alerts suppressed by the rate limit (at most 5 per minute)",
            "e15",
        ]
    );
    let rendered = metrics.render();
    assert!(
        rendered.contains("flumen_output_alerts_suppressed_total{output=\"slack-limited\"} 8"),
        "{rendered}"
    );
}

#[tokio::test]
async fn the_limit_reports_in_a_last_json_element() {
    let server = TestServer::start(answer(200, "")).await;
    let clock = TestClock::new();
    let mut sink = clock.install(sink(
        "json-limited",
        &format!("url = {:?}\nmax_alerts_per_minute = 2\n", server.url("/")),
    ));
    let alerts = |n: i64| {
        delivery(&[(
            "app",
            (0..n).map(|i| rec(&[("n", Value::Int(i))])).collect(),
        )])
    };
    sink.deliver(&alerts(3)).await.into_result().unwrap();
    let body = server.take()[0].json();
    let events = body.as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["record"], serde_json::json!({"n": 0}));
    assert_eq!(events[1]["record"], serde_json::json!({"n": 1}));
    assert_eq!(events[2]["tag"], "flumen.alerts.suppressed");
    assert!(events[2]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        events[2]["record"],
        serde_json::json!({
            "message": "1 alert suppressed by the rate limit (at most 2 per minute)",
            "suppressed": 1,
            "output": "json-limited",
        })
    );
    sink.deliver(&alerts(4)).await.into_result().unwrap();
    assert!(server.received().is_empty());
    clock.advance(Duration::from_secs(60));
    sink.deliver(&alerts(1)).await.into_result().unwrap();
    let body = server.take()[0].json();
    let events = body.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["record"]["suppressed"], 4);
}

#[test]
fn configuration_defaults() {
    let json = config("url = \"https://example.com/hook\"\n");
    assert_eq!(json.format, WebhookFormat::Json);
    assert_eq!(json.timeout, Duration::from_secs(10));
    assert_eq!(json.alert_limit(), None);
    assert!(json.template.is_none() && json.headers.is_empty());
    json.validate().unwrap();

    let slack = config("url = \"https://hooks.slack.com/services/T/B/X\"\nformat = \"slack\"\n");
    assert_eq!(slack.alert_limit(), Some(30));
    let unlimited = config("url = \"https://h/\"\nformat = \"slack\"\nmax_alerts_per_minute = 0\n");
    assert_eq!(unlimited.alert_limit(), None);

    let pagerduty = config("format = \"pagerduty\"\nrouting_key = \"k\"\ntimeout = \"2s\"\n");
    pagerduty.validate().unwrap();
    assert_eq!(pagerduty.endpoint(), PAGERDUTY_EVENTS_URL);
    assert_eq!(pagerduty.alert_limit(), Some(30));
    assert_eq!(pagerduty.timeout, Duration::from_secs(2));

    // Credentials stay out of debug output.
    let secret = config(
        "url = \"https://hooks.slack.com/services/T/B/SECRET\"\nformat = \"slack\"\n[headers]\nAuthorization = \"Bearer TOKEN\"\n",
    );
    let debug = format!("{secret:?}");
    assert!(
        !debug.contains("SECRET") && !debug.contains("TOKEN"),
        "{debug}"
    );
}

#[test]
fn configuration_errors_name_the_key() {
    let error = |text: &str| {
        let config = config(text);
        let error = config.validate().unwrap_err();
        assert_eq!(
            WebhookSink::new("x", &config).unwrap_err(),
            error,
            "new and validate agree"
        );
        error
    };
    assert_eq!(
        error("format = \"slack\"\n"),
        "url: required with format = \"slack\""
    );
    assert_eq!(
        error("url = \"ftp://example.com/x\"\n"),
        "url: the scheme must be http or https, not \"ftp\""
    );
    assert!(error("url = \"hooks.slack.com/x\"\n").starts_with("url: not a URL"));
    assert!(error("format = \"pagerduty\"\n").starts_with("routing_key: required"));
    assert_eq!(
        error("url = \"https://h/\"\nrouting_key = \"k\"\n"),
        "routing_key: only for format = \"pagerduty\", not \"json\""
    );
    assert_eq!(
        error("url = \"https://h/\"\n[headers]\n\"bad header\" = \"v\"\n"),
        "headers: \"bad header\" is not a valid header name"
    );
    assert_eq!(
        error("url = \"https://h/\"\n[headers]\nAuthorization = \"a\\nb\"\n"),
        "headers.Authorization: not a valid header value"
    );
    assert!(
        error("url = \"https://h/\"\ntemplate = \"{{level\"\n").starts_with("template: unclosed")
    );
    assert_eq!(
        error("url = \"https://h/\"\ntimeout = \"0s\"\n"),
        "timeout: must be more than 0"
    );

    let unknown = toml::from_str::<WebhookConfig>("url = \"https://h/\"\nchannel = \"#x\"\n")
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown field `channel`"), "{unknown}");
    let format = toml::from_str::<WebhookConfig>("url = \"https://h/\"\nformat = \"teams\"\n")
        .unwrap_err()
        .to_string();
    assert!(format.contains("unknown variant `teams`"), "{format}");
}
