//! One module per subcommand: flags in, library calls, tables or JSON out. Each depends only on
//! [`crate::args`], [`crate::setup`], [`crate::output`], [`crate::progress`] and
//! [`crate::flag_hint`], and on no other command except where one command runs another
//! (`demo`, and `predict` reusing `eval`'s artefact opener).

pub mod compose;
pub mod decompose;
pub mod demo;
pub mod eval;
pub mod inspect;
pub mod patch;
pub mod predict;
pub mod reuse;
pub mod train;

use anyhow::Result;

use crate::args::*;

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Train(a) => train::train(&g, a),
        Command::Eval(a) => eval::eval(&g, a),
        Command::Predict(a) => predict::predict(&g, a),
        Command::Import(a) => train::import(&g, a),
        Command::Inspect(a) => inspect::inspect(&g, a),
        Command::Decompose(a) => decompose::decompose(&g, *a),
        Command::Compose(a) => compose::compose(&g, a),
        Command::Reuse(a) => match a.command {
            ReuseCommand::Select(s) => reuse::select(&g, &s).map(|_| ()),
            ReuseCommand::NewTask(n) => reuse::new_task(&g, &n).map(|_| ()),
        },
        Command::Demo(a) => demo::demo(&g, a),
        Command::Patch(a) => patch::patch(&g, a),
    }
}
