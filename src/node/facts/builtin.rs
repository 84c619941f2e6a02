//! The facts a node reports about itself without any fact file, with Facter's names and values
//! (`os.family` is `"Debian"` or `"RedHat"`, `architecture` is `amd64` on Debian), together
//! with the flat legacy names (`osfamily`, `operatingsystem`, ...) so that filters written for
//! MCollective keep matching the same nodes.

use std::path::Path;

use serde_json::{Map, Value};

/// The facts this machine reports about itself, read from `/proc`, `/etc` and the standard
/// library.
pub(super) fn read() -> Map<String, Value> {
    let os_release =
        read_trimmed("/etc/os-release").or_else(|| read_trimmed("/usr/lib/os-release")).unwrap_or_default();
    let system = SystemInfo {
        kernel_hostname: read_trimmed("/proc/sys/kernel/hostname")
            .or_else(crate::config::host_name)
            .unwrap_or_else(|| "localhost".to_owned()),
        kernel_domainname: read_trimmed("/proc/sys/kernel/domainname"),
        etc_hosts: read_trimmed("/etc/hosts").unwrap_or_default(),
        os_release: parse_os_release(&os_release),
        kernel_release: read_trimmed("/proc/sys/kernel/osrelease"),
        meminfo: read_trimmed("/proc/meminfo").unwrap_or_default(),
        processors: std::thread::available_parallelism().map_or(1, usize::from),
    };
    builtin_facts(&system)
}

/// The raw inputs of the built-in facts, separated from reading them so they can be tested.
struct SystemInfo {
    kernel_hostname: String,
    kernel_domainname: Option<String>,
    etc_hosts: String,
    os_release: Map<String, Value>,
    kernel_release: Option<String>,
    meminfo: String,
    processors: usize,
}

fn builtin_facts(system: &SystemInfo) -> Map<String, Value> {
    let mut facts = Map::new();
    let (hostname, fqdn) =
        host_names(&system.kernel_hostname, system.kernel_domainname.as_deref(), &system.etc_hosts);
    facts.insert("hostname".into(), hostname.clone().into());
    if let Some(domain) = fqdn.strip_prefix(&format!("{hostname}.")) {
        facts.insert("domain".into(), domain.into());
    }
    facts.insert("fqdn".into(), fqdn.into());

    let os_id = release_field(&system.os_release, "ID").unwrap_or("linux");
    let id_like = release_field(&system.os_release, "ID_LIKE").unwrap_or_default();
    let family = os_family(os_id, id_like);
    let name = os_name(os_id, release_field(&system.os_release, "NAME"));
    let full = release_field(&system.os_release, "VERSION_ID").unwrap_or_default();
    let major = full.split('.').next().unwrap_or_default();
    let mut release = Map::new();
    release.insert("full".into(), full.into());
    release.insert("major".into(), major.into());
    let mut os = Map::new();
    os.insert("family".into(), family.clone().into());
    os.insert("name".into(), name.clone().into());
    os.insert("release".into(), release.into());
    if let Some(codename) = release_field(&system.os_release, "VERSION_CODENAME") {
        let mut distro = Map::new();
        distro.insert("codename".into(), codename.into());
        os.insert("distro".into(), distro.into());
    }
    // Facter's legacy flat names, which MCollective-era filters use.
    facts.insert("osfamily".into(), family.clone().into());
    facts.insert("operatingsystem".into(), name.into());
    facts.insert("operatingsystemrelease".into(), full.into());
    facts.insert("operatingsystemmajrelease".into(), major.into());

    let hardware = std::env::consts::ARCH;
    let architecture = match (family.as_str(), hardware) {
        ("Debian", "x86_64") => "amd64",
        ("Debian", "aarch64") => "arm64",
        ("Debian", "x86") => "i386",
        ("Debian", "powerpc64") => "ppc64el",
        (_, other) => other,
    };
    facts.insert("architecture".into(), architecture.into());
    facts.insert("hardwaremodel".into(), hardware.into());
    // Facter has these under `os` too.
    os.insert("architecture".into(), architecture.into());
    os.insert("hardware".into(), hardware.into());
    facts.insert("os".into(), os.into());

    facts.insert("kernel".into(), kernel_name().into());
    if let Some(release) = &system.kernel_release {
        facts.insert("kernelrelease".into(), release.as_str().into());
        let version = release.split(['-', '+']).next().unwrap_or(release);
        facts.insert("kernelversion".into(), version.into());
        let major_minor: Vec<&str> = version.split('.').take(2).collect();
        facts.insert("kernelmajversion".into(), major_minor.join(".").into());
    }

    let mut processors = Map::new();
    processors.insert("count".into(), system.processors.into());
    facts.insert("processors".into(), processors.into());
    facts.insert("processorcount".into(), system.processors.into());

    if let Some(total) = mem_total_bytes(&system.meminfo) {
        let mut memory_system = Map::new();
        memory_system.insert("total_bytes".into(), total.into());
        let mut memory = Map::new();
        memory.insert("system".into(), memory_system.into());
        facts.insert("memory".into(), memory.into());
    }

    facts.insert("baton_version".into(), env!("CARGO_PKG_VERSION").into());
    facts
}

fn kernel_name() -> String {
    let os = std::env::consts::OS;
    match os {
        "linux" => "Linux".to_owned(),
        "macos" => "Darwin".to_owned(),
        "freebsd" => "FreeBSD".to_owned(),
        other => other.to_owned(),
    }
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|text| text.trim().to_owned())
}

fn release_field<'a>(os_release: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    os_release.get(key).and_then(Value::as_str).filter(|value| !value.is_empty())
}

/// Parses `/etc/os-release`: `KEY=value` lines, values optionally quoted.
fn parse_os_release(text: &str) -> Map<String, Value> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|rest| rest.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|rest| rest.strip_suffix('\'')))
                .unwrap_or(value);
            (key.trim().to_owned(), Value::from(unquoted.replace("\\\"", "\"")))
        })
        .collect()
}

/// Facter's `os.family` from os-release `ID` and `ID_LIKE`.
fn os_family(id: &str, id_like: &str) -> String {
    let ids: Vec<&str> = std::iter::once(id).chain(id_like.split_whitespace()).collect();
    let family = ids.iter().find_map(|id| match *id {
        "debian" | "ubuntu" => Some("Debian"),
        "rhel" | "fedora" | "centos" | "rocky" | "almalinux" | "ol" | "amzn" => Some("RedHat"),
        "suse" | "opensuse" | "sles" | "opensuse-leap" | "opensuse-tumbleweed" => Some("Suse"),
        "arch" | "archlinux" => Some("Archlinux"),
        "gentoo" => Some("Gentoo"),
        "alpine" => Some("Alpine"),
        _ => None,
    });
    family.map_or_else(|| capitalized(id), str::to_owned)
}

/// Facter's `os.name` from os-release `ID` (falling back to the first word of `NAME`).
fn os_name(id: &str, name: Option<&str>) -> String {
    let known = match id {
        "ubuntu" => Some("Ubuntu"),
        "debian" => Some("Debian"),
        "centos" => Some("CentOS"),
        "rhel" => Some("RedHat"),
        "fedora" => Some("Fedora"),
        "rocky" => Some("Rocky"),
        "almalinux" => Some("AlmaLinux"),
        "ol" => Some("OracleLinux"),
        "amzn" => Some("Amazon"),
        "sles" => Some("SLES"),
        "opensuse-leap" | "opensuse-tumbleweed" | "opensuse" => Some("OpenSuSE"),
        "arch" => Some("Archlinux"),
        "alpine" => Some("Alpine"),
        "gentoo" => Some("Gentoo"),
        _ => None,
    };
    match (known, name.and_then(|name| name.split_whitespace().next())) {
        (Some(known), _) => known.to_owned(),
        (None, Some(first_word)) => first_word.to_owned(),
        (None, None) => capitalized(id),
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The short host name and the best fully qualified name available without a DNS query: the
/// kernel's name if it has dots, else with the kernel's NIS/YP domain, else the first dotted
/// name `/etc/hosts` gives for it, else the short name.
fn host_names(kernel_hostname: &str, domainname: Option<&str>, etc_hosts: &str) -> (String, String) {
    let short = kernel_hostname.split('.').next().unwrap_or(kernel_hostname).to_owned();
    if kernel_hostname.contains('.') {
        return (short, kernel_hostname.to_owned());
    }
    if let Some(domain) = domainname.filter(|domain| !domain.is_empty() && *domain != "(none)") {
        return (short.clone(), format!("{short}.{domain}"));
    }
    let from_hosts = etc_hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .map(|line| line.split_whitespace().skip(1).collect::<Vec<_>>())
        .filter(|names| names.contains(&short.as_str()))
        .find_map(|names| names.into_iter().find(|name| name.starts_with(&format!("{short}."))));
    let fqdn = from_hosts.map_or_else(|| short.clone(), str::to_owned);
    (short, fqdn)
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let amount: u64 = parts.next()?.parse().ok()?;
    let multiplier = match parts.next() {
        Some("kB") | Some("KB") | Some("kb") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        None => 1,
        Some(_) => return None,
    };
    amount.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::facts::Facts;

    fn os(os_release: &str) -> (String, String, String, String) {
        let parsed = parse_os_release(os_release);
        let facts = builtin_facts(&SystemInfo {
            kernel_hostname: "web01".into(),
            kernel_domainname: None,
            etc_hosts: String::new(),
            os_release: parsed,
            kernel_release: Some("6.1.0-18-amd64".into()),
            meminfo: "MemTotal:       16318412 kB\nMemFree: 1 kB\n".into(),
            processors: 4,
        });
        let facts = Facts::from_map(facts);
        let text = |key: &str| facts.lookup(key).and_then(Value::as_str).unwrap_or("<absent>").to_owned();
        (text("os.family"), text("os.name"), text("os.release.full"), text("os.release.major"))
    }

    #[test]
    fn os_facts_follow_facter() {
        let check = |os_release: &str, expected: (&str, &str, &str, &str)| {
            let (family, name, full, major) = os(os_release);
            assert_eq!(
                (family.as_str(), name.as_str(), full.as_str(), major.as_str()),
                expected,
                "for {os_release:?}"
            );
        };
        check("ID=debian\nVERSION_ID=\"12\"\nNAME=\"Debian GNU/Linux\"", ("Debian", "Debian", "12", "12"));
        check("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"", ("Debian", "Ubuntu", "22.04", "22"));
        check(
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"",
            ("RedHat", "Rocky", "9.3", "9"),
        );
        check("# comment\nID=nixos\nNAME=NixOS\nVERSION_ID='23.11'", ("Nixos", "NixOS", "23.11", "23"));
        check("", ("Linux", "Linux", "", ""));
    }

    #[test]
    fn architecture_uses_debian_names_on_debian() {
        let facts = Facts::from_map(builtin_facts(&SystemInfo {
            kernel_hostname: "web01".into(),
            kernel_domainname: None,
            etc_hosts: String::new(),
            os_release: parse_os_release("ID=debian"),
            kernel_release: None,
            meminfo: String::new(),
            processors: 1,
        }));
        let hardware = std::env::consts::ARCH;
        assert_eq!(facts.lookup("hardwaremodel"), Some(&Value::from(hardware)));
        if hardware == "x86_64" {
            assert_eq!(facts.lookup("architecture"), Some(&Value::from("amd64")));
        }
        assert_eq!(facts.lookup("memory.system.total_bytes"), None);
    }

    #[test]
    fn kernel_memory_and_processors() {
        let facts = Facts::from_map(builtin_facts(&SystemInfo {
            kernel_hostname: "web01".into(),
            kernel_domainname: None,
            etc_hosts: String::new(),
            os_release: Map::new(),
            kernel_release: Some("6.1.0-18-amd64".into()),
            meminfo: "MemTotal:       2048 kB\n".into(),
            processors: 4,
        }));
        let check = |key: &str, expected: Value| {
            assert_eq!(facts.lookup(key), Some(&expected), "fact {key}");
        };
        check("kernelrelease", "6.1.0-18-amd64".into());
        check("kernelversion", "6.1.0".into());
        check("kernelmajversion", "6.1".into());
        check("memory.system.total_bytes", (2048u64 * 1024).into());
        check("processors.count", 4.into());
        check("processorcount", 4.into());
    }

    #[test]
    fn host_names_best_effort() {
        let check = |kernel: &str, domain: Option<&str>, hosts: &str, expected: (&str, &str)| {
            let (short, fqdn) = host_names(kernel, domain, hosts);
            assert_eq!((short.as_str(), fqdn.as_str()), expected, "for {kernel}");
        };
        check("web01.example.com", None, "", ("web01", "web01.example.com"));
        check("web01", Some("example.org"), "", ("web01", "web01.example.org"));
        check("web01", Some("(none)"), "", ("web01", "web01"));
        check(
            "web01",
            None,
            "127.0.0.1 localhost\n10.0.0.5 web01.dc1.example.com web01 # main\n",
            ("web01", "web01.dc1.example.com"),
        );
        check("web01", None, "10.0.0.5 web01\n", ("web01", "web01"));
    }

    #[test]
    fn meminfo_units() {
        assert_eq!(mem_total_bytes("MemTotal: 10 kB"), Some(10240));
        assert_eq!(mem_total_bytes("MemFree: 10 kB"), None);
        assert_eq!(mem_total_bytes("MemTotal: lots kB"), None);
    }
}
