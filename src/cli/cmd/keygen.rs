//! `baton keygen`: writes an ed25519 key pair for `security.scheme = "ed25519"`.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::cli::args::Cli;
use crate::cli::exit::{Exit, Failure};
use crate::config::ClientConfig;

/// `baton keygen`: writes an ed25519 key pair.
pub fn run(cli: &Cli, name: Option<&str>, dir: &Path, force: bool) -> Result<Exit, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = match name {
        Some(name) => name.to_owned(),
        None => match ClientConfig::load(cli.config.as_deref()) {
            Ok(config) => config.caller,
            Err(_) => format!("user={}", std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())),
        },
    };
    if !crate::security::ed25519::is_key_name(&name) {
        return Err(Failure::usage(anyhow!(
            "key name {name:?} may hold letters, digits and = . - _ @ : only (a caller id like user=alice, or a node identity)"
        )));
    }
    let (private_path, public_path) = crate::security::ed25519::key_pair_paths(dir, &name);
    std::fs::create_dir_all(dir)
        .map_err(|error| Failure::usage(anyhow!("cannot create {}: {error}", dir.display())))?;
    if !force {
        for path in [&private_path, &public_path] {
            if path.exists() {
                return Err(Failure::usage(anyhow!(
                    "{} exists; keep it, or pass --force to replace it",
                    path.display()
                )));
            }
        }
    }
    let (private, public) = crate::security::ed25519::generate(&name);
    let write = |path: &PathBuf, text: &str, mode: u32| -> Result<(), Failure> {
        use std::io::Write;
        let _ = std::fs::remove_file(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|error| Failure::usage(anyhow!("cannot write {}: {error}", path.display())))?;
        file.write_all(text.as_bytes())
            .map_err(|error| Failure::usage(anyhow!("cannot write {}: {error}", path.display())))
    };
    write(&private_path, &private, 0o600)?;
    write(&public_path, &public, 0o644)?;
    println!("Wrote a key pair for \"{name}\":");
    println!("  private key  {} (mode 600; keep it secret)", private_path.display());
    println!("  public key   {}", public_path.display());
    println!();
    println!(
        "Next: set security.scheme = \"ed25519\" and security.key_file = {:?},",
        private_path.display().to_string()
    );
    println!("then copy {} into the trusted_keys_dir of every node (for a caller)", public_path.display());
    println!("or of every client (for a node).");
    Ok(Exit::Ok)
}
