//! `cargo xtask`: project tasks that are not part of the `cnnsplit` tool itself —
//! dataset bundling and verification, benchmarks against the PyTorch peer, and the seed
//! corpora of the fuzz targets.

mod bench;
mod datasets;
mod fuzz_seeds;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// cnnsplit project tasks.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Dataset tasks.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Time a training step or an evaluation forward, optionally next to the PyTorch peer.
    Bench(bench::BenchArgs),
    /// Write the seed corpora of the cargo-fuzz targets (see fuzz/README.md).
    FuzzSeeds {
        /// Output folder, one subfolder per fuzz target.
        #[arg(long, default_value = "fuzz/corpus")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum DatasetsCommand {
    /// Draw the bundled Fashion-MNIST subset (IDX gzip) from the full files, checksums verified.
    Bundle {
        /// Folder with the full Fashion-MNIST files (the Debian package's by default).
        #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
        from: PathBuf,
        /// Output folder.
        #[arg(long, default_value = "datasets/fashion-mnist-small")]
        out: PathBuf,
        /// Training images per class.
        #[arg(long, default_value_t = 600)]
        train_per_class: usize,
        /// Test images per class.
        #[arg(long, default_value_t = 100)]
        test_per_class: usize,
        /// Seed of the draw.
        #[arg(long, default_value_t = 20260101)]
        seed: u64,
    },
    /// Check the SHA-256 of full Fashion-MNIST files against the known Debian package files.
    Verify {
        /// Folder with the four Fashion-MNIST files.
        #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(a) => bench::bench(a)?,
        Command::FuzzSeeds { out } => {
            for (target, files, bytes) in fuzz_seeds::write_seeds(&out)? {
                println!("{target}: {files} seeds, {bytes} bytes");
            }
        }
        Command::Datasets(DatasetsCommand::Bundle {
            from,
            out,
            train_per_class,
            test_per_class,
            seed,
        }) => {
            datasets::bundle(&from, &out, train_per_class, test_per_class, seed)?;
            println!("wrote the bundled subset to {}", out.display());
        }
        Command::Datasets(DatasetsCommand::Verify { dir }) => {
            datasets::verify_fashion_mnist(&dir)?;
            println!(
                "{}: all four files match the recorded SHA-256",
                dir.display()
            );
        }
    }
    Ok(())
}
