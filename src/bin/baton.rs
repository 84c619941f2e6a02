//! `baton`: the command-line client. Parses flags, sets up logging and runs the command.

use clap::Parser;

fn main() {
    let cli = match baton::cli::args::Cli::try_parse() {
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
    let level = match cli.verbose {
        0 | 1 => "warn",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                // lapin logs a returned (unroutable) message as a warning; baton reports those
                // itself, as unreachable nodes.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},lapin=error"))),
        )
        .with_writer(std::io::stderr)
        .init();
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
