//! Tidy: the architecture rules of STYLE.md and docs/ARCHITECTURE.md, checked on every
//! `cargo test`. Each failure names the rule it enforces.

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
        "rule: every module starts with a `//!` doc saying what it is for (STYLE.md, Architecture). Missing in:\n{}",
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
        "rule: no `unwrap()` in library code; data off the network is handled, and a remaining `expect` states its invariant (STYLE.md, Hostile input):\n{}",
        violations.join("\n")
    );
}
