//! The `resource` agent: browse and clone resources across nodes.
//!
//! Five resource types, each read from (and written to) the files that define it under a root
//! directory: `/` on a real node, or a container's or chroot's tree (`agents.resource_root`),
//! which is also how the agent is tested on real files without touching the machine.
//!
//! | type | where | properties |
//! |---|---|---|
//! | `user` | `etc/passwd` (and `etc/shadow`, `etc/group` when creating) | `uid`, `gid`, `comment`, `home`, `shell` |
//! | `group` | `etc/group` | `gid`, `members` |
//! | `host` | `etc/hosts` | `ip`, `host_aliases` |
//! | `package` | `var/lib/dpkg/status` | `ensure` (the version) |
//! | `service` | systemd unit files and `etc/init.d` | `enable`, `provider` |
//!
//! `find` returns one resource's properties in exactly the shape `create` accepts, so cloning a
//! resource is `find` on one node and `create` with its properties on others. `create` changes
//! only the properties it is given; files are rewritten whole (a temporary file renamed over
//! the old one, keeping its mode and owner), one change at a time. Every file is reached from
//! the root without following a symbolic link ([`super::rooted`]): a link in the tree is
//! refused, never followed out of it. Creating a package installs it with
//! `apt-get`, which only makes sense on the node's own root; elsewhere it is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

pub use super::resource_limits::ResourceLimits;
use super::rooted::Rooted;
use super::{
    ActionContext, ActionOutcome, Agent, BoxFuture, Call, builtin_definition, package_name, required_string,
};
use crate::protocol::StatusCode;
use crate::protocol::ddl::Definition;

/// The first uid and gid handed out when `create` is not given one.
const FIRST_ID: u64 = 1000;

/// Unit file directories searched for services, under the root.
const UNIT_DIRS: &[&str] = &["etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"];

/// The built-in `resource` agent.
pub struct Resource {
    definition: Arc<Definition>,
    tree: Rooted,
    limits: ResourceLimits,
    /// One change at a time: two creates must not both read, then both write, `etc/passwd`.
    writing: tokio::sync::Mutex<()>,
}

impl Resource {
    /// The agent on `root` with the default limits on `create`.
    pub fn new(root: PathBuf) -> Resource {
        Resource::with_limits(root, ResourceLimits::default())
    }

    pub fn with_limits(root: PathBuf, limits: ResourceLimits) -> Resource {
        Resource {
            definition: builtin_definition("resource"),
            tree: Rooted::new(root),
            limits,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn root(&self) -> &Path {
        self.tree.root()
    }

    /// The same agent for `find` and `search` on a blocking thread; it never writes, so it
    /// needs none of the writers' lock.
    fn reader(&self) -> Resource {
        Resource {
            definition: self.definition.clone(),
            tree: self.tree.clone(),
            limits: self.limits.clone(),
            writing: tokio::sync::Mutex::new(()),
        }
    }
}

impl Agent for Resource {
    fn definition(&self) -> &Arc<Definition> {
        &self.definition
    }

    fn call<'a>(&'a self, call: Call<'a>, _context: &'a ActionContext) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(async move {
            let result = match call.action {
                "find" | "search" => {
                    // Reading the dpkg database or every unit file takes up to hundreds of
                    // milliseconds on a cold cache: off batond's one thread, which would
                    // otherwise answer nothing else meanwhile.
                    let reader = self.reader();
                    let (action, data) = (call.action.to_owned(), call.data.clone());
                    let read = tokio::task::spawn_blocking(move || match action.as_str() {
                        "find" => reader.find(&data),
                        _ => reader.search(&data),
                    });
                    read.await
                        .unwrap_or_else(|error| Err(aborted(format!("the read did not finish: {error}"))))
                }
                "create" => {
                    let _one_at_a_time = self.writing.lock().await;
                    self.create(call.data, self.timeout()).await
                }
                other => Err(ActionOutcome::fail(
                    StatusCode::UnknownAction,
                    format!("resource has no action \"{other}\""),
                )),
            };
            match result {
                Ok(outcome) | Err(outcome) => outcome,
            }
        })
    }
}

/// A resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
    Host,
    Package,
    Service,
}

impl Kind {
    fn parse(name: &str) -> Result<Kind, ActionOutcome> {
        Ok(match name {
            "user" => Kind::User,
            "group" => Kind::Group,
            "host" => Kind::Host,
            "package" => Kind::Package,
            "service" => Kind::Service,
            other => {
                return Err(ActionOutcome::fail(
                    StatusCode::InvalidData,
                    format!("unknown resource type \"{other}\" (types: user, group, host, package, service)"),
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Host => "host",
            Kind::Package => "package",
            Kind::Service => "service",
        }
    }

    fn properties(self) -> &'static [&'static str] {
        match self {
            Kind::User => &["uid", "gid", "comment", "home", "shell"],
            Kind::Group => &["gid", "members"],
            Kind::Host => &["ip", "host_aliases"],
            Kind::Package => &["ensure"],
            Kind::Service => &["enable", "provider"],
        }
    }
}

type Properties = Map<String, Value>;

impl Resource {
    fn find(&self, data: &Map<String, Value>) -> Result<ActionOutcome, ActionOutcome> {
        let kind = Kind::parse(required_string(data, "type")?)?;
        let title = required_string(data, "title")?;
        let all = self.all(kind)?;
        let found = all.get(title);
        let mut output = Map::new();
        output.insert("type".to_owned(), json!(kind.name()));
        output.insert("title".to_owned(), json!(title));
        output.insert("exists".to_owned(), json!(found.is_some()));
        output.insert("properties".to_owned(), Value::Object(found.cloned().unwrap_or_default()));
        Ok(ActionOutcome::ok(output))
    }

    fn search(&self, data: &Map<String, Value>) -> Result<ActionOutcome, ActionOutcome> {
        let kind = Kind::parse(required_string(data, "type")?)?;
        let all = self.all(kind)?;
        let resources: Vec<Value> = all
            .iter()
            .map(|(title, properties)| json!({ "title": title, "properties": properties }))
            .collect();
        let mut output = Map::new();
        output.insert("type".to_owned(), json!(kind.name()));
        output.insert("count".to_owned(), json!(resources.len()));
        output.insert("resources".to_owned(), Value::Array(resources));
        Ok(ActionOutcome::ok(output))
    }

    async fn create(
        &self,
        data: &Map<String, Value>,
        timeout: Duration,
    ) -> Result<ActionOutcome, ActionOutcome> {
        let kind = Kind::parse(required_string(data, "type")?)?;
        let title = required_string(data, "title")?;
        let wanted = match data.get("properties") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(properties)) => properties.clone(),
            Some(other) => return Err(invalid(format!("properties must be an object, got {other}"))),
        };
        for key in wanted.keys() {
            if !kind.properties().contains(&key.as_str()) {
                return Err(invalid(format!(
                    "a {} has no property \"{key}\" (properties: {})",
                    kind.name(),
                    kind.properties().join(", ")
                )));
            }
        }
        let changed = match kind {
            Kind::User => self.create_user(title, &wanted)?,
            Kind::Group => self.create_group(title, &wanted)?,
            Kind::Host => self.create_host(title, &wanted)?,
            Kind::Package => self.create_package(title, &wanted, timeout).await?,
            Kind::Service => self.create_service(title, &wanted)?,
        };
        let properties = self.all(kind)?.remove(title).unwrap_or_default();
        let mut output = Map::new();
        output.insert("type".to_owned(), json!(kind.name()));
        output.insert("title".to_owned(), json!(title));
        output.insert("changed".to_owned(), json!(changed));
        output.insert("properties".to_owned(), Value::Object(properties));
        Ok(ActionOutcome::ok(output))
    }

    /// Every resource of a type, by title.
    fn all(&self, kind: Kind) -> Result<BTreeMap<String, Properties>, ActionOutcome> {
        Ok(match kind {
            Kind::User => parse_passwd(&self.read("etc/passwd")?),
            Kind::Group => parse_group(&self.read("etc/group")?),
            Kind::Host => parse_hosts(&self.read("etc/hosts")?),
            Kind::Package => parse_dpkg_status(&self.read("var/lib/dpkg/status")?),
            Kind::Service => self.services(),
        })
    }

    /// A file under the root; a missing file is empty (a minimal tree has no `etc/hosts`).
    fn read(&self, relative: &str) -> Result<String, ActionOutcome> {
        match self.tree.read(relative) {
            Ok(text) => Ok(text.unwrap_or_default()),
            Err(error) => Err(aborted(error.to_string())),
        }
    }

    fn write(&self, relative: &str, text: &str) -> Result<(), ActionOutcome> {
        self.tree.write_replacing(relative, text).map_err(|error| aborted(error.to_string()))
    }

    fn create_user(&self, name: &str, wanted: &Properties) -> Result<bool, ActionOutcome> {
        check_account_name(name)?;
        let passwd = self.read("etc/passwd")?;
        let users = parse_passwd(&passwd);
        let groups = parse_group(&self.read("etc/group")?);
        let current = users.get(name).cloned();
        let mut properties = current.clone().unwrap_or_else(|| {
            let uid =
                next_free_id(users.values().filter_map(|user| user.get("uid")).filter_map(Value::as_u64));
            let gid =
                groups.get(name).and_then(|group| group.get("gid")).and_then(Value::as_u64).unwrap_or(uid);
            Map::from_iter([
                ("uid".to_owned(), json!(uid)),
                ("gid".to_owned(), json!(gid)),
                ("comment".to_owned(), json!("")),
                ("home".to_owned(), json!(format!("/home/{name}"))),
                ("shell".to_owned(), json!("/bin/sh")),
            ])
        });
        for (key, value) in wanted {
            match key.as_str() {
                "uid" | "gid" => {
                    id_value(key, value)?;
                }
                _ => {
                    field_value(key, value)?;
                }
            }
            properties.insert(key.clone(), value.clone());
        }
        if current.as_ref() == Some(&properties) {
            return Ok(false);
        }
        // The limits apply to changes only: re-creating an account exactly as it is (a clone
        // of identical root accounts) changes nothing and is not refused.
        if let Some(current) = &current {
            self.limits.check_change("user", name, current.get("uid").and_then(Value::as_u64))?;
        }
        for (key, value) in wanted {
            if let Some(text) = value.as_str() {
                self.limits.check_text(key, text)?;
            }
        }
        // Ids given are checked; a new account's are checked even when not given, since one
        // named after a system group gets that group's gid (a user "sudo" in group sudo).
        for key in ["uid", "gid"] {
            if current.is_none() || wanted.contains_key(key) {
                let id = properties.get(key).and_then(Value::as_u64).unwrap_or_default();
                self.limits.check_id(name, key, id)?;
            }
        }
        let line = format!(
            "{name}:x:{}:{}:{}:{}:{}",
            properties.get("uid").and_then(Value::as_u64).unwrap_or_default(),
            properties.get("gid").and_then(Value::as_u64).unwrap_or_default(),
            properties.get("comment").and_then(Value::as_str).unwrap_or_default(),
            properties.get("home").and_then(Value::as_str).unwrap_or_default(),
            properties.get("shell").and_then(Value::as_str).unwrap_or_default(),
        );
        self.write("etc/passwd", &replace_or_append(&passwd, name, ':', &line))?;
        if current.is_none() {
            // A new account gets a locked password and, like useradd -U, a group of its own
            // when none of that name exists.
            if self.tree.kind("etc/shadow").is_some() {
                let shadow = self.read("etc/shadow")?;
                if !shadow.lines().any(|line| line.split(':').next() == Some(name)) {
                    self.write(
                        "etc/shadow",
                        &replace_or_append(&shadow, name, ':', &format!("{name}:!:::::::")),
                    )?;
                }
            }
            if !groups.contains_key(name) {
                let gid = properties.get("gid").and_then(Value::as_u64).unwrap_or_default();
                if !groups.values().any(|group| group.get("gid").and_then(Value::as_u64) == Some(gid)) {
                    let group_text = self.read("etc/group")?;
                    self.write(
                        "etc/group",
                        &replace_or_append(&group_text, name, ':', &format!("{name}:x:{gid}:")),
                    )?;
                }
            }
        }
        Ok(true)
    }

    fn create_group(&self, name: &str, wanted: &Properties) -> Result<bool, ActionOutcome> {
        check_account_name(name)?;
        let text = self.read("etc/group")?;
        let groups = parse_group(&text);
        let current = groups.get(name).cloned();
        let mut properties = current.clone().unwrap_or_else(|| {
            let gid =
                next_free_id(groups.values().filter_map(|group| group.get("gid")).filter_map(Value::as_u64));
            Map::from_iter([("gid".to_owned(), json!(gid)), ("members".to_owned(), json!([]))])
        });
        for (key, value) in wanted {
            match key.as_str() {
                "gid" => {
                    id_value(key, value)?;
                }
                _ => {
                    for member in string_list(key, value)? {
                        check_account_name(&member)?;
                    }
                }
            }
            properties.insert(key.clone(), value.clone());
        }
        if current.as_ref() == Some(&properties) {
            return Ok(false);
        }
        if let Some(current) = &current {
            self.limits.check_change("group", name, current.get("gid").and_then(Value::as_u64))?;
        }
        if let Some(gid) = properties.get("gid").and_then(Value::as_u64)
            && (current.is_none() || wanted.contains_key("gid"))
        {
            self.limits.check_id(name, "gid", gid)?;
        }
        let members: Vec<String> = properties
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let line = format!(
            "{name}:x:{}:{}",
            properties.get("gid").and_then(Value::as_u64).unwrap_or_default(),
            members.join(",")
        );
        self.write("etc/group", &replace_or_append(&text, name, ':', &line))?;
        Ok(true)
    }

    fn create_host(&self, name: &str, wanted: &Properties) -> Result<bool, ActionOutcome> {
        check_host_name(name)?;
        let text = self.read("etc/hosts")?;
        let hosts = parse_hosts(&text);
        let current = hosts.get(name).cloned();
        let mut properties =
            current.clone().unwrap_or_else(|| Map::from_iter([("host_aliases".to_owned(), json!([]))]));
        for (key, value) in wanted {
            match key.as_str() {
                "ip" => {
                    let text =
                        value.as_str().ok_or_else(|| invalid(format!("ip must be a string, got {value}")))?;
                    text.parse::<std::net::IpAddr>()
                        .map_err(|_| invalid(format!("ip {text:?} is not an IPv4 or IPv6 address")))?;
                }
                _ => {
                    for alias in string_list(key, value)? {
                        check_host_name(&alias)?;
                    }
                }
            }
            properties.insert(key.clone(), value.clone());
        }
        let Some(ip) = properties.get("ip").and_then(Value::as_str).map(str::to_owned) else {
            return Err(invalid(format!(
                "host {name} does not exist yet: creating it needs the property ip"
            )));
        };
        if current.as_ref() == Some(&properties) {
            return Ok(false);
        }
        let aliases: Vec<&str> = properties
            .get("host_aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut line = format!("{ip}\t{name}");
        for alias in aliases {
            line.push(' ');
            line.push_str(alias);
        }
        let mut replaced = false;
        let mut lines: Vec<String> = Vec::new();
        for existing in text.lines() {
            let content = existing.split('#').next().unwrap_or_default();
            let mut fields = content.split_whitespace();
            let (_, canonical) = (fields.next(), fields.next());
            if canonical == Some(name) && !replaced {
                lines.push(line.clone());
                replaced = true;
            } else {
                lines.push(existing.to_owned());
            }
        }
        if !replaced {
            lines.push(line);
        }
        self.write("etc/hosts", &(lines.join("\n") + "\n"))?;
        Ok(true)
    }

    async fn create_package(
        &self,
        name: &str,
        wanted: &Properties,
        timeout: Duration,
    ) -> Result<bool, ActionOutcome> {
        package_name::check_name(name)?;
        let installed = parse_dpkg_status(&self.read("var/lib/dpkg/status")?);
        let ensure = wanted.get("ensure").and_then(Value::as_str).unwrap_or("present");
        if !matches!(ensure, "present" | "installed" | "latest" | "absent") {
            package_name::check_version(ensure)?;
        }
        let current =
            installed.get(name).and_then(|properties| properties.get("ensure")).and_then(Value::as_str);
        let satisfied = match (ensure, current) {
            ("present" | "installed", Some(_)) => true,
            ("absent", None) => true,
            (version, Some(current)) => version == current,
            _ => false,
        };
        if satisfied {
            return Ok(false);
        }
        if self.root() != Path::new("/") {
            return Err(aborted(format!(
                "cannot install packages under {}: apt-get manages the node's own root only (install {name} there with the package agent or the image build)",
                self.root().display()
            )));
        }
        let target = match ensure {
            "present" | "installed" | "latest" => name.to_owned(),
            "absent" => {
                return self.remove_package(name, timeout).await;
            }
            version => format!("{name}={version}"),
        };
        package_name::check_known(name, timeout).await?;
        let mut apt = super::command::new("apt-get");
        apt.env("DEBIAN_FRONTEND", "noninteractive").args(["-y", "-q", "install", "--", &target]);
        let finished = super::command::run(apt, b"", timeout, 256 * 1024)
            .await
            .map_err(|error| aborted(format!("cannot install {target}: {error}")))?;
        if !finished.status.success() {
            return Err(aborted(format!(
                "apt-get could not install {target} ({}): {}",
                finished.describe_exit(),
                super::service::last_lines(&finished)
            )));
        }
        Ok(true)
    }

    async fn remove_package(&self, name: &str, timeout: Duration) -> Result<bool, ActionOutcome> {
        package_name::check_known(name, timeout).await?;
        let mut apt = super::command::new("apt-get");
        apt.env("DEBIAN_FRONTEND", "noninteractive").args(["-y", "-q", "remove", "--", name]);
        let finished = super::command::run(apt, b"", timeout, 256 * 1024)
            .await
            .map_err(|error| aborted(format!("cannot remove {name}: {error}")))?;
        if !finished.status.success() {
            return Err(aborted(format!(
                "apt-get could not remove {name}: {}",
                super::service::last_lines(&finished)
            )));
        }
        Ok(true)
    }

    fn services(&self) -> BTreeMap<String, Properties> {
        let mut services = BTreeMap::new();
        for dir in UNIT_DIRS {
            for name in self.tree.names(dir) {
                if let Some(service) = name.strip_suffix(".service")
                    && !service.ends_with('@')
                {
                    let enabled = self.unit_enabled(service);
                    services.entry(service.to_owned()).or_insert_with(|| {
                        Map::from_iter([
                            ("enable".to_owned(), json!(enabled)),
                            ("provider".to_owned(), json!("systemd")),
                        ])
                    });
                }
            }
        }
        for script in self.tree.names("etc/init.d") {
            if script.starts_with('.') || script == "README" {
                continue;
            }
            let enabled = self.init_script_enabled(&script);
            services.entry(script).or_insert_with(|| {
                Map::from_iter([
                    ("enable".to_owned(), json!(enabled)),
                    ("provider".to_owned(), json!("init")),
                ])
            });
        }
        services
    }

    fn unit_enabled(&self, service: &str) -> bool {
        let unit = format!("{service}.service");
        self.tree
            .names("etc/systemd/system")
            .iter()
            .filter(|name| name.ends_with(".wants"))
            .any(|wants| self.tree.kind(&format!("etc/systemd/system/{wants}/{unit}")).is_some())
    }

    fn init_script_enabled(&self, script: &str) -> bool {
        (2..=5).any(|level| {
            self.tree
                .names(&format!("etc/rc{level}.d"))
                .iter()
                .any(|link| link.starts_with('S') && link.get(3..) == Some(script))
        })
    }

    fn create_service(&self, name: &str, wanted: &Properties) -> Result<bool, ActionOutcome> {
        let services = self.services();
        let Some(current) = services.get(name) else {
            return Err(aborted(format!(
                "there is no service {name} under {} to configure: install the package that provides it first",
                self.root().display()
            )));
        };
        let Some(enable) = wanted.get("enable") else {
            return Ok(false);
        };
        let enable =
            enable.as_bool().ok_or_else(|| invalid(format!("enable must be true or false, got {enable}")))?;
        if current.get("enable").and_then(Value::as_bool) == Some(enable) {
            return Ok(false);
        }
        let systemd = current.get("provider").and_then(Value::as_str) == Some("systemd");
        let (link, target) = if systemd {
            let unit = format!("{name}.service");
            let target = UNIT_DIRS
                .iter()
                .find(|dir| self.tree.kind(&format!("{dir}/{unit}")).is_some())
                .map(|dir| format!("/{dir}/{unit}"))
                .unwrap_or_default();
            (format!("etc/systemd/system/multi-user.target.wants/{unit}"), target)
        } else {
            (format!("etc/rc2.d/S01{name}"), format!("../init.d/{name}"))
        };
        let result = if enable {
            self.tree.symlink(&target, &link)
        } else if systemd {
            self.tree.remove(&link)
        } else {
            // Disabling an init script removes its start links in every runlevel.
            (2..=5).try_for_each(|level| {
                let dir = format!("etc/rc{level}.d");
                self.tree
                    .names(&dir)
                    .into_iter()
                    .filter(|entry| entry.starts_with('S') && entry.get(3..) == Some(name))
                    .try_for_each(|entry| self.tree.remove(&format!("{dir}/{entry}")))
            })
        };
        result.map_err(|error| aborted(format!("cannot change whether {name} starts at boot: {error}")))?;
        Ok(true)
    }
}

/// Parses `/etc/passwd` into users and their properties.
pub fn parse_passwd(text: &str) -> BTreeMap<String, Properties> {
    records(text, ':')
        .filter(|fields| fields.len() >= 7)
        .map(|fields| {
            let properties = Map::from_iter([
                ("uid".to_owned(), number_or_text(fields[2])),
                ("gid".to_owned(), number_or_text(fields[3])),
                ("comment".to_owned(), json!(fields[4])),
                ("home".to_owned(), json!(fields[5])),
                ("shell".to_owned(), json!(fields[6])),
            ]);
            (fields[0].to_owned(), properties)
        })
        .collect()
}

/// Parses `/etc/group` into groups and their properties.
pub fn parse_group(text: &str) -> BTreeMap<String, Properties> {
    records(text, ':')
        .filter(|fields| fields.len() >= 4)
        .map(|fields| {
            let members: Vec<&str> = fields[3].split(',').filter(|member| !member.is_empty()).collect();
            let properties = Map::from_iter([
                ("gid".to_owned(), number_or_text(fields[2])),
                ("members".to_owned(), json!(members)),
            ]);
            (fields[0].to_owned(), properties)
        })
        .collect()
}

/// Parses `/etc/hosts`: each canonical name with its address and aliases. A name listed twice
/// keeps its first entry, as the resolver does.
pub fn parse_hosts(text: &str) -> BTreeMap<String, Properties> {
    let mut hosts = BTreeMap::new();
    for line in text.lines() {
        let content = line.split('#').next().unwrap_or_default();
        let mut fields = content.split_whitespace();
        let (Some(ip), Some(name)) = (fields.next(), fields.next()) else { continue };
        let aliases: Vec<&str> = fields.collect();
        hosts.entry(name.to_owned()).or_insert_with(|| {
            Map::from_iter([("ip".to_owned(), json!(ip)), ("host_aliases".to_owned(), json!(aliases))])
        });
    }
    hosts
}

/// Parses dpkg's status database: installed packages and their versions.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, Properties> {
    let mut packages = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(value) = line.strip_prefix("Package: ") {
                name = Some(value.trim());
            } else if let Some(value) = line.strip_prefix("Version: ") {
                version = Some(value.trim());
            } else if let Some(value) = line.strip_prefix("Status: ") {
                installed = value.trim().ends_with(" installed");
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            packages.insert(name.to_owned(), Map::from_iter([("ensure".to_owned(), json!(version))]));
        }
    }
    packages
}

/// The non-comment, non-empty lines of a colon file, split into fields.
fn records(text: &str, separator: char) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(move |line| line.split(separator).collect())
}

fn number_or_text(text: &str) -> Value {
    text.parse::<u64>().map_or_else(|_| json!(text), |number| json!(number))
}

/// The lowest id at or above [`FIRST_ID`] that is not taken.
fn next_free_id(taken: impl Iterator<Item = u64>) -> u64 {
    let taken: std::collections::BTreeSet<u64> = taken.collect();
    (FIRST_ID..).find(|id| !taken.contains(id)).unwrap_or(FIRST_ID)
}

/// Replaces the line whose first field is `key`, or appends `line`.
fn replace_or_append(text: &str, key: &str, separator: char, line: &str) -> String {
    let mut replaced = false;
    let mut lines: Vec<&str> = Vec::new();
    for existing in text.lines() {
        if !replaced && existing.split(separator).next() == Some(key) {
            lines.push(line);
            replaced = true;
        } else {
            lines.push(existing);
        }
    }
    if !replaced {
        lines.push(line);
    }
    lines.join("\n") + "\n"
}

fn check_account_name(name: &str) -> Result<(), ActionOutcome> {
    let mut bytes = name.bytes();
    let valid = matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && name.len() <= 32
        && bytes
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a usable user or group name (lowercase letters, digits, '_' and '-')"
        )))
    }
}

fn check_host_name(name: &str) -> Result<(), ActionOutcome> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'));
    if valid { Ok(()) } else { Err(invalid(format!("{name:?} is not a host name"))) }
}

fn id_value(key: &str, value: &Value) -> Result<u64, ActionOutcome> {
    value
        .as_u64()
        .filter(|id| *id < u64::from(u32::MAX))
        .ok_or_else(|| invalid(format!("{key} must be a non-negative integer, got {value}")))
}

/// A text field of a colon-separated file: no separators, no line breaks.
fn field_value<'a>(key: &str, value: &'a Value) -> Result<&'a str, ActionOutcome> {
    let text = value.as_str().ok_or_else(|| invalid(format!("{key} must be a string, got {value}")))?;
    if text.contains([':', '\n', '\r']) {
        return Err(invalid(format!("{key} must not contain ':' or line breaks, got {text:?}")));
    }
    Ok(text)
}

fn string_list(key: &str, value: &Value) -> Result<Vec<String>, ActionOutcome> {
    value
        .as_array()
        .and_then(|items| {
            items.iter().map(|item| item.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| invalid(format!("{key} must be an array of strings, got {value}")))
}

fn invalid(message: String) -> ActionOutcome {
    ActionOutcome::fail(StatusCode::InvalidData, message)
}

fn aborted(message: String) -> ActionOutcome {
    ActionOutcome::fail(StatusCode::Aborted, message)
}
