//! `baton`: the command-line client. Parses flags, sets up logging and runs the command.

use clap::{CommandFactory, FromArgMatches};

/// Parses the command line. An empty `BATON_CONFIG` means no file, as an unset one does
/// (regression: clap took it for a `--config` without its value).
fn parse() -> Result<baton::cli::args::Cli, clap::Error> {
    let mut command = baton::cli::args::Cli::command();
    if std::env::var_os("BATON_CONFIG").is_some_and(|value| value.is_empty()) {
        command = command.mut_arg("config", |arg| arg.env(None));
    }
    baton::cli::args::Cli::from_arg_matches(&command.try_get_matches()?)
}

fn main() {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => {
            // A script that asked for JSON gets JSON even when the command line is wrong.
            let args: Vec<String> = std::env::args().collect();
            if let Some(document) = baton::cli::usage_error_json(&args, &error) {
                println!("{document}");
                eprintln!("{}", error.render().to_string().trim_end());
                std::process::exit(baton::cli::exit::Exit::Usage.code());
            }
            error.exit();
        }
    };
    // The broker library's own log lines are not for people: Baton words every broker failure
    // itself (the user, the vhost, the collective), so lapin speaks only from -vv up.
    let level = match cli.verbose {
        0 | 1 => "warn,lapin=off",
        2 => "debug,lapin=error",
        _ => "trace,lapin=error",
    };
    baton::logging::init(
        tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
            // lapin logs a returned (unroutable) message as a warning; baton reports those
            // itself, as unreachable nodes.
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        false,
        // Colours only for a person at a terminal: a log captured by CI or a file stays plain.
        baton::cli::stderr_is_terminal(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("baton: error: cannot start the async runtime: {error}");
            std::process::exit(5);
        }
    };
    let code = runtime.block_on(baton::cli::run(cli));
    // Leave at once: background broker tasks have nothing left to deliver.
    std::process::exit(code);
}
