//! The filter language as a user sees it: command-line filter flags, the nodes they select, and
//! the error messages for filters that do not parse.
//!
//! Each case is one line: the flags as typed at a shell (`-F 'role=web' -S 'a and b'`), and
//! whether the fixture node below matches, or a fragment of the error message.

use baton::protocol::filter::{
    Filter, FilterError, FilterFlag, FilterSpec, MAX_DEPTH, MAX_EXPRESSION_BYTES, NodeView, dotted_fact,
};
use baton::protocol::{from_cbor, to_cbor};
use serde_json::{Value, json};

/// A node as the filter sees it.
struct Node {
    identity: String,
    classes: Vec<String>,
    agents: Vec<String>,
    facts: Value,
}

impl NodeView for Node {
    fn identity(&self) -> &str {
        &self.identity
    }
    fn has_class(&self, class: &str) -> bool {
        self.classes.iter().any(|own| own == class)
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn fact(&self, dotted_key: &str) -> Option<&Value> {
        dotted_fact(&self.facts, dotted_key)
    }
    fn has_agent(&self, agent: &str) -> bool {
        self.agents.iter().any(|own| own == agent)
    }
    fn agents(&self) -> &[String] {
        &self.agents
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// The node every case is checked against.
fn web01() -> Node {
    Node {
        identity: "web01.example.com".into(),
        classes: strings(&["apache", "ntp", "role::web", "profile::base"]),
        agents: strings(&["rpcutil", "service", "package", "puppet"]),
        facts: json!({
            "role": "web",
            "environment": "production",
            "processorcount": 8,
            "temperature": -5,
            "memorysize_mb": "2048.5",
            "uptime_days": "12",
            "kernelversion": "5.10.0",
            "version": "1.10",
            "is_virtual": true,
            "motd": "hello world",
            "path": "/usr/local/bin",
            "quote": "it's",
            "empty": "",
            "nothing": null,
            "tags": ["frontend", "public", "nginx"],
            "interfaces": { "eth0": { "ip": "10.0.0.5" }, "lo": { "ip": "127.0.0.1" } },
            "os": { "family": "Debian", "release": { "major": "12", "full": "12.5" } },
            "os.flat": "a flat key with a dot",
            "disks": [ { "name": "sda", "size": 500 }, { "name": "sdb", "size": 2000 } ],
        }),
    }
}

/// Splits a command line the way a POSIX shell does for the cases here: whitespace separates
/// words, `'...'` is literal, `"..."` is literal except that `\"` and `\\` are escapes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            character if character.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                for quoted in characters.by_ref() {
                    if quoted == '\'' {
                        break;
                    }
                    current.push(quoted);
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                while let Some(quoted) = characters.next() {
                    match quoted {
                        '"' => break,
                        '\\' => current.extend(characters.next()),
                        other => current.push(other),
                    }
                }
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(word);
    words
}

/// The spec that `baton` would build from these filter flags.
fn spec(line: &str) -> FilterSpec {
    let mut spec = FilterSpec::default();
    let mut words = shell_words(line).into_iter();
    while let Some(flag) = words.next() {
        let value = words.next().unwrap_or_else(|| panic!("flag {flag} has no value in {line:?}"));
        let list = match flag.as_str() {
            "-I" => &mut spec.identity,
            "-C" => &mut spec.class,
            "-F" => &mut spec.fact,
            "-A" => &mut spec.agent,
            "-S" => &mut spec.select,
            other => panic!("unknown flag {other} in {line:?}"),
        };
        list.push(value);
    }
    spec
}

fn compile(line: &str) -> Filter {
    Filter::compile(&spec(line)).unwrap_or_else(|error| panic!("{line:?} should compile: {error}"))
}

#[track_caller]
fn check(line: &str, expected: bool) {
    let filter = compile(line);
    assert_eq!(filter.matches(&web01()), expected, "{line:?} (read as: {filter})");
}

fn compile_error(spec: &FilterSpec) -> FilterError {
    match Filter::compile(spec) {
        Ok(filter) => panic!("{spec:?} should not compile, but reads as: {filter}"),
        Err(error) => error,
    }
}

#[track_caller]
fn check_err(line: &str, fragment: &str) {
    let message = compile_error(&spec(line)).to_string();
    assert!(
        message.contains(fragment),
        "{line:?}: expected an error containing {fragment:?}, got {message:?}"
    );
}

#[test]
fn the_empty_filter_matches_every_node() {
    check("", true);
    assert!(compile("").is_empty());
    assert!(!compile("-C apache").is_empty());
}

#[test]
fn identity_is_exact_or_a_regex_and_several_are_ored() {
    check("-I web01.example.com", true);
    check("-I web01", false);
    check("-I ' web01.example.com '", true);
    check(r"-I '/^web\d+\./'", true);
    check("-I /^db/", false);
    check("-I db01 -I web01.example.com", true);
    check("-I db01 -I /^web/", true);
    check("-I db01 -I db02", false);
}

#[test]
fn classes_are_exact_or_regex_and_several_are_anded() {
    check("-C apache", true);
    check("-C nginx", false);
    check("-C role::web", true);
    check("-C /^role::/", true);
    check("-C /^role::db/", false);
    check("-C apache -C ntp", true);
    check("-C apache -C nginx", false);
}

#[test]
fn agents_are_exact_or_regex_and_several_are_anded() {
    check("-A service", true);
    check("-A mysql", false);
    check("-A /^pup/", true);
    check("-A service -A mysql", false);
}

#[test]
fn fact_equality_and_inequality() {
    check("-F role=web", true);
    check("-F role==web", true);
    check("-F 'role = web'", true);
    check("-F role=db", false);
    check("-F role=WEB", false);
    check("-F Role=web", false);
    check("-F role!=db", true);
    check("-F role!=web", false);
    check("-F 'motd=hello world'", true);
    check(r#"-F 'motd="hello world"'"#, true);
    check(r#"-F "quote=\"it's\"""#, true);
    check(r#"-F 'empty=""'"#, true);
    check(r#"-F "empty=''""#, true);
    check(r#"-F 'role=""'"#, false);
}

#[test]
fn fact_regexes() {
    check("-F 'role=/^(web|db)$/'", true);
    check("-F 'role==/^(web|db)$/'", true);
    check("-F 'role=/^db/'", false);
    check("-F 'role=~^w'", true);
    check("-F 'role=~/^w/'", true);
    check("-F 'role=~eb'", true); // unanchored, like MCollective
    check("-F 'role=~^eb'", false);
    check("-F 'role!=/^db/'", true);
    check("-F 'role!=/^web$/'", false);
    check(r#"-F 'role=~"^w"'"#, true);
    // A path is text unless it ends with a slash; quotes keep even that literal.
    check("-F path=/usr/local/bin", true);
    check("-F path=/local/", true);
    check(r#"-F 'path="/usr/local/bin"'"#, true);
    check(r#"-F 'path="/local/"'"#, false);
    check("-F 'processorcount=~^8$'", true);
    check("-F 'is_virtual=~^t'", true);
}

#[test]
fn numbers_compare_numerically_and_text_as_text() {
    check("-F processorcount=8", true);
    check("-F processorcount==8.0", true);
    check("-F processorcount!=8", false);
    check("-F processorcount!=9", true);
    check("-F processorcount>4", true);
    check("-F processorcount>=8", true);
    check("-F processorcount>8", false);
    check("-F processorcount<16", true); // as text, "8" < "16" would be false
    check("-F processorcount<=7", false);
    check("-F temperature<0", true);
    check("-F temperature>-10", true);
    check("-F uptime_days>9", true); // a numeric string fact; as text "12" < "9"
    check("-F memorysize_mb>2048", true);
    check("-F memorysize_mb<2048.6", true);
    check("-F memorysize_mb<1e4", true);
    // `==` on a text fact stays text, so versions do not collapse into floats.
    check("-F version==1.1", false);
    check("-F version==1.10", true);
    check("-F kernelversion>4.9.0", true);
    check("-F kernelversion<4.9.0", false);
    check("-F role<x", true);
    check("-F role>x", false);
    // MCollective's legacy spellings.
    check("-F 'processorcount=>8'", true);
    check("-F 'processorcount=<7'", false);
}

#[test]
fn booleans_compare_as_true_and_false() {
    check("-F is_virtual=true", true);
    check("-F is_virtual=false", false);
    check("-F is_virtual!=false", true);
}

#[test]
fn dotted_keys_reach_into_structured_facts() {
    check("-F os.family=Debian", true);
    check("-F os.family=RedHat", false);
    check("-F os.release.major=12", true);
    check("-F os.release.major>=11", true);
    check("-F os.release.full<12.10", false); // numeric: 12.5 > 12.1
    check("-F disks.1.size>1000", true);
    check("-F disks.0.size>1000", false);
    check("-F disks.2.size>0", false);
    check("-F 'os.flat=a flat key with a dot'", true);
    check("-F os.missing=x", false);
    check("-F os.family.deeper=x", false);
}

#[test]
fn object_facts_match_on_their_keys() {
    check("-F interfaces=eth0", true);
    check("-F interfaces=eth1", false);
    check("-F 'interfaces=~^lo$'", true);
}

#[test]
fn array_facts_match_when_any_element_does() {
    check("-F tags=public", true);
    check("-F tags=private", false);
    check("-F 'tags=~^ng'", true);
    check("-F tags>nginx", true);
    // `!=` is the opposite of `==`: no element may equal the value.
    check("-F tags!=public", false);
    check("-F tags!=private", true);
}

#[test]
fn a_fact_the_node_lacks_never_matches() {
    check("-F nosuch=x", false);
    check("-F nosuch!=x", false);
    check("-F 'nosuch!=/x/'", false);
    check("-F nosuch<5", false);
    check("-F nothing=null", false); // null is as good as absent
    check("-F nothing!=x", false);
    check("-S 'nosuch!=x'", false);
    check("-S 'not nosuch=x'", true);
}

#[test]
fn different_flags_and_several_facts_are_anded() {
    check("-F role=web -F environment=production", true);
    check("-F role=web -F environment=staging", false);
    check("-I web01.example.com -C apache -F role=web -A service", true);
    check("-I web01.example.com -C apache -F role=db", false);
    check("-I /^db/ -C apache", false);
    check("-I db01 -I web01.example.com -A mysql", false);
    check("-S apache -F role=db", false);
}

#[test]
fn select_terms_are_classes_and_comparisons() {
    check("-S apache", true);
    check("-S nginx", false);
    check("-S '/^role::/'", true);
    check("-S '/^role::db/'", false);
    check(r#"-S '"apache"'"#, true);
    check("-S 'role=web'", true);
    check("-S 'role = web'", true);
    check("-S 'role =~ /^w/'", true);
    check("-S 'role=/^(web|db)$/'", true);
    check("-S 'processorcount>=8 and os.family=Debian'", true);
    check(r#"-S 'motd="hello world"'"#, true);
    check(r#"-S "motd='hello world' and apache""#, true);
    check("-S 'motd=/hello wor/ and apache'", true);
    check(r#"-S 'path="/usr/local/bin"'"#, true);
    check(r"-S 'path=/\/usr\/local/'", true);
    check("-S 'identity(/^web/) and agent(service)'", true);
    check("-S 'identity(db01) or class(apache)'", true);
    check(r#"-S 'identity("web01.example.com")'"#, true);
    check("-S 'not agent(puppet)'", false);
}

#[test]
fn select_operators_and_precedence() {
    check("-S 'apache and role=web'", true);
    check("-S 'apache and role=db'", false);
    check("-S 'nginx or role=web'", true);
    check("-S 'nginx or role=db'", false);
    check("-S 'not nginx'", true);
    check("-S '!nginx'", true);
    check("-S '! apache'", false);
    check("-S 'not not apache'", true);
    // `and` binds tighter than `or`, `not` tighter than both.
    check("-S 'nginx and role=db or apache'", true);
    check("-S 'apache or nginx and role=db'", true);
    check("-S 'not apache or ntp'", true);
    check("-S 'not apache and nginx'", false);
    check("-S '(nginx or apache) and role=db'", false);
    check("-S 'nginx or (apache and role=web)'", true);
    check("-S '((apache))'", true);
    check("-S 'not (apache and ntp)'", false);
    check("-S '!(nginx)'", true);
    check("-S '(apache)and(ntp)'", true);
    check("-S '(role=web)or(nginx)'", true);
}

#[test]
fn several_selects_are_anded() {
    check("-S apache -S nginx", false);
    check("-S apache -S ntp", true);
}

#[test]
fn nesting_up_to_the_limit_is_fine() {
    let parens = format!("{}apache{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    let nots = format!("{}apache", "not ".repeat(MAX_DEPTH));
    let filter = Filter::compile(&FilterSpec { select: vec![parens, nots], ..FilterSpec::default() })
        .expect("nesting at the limit compiles");
    assert!(filter.matches(&web01()));
}

#[test]
fn fact_filter_errors() {
    check_err(
        "-F role",
        r#"invalid fact filter "role": expected KEY<op>VALUE with one of == != < > <= >= =~"#,
    );
    check_err("-F 'role web'", "expected KEY<op>VALUE");
    check_err("-F =web", "missing fact name before the operator at column 1");
    check_err("-F role~web", r#"unknown operator "~" at column 5"#);
    check_err("-F role!web", r#"unknown operator "!""#);
    // Regression: `rack>>1` was read as `>` with the value `>1` and silently matched nothing.
    check_err("-F 'rack>>1'", r#"unknown operator ">>" at column 5"#);
    check_err("-F 'rack=!1'", r#"unknown operator "=!" at column 5"#);
    check_err("-S 'rack>>1'", r#"unknown operator ">>" at column 5"#);
    check_err("-F role=", r#"missing value after "=" at column 5"#);
    check_err("-F 'role=~/[/'", "bad regex /[/: unclosed character class");
    check_err("-F 'role=~['", "bad regex /[/: unclosed character class");
    check_err("-F 'role=//'", "bad regex //: it is empty");
    check_err(r#"-F 'role="web'"#, "the quote at column 6 is never closed");
    check_err(r#"-F 'role="web" x'"#, r#"unexpected "x" at column 12"#);
    check_err("-F 'ro le=web'", r#"fact name "ro le" contains whitespace"#);
}

#[test]
fn name_filter_errors() {
    check_err("-I ''", r#"invalid identity filter "": it is empty"#);
    check_err("-I 'web01 web02'", "contains whitespace; give each name its own -I");
    check_err("-C '/(/'", "invalid class filter \"/(/\": bad regex /(/:");
    check_err("-A ' '", "invalid agent filter");
    check_err("-I //", "bad regex //: it is empty");
}

#[test]
fn select_errors() {
    check_err(
        "-S 'a and (b'",
        r#"invalid select expression "a and (b": missing ")" to close the "(" at column 7"#,
    );
    check_err("-S 'a and b)'", r#"the ")" at column 8 has no matching "(""#);
    check_err("-S 'a b'", r#"unexpected "b" at column 3; expected "and" or "or" between terms"#);
    check_err("-S '(a b)'", r#"unexpected "b" at column 4; expected "and", "or" or ")""#);
    check_err("-S 'a and'", "it ends too early; expected a class, a fact comparison");
    check_err("-S 'and a'", r#"unexpected "and" at column 1"#);
    check_err("-S '()'", r#"unexpected ")" at column 2"#);
    check_err("-S 'a or or b'", r#"unexpected "or" at column 6"#);
    check_err("-S '  '", "it is empty");
    check_err("-S 'role=/web'", "the regex that starts with / at column 6 has no closing /");
    check_err(
        "-S 'path=/usr/bin'",
        r#"unexpected "bin" at column 11 right after a value; quote values that contain / or spaces"#,
    );
    check_err("-S 'role=)'", r#"missing value after "=""#);
    check_err(r#"-S 'role="web'"#, "the quote at column 6 is never closed");
    check_err("-S 'role~web'", r#"unknown operator "~" at column 5"#);
    check_err("-S 'role=~/(/'", "bad regex /(/");
    check_err("-S '=web'", "missing fact name before the operator at column 1");
    check_err("-S 'a and !=web'", "missing fact name before the operator at column 7");
    check_err("-S 'identity(a b)'", r#"unexpected "b)" at column 12; expected ")""#);
    check_err("-S 'agent(service'", r#"missing ")" to close the "(" at column 6"#);
    check_err("-S 'apache !web'", r#"unexpected "!" at column 8"#);
}

#[test]
fn hostile_filters_are_refused_within_limits() {
    let too_deep = format!("{}a{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
    let too_many_nots = format!("{}a", "! ".repeat(500));
    for select in [too_deep, too_many_nots] {
        let error = compile_error(&FilterSpec { select: vec![select], ..FilterSpec::default() });
        assert!(error.to_string().contains("more than 64 levels deep"), "{error}");
    }

    let long_fact = format!("role={}", "x".repeat(MAX_EXPRESSION_BYTES));
    let error = compile_error(&FilterSpec { fact: vec![long_fact], ..FilterSpec::default() });
    assert!(error.to_string().contains("4101 bytes long, over the limit of 4096"), "{error}");
    assert!(error.source_text.len() < 200, "a long filter is shortened in messages: {}", error.source_text);

    let error = compile_error(&FilterSpec {
        fact: vec![format!("role={}", "x".repeat(4000)); 5],
        ..FilterSpec::default()
    });
    assert!(error.to_string().contains("add up to more than 16384 bytes"), "{error}");

    let error = compile_error(&FilterSpec { identity: vec!["/a/".to_owned(); 33], ..FilterSpec::default() });
    assert!(error.to_string().contains("more than 32 regular expressions"), "{error}");

    check_err(r"-I '/(?:\w{1000}){1000}/'", "needs more than 524288 bytes once compiled");
    check_err(
        "-I '/((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))/'",
        "bad regex",
    );
}

#[test]
fn errors_name_the_flag_and_point_at_the_column() {
    let error = compile_error(&spec("-S 'apache and (role=web'"));
    assert_eq!(error.flag, FilterFlag::Select);
    assert_eq!(error.column(), Some(12));
    assert_eq!(error.caret().as_deref(), Some("apache and (role=web\n           ^"));

    let error = compile_error(&spec("-F role"));
    assert_eq!(error.flag, FilterFlag::Fact);
    assert_eq!(error.column(), None);
    assert_eq!(error.caret(), None);

    // Columns count characters, not bytes.
    let error = compile_error(&spec("-S 'rôle~web'"));
    assert_eq!(error.column(), Some(5));
}

#[test]
fn plain_identities_only_for_plain_identity_filters() {
    let plain = |line: &str| compile(line).plain_identities();
    assert_eq!(plain("-I web01 -I web02"), Some(strings(&["web01", "web02"])));
    assert_eq!(plain("-I ' web01 '"), Some(strings(&["web01"])));
    assert_eq!(plain("-I web01 -I /^db/"), None);
    assert_eq!(plain("-I web01 -C apache"), None);
    assert_eq!(plain("-I web01 -F role=web"), None);
    assert_eq!(plain("-I web01 -A service"), None);
    assert_eq!(plain("-I web01 -S apache"), None);
    assert_eq!(plain("-C apache"), None);
    assert_eq!(plain(""), None);
}

#[test]
fn describe_explains_the_filter_in_words() {
    for (line, expected) in [
        ("", "every node"),
        ("-I web01", r#"identity is "web01""#),
        ("-I web01 -I /^db/", r#"(identity is "web01" or identity matches /^db/)"#),
        (
            "-C apache -C /^role::/ -A service -A /^pup/",
            r#"has class "apache" and has a class matching /^role::/ and has agent "service" and has an agent matching /^pup/"#,
        ),
        (
            "-F os.family=Debian -F 'cpus>=4' -F 'role!=/^db/' -F 'motd<hello'",
            r#"fact os.family is "Debian" and fact cpus is at least 4 and fact role does not match /^db/ and fact motd is less than "hello""#,
        ),
        (
            "-S 'a or not (b and c) and identity(x)' -S 'd or e'",
            r#"(has class "a" or not (has class "b" and has class "c") and identity is "x") and (has class "d" or has class "e")"#,
        ),
    ] {
        let filter = compile(line);
        assert_eq!(filter.describe(), expected, "{line:?}");
        assert_eq!(filter.to_string(), expected, "{line:?}");
    }
}

#[test]
fn matches_through_a_trait_object() {
    let node = web01();
    let view: &dyn NodeView = &node;
    assert!(compile("-F role=web").matches(view));
    assert!(!compile("-F role=db").matches(view));
}

#[test]
fn filter_spec_round_trips_through_cbor() {
    for line in [
        "",
        "-I web01",
        "-I web01 -I /^db/ -C apache -F 'role=/^(web|db)$/' -A service -S 'a and (b or not c)'",
        r#"-F 'motd="hello world"' -S 'rôle=~"ü"'"#,
    ] {
        let original = spec(line);
        let bytes = to_cbor(&original);
        let decoded: FilterSpec =
            from_cbor(&bytes, 1024 * 1024, "filter").expect("a spec decodes from its own CBOR");
        assert_eq!(decoded, original, "{line:?}");
        assert_eq!(Filter::compile(&decoded).is_ok(), Filter::compile(&original).is_ok());
    }
    // Empty lists are left out on the wire: the empty spec is an empty CBOR map.
    assert_eq!(to_cbor(&FilterSpec::default()), vec![0xa0]);
    assert!(FilterSpec::default().is_empty());
}

/// Filter text comes from the network: any text must compile or be refused with an error,
/// never panic, and a compiled filter must match and describe without panicking. This is the
/// fuzz target's property (`fuzz/fuzz_targets/filter.rs`) on a fixed, reproducible sample, so
/// that it also runs on stable in every `cargo test`.
#[test]
fn token_soup_never_panics() {
    let tokens: Vec<&str> = concat!(
        r#"( ) and or not ! role = == != < >= => =~ ~ /^w/ / " ' \ web 8 -3 1.5e2 "#,
        r#"os.family tags disks.1 identity( agent( class( ü é/ nosuch . [ {2}"#,
    )
    .split(' ')
    .collect();
    // A fixed linear congruential generator: the same sample on every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: usize| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % bound
    };
    let node = web01();
    let (mut compiled, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..=next(12) {
            text.push_str(tokens[next(tokens.len())]);
            if next(3) > 0 {
                text.push(' ');
            }
        }
        let mut spec = FilterSpec::default();
        match next(5) {
            0 => spec.identity.push(text),
            1 => spec.class.push(text),
            2 => spec.fact.push(text),
            3 => spec.agent.push(text),
            _ => spec.select.push(text),
        }
        match Filter::compile(&spec) {
            Ok(filter) => {
                compiled += 1;
                filter.matches(&node);
                assert!(!filter.describe().is_empty());
            }
            Err(error) => {
                refused += 1;
                assert!(!error.to_string().is_empty());
                let _ = error.caret();
            }
        }
    }
    // The sample must exercise both paths to mean anything.
    assert!(compiled > 1000 && refused > 1000, "{compiled} compiled, {refused} refused");
}
