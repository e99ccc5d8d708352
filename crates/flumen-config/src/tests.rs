use super::*;

#[test]
fn the_embedded_default_is_valid() {
    let spec = ServerSpec::embedded_default();
    assert_eq!(spec.sources().len(), 2);
    assert_eq!(spec.api_address().port(), 8080);
}

#[test]
fn errors_name_the_line_and_the_key() {
    let text = "data_dir = \"/tmp/x\"\n[outputs.a]\ntype = \"stdout\"\nbogus = 1\n";
    let err = ServerSpec::parse(text, "f.toml").unwrap_err().to_string();
    // Inside a `type`-tagged table the error points at the table's header.
    assert!(err.starts_with("f.toml:2: outputs.a: "), "{err}");
    assert!(err.contains("unknown field `bogus`"), "{err}");

    let text = "[outputs.a]\ntype = \"stdout\"\n\n[[routes]]\nmatch = [\"**\"]\noutputs = [\"a\", \"b\"]\n";
    let err = ServerSpec::parse(text, "f.toml").unwrap_err().to_string();
    assert!(err.starts_with("f.toml:6: "), "{err}");
    assert!(err.contains("no output is named \"b\""), "{err}");

    let text = "[log]\nmax_size = \"lots\"\n";
    let err = ServerSpec::parse(text, "f.toml").unwrap_err().to_string();
    assert!(err.starts_with("f.toml:2: max_size: "), "{err}");

    let text = "[log]\npersistence = \"sometimes\"\n";
    let err = ServerSpec::parse(text, "f.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("f.toml:2: persistence: unknown variant"),
        "{err}"
    );
}

#[test]
fn errors_found_after_reading_name_the_line_of_the_value_at_fault() {
    let route = "[outputs.a]\ntype = \"null\"\n[[routes]]\nmatch = [\"**\"]\n";
    for (text, line, message) in [
        (
            format!("{route}outputs = [\"a\"]\nselect = \"{{level=\"\n"),
            6,
            "routes[0].select: ",
        ),
        (
            format!("{route}outputs = [\"a\"]\nlabel = \"elsewhere\"\n"),
            6,
            "routes[0].label: no source has the label",
        ),
        (
            "[outputs.a]\ntype = \"null\"\n[[routes]]\nmatch = [\"**\",\n  \"a.{b\"]\noutputs = [\"a\"]\n"
                .to_owned(),
            5,
            "routes[0].match: ",
        ),
        (
            "[[filters]]\ntype = \"fields\"\nremove = [\"x\"]\n[[filters]]\ntype = \"fields\"\nmatch = [\"a.{b\"]\n"
                .to_owned(),
            4,
            "filters[1] (1:fields): match: ",
        ),
        (
            "[outputs.f]\ntype = \"file\"\npath = \"/x/{{host}}\"\n".to_owned(),
            1,
            "outputs.f.path: unknown placeholder",
        ),
    ] {
        let err = ServerSpec::parse(&text, "f.toml").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("f.toml:{line}: {message}")),
            "{err} (wanted line {line}, {message:?})"
        );
    }
}

#[test]
fn an_input_limit_the_log_could_never_hold_is_refused_naming_the_keys() {
    let log = "[log]\nmax_size = \"8MiB\"\nsegment_size = \"2MiB\"\n";
    for (source, key) in [
        ("type = \"forward\"", "max_frame_size"),
        ("type = \"http\"", "max_body_size"),
        ("type = \"otlp\"", "max_request_size"),
        ("type = \"syslog\"", "max_message_size"),
        (
            "type = \"tail\"\npaths = [\"/var/log/*.log\"]",
            "max_line_size",
        ),
    ] {
        let text = format!("{log}[sources.big]\n{source}\n{key} = \"7MiB\"\n");
        let err = ServerSpec::parse(&text, "f.toml").unwrap_err().to_string();
        assert!(err.starts_with("f.toml:4: "), "{err}");
        for named in [
            &format!("sources.big.{key} (7.0 MiB)")[..],
            "log.max_size (8.0 MiB)",
            "log.segment_size (2.0 MiB)",
        ] {
            assert!(err.contains(named), "{named:?} not in {err}");
        }
        // What fits beside a full segment is accepted.
        let text = format!("{log}[sources.big]\n{source}\n{key} = \"3MiB\"\n");
        ServerSpec::parse(&text, "f.toml").unwrap();
    }
    // Two records as large as the input must fit together.
    let text = "[log]\nmax_size = \"8MiB\"\nsegment_size = \"1MiB\"\n[sources.f]\ntype = \"forward\"\nmax_frame_size = \"5MiB\"\n";
    let err = ServerSpec::parse(text, "f.toml").unwrap_err().to_string();
    assert!(err.contains("sources.f.max_frame_size (5.0 MiB)"), "{err}");
}

#[test]
fn filters_keep_the_order_they_are_written_in() {
    let config: ServerConfig = toml::from_str(
        "[[filters]]\ntype = \"fields\"\nrename = { zeta = \"b\", alpha = \"zeta\" }\n",
    )
    .unwrap();
    config.check().unwrap();
    let flumen_process::StepConfig::Fields(fields) = &config.filters[0].step else {
        panic!("a fields filter");
    };
    let order: Vec<&str> = fields.rename.keys().map(String::as_str).collect();
    assert_eq!(order, ["zeta", "alpha"]);
}

#[test]
fn the_seed_aggregator_example_is_valid() {
    let text = include_str!("../../../examples/aggregator.toml");
    let spec = ServerSpec::parse(text, "aggregator.toml").unwrap();
    assert_eq!(spec.sources()["forward"].label(), "mainstream");
    assert_eq!(spec.routes().len(), 3);
}

#[test]
fn the_deployment_streamer_example_is_valid() {
    let text = include_str!("../../../examples/deployment-streamer.toml");
    let spec = ServerSpec::parse(text, "deployment-streamer.toml").unwrap();
    // The first route picks events by content: deploy tags are decided per event.
    assert!(spec.routes().decide("", "deploy.api").by_content());
    assert!(!spec.routes().decide("", "app.api").by_content());
    let config: ServerConfig = toml::from_str(text).unwrap();
    assert_eq!(config.filters.len(), 6);
}

#[test]
fn a_route_label_must_belong_to_a_source() {
    let text = "[outputs.a]\ntype = \"null\"\n[[routes]]\nlabel = \"mainstream\"\nmatch = [\"**\"]\noutputs = [\"a\"]\n";
    let err = ServerSpec::parse(text, "f.toml").unwrap_err().to_string();
    assert!(err.contains("no source has the label"), "{err}");
}

#[test]
fn a_configuration_built_in_code_is_checked_the_same_way() {
    let mut config: ServerConfig = toml::from_str("").unwrap();
    config.outputs.insert(
        "a".into(),
        OutputConfig::Forward(flumen_sinks::forward::ForwardOutputConfig::new(Vec::new())),
    );
    let err = config.check().unwrap_err();
    assert_eq!(
        err.to_string(),
        "outputs.a.servers: at least one server is needed"
    );
    assert_eq!(err.at, [Key::Name("outputs".into()), Key::Name("a".into())]);
}

#[test]
fn a_file_outputs_path_is_compiled_with_the_gzip_suffix() {
    let text = "[outputs.f]\ntype = \"file\"\npath = \"/x/{{tag}}.log\"\ncompression = \"gzip\"\n";
    let spec = ServerSpec::parse(text, "f.toml").unwrap();
    let SinkSpec::File(file) = &spec.outputs()["f"].sink else {
        panic!("a file output");
    };
    assert!(format!("{file:?}").contains(".gz"), "{file:?}");
}

#[test]
fn another_data_dir_moves_the_log_with_it() {
    let spec = ServerSpec::embedded_default().with_data_dir("/elsewhere".into());
    assert_eq!(spec.data_dir(), std::path::Path::new("/elsewhere"));
    assert_eq!(spec.wal().dir, std::path::Path::new("/elsewhere/wal"));
}
