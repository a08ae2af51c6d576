//! The `attnrec` command line: parse, dispatch, map errors to exit codes (2 for user mistakes,
//! 1 for internal failures), one line on stderr each.
mod cli;
mod commands;
mod progress;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    attnrec::device::tune_allocator();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let first = msg.lines().next().unwrap_or("");
        eprintln!("error: internal: {first}");
    }));
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's message spans several lines; fold the informative ones into one.
            let text = e.to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            eprintln!("error: {} (see --help)", parts.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match commands::run(cli) {
        Ok(()) => {
            if let (Some(path), Some(kib)) = (std::env::var_os(attnrec::bench::PEAK_RSS_ENV), attnrec::bench::peak_rss_kib()) {
                let _ = std::fs::write(path, kib.to_string());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let msg = format!("{err:#}");
            eprintln!("error: {}", msg.lines().next().unwrap_or(""));
            let user = err.downcast_ref::<attnrec::Error>().is_none_or(attnrec::Error::is_user_error);
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}
