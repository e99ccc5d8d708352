use flumen_event::record::{Record, Value};
use proptest::prelude::*;

use crate::eval::{LabelExpr, LabelFilter, LineOp};
use crate::{MatchOp, ParseError, Selector, Stage, line_of};

// ---------------------------------------------------------------------------------------------
// Helpers

pub(crate) fn rec(fields: Vec<(&str, Value)>) -> Record {
    Record::from(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Vec<_>>(),
    )
}

fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn sel(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn err(text: &str) -> ParseError {
    match Selector::parse(text) {
        Ok(s) => panic!("{text:?} should not parse, got {s:?}"),
        Err(e) => e,
    }
}

/// The selector re-rendered from what was parsed: one spelling per meaning.
pub(crate) fn canonical(selector: &Selector) -> String {
    let matchers: Vec<String> = selector
        .stream_matchers()
        .iter()
        .map(|m| format!("{}{}{}", m.name(), m.op(), quote(m.value())))
        .collect();
    let mut out = format!("{{{}}}", matchers.join(", "));
    for stage in &selector.stages {
        match stage {
            Stage::Line(filter) => {
                out.push_str(&format!(" {} {}", filter.op.as_str(), quote(&filter.value)))
            }
            Stage::Label(expr) => out.push_str(&format!(" | {}", canonical_expr(expr))),
            other => out.push_str(&crate::query_tests::render_stage(other)),
        }
    }
    out
}

pub(crate) fn canonical_expr(expr: &LabelExpr) -> String {
    match expr {
        LabelExpr::Filter(LabelFilter::Text(m)) => {
            format!("{} {} {}", m.name(), m.op(), quote(m.value()))
        }
        LabelExpr::Filter(LabelFilter::Number {
            name, op, literal, ..
        }) => format!("{name} {} {literal}", op.as_str()),
        LabelExpr::And(items) => format!(
            "({})",
            items
                .iter()
                .map(canonical_expr)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        LabelExpr::Or(items) => format!(
            "({})",
            items
                .iter()
                .map(canonical_expr)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

pub(crate) fn quote(value: &str) -> String {
    let mut out = String::from('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A service log record like the ones routing sees.
pub(crate) fn api_error() -> Record {
    rec(vec![
        ("time", Value::from("2024-05-01T12:00:00Z")),
        ("service", Value::from("api")),
        ("level", Value::from("ERROR")),
        ("status", Value::from("503")),
        ("latency_ms", Value::UInt(30_012)),
        (
            "kubernetes",
            map(vec![
                ("namespace", Value::from("shop")),
                (
                    "labels",
                    map(vec![
                        ("app", Value::from("checkout")),
                        ("tier", Value::Int(2)),
                    ]),
                ),
            ]),
        ),
        (
            "message",
            Value::from("upstream timeout after 30s for user=42"),
        ),
    ])
}

const EXAMPLE: &str = r#"{service="api", level=~"ERROR|FATAL"} |= "timeout" != "healthcheck" |~ "user=[0-9]+" | status >= 500"#;

// ---------------------------------------------------------------------------------------------
// Parsing

#[test]
fn parses_the_reference_selector() {
    let s = sel(EXAMPLE);
    assert_eq!(s.as_str(), EXAMPLE);
    assert_eq!(s.to_string(), EXAMPLE);
    let matchers: Vec<_> = s
        .stream_matchers()
        .iter()
        .map(|m| (m.name(), m.op(), m.value()))
        .collect();
    assert_eq!(
        matchers,
        [
            ("service", MatchOp::Eq, "api"),
            ("level", MatchOp::Re, "ERROR|FATAL")
        ]
    );
    assert_eq!(
        canonical(&s),
        r#"{service="api", level=~"ERROR|FATAL"} |= "timeout" != "healthcheck" |~ "user=[0-9]+" | status >= 500"#
    );
    assert!(!s.is_match_all());
}

#[test]
fn parses_valid_selectors() {
    let cases = [
        ("{}", "{}"),
        ("  {  }  ", "{}"),
        ("{a=\"\"}", r#"{a=""}"#),
        ("{a = `x\\d+`}", r#"{a="x\\d+"}"#),
        (
            "{ a.b_c.D9 !~ \"x\" ,\n\t_z=\"q\\\"\\\\\\n\\t\" }",
            r#"{a.b_c.D9!~"x", _z="q\"\\\n\t"}"#,
        ),
        ("{}|=\"\"", r#"{} |= """#),
        ("{} != `a` !~ `b` |~ `c`", r#"{} != "a" !~ "b" |~ "c""#),
        ("{}|a=1", "{} | a = 1"),
        ("{} | a == 1.5", "{} | a = 1.5"),
        ("{} | a == \"x\"", r#"{} | a = "x""#),
        ("{} | a != -3", "{} | a != -3"),
        (
            "{} | a>=2e3 | b<1 | c<=0.5 | d>-1",
            "{} | a >= 2e3 | b < 1 | c <= 0.5 | d > -1",
        ),
        (
            "{} | a =~ `x.*` | b !~ \"y\"",
            r#"{} | a =~ "x.*" | b !~ "y""#,
        ),
        ("{} | a=1 and b=2", "{} | (a = 1 and b = 2)"),
        ("{} | a=1, b=2,c=3", "{} | (a = 1 and b = 2 and c = 3)"),
        (
            "{} | a=1 or b=2 and c=3",
            "{} | (a = 1 or (b = 2 and c = 3))",
        ),
        (
            "{} | (a=1 or b=2) and c=3",
            "{} | ((a = 1 or b = 2) and c = 3)",
        ),
        ("{} | ((a=1))", "{} | a = 1"),
        // Keywords are whole words; `and` can be a field name.
        ("{} | and=1 or or=2", "{} | (and = 1 or or = 2)"),
        ("{} | json=\"x\"", r#"{} | json = "x""#),
        ("{tag=~`docker\\..*`}", r#"{tag=~"docker\\..*"}"#),
        // Non-ASCII text is fine anywhere a string is.
        ("{a=\"héllo ✓\"} |= `日本`", r#"{a="héllo ✓"} |= "日本""#),
        // A `(?x)` comment cannot swallow the anchoring.
        ("{a=~\"(?x)abc # note\"}", r#"{a=~"(?x)abc # note"}"#),
    ];
    for (text, expected) in cases {
        let s = sel(text);
        assert_eq!(canonical(&s), expected, "{text:?}");
        assert_eq!(s.as_str(), text);
        // The canonical form parses back to itself.
        assert_eq!(canonical(&sel(expected)), expected, "{expected:?}");
    }
}

#[test]
fn errors_point_at_the_problem() {
    let deep = format!("{{}} | {}a=1{}", "(".repeat(40), ")".repeat(40));
    let cases: Vec<(&str, usize, &str)> = vec![
        (r#"{service="api""#, 14, "expected `,` or `}`"),
        (r#"{service="api" x}"#, 15, "expected `,` or `}`, found `x`"),
        (
            "",
            0,
            "expected `{` to start the stream selector (`{}` selects everything)",
        ),
        (
            r#"service="api""#,
            0,
            "expected `{` to start the stream selector",
        ),
        (
            r#"{service=="api"}"#,
            8,
            "unknown operator `==` in the stream selector",
        ),
        (r#"{a>"x"}"#, 2, "numeric comparisons go in label filters"),
        (
            r#"{service<>"api"}"#,
            8,
            "unknown operator `<>`: expected `=`, `!=`",
        ),
        (r#"{} | a => 5"#, 7, "unknown operator `=>`"),
        (r#"{a "x"}"#, 3, "expected an operator after `a`"),
        (r#"{1a="x"}"#, 1, "expected a field name, found `1`"),
        (r#"{a="x",}"#, 7, "expected a field name, found `}`"),
        (
            r#"{a=x}"#,
            3,
            "expected a string in double quotes or backticks after `=`",
        ),
        (
            r#"{service="api}"#,
            9,
            "unterminated string: no closing `\"`",
        ),
        ("{a=`x}", 3, "unterminated string: no closing backtick"),
        (r#"{} |= "x"#, 6, "unterminated string"),
        (r#"{a="x\"#, 3, "unterminated string"),
        (r#"{a="\d"}"#, 4, "unknown escape `\\d`"),
        (r#"{a=~"x("}"#, 6, "invalid regex: unclosed group"),
        // Escapes before the mistake are counted in the source, not the value.
        (r#"{a=~"\t\\\\("}"#, 11, "invalid regex: unclosed group"),
        (r#"{a=~`\p{Nope}`}"#, 5, "invalid regex: "),
        (r#"{} |~ "a)""#, 8, "invalid regex: unopened group"),
        (
            r#"{} | a !~ "[z-a]""#,
            12,
            "invalid regex: invalid character class range",
        ),
        (
            r#"{a="x"} | status > "500""#,
            19,
            "expected a number after `>`, found `\"`",
        ),
        (r#"{} | status >= "#, 15, "expected a number after `>=`"),
        (r#"{} | status < -x"#, 14, "expected a number after `<`"),
        (
            r#"{} | a = foo"#,
            9,
            "expected a string or a number after `=`",
        ),
        (
            r#"{} | latency >= 500xs"#,
            16,
            "invalid number `500xs`: expected a number, a duration",
        ),
        (r#"{} | a > 1.5.2"#, 9, "invalid number `1.5.2`"),
        (r#"{} | a > 1e999"#, 9, "number `1e999` is out of range"),
        (
            r#"{a="x"} foo"#,
            8,
            "expected a line filter (`|=`, `!=`, `|~`, `!~`) or a stage after `|`",
        ),
        (r#"{a="x"} }"#, 8, "found `}`"),
        (r#"{} | unpack"#, 5, "`unpack` stages are not supported"),
        (r#"{} | drop a | a=1"#, 5, "`drop` stages are not supported"),
        (r#"{} | a=1 and"#, 12, "expected a field name"),
        (r#"{} | (a=1"#, 9, "expected `)`, `and` or `or`"),
        (r#"{} | a=1 andb=2"#, 9, "expected a line filter"),
        (r#"{} | a=1)"#, 8, "expected a line filter"),
        (&deep, 37, "parentheses nest too deep (at most 32 levels)"),
    ];
    for (text, position, message) in cases {
        let e = err(text);
        assert!(
            e.position == position && e.message.contains(message),
            "{text:?}: got {e:?}, expected position {position} and {message:?}"
        );
        assert!(e.position <= text.len());
    }
    assert_eq!(
        err(r#"{service="api""#).to_string(),
        "at column 15: expected `,` or `}`"
    );
    assert_eq!(
        err(r#"{a="x"} | status > "500""#).to_string(),
        "at column 20: expected a number after `>`, found `\"`"
    );
}

#[test]
fn public_api_shape() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    assert_traits::<Selector>();
    assert_traits::<ParseError>();
    let all = Selector::match_all();
    assert!(all.is_match_all());
    assert_eq!(all.as_str(), "{}");
    assert_eq!(all.to_string(), "{}");
    assert!(sel(" { } ").is_match_all());
    assert!(!sel("{} |= \"\"").is_match_all());
    let parsed: Selector = "{a=\"b\"}".parse().unwrap();
    assert_eq!(parsed.stream_matchers().len(), 1);
    assert!(parsed.stream_matchers()[0].matches_text("b"));
    assert!(!parsed.stream_matchers()[0].matches_text("bb"));
    let e: Result<Selector, _> = "{".parse();
    assert_eq!(e.unwrap_err().position, 1);
    let boxed: Box<dyn std::error::Error> = Box::new(err("{"));
    assert_eq!(boxed.to_string(), "at column 2: expected a field name");
}

// ---------------------------------------------------------------------------------------------
// Matching

#[test]
fn reference_selector_matches_and_each_part_can_reject() {
    let s = sel(EXAMPLE);
    let good = api_error();
    assert!(s.matches("docker.api", &good));

    let with = |name: &str, value: Value| {
        let mut r = good.clone();
        r.insert(name, value);
        r
    };
    assert!(s.matches("x", &with("level", Value::from("FATAL"))));
    assert!(!s.matches("x", &with("service", Value::from("billing"))));
    assert!(!s.matches("x", &with("level", Value::from("WARN"))));
    assert!(!s.matches("x", &with("status", Value::from("404"))));
    assert!(!s.matches("x", &with("status", Value::from("n/a"))));
    let mut no_status = good.clone();
    no_status.remove("status");
    assert!(!s.matches("x", &no_status));
    let line = |text: &str| with("message", Value::from(text));
    assert!(!s.matches("x", &line("upstream refused for user=42")));
    assert!(!s.matches("x", &line("healthcheck timeout for user=42")));
    assert!(!s.matches("x", &line("timeout for user=anonymous")));
}

#[test]
fn nested_and_dotted_fields() {
    let r = api_error();
    assert!(sel(r#"{kubernetes.labels.app="checkout"}"#).matches("t", &r));
    assert!(sel(r#"{kubernetes.namespace=~"sh.p"}"#).matches("t", &r));
    assert!(sel("{} | kubernetes.labels.tier = 2").matches("t", &r));
    assert!(sel(r#"{kubernetes.labels.tier="2"}"#).matches("t", &r));
    // Walking into a string, or past the end, is a missing field.
    assert!(sel(r#"{service.name=""}"#).matches("t", &r));
    assert!(sel(r#"{kubernetes.labels.app.x=""}"#).matches("t", &r));
    // A map's text is its JSON.
    assert!(
        sel(r#"{kubernetes.labels=`{"app":"checkout","tier":2}`}"#).matches("t", &r),
        "map as JSON"
    );
    // A top-level field named with the whole path wins over walking.
    let mut dotted = r.clone();
    dotted.insert("kubernetes.labels.app", "literal");
    assert!(sel(r#"{kubernetes.labels.app="literal"}"#).matches("t", &dotted));
}

#[test]
fn missing_fields_are_empty_text() {
    let r = api_error();
    assert!(sel(r#"{foo=""}"#).matches("t", &r));
    assert!(!sel(r#"{foo!=""}"#).matches("t", &r));
    assert!(sel(r#"{service!=""}"#).matches("t", &r));
    assert!(sel(r#"{foo=~".*"}"#).matches("t", &r));
    assert!(!sel(r#"{foo=~".+"}"#).matches("t", &r));
    assert!(sel(r#"{foo!~".+"}"#).matches("t", &r));
    assert!(sel(r#"{} | foo = """#).matches("t", &r));
    assert!(!sel(r#"{foo="x"}"#).matches("t", &r));
    // Null is empty too; booleans are their words.
    let r = rec(vec![("n", Value::Null), ("b", Value::Bool(true))]);
    assert!(sel(r#"{n="", b="true"}"#).matches("t", &r));
    assert!(!sel(r#"{n!=""}"#).matches("t", &r));
}

#[test]
fn numeric_comparisons() {
    let r = rec(vec![
        ("status_str", Value::from("503")),
        ("status_uint", Value::UInt(503)),
        ("status_int", Value::Int(503)),
        ("padded", Value::from(" 503 ")),
        ("float", Value::Float(503.5)),
        ("float_str", Value::from("503.0")),
        ("neg", Value::Int(-3)),
        ("word", Value::from("five hundred")),
        ("flag", Value::Bool(true)),
        ("big", Value::UInt(9_007_199_254_740_993)),
        ("nan", Value::from("NaN")),
    ]);
    let yes = |text: &str| assert!(sel(text).matches("t", &r), "{text} should match");
    let no = |text: &str| assert!(!sel(text).matches("t", &r), "{text} should not match");

    for field in [
        "status_str",
        "status_uint",
        "status_int",
        "padded",
        "float_str",
    ] {
        yes(&format!("{{}} | {field} >= 500"));
        yes(&format!("{{}} | {field} = 503"));
        yes(&format!("{{}} | {field} == 503.0"));
        yes(&format!("{{}} | {field} <= 503"));
        yes(&format!("{{}} | {field} != 504"));
        no(&format!("{{}} | {field} > 503"));
        no(&format!("{{}} | {field} < 503"));
        no(&format!("{{}} | {field} != 503"));
    }
    yes("{} | float > 503");
    yes("{} | float < 503.6");
    no("{} | float = 503");
    yes("{} | neg > -3.5");
    yes("{} | neg = -3");
    no("{} | neg >= 0");
    yes("{} | status_str >= 5e2");
    // Text equality is still text.
    yes(r#"{} | float_str = "503.0""#);
    no(r#"{} | float_str = "503""#);
    yes(r#"{} | status_uint = "503""#);
    // Missing or not a number: every numeric comparison is false, `!=` included.
    for field in ["missing", "word", "flag", "nan"] {
        for op in ["=", "!=", ">", ">=", "<", "<="] {
            no(&format!("{{}} | {field} {op} 1"));
        }
    }
    // Integers compare exactly, beyond what a float can tell apart.
    yes("{} | big = 9007199254740993");
    no("{} | big = 9007199254740992");
    yes("{} | big > 9007199254740992");
}

#[test]
fn tag_falls_back_to_the_event_tag() {
    let plain = api_error();
    assert!(sel(r#"{tag="docker.api"}"#).matches("docker.api", &plain));
    assert!(sel(r#"{tag=~"docker\\..*"}"#).matches("docker.api", &plain));
    assert!(!sel(r#"{tag=~"docker"}"#).matches("docker.api", &plain));
    assert!(sel(r#"{} | tag !~ `app\..*`"#).matches("docker.api", &plain));
    assert!(!sel(r#"{tag=""}"#).matches("docker.api", &plain));
    assert!(sel(r#"{tag=""}"#).matches("", &plain));
    // The record's own `tag` field wins.
    let mut tagged = plain.clone();
    tagged.insert("tag", "from-record");
    assert!(sel(r#"{tag="from-record"}"#).matches("docker.api", &tagged));
    assert!(!sel(r#"{tag="docker.api"}"#).matches("docker.api", &tagged));
    // Numeric comparison on a tag.
    assert!(sel("{} | tag >= 10").matches("12", &plain));
    assert!(!sel("{} | tag >= 10").matches("docker", &plain));
}

#[test]
fn line_is_message_then_log_then_msg_then_json() {
    let all = rec(vec![
        ("msg", Value::from("from msg")),
        ("log", Value::from("from log")),
        ("message", Value::from("from message")),
    ]);
    assert_eq!(line_of(&all), "from message");
    let log_msg = rec(vec![
        ("msg", Value::from("from msg")),
        ("log", Value::from("from log\n")),
    ]);
    assert_eq!(line_of(&log_msg), "from log\n");
    let msg = rec(vec![("a", Value::Int(1)), ("msg", Value::from("from msg"))]);
    assert_eq!(line_of(&msg), "from msg");
    let none = rec(vec![
        ("service", Value::from("api")),
        ("code", Value::Int(7)),
    ]);
    assert_eq!(line_of(&none), r#"{"service":"api","code":7}"#);
    assert_eq!(line_of(&Record::new()), "{}");
    // A present field wins even when it is not a string, or is empty.
    let number = rec(vec![("log", Value::from("x")), ("message", Value::Int(42))]);
    assert_eq!(line_of(&number), "42");
    let empty = rec(vec![
        ("log", Value::from("x")),
        ("message", Value::from("")),
    ]);
    assert_eq!(line_of(&empty), "");

    assert!(sel(r#"{} |= "from message""#).matches("t", &all));
    assert!(!sel(r#"{} |= "from log""#).matches("t", &all));
    assert!(sel(r#"{} |= "from log" != "msg""#).matches("t", &log_msg));
    assert!(sel(r#"{} |= `"service":"api"`"#).matches("t", &none));
    assert!(sel(r#"{} |~ `"code":\d+`"#).matches("t", &none));
    // Label filters still see every field, not just the line.
    assert!(sel(r#"{msg="from msg"} |= "from message""#).matches("t", &all));
}

#[test]
fn regexes_are_anchored_in_matchers_and_not_in_line_filters() {
    let r = api_error();
    assert!(!sel(r#"{level=~"ERR"}"#).matches("t", &r));
    assert!(sel(r#"{level=~"ERR.*"}"#).matches("t", &r));
    assert!(sel(r#"{level!~"ERR"}"#).matches("t", &r));
    assert!(
        !sel(r#"{level=~"ERROR|FATAL"}"#)
            .matches("t", &rec(vec![("level", "NOT AN ERROR".into())]))
    );
    assert!(!sel(r#"{level=~"ERROR|FATAL"}"#).matches("t", &rec(vec![("level", "ERRORS".into())])));
    assert!(sel(r#"{level=~"(?i)error"}"#).matches("t", &r));
    assert!(!sel(r#"{} | level =~ "RROR""#).matches("t", &r));
    assert!(sel(r#"{} | level =~ ".RROR""#).matches("t", &r));
    assert!(
        sel(r#"{a=~"(?x)abc # the rest is a comment"}"#)
            .matches("t", &rec(vec![("a", "abc".into())]))
    );
    assert!(!sel(r#"{a=~"(?x)abc # comment"}"#).matches("t", &rec(vec![("a", "abcd".into())])));
    // Line regexes find a match anywhere.
    assert!(sel(r#"{} |~ "time"  |~ "user=\\d+$""#).matches("t", &r));
    assert!(!sel(r#"{} !~ "time""#).matches("t", &r));
    assert!(sel(r#"{} |~ "(?i)UPSTREAM""#).matches("t", &r));
    assert!(!sel(r#"{} |~ "UPSTREAM""#).matches("t", &r));
    // `.` does not cross lines unless `(?s)` says so.
    let multi = rec(vec![("log", "first\nsecond".into())]);
    assert!(!sel(r#"{} |~ "first.second""#).matches("t", &multi));
    assert!(sel(r#"{} |~ "(?s)first.second""#).matches("t", &multi));
    assert!(sel(r#"{} |= "first\nsecond""#).matches("t", &multi));
}

#[test]
fn line_filters_contain_and_exclude() {
    let r = api_error();
    assert!(sel(r#"{} |= """#).matches("t", &r));
    assert!(!sel(r#"{} != """#).matches("t", &r));
    assert!(sel(r#"{} |= "timeout" |= "user=42" != "warn""#).matches("t", &r));
    assert!(!sel(r#"{} |= "Timeout""#).matches("t", &r));
    let unicode = rec(vec![("message", "résumé ✓ 日本語".into())]);
    assert!(sel("{} |= `✓ 日本`").matches("t", &unicode));
    assert!(!sel("{} |= `日本人`").matches("t", &unicode));
}

#[test]
fn and_or_and_parentheses() {
    let r = api_error();
    let yes = |text: &str| assert!(sel(text).matches("t", &r), "{text} should match");
    let no = |text: &str| assert!(!sel(text).matches("t", &r), "{text} should not match");
    yes(r#"{} | status >= 500 and level = "ERROR""#);
    no(r#"{} | status >= 500 and level = "WARN""#);
    yes(r#"{} | status >= 500, level = "ERROR""#);
    yes(r#"{} | status < 500 or level = "ERROR""#);
    no(r#"{} | status < 500 or level = "WARN""#);
    // `and` binds tighter: true or (false and false).
    yes(r#"{} | level = "ERROR" or status < 500 and service = "x""#);
    // Parentheses regroup: (true or false) and false.
    no(r#"{} | (level = "ERROR" or status < 500) and service = "x""#);
    yes(r#"{} | (level = "WARN" or (latency_ms > 1000 and service =~ "a.i"))"#);
    yes(r#"{} | level = "ERROR" | service = "api""#);
    no(r#"{} | level = "ERROR" | service = "web""#);
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A selector built from parts, to render with varied spelling and compare with what parses.
#[derive(Debug, Clone)]
struct Gen {
    matchers: Vec<(String, MatchOp, Val)>,
    stages: Vec<GenStage>,
}

#[derive(Debug, Clone)]
enum GenStage {
    Line(LineOp, Val),
    Label(GenExpr),
}

#[derive(Debug, Clone)]
enum GenExpr {
    /// Name, operator as written (`=`, `==`, `!=`, `=~`, `!~`), value.
    Text(String, &'static str, Val),
    /// Name, operator, number literal.
    Num(String, &'static str, String),
    And(Vec<GenExpr>, bool),
    Or(Vec<GenExpr>),
}

/// A string value and how to quote it.
#[derive(Debug, Clone)]
struct Val {
    text: String,
    backticks: bool,
}

impl Val {
    fn render(&self) -> String {
        if self.backticks && !self.text.contains('`') {
            format!("`{}`", self.text)
        } else {
            quote(&self.text)
        }
    }
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.]{0,8}"
}

fn text_val() -> impl Strategy<Value = Val> {
    (
        prop_oneof!["[ -~]{0,12}", "[a-z\"\\\\\n\t`]{0,6}", "\\PC{0,6}",],
        any::<bool>(),
    )
        .prop_map(|(text, backticks)| Val { text, backticks })
}

fn regex_val() -> impl Strategy<Value = Val> {
    (
        prop::sample::select(vec![
            "",
            ".*",
            "ERROR|FATAL",
            "user=[0-9]+",
            r"\d{3}",
            "(?i)time(out)?",
            r#"a"b\\c"#,
            "(?x) a b # comment",
            "[^`]+",
            "é+",
        ]),
        any::<bool>(),
    )
        .prop_map(|(text, backticks)| Val {
            text: text.to_owned(),
            backticks,
        })
}

fn number_literal() -> impl Strategy<Value = String> {
    "-?[0-9]{1,6}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?"
}

fn matcher() -> impl Strategy<Value = (String, MatchOp, Val)> {
    prop_oneof![
        (
            name(),
            prop_oneof![Just(MatchOp::Eq), Just(MatchOp::Ne)],
            text_val()
        ),
        (
            name(),
            prop_oneof![Just(MatchOp::Re), Just(MatchOp::NotRe)],
            regex_val()
        ),
    ]
}

fn label_filter() -> impl Strategy<Value = GenExpr> {
    prop_oneof![
        (
            name(),
            prop::sample::select(vec!["=", "==", "!="]),
            text_val()
        )
            .prop_map(|(n, op, v)| GenExpr::Text(n, op, v)),
        (name(), prop::sample::select(vec!["=~", "!~"]), regex_val())
            .prop_map(|(n, op, v)| GenExpr::Text(n, op, v)),
        (
            name(),
            prop::sample::select(vec!["=", "==", "!=", ">", ">=", "<", "<="]),
            number_literal()
        )
            .prop_map(|(n, op, v)| GenExpr::Num(n, op, v)),
    ]
}

fn label_expr() -> impl Strategy<Value = GenExpr> {
    label_filter().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 2..4), any::<bool>())
                .prop_map(|(items, comma)| GenExpr::And(items, comma)),
            prop::collection::vec(inner, 2..4).prop_map(GenExpr::Or),
        ]
    })
}

fn stage() -> impl Strategy<Value = GenStage> {
    prop_oneof![
        (
            prop_oneof![Just(LineOp::Contains), Just(LineOp::NotContains)],
            text_val()
        )
            .prop_map(|(op, v)| GenStage::Line(op, v)),
        (
            prop_oneof![Just(LineOp::Regex), Just(LineOp::NotRegex)],
            regex_val()
        )
            .prop_map(|(op, v)| GenStage::Line(op, v)),
        label_expr().prop_map(GenStage::Label),
    ]
}

fn generated() -> impl Strategy<Value = Gen> {
    (
        prop::collection::vec(matcher(), 0..4),
        prop::collection::vec(stage(), 0..4),
    )
        .prop_map(|(matchers, stages)| Gen { matchers, stages })
}

/// Whitespace to put between tokens: `required` keeps at least one character.
fn space(seed: &mut u64, required: bool) -> &'static str {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let options: &[&str] = if required {
        &[" ", "  ", "\n", "\t "]
    } else {
        &["", " ", "", "\n  ", "\t"]
    };
    options[(*seed >> 33) as usize % options.len()]
}

impl Gen {
    /// The selector as a user might type it, spacing chosen by `seed`.
    fn render(&self, seed: &mut u64) -> String {
        let mut out = String::new();
        out.push_str(space(seed, false));
        out.push('{');
        for (i, (n, op, v)) in self.matchers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(space(seed, false));
            out.push_str(n);
            out.push_str(space(seed, false));
            out.push_str(op.as_str());
            out.push_str(space(seed, false));
            out.push_str(&v.render());
            out.push_str(space(seed, false));
        }
        out.push('}');
        for stage in &self.stages {
            out.push_str(space(seed, false));
            match stage {
                GenStage::Line(op, v) => {
                    out.push_str(op.as_str());
                    out.push_str(space(seed, false));
                    out.push_str(&v.render());
                }
                GenStage::Label(e) => {
                    out.push('|');
                    out.push_str(space(seed, false));
                    render_expr(e, seed, &mut out);
                }
            }
        }
        out.push_str(space(seed, false));
        out
    }

    /// What `canonical` should give for it.
    fn canonical(&self) -> String {
        let matchers: Vec<String> = self
            .matchers
            .iter()
            .map(|(n, op, v)| format!("{n}{op}{}", quote(&v.text)))
            .collect();
        let mut out = format!("{{{}}}", matchers.join(", "));
        for stage in &self.stages {
            match stage {
                GenStage::Line(op, v) => {
                    out.push_str(&format!(" {} {}", op.as_str(), quote(&v.text)))
                }
                GenStage::Label(e) => out.push_str(&format!(" | {}", canonical_gen(e))),
            }
        }
        out
    }
}

fn render_expr(expr: &GenExpr, seed: &mut u64, out: &mut String) {
    let compound = |e: &GenExpr| matches!(e, GenExpr::And(..) | GenExpr::Or(_));
    let render_item = |e: &GenExpr, seed: &mut u64, out: &mut String| {
        if compound(e) {
            out.push('(');
            out.push_str(space(seed, false));
            render_expr(e, seed, out);
            out.push_str(space(seed, false));
            out.push(')');
        } else {
            render_expr(e, seed, out);
        }
    };
    match expr {
        GenExpr::Text(n, op, v) => {
            out.push_str(n);
            out.push_str(space(seed, false));
            out.push_str(op);
            out.push_str(space(seed, false));
            out.push_str(&v.render());
        }
        GenExpr::Num(n, op, literal) => {
            out.push_str(n);
            out.push_str(space(seed, false));
            out.push_str(op);
            out.push_str(space(seed, false));
            out.push_str(literal);
        }
        GenExpr::And(items, comma) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    if *comma {
                        out.push_str(space(seed, false));
                        out.push(',');
                        out.push_str(space(seed, false));
                    } else {
                        out.push_str(space(seed, true));
                        out.push_str("and");
                        out.push_str(space(seed, true));
                    }
                }
                render_item(item, seed, out);
            }
        }
        GenExpr::Or(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(space(seed, true));
                    out.push_str("or");
                    out.push_str(space(seed, true));
                }
                render_item(item, seed, out);
            }
        }
    }
}

fn canonical_gen(expr: &GenExpr) -> String {
    match expr {
        GenExpr::Text(n, op, v) => {
            let op = if *op == "==" { "=" } else { op };
            format!("{n} {op} {}", quote(&v.text))
        }
        GenExpr::Num(n, op, literal) => {
            let op = if *op == "==" { "=" } else { op };
            format!("{n} {op} {literal}")
        }
        GenExpr::And(items, _) => format!(
            "({})",
            items
                .iter()
                .map(canonical_gen)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        GenExpr::Or(items) => format!(
            "({})",
            items
                .iter()
                .map(canonical_gen)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

/// Characters the grammar cares about, to reach deep into the parser with random text.
const GRAMMAR_SOUP: &str = "[{}\"`=!~|<>(),.\\\\ a-z0-9_\\-\n]{0,40}";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_selectors_round_trip(g in generated(), seed in any::<u64>()) {
        let mut seed = seed;
        let text = g.render(&mut seed);
        let parsed = Selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        // Display gives back the source, which parses again to the same selector.
        prop_assert_eq!(parsed.to_string(), text.clone());
        let again = Selector::parse(&parsed.to_string()).expect("parses again");
        prop_assert_eq!(again.as_str(), parsed.as_str());
        prop_assert_eq!(canonical(&again), canonical(&parsed));
        // What parsed is what was generated.
        let expected = g.canonical();
        prop_assert_eq!(canonical(&parsed), expected.clone());
        // The canonical spelling is itself a fixed point.
        prop_assert_eq!(canonical(&sel(&expected)), expected);
        // And matching any record is total.
        let _ = parsed.matches("t", &api_error());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        check_total(&text);
    }

    #[test]
    fn parser_never_panics_on_grammar_soup(text in GRAMMAR_SOUP) {
        check_total(&text);
    }

    #[test]
    fn parser_never_panics_on_damaged_selectors(
        g in generated(),
        seed in any::<u64>(),
        cut in any::<prop::sample::Index>(),
        insert in any::<prop::sample::Index>(),
        extra in "[{}\"`=!~|<>(),\\\\a0 -]",
    ) {
        let mut seed = seed;
        let text = g.render(&mut seed);
        let boundaries: Vec<usize> =
            text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        check_total(&text[..boundaries[cut.index(boundaries.len())]]);
        let at = boundaries[insert.index(boundaries.len())];
        check_total(&format!("{}{extra}{}", &text[..at], &text[at..]));
    }
}

fn check_total(text: &str) {
    match Selector::parse(text) {
        Ok(s) => {
            assert_eq!(s.as_str(), text);
            let _ = s.matches("t", &api_error());
            let _ = s.matches("", &Record::new());
        }
        Err(e) => {
            assert!(e.position <= text.len(), "{text:?}: {e:?}");
            assert!(text.is_char_boundary(e.position), "{text:?}: {e:?}");
            assert!(!e.message.is_empty());
        }
    }
}
