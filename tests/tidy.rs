//! Tidy: the rules of docs/STYLE.md and docs/ARCHITECTURE.md that a machine can check, on every
//! `cargo test`. Each failure names the rule it enforces and the file (and line) that breaks it.
//!
//! The rules: a `//!` doc on every module; `protocol` and `security` do no I/O; only `broker`
//! knows AMQP or STOMP; no `unwrap()` in library code; secrets are compared in one place; the
//! import table ([`ALLOWED_IMPORTS`], the dependency rules of docs/ARCHITECTURE.md); and no
//! test returns early on a missing environment variable.

use std::path::{Path, PathBuf};

fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `path` relative to the repository, as a person types it.
fn relative(path: &Path) -> &Path {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a file without its `#[cfg(test)]` module, which may use test-only shortcuts,
/// and without comments, which may name what the code deliberately does not use.
fn non_test_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]") {
        Some(index) => &text[..index],
        None => text,
    };
    code.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let missing: Vec<String> = source_files(&src())
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("read source");
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "rule: every module starts with a `//!` doc saying what it is for (docs/STYLE.md, Modules). Missing in:\n{}",
        missing.join("\n")
    );
}

#[test]
fn protocol_and_security_do_no_io_and_know_no_broker() {
    let mut violations = Vec::new();
    for module in ["protocol", "security"] {
        for path in source_files(&src().join(module)) {
            let text = std::fs::read_to_string(&path).expect("read source");
            for forbidden in ["lapin", "tokio", "crate::broker", "crate::node", "crate::client", "crate::cli"]
            {
                if non_test_code(&text).contains(forbidden) {
                    violations.push(format!("{} uses {forbidden}", path.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "rule: `protocol` and `security` do no I/O and never import lapin, tokio or higher modules (docs/ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn only_broker_knows_amqp_or_stomp() {
    let violations: Vec<String> = source_files(&src())
        .into_iter()
        .filter(|path| !path.starts_with(src().join("broker")))
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("read source");
            non_test_code(&text).contains("lapin::")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        violations.is_empty(),
        "rule: `broker` is the only module that knows AMQP or STOMP exist (docs/ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_unwrap_outside_tests() {
    let mut violations = Vec::new();
    for path in source_files(&src()) {
        let text = std::fs::read_to_string(&path).expect("read source");
        for (number, line) in non_test_code(&text).lines().enumerate() {
            if line.contains(".unwrap()") {
                violations.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "rule: no `unwrap()` in library code; data off the network is handled, and a remaining `expect` states its invariant (docs/STYLE.md, Hostile input):\n{}",
        violations.join("\n")
    );
}

/// Regression, review of issue 13 (finding 11): programs the node started inherited systemd's
/// `NOTIFY_SOCKET` and the rest of the daemon's own environment. `agents::command::new` (and
/// `new_blocking`) leave those variables out, so every program is started through them; only
/// the CLI's own code, which has no such variables, may use `Command::new`.
#[test]
fn programs_are_started_only_through_agents_command() {
    let exempt = [src().join("cli"), src().join("bin"), src().join("agents/command.rs")];
    let mut violations = Vec::new();
    for path in source_files(&src()) {
        if exempt.iter().any(|exempt| path.starts_with(exempt)) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for (number, line) in non_test_code(&text).lines().enumerate() {
            if line.contains("Command::new(") {
                violations.push(format!("{}:{}: {}", relative(&path).display(), number + 1, line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "rule: the node starts programs only through agents::command::new or new_blocking, which leave the daemon's own variables (NOTIFY_SOCKET, BATON_*, ...) out of a child's environment (docs/ARCHITECTURE.md, agents):\n{}",
        violations.join("\n")
    );
}

/// Which modules each module of `src/` may import, as docs/ARCHITECTURE.md states them.
///
/// An entry names a module (`"protocol"`: anything in it), a submodule (`"agents::catalog"`:
/// that part only), or a module followed by `::` (`"console::"`: only what the module's root
/// defines or re-exports, never its submodules: the module's front door).
const ALLOWED_IMPORTS: &[(&str, &[&str])] = &[
    ("protocol", &[]),
    ("logging", &[]),
    ("security", &["protocol", "logging"]),
    ("broker", &["security::tls"]),
    ("agents", &["protocol", "security::file_trust"]),
    ("config", &["protocol", "security", "broker", "agents"]),
    ("node", &["protocol", "security", "broker", "agents", "config"]),
    ("client", &["protocol", "security", "broker", "config", "agents::catalog"]),
    ("console", &["protocol", "security", "broker", "config", "client", "agents::catalog"]),
    ("cli", &["protocol", "logging", "security", "config", "client", "agents::catalog", "console::"]),
];

/// Every path into the crate that `code` names, with its 1-based line: `crate::a::b` and the
/// items of `crate::{a::b, c}` groups as `["a", "b"]` and `["c"]`, and `super::` paths that
/// climb `depth` + 1 levels (out of the module) counted as `crate::`.
fn crate_paths(code: &str, depth: usize) -> Vec<(usize, Vec<String>)> {
    let to_root = "super::".repeat(depth + 1);
    let mut found = Vec::new();
    for (index, line) in code.lines().enumerate() {
        for prefix in ["crate::", to_root.as_str()] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().next_back();
                let after = &rest[at + prefix.len()..];
                rest = after;
                // `$crate::`, `mycrate::`, a deeper `super::super::` than the one sought.
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                    continue;
                }
                for path in expand_group(after) {
                    // An inline `mod` climbs one level less than its file: a `super::` path
                    // leaves the module only when it names another top-level module.
                    let leaves = prefix == "crate::" || path.first().is_some_and(|first| is_module(first));
                    if leaves {
                        found.push((index + 1, path));
                    }
                }
            }
        }
    }
    found
}

/// The paths that the text after `crate::` names: `a::b::C` is one, `{a::b, c::{d, e}}` three.
fn expand_group(text: &str) -> Vec<Vec<String>> {
    let segment: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if !segment.is_empty() {
        let rest = &text[segment.len()..];
        let mut paths = match rest.strip_prefix("::") {
            Some(deeper) => expand_group(deeper),
            None => vec![Vec::new()],
        };
        for path in &mut paths {
            path.insert(0, segment.clone());
        }
        return paths;
    }
    let Some(inner) = text.strip_prefix('{') else { return vec![Vec::new()] };
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&inner[start..at]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.into_iter().map(str::trim).filter(|item| !item.is_empty()).flat_map(expand_group).collect()
}

/// Whether `path` (below `crate::`) is one that `entry` of [`ALLOWED_IMPORTS`] allows.
fn allows(entry: &str, path: &[String]) -> bool {
    if let Some(module) = entry.strip_suffix("::") {
        // The module's front door: an item of its root, not a submodule.
        return path.first().is_some_and(|first| first == module)
            && path.get(1).is_some_and(|item| !is_submodule(module, item));
    }
    let wanted: Vec<&str> = entry.split("::").collect();
    path.len() >= wanted.len() && wanted.iter().zip(path).all(|(wanted, segment)| segment == wanted)
}

fn is_module(name: &str) -> bool {
    name != "bin" && src().join(name).is_dir()
}

fn is_submodule(module: &str, name: &str) -> bool {
    let dir = src().join(module);
    dir.join(format!("{name}.rs")).exists() || dir.join(name).join("mod.rs").exists()
}

/// How many module levels `path` sits below its top-level module (`src/node/facts/mod.rs` is
/// `node::facts`: 1; `src/node/facts/source.rs`: 2).
fn module_depth(module_dir: &Path, path: &Path) -> usize {
    let relative = path.strip_prefix(module_dir).expect("a file of the module");
    let parts = relative.components().count();
    if relative.ends_with("mod.rs") { parts - 1 } else { parts }
}

/// The import-table violations in the files of `src/<module>`, each as `file:line: path`.
fn import_violations(module: &str, allowed: &[&str]) -> Vec<String> {
    let module_dir = src().join(module);
    let mut violations = Vec::new();
    for path in source_files(&module_dir) {
        let text = std::fs::read_to_string(&path).expect("read source");
        for (line, crate_path) in crate_paths(&non_test_code(&text), module_depth(&module_dir, &path)) {
            let Some(target) = crate_path.first() else { continue };
            if target == module || allowed.iter().any(|entry| allows(entry, &crate_path)) {
                continue;
            }
            let may: Vec<String> = allowed
                .iter()
                .map(|entry| match entry.strip_suffix("::") {
                    Some(module) => format!("{module} (its root only)"),
                    None => entry.to_string(),
                })
                .collect();
            violations.push(format!(
                "{}:{line}: `{module}` imports `crate::{}` (it may import: {})",
                relative(&path).display(),
                crate_path.join("::"),
                if may.is_empty() { "nothing of the crate".to_owned() } else { may.join(", ") }
            ));
        }
    }
    violations
}

#[test]
fn modules_import_only_what_the_architecture_allows() {
    let mut violations = Vec::new();
    for (module, allowed) in ALLOWED_IMPORTS {
        violations.extend(import_violations(module, allowed));
    }
    assert!(
        violations.is_empty(),
        "rule: a module imports only the modules the table in docs/ARCHITECTURE.md (\"Who imports whom\") allows it; move the code, or change the rule there and in ALLOWED_IMPORTS of tests/tidy.rs:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_table_covers_every_module() {
    let mut modules: Vec<String> = std::fs::read_dir(src())
        .expect("read src")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_dir() && !path.ends_with("bin"))
        .filter_map(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
        .collect();
    modules.sort();
    let mut listed: Vec<String> = ALLOWED_IMPORTS.iter().map(|(module, _)| module.to_string()).collect();
    listed.sort();
    assert_eq!(
        modules, listed,
        "rule: every module of src/ has a row in ALLOWED_IMPORTS (tests/tidy.rs) and in docs/ARCHITECTURE.md's import table"
    );
}

#[test]
fn the_import_table_reads_paths_as_rust_does() {
    let paths = |code: &str, depth: usize| -> Vec<String> {
        crate_paths(code, depth).into_iter().map(|(_, path)| path.join("::")).collect()
    };
    assert_eq!(paths("use crate::broker::Broker;", 0), ["broker::Broker"]);
    assert_eq!(
        paths("use crate::{broker::{Broker, Destination}, protocol::Request};", 0),
        ["broker::Broker", "broker::Destination", "protocol::Request"]
    );
    assert_eq!(paths("let x = crate::config::host_name();", 0), ["config::host_name"]);
    assert_eq!(paths("use super::store::Store;", 1), Vec::<String>::new());
    assert_eq!(paths("use super::super::cli::run;", 1), ["cli::run"]);
    assert_eq!(paths("use super::cli::run;", 0), ["cli::run"]);
    assert_eq!(paths("$crate::x; mycrate::y", 0), Vec::<String>::new());
    // Inside an inline `mod defaults` of config/mod.rs, `super::` is config itself.
    assert_eq!(paths("use super::SchemeKind;", 0), Vec::<String>::new());
    assert!(allows("console::", &["console".into(), "PublicOrigin".into()]));
    assert!(!allows("console::", &["console".into(), "auth".into(), "PublicOrigin".into()]));
    assert!(allows("agents::catalog", &["agents".into(), "catalog".into(), "Catalog".into()]));
    assert!(!allows("agents::catalog", &["agents".into(), "puppet".into()]));
}

/// Test files that return early when an environment variable is missing, as `file:line: code`.
/// Such a test passes without running: it must run (start what it needs) or fail saying what
/// is missing.
fn early_returns_on_missing_variables(dir: &Path) -> Vec<String> {
    let mut violations = Vec::new();
    // This file holds the rule's own examples, as string literals the self-test feeds it.
    let this_file = Path::new(file!()).file_name();
    for path in source_files(dir).into_iter().filter(|path| path.file_name() != this_file) {
        let text = std::fs::read_to_string(&path).expect("read test source");
        let code: Vec<&str> = text.lines().map(|line| line.split("//").next().unwrap_or("")).collect();
        for index in early_returns(&code) {
            violations.push(format!("{}:{}: {}", relative(&path).display(), index + 1, code[index].trim()));
        }
    }
    violations
}

/// The (0-based) lines of `code` that read an environment variable, or call a helper that
/// does, in a statement that returns.
fn early_returns(code: &[&str]) -> Vec<usize> {
    // Functions that turn a variable's absence into a value (`env::var(..).ok()`,
    // `let Ok(..) = env::var(..)`): a caller returning early on their result does the same.
    let helpers = variable_helpers(code);
    let calls_helper = |line: &str| {
        helpers
            .iter()
            .any(|helper| line.contains(&format!("{helper}(")) && !line.contains(&format!("fn {helper}(")))
    };
    (0..code.len())
        .filter(|&index| {
            let line = code[index];
            let reads_variable = line.contains("env::var(") || line.contains("env::var_os(");
            (reads_variable || calls_helper(line)) && statement(code, index).contains("return")
        })
        .collect()
}

/// The statement that starts on line `index`: that line, the more indented lines that continue
/// it, and the closing line at its own indentation (`}` or `};`), as rustfmt lays code out.
fn statement(code: &[&str], index: usize) -> String {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let own = indent(code[index]);
    let mut text = code[index].to_owned();
    for line in &code[index + 1..] {
        if line.trim().is_empty() || indent(line) > own {
            text.push('\n');
            text.push_str(line);
        } else {
            if line.trim_start().starts_with('}') {
                text.push('\n');
                text.push_str(line);
            }
            break;
        }
    }
    text
}

/// Names of functions whose body captures an environment variable's absence as a value.
fn variable_helpers(code: &[&str]) -> Vec<String> {
    let mut helpers = Vec::new();
    let mut current: Option<String> = None;
    for line in code {
        let trimmed = line.trim_start();
        if let Some(after) = trimmed.split("fn ").nth(1).filter(|_| trimmed.contains("fn ")) {
            current = Some(after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
        let captures = (line.contains("env::var(") || line.contains("env::var_os("))
            && (line.contains(".ok()") || line.contains("let Ok(") || line.contains("let Some("));
        if captures && let Some(name) = &current {
            helpers.push(name.clone());
        }
    }
    helpers.sort();
    helpers.dedup();
    helpers
}

#[test]
fn no_test_returns_early_on_a_missing_environment_variable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut violations = early_returns_on_missing_variables(&root.join("tests"));
    violations.extend(early_returns_on_missing_variables(&root.join("integration")));
    assert!(
        violations.is_empty(),
        "rule: no test returns early because an environment variable is missing; such a test passes without running. Start what it needs (bin/broker env gives the private brokers' URLs) or fail with a message saying what to set (docs/STYLE.md, Tests):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_early_return_rule_sees_the_usual_shapes() {
    let check = |code: &str, expected: usize| {
        let lines: Vec<&str> = code.lines().collect();
        assert_eq!(early_returns(&lines).len(), expected, "{code}");
    };
    check("    if std::env::var(\"X\").is_err() {\n        return;\n    }\n    run();", 1);
    check(
        "    let Ok(url) = std::env::var(\"X\") else {\n        eprintln!(\"skipped\");\n        return;\n    };",
        1,
    );
    check("    let Ok(url) = env::var(\"X\") else { return };", 1);
    check(
        "fn url() -> Option<String> {\n    std::env::var(\"X\").ok()\n}\nfn t() {\n    let Some(url) = url() else { return };\n}",
        1,
    );
    // Reading a variable to choose, not to skip, is fine.
    check(
        "    if std::env::var(\"STRICT\").is_ok_and(|v| v == \"1\") {\n        panic!(\"missing\");\n    }",
        0,
    );
    check("    let dir = std::env::var(\"D\").unwrap_or_else(|_| \"/tmp\".into());\n    return;", 0);
    // A test that reads a variable itself is no helper to its own signature.
    check("async fn t() {\n    let Ok(u) = std::env::var(\"X\") else {\n        return;\n    };\n}", 1);
}

#[test]
fn secrets_are_compared_in_one_place() {
    let home = src().join("security").join("constant_time.rs");
    let mut violations = Vec::new();
    for path in source_files(&src()).into_iter().filter(|path| *path != home) {
        let text = std::fs::read_to_string(&path).expect("read source");
        for (number, line) in non_test_code(&text).lines().enumerate() {
            // Another constant-time comparison: the hmac crate's, subtle's, or one of our own.
            if ["verify_slice(", "verify_truncated_left(", "ct_eq(", "fn constant_time"]
                .iter()
                .any(|other| line.contains(other))
            {
                violations.push(format!("{}:{}: {}", relative(&path).display(), number + 1, line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "rule: secrets (MACs, password hashes, tokens) are compared only with security::constant_time::eq (docs/STYLE.md, Hostile input):\n{}",
        violations.join("\n")
    );
}
