//! Agent definitions: parsing and refusing definitions, converting `KEY=VALUE` by type,
//! validating inputs (with the status a node answers), output defaults and aggregates.

use baton::cli::summary::{aggregate_lines, summary_lines};
use baton::protocol::StatusCode;
use baton::protocol::ddl::{ActionDefinition, Aggregate, Definition, Validation};
use serde_json::{Map, Value, json};

/// A computed aggregate with the output's label, as `summarize` returns it.
fn labelled(mut result: Value, label: &str) -> Value {
    result["display_as"] = json!(label);
    result
}

/// A definition with one action `act` whose inputs are given; the rest is fixed.
fn definition_with(inputs: Value) -> Definition {
    let document = json!({
        "metadata": {"name": "demo", "description": "d", "timeout": 5},
        "actions": {"act": {
            "description": "a",
            "inputs": inputs,
            "outputs": {
                "status": {"description": "s", "display_as": "Status", "default": "unknown"},
                "count": {"description": "c", "display_as": "Count"}
            },
            "aggregate": [{"function": "summary", "output": "status"}, {"function": "sum", "output": "count"}]
        }}
    });
    Definition::from_json(document.to_string().as_bytes(), "test").expect("the test definition is valid")
}

fn demo() -> Definition {
    definition_with(json!({
        "name": {"description": "n", "type": "string", "validation": "^[a-z]+$", "maxlength": 8},
        "count": {"description": "c", "type": "integer", "optional": true},
        "ratio": {"description": "r", "type": "float", "optional": true},
        "size": {"description": "s", "type": "number", "optional": true},
        "force": {"description": "f", "type": "boolean", "optional": true, "default": false},
        "mode": {"description": "m", "type": "list", "list": ["fast", "slow"], "optional": true},
        "tags": {"description": "t", "type": "array", "optional": true},
        "extra": {"description": "e", "type": "object", "optional": true}
    }))
}

fn action(definition: &Definition) -> &ActionDefinition {
    definition.action("act").expect("act is declared")
}

/// Converts `key=text` by type: `Ok(value)` or `Err(fragment of the message)`.
fn check_cli(key: &str, text: &str, expected: Result<Value, &str>) {
    let definition = demo();
    let result = action(&definition).parse_cli_value("demo", "act", key, text);
    match (result, expected) {
        (Ok(value), Ok(wanted)) => assert_eq!(value, wanted, "{key}={text}"),
        (Err(error), Err(fragment)) => {
            assert!(error.to_string().contains(fragment), "{key}={text}: {error} lacks {fragment:?}")
        }
        (got, wanted) => panic!("{key}={text}: got {got:?}, wanted {wanted:?}"),
    }
}

#[test]
fn cli_values_are_converted_by_declared_type() {
    check_cli("name", "web", Ok(json!("web")));
    check_cli("count", "42", Ok(json!(42)));
    check_cli("count", "-3", Ok(json!(-3)));
    check_cli("count", "4.5", Err("input \"count\" must be an integer, got \"4.5\""));
    check_cli("count", "many", Err("must be an integer"));
    check_cli("ratio", "0.25", Ok(json!(0.25)));
    check_cli("ratio", "2", Ok(json!(2.0)));
    check_cli("ratio", "NaN", Err("must be a float"));
    check_cli("size", "7", Ok(json!(7)));
    check_cli("size", "7.5", Ok(json!(7.5)));
    check_cli("force", "yes", Ok(json!(true)));
    check_cli("force", "Y", Ok(json!(true)));
    check_cli("force", "0", Ok(json!(false)));
    check_cli("force", "f", Ok(json!(false)));
    check_cli("force", "maybe", Err("must be a boolean"));
    check_cli("mode", "fast", Ok(json!("fast")));
    check_cli("tags", "a,b", Ok(json!(["a", "b"])));
    check_cli("tags", "[1, 2]", Ok(json!([1, 2])));
    check_cli("tags", "[1,", Err("must be an array"));
    check_cli("extra", "{\"a\": 1}", Ok(json!({"a": 1})));
    check_cli("extra", "a=1", Err("must be an object"));
    check_cli("colour", "red", Err("demo#act has no input \"colour\" (inputs: count, extra, force"));
}

/// Validates inputs: `Ok(inputs with defaults)` or `Err((status, fragment))`.
fn check_inputs(data: Value, expected: Result<Value, (StatusCode, &str)>) {
    let definition = demo();
    let data: Map<String, Value> = data.as_object().cloned().expect("an object");
    let result = action(&definition).validate_inputs("demo", "act", &data);
    match (result, expected) {
        (Ok(checked), Ok(wanted)) => assert_eq!(Value::Object(checked), wanted),
        (Err(error), Err((status, fragment))) => {
            assert_eq!(error.status(), status, "{error}");
            assert!(error.to_string().contains(fragment), "{error} lacks {fragment:?}");
        }
        (got, wanted) => panic!("{data:?}: got {got:?}, wanted {wanted:?}"),
    }
}

#[test]
fn inputs_are_validated_with_the_status_a_node_answers() {
    use StatusCode::{InvalidData, MissingData};
    check_inputs(json!({"name": "web"}), Ok(json!({"name": "web", "force": false})));
    check_inputs(
        json!({"name": "web", "force": true, "count": 3}),
        Ok(json!({"name": "web", "force": true, "count": 3})),
    );
    check_inputs(json!({}), Err((MissingData, "input \"name\" is required by demo#act")));
    check_inputs(json!({"name": null}), Err((MissingData, "is required")));
    check_inputs(
        json!({"name": "Web!"}),
        Err((InvalidData, "input \"name\" must match /^[a-z]+$/, got \"Web!\"")),
    );
    check_inputs(
        json!({"name": "abcdefghij"}),
        Err((InvalidData, "is 10 characters, over its maximum length of 8")),
    );
    check_inputs(json!({"name": 5}), Err((InvalidData, "input \"name\" must be a string, got a number (5)")));
    check_inputs(json!({"name": "a", "count": "3"}), Err((InvalidData, "must be an integer")));
    check_inputs(json!({"name": "a", "count": 1.5}), Err((InvalidData, "must be an integer")));
    check_inputs(json!({"name": "a", "size": true}), Err((InvalidData, "must be a number")));
    check_inputs(
        json!({"name": "a", "mode": "medium"}),
        Err((InvalidData, "must be one of fast, slow, got \"medium\"")),
    );
    check_inputs(json!({"name": "a", "tags": "x"}), Err((InvalidData, "must be an array")));
    check_inputs(json!({"name": "a", "extra": []}), Err((InvalidData, "must be an object")));
    check_inputs(json!({"name": "a", "colour": "red"}), Err((InvalidData, "has no input \"colour\"")));
}

/// A definition document that must be refused, and a fragment of why.
fn check_refused(document: Value, fragment: &str) {
    let error =
        Definition::from_json(document.to_string().as_bytes(), "bad.json").expect_err("refused").to_string();
    assert!(error.contains(fragment), "{error} lacks {fragment:?}");
    assert!(error.contains("bad.json"), "{error} does not name the file");
}

#[test]
fn broken_definitions_are_refused_with_the_reason() {
    let meta = json!({"name": "demo", "description": "d"});
    let act = |inputs: Value| json!({"act": {"description": "a", "inputs": inputs}});
    check_refused(
        json!({"metadata": {"name": "Demo!", "description": "d"}, "actions": act(json!({}))}),
        "agent name \"Demo!\"",
    );
    check_refused(json!({"metadata": meta, "actions": {}}), "at least one action");
    check_refused(
        json!({"metadata": {"name": "demo", "description": "d", "timeout": 0}, "actions": act(json!({}))}),
        "timeout",
    );
    check_refused(
        json!({"metadata": meta, "actions": act(json!({"x": {"description": "x", "type": "list"}}))}),
        "needs a \"list\"",
    );
    check_refused(
        json!({"metadata": meta, "actions": act(json!({"x": {"description": "x", "type": "integer", "maxlength": 3}}))}),
        "strings only",
    );
    check_refused(
        json!({"metadata": meta, "actions": act(json!({"x": {"description": "x", "type": "string", "validation": "(["}}))}),
        "validation regex",
    );
    check_refused(
        json!({"metadata": meta, "actions": act(json!({"x": {"description": "x", "type": "integer", "default": "one"}}))}),
        "the default breaks its own rules",
    );
    check_refused(json!({"metadata": meta, "actions": act(json!({})), "extra": 1}), "unknown field");
    check_refused(
        json!({"metadata": meta, "actions": {"act": {"description": "a", "aggregate": [{"function": "sum", "output": "nope"}]}}}),
        "not declared",
    );
    check_refused(
        json!({"metadata": meta, "actions": {"act": {"description": "a", "aggregate": [{"function": "median", "output": "x"}]}}}),
        "median",
    );
}

#[test]
fn definitions_round_trip_through_json() {
    let definition = demo();
    let text = serde_json::to_string(&definition).expect("serializes");
    let again = Definition::from_json(text.as_bytes(), "again").expect("parses again");
    assert_eq!(definition, again);
}

#[test]
fn output_defaults_fill_what_the_agent_left_out() {
    let definition = demo();
    let mut data = Map::from_iter([("count".to_owned(), json!(2))]);
    action(&definition).fill_output_defaults(&mut data);
    assert_eq!(Value::Object(data.clone()), json!({"count": 2, "status": "unknown"}));
    data.insert("surprise".to_owned(), json!(1));
    assert_eq!(action(&definition).undeclared_outputs(&data), ["surprise"]);
}

#[test]
fn aggregates_summarise_outputs_across_nodes() {
    let definition = demo();
    let replies: Vec<Map<String, Value>> = [
        json!({"status": "running", "count": 2}),
        json!({"status": "stopped", "count": 3}),
        json!({"status": "running", "count": "n/a"}),
    ]
    .into_iter()
    .filter_map(|value| value.as_object().cloned())
    .collect();
    let references: Vec<&Map<String, Value>> = replies.iter().collect();
    let summary = action(&definition).summarize(&references);
    assert_eq!(
        summary["status"],
        json!({"function": "summary", "display_as": "Status", "counts": {"running": 2, "stopped": 1}})
    );
    assert_eq!(
        summary["count"],
        json!({"function": "sum", "display_as": "Count", "value": 5, "count": 2, "ignored": 1})
    );
    assert_eq!(summary_lines("count", &summary["count"]), ["Sum of Count: 5"]);

    let average = Aggregate::Average { output: "load".to_owned() };
    let result = average.compute([json!(1.0), json!(2.0)].iter());
    assert_eq!(result["value"], json!(1.5));
    assert_eq!(summary_lines("load", &labelled(result, "Load")), ["Average of Load: 1.50"]);

    let flags = Aggregate::BooleanSummary {
        output: "enabled".to_owned(),
        true_label: "on".to_owned(),
        false_label: "off".to_owned(),
    };
    let result = flags.compute([json!(true), json!(false), json!(true)].iter());
    assert_eq!(result["counts"], json!({"on": 2, "off": 1}));
    assert_eq!(
        summary_lines("enabled", &labelled(result, "Enabled")),
        ["Summary of Enabled:", "   off = 1", "    on = 2"]
    );
}

/// Regression: when every node failed, `baton rpc` printed a "Summary of Status:" header with
/// nothing under it. A summary with nothing to count prints nothing at all.
#[test]
fn a_summary_of_no_replies_prints_nothing() {
    let summary = Aggregate::Summary { output: "status".to_owned() };
    let result = labelled(summary.compute(std::iter::empty()), "Status");
    assert_eq!(summary_lines("status", &result), Vec::<String>::new());
    let aggregates = Map::from_iter([("status".to_owned(), result)]);
    assert_eq!(aggregate_lines(&aggregates), Vec::<String>::new());
}

#[test]
fn every_builtin_definition_is_valid() {
    let names: Vec<String> =
        baton::agents::builtin_definitions().iter().map(|definition| definition.name().to_owned()).collect();
    assert_eq!(names, ["package", "puppet", "resource", "rpcutil", "service"]);
}

/// The shipped definitions' validation regexes are compiled at their first use, not as they
/// are read (an idle node never touches the regex engine); each of them compiles, and a first
/// use compiles it, and each shipped default matches its regex. A definition read from a document has its regexes compiled as it is read
/// (a bad one refuses it: `broken_definitions_are_refused_with_the_reason`).
#[test]
fn builtin_validation_regexes_compile_at_first_use() {
    let mut seen = 0;
    for definition in baton::agents::builtin_definitions() {
        for (action, spec) in &definition.actions {
            for (name, input) in &spec.inputs {
                let Some(validation) = &input.validation else { continue };
                seen += 1;
                let what = format!("{} {action} input {name} /{}/", definition.name(), validation.as_str());
                assert!(!validation.is_compiled(), "{what} compiled when read");
                if let Err(error) = Validation::new(validation.as_str()) {
                    panic!("{what} does not compile: {error}");
                }
                let _ = validation.is_match("");
                assert!(validation.is_compiled(), "{what} not compiled by its first use");
                if let Some(default) = input.default.as_ref().and_then(Value::as_str) {
                    assert!(validation.is_match(default), "{what}: its default {default:?} does not match");
                }
            }
        }
    }
    assert!(seen >= 10, "only {seen} validation regexes in the shipped definitions");
    let read = demo();
    let validation = action(&read).inputs["name"].validation.as_ref().map(Validation::is_compiled);
    assert_eq!(validation, Some(true), "a definition read from a document compiles its regexes");
}

#[test]
fn an_action_is_read_only_only_when_its_definition_says_so() {
    // Absent means "changes something": the console then asks for confirmation.
    assert!(!action(&demo()).read_only);
    let mut document = serde_json::to_value(demo()).expect("serializes");
    assert!(document["actions"]["act"].get("read_only").is_none(), "false is not written out");
    document["actions"]["act"]["read_only"] = json!(true);
    let declared = Definition::from_json(document.to_string().as_bytes(), "test").expect("valid");
    assert!(action(&declared).read_only);
    assert_eq!(serde_json::to_value(&declared).expect("serializes")["actions"]["act"]["read_only"], true);
    document["actions"]["act"]["read_only"] = json!("yes");
    assert!(Definition::from_json(document.to_string().as_bytes(), "test").is_err(), "a boolean only");

    // The built-in agents: what only reads is declared so, what changes anything is not.
    let mut read_only = Vec::new();
    let mut changing = Vec::new();
    for definition in baton::agents::builtin_definitions() {
        for (name, action) in &definition.actions {
            let entry = format!("{}#{name}", definition.name());
            if action.read_only { read_only.push(entry) } else { changing.push(entry) }
        }
    }
    assert_eq!(
        changing,
        [
            "package#install",
            "package#uninstall",
            "package#update",
            "puppet#disable",
            "puppet#enable",
            "puppet#runonce",
            "resource#create",
            "service#restart",
            "service#start",
            "service#stop",
        ]
    );
    // Every rpcutil action only reads (none is in `changing` above), discovery's own included.
    for entry in ["rpcutil#ping", "rpcutil#discover", "rpcutil#definition", "rpcutil#inventory"] {
        assert!(read_only.iter().any(|read| read == entry), "{entry} is not read-only: {read_only:?}");
    }
    for entry in [
        "package#status",
        "puppet#status",
        "puppet#last_run_summary",
        "resource#find",
        "resource#search",
        "service#status",
    ] {
        assert!(read_only.contains(&entry.to_owned()), "{entry} is read-only: {read_only:?}");
    }
}
