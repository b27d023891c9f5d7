//! `cnnsplit`: the command line over cnnsplit's library crates. It parses arguments, shows
//! progress and formats output; the algorithms live in the library crates.

mod args;
mod commands;
mod flag_hint;
mod output;
mod progress;
mod setup;

use clap::Parser;

/// Die quietly like other command-line tools when stdout is closed early (`cnnsplit … | head`)
/// instead of panicking on the failed write.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    cnn_models::ops::keep_freed_memory();
    default_sigpipe();
    cnn_models::ops::single_thread_candle_pool();
    let cli = args::Cli::parse();
    progress::init_logging(cli.global.verbose, cli.global.quiet);
    if let Err(err) = commands::run(cli) {
        eprintln!("error: {}", error_message(&err));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, `outer: inner: …`, leaving out a cause whose text
/// the line already holds (many errors print their I/O cause themselves, naming the file).
fn error_message(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if let Some(hint) = flag_hint::resume_hint(err) {
        line.push_str("; ");
        line.push_str(hint);
    }
    line
}
