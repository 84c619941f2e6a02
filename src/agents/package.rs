//! The `package` agent: query, install, update and remove Debian packages.
//!
//! Queries go through `dpkg-query`; changes through `apt-get` with `DEBIAN_FRONTEND=noninteractive`
//! so a package's configuration questions never hang an action. Every action reports the
//! package's state afterwards (`ensure`: the installed version, or `absent`), so a failed
//! install still says where the node stands.
//!
//! A name reaches apt-get only once it has Debian's syntax and apt knows a package of exactly
//! that name ([`super::package_name`]), and always after `--`: never a marker, an option, a
//! pattern or an expression.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::service::last_lines;
use super::{ActionContext, ActionOutcome, Agent, BoxFuture, Call, builtin_definition, required_string};
use super::{command, package_name};
use crate::protocol::StatusCode;
use crate::protocol::ddl::Definition;

/// The most of apt-get's output kept, in bytes.
const MAX_OUTPUT: usize = 256 * 1024;

/// The built-in `package` agent.
pub struct Package {
    definition: Arc<Definition>,
}

impl Package {
    pub fn new() -> Package {
        Package { definition: builtin_definition("package") }
    }
}

impl Default for Package {
    fn default() -> Self {
        Package::new()
    }
}

impl Agent for Package {
    fn definition(&self) -> &Arc<Definition> {
        &self.definition
    }

    fn call<'a>(&'a self, call: Call<'a>, _context: &'a ActionContext) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(async move {
            match run(call.action, call.data, self.timeout()).await {
                Ok(outcome) | Err(outcome) => outcome,
            }
        })
    }
}

/// What dpkg says about one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub version: String,
    pub arch: String,
}

async fn run(
    action: &str,
    data: &Map<String, Value>,
    timeout: Duration,
) -> Result<ActionOutcome, ActionOutcome> {
    let package = required_string(data, "package")?;
    package_name::check_name(package)?;
    if action == "status" {
        let installed = query(package, timeout).await?;
        return Ok(ActionOutcome::ok(outputs(package, installed.as_ref(), None)));
    }
    let verb: &[&str] = match action {
        "install" => &["install"],
        "update" => &["install", "--only-upgrade"],
        "uninstall" => &["remove"],
        other => {
            return Err(ActionOutcome::fail(
                StatusCode::UnknownAction,
                format!("package has no action \"{other}\""),
            ));
        }
    };
    let target = match (action, data.get("version").and_then(Value::as_str)) {
        ("install", Some(version)) => {
            package_name::check_version(version)?;
            format!("{package}={version}")
        }
        _ => package.to_owned(),
    };
    package_name::check_known(package, timeout).await?;
    let mut apt = command::new("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-y", "-q", "-o", "Dpkg::Options::=--force-confold"])
        .args(verb)
        .args(["--", &target]);
    let finished = command::run(apt, b"", timeout, MAX_OUTPUT).await.map_err(|error| {
        ActionOutcome::fail(StatusCode::Aborted, format!("cannot {action} {package}: {error}"))
    })?;
    let installed = query(package, timeout).await?;
    let tail = last_lines(&finished);
    if !finished.status.success() {
        return Err(ActionOutcome::aborted_with(
            format!("apt-get could not {action} {package} ({}): {tail}", finished.describe_exit()),
            outputs(package, installed.as_ref(), Some(tail)),
        ));
    }
    Ok(ActionOutcome::ok(outputs(package, installed.as_ref(), Some(tail))))
}

/// The installed version of `package`, or `None` when it is not installed.
pub async fn query(package: &str, timeout: Duration) -> Result<Option<Installed>, ActionOutcome> {
    let mut dpkg = command::new("dpkg-query");
    dpkg.args(["-W", "-f=${db:Status-Abbrev}\t${Version}\t${Architecture}\n", "--", package]);
    let finished = command::run(dpkg, b"", timeout, MAX_OUTPUT).await.map_err(|error| {
        ActionOutcome::fail(StatusCode::Aborted, format!("cannot query {package}: {error}"))
    })?;
    // dpkg-query exits 1 for a package it has never heard of: that is "absent", not an error.
    Ok(parse_dpkg_query(&finished.stdout_text()))
}

/// Parses `dpkg-query -W -f='${db:Status-Abbrev}\t${Version}\t${Architecture}\n'` output.
pub fn parse_dpkg_query(output: &str) -> Option<Installed> {
    output.lines().find_map(|line| {
        let mut fields = line.split('\t');
        let status = fields.next()?;
        let version = fields.next()?;
        let arch = fields.next().unwrap_or_default();
        // "ii " is installed; "rc " removed with configuration left; anything else is not usable.
        (status.starts_with("ii") && !version.is_empty())
            .then(|| Installed { version: version.to_owned(), arch: arch.trim().to_owned() })
    })
}

fn outputs(package: &str, installed: Option<&Installed>, output: Option<String>) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("name".to_owned(), json!(package));
    match installed {
        Some(installed) => {
            data.insert("ensure".to_owned(), json!(installed.version));
            data.insert("arch".to_owned(), json!(installed.arch));
        }
        None => {
            data.insert("ensure".to_owned(), json!("absent"));
        }
    }
    if let Some(output) = output {
        data.insert("output".to_owned(), json!(output));
    }
    data
}
