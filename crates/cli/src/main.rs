//! `cnnsplit`: the command line over cnnsplit's library crates. It parses arguments, shows
//! progress and formats output; the algorithms live in the library crates.

mod args;
mod commands;
mod modules;
mod progress;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    progress::init_logging(cli.global.verbose, cli.global.quiet);
    if let Err(err) = commands::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
