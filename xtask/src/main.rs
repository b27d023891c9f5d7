//! `cargo xtask`: project tasks that are not part of the `cnnsplit` tool itself —
//! dataset bundling and verification, benchmarks against the PyTorch peer, the seed
//! corpora of the fuzz targets, and a single-node Slurm for `reproduce --executor slurm`.

mod bench;
mod cluster;
mod datasets;
mod fuzz_seeds;
mod reproduce;

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
    /// Regenerate the paper's tables end to end: train, decompose (both methods), patch, reuse,
    /// and write reproduce/<preset>/ (Markdown report, CSV, JSON, SVG plots).
    Reproduce(reproduce::ReproduceArgs),
    /// A single-node Slurm on this machine (config under target/slurm/), for the tests of
    /// `reproduce --executor slurm` and for trying it out.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Write the seed corpora of the cargo-fuzz targets (see fuzz/README.md).
    FuzzSeeds {
        /// Output folder, one subfolder per fuzz target.
        #[arg(long, default_value = "fuzz/corpus")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Install slurm-wlm and munge if missing (as root, apt-get), write the configuration,
    /// start munged, slurmctld and slurmd, wait until the node is idle, and print
    /// `export SLURM_CONF=…` as the last line.
    Up,
    /// Stop exactly the daemons `up` started (by pid).
    Down,
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
    /// Download a dataset from its original hosts into ROOT/NAME/ (fashion-mnist, mnist,
    /// cifar10, svhn): partial downloads resume, every file is checked before it is kept.
    Fetch {
        /// Dataset name.
        name: String,
        #[command(flatten)]
        root: RootArg,
        /// Take every file from URL/<file name> instead of the original hosts.
        #[arg(long, value_name = "URL", hide = true)]
        mirror: Option<String>,
    },
    /// Take a dataset's files you already have (the published files, or for cifar10 also an
    /// unpacked cifar-10-batches-bin), check them like downloads, and store them in ROOT/NAME/.
    Import {
        /// Dataset name (fashion-mnist, mnist, mnist-5k, cifar10, svhn).
        name: String,
        /// File or folder holding the files (searched up to 4 folder levels down).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        #[command(flatten)]
        root: RootArg,
    },
    /// Show which datasets are present, partial or absent, how they were checked, and the
    /// --dataset name cnnsplit loads them by.
    List {
        #[command(flatten)]
        root: RootArg,
        /// Recompute the SHA-256 of every stored file (otherwise sizes are compared).
        #[arg(long)]
        verify: bool,
    },
}

/// Where the datasets live.
#[derive(clap::Args, Debug)]
struct RootArg {
    /// Data root: CNNSPLIT_DATA_DIR if set, else datasets/ of the source tree.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

impl RootArg {
    fn path(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(cnn_data::data_root)
    }
}

/// Prints what a manifest records: each checked file, then where the dataset is.
fn print_manifest(verb: &str, root: &std::path::Path, m: &datasets::store::Manifest) {
    let dir = root.join(&m.dataset);
    for c in &m.checked {
        println!(
            "  {} ({} bytes): {} matches {}",
            c.name, c.bytes, c.check, c.matched
        );
    }
    println!(
        "{} {verb} {} ({} files); cnnsplit loads it with --dataset {}",
        m.dataset,
        dir.display(),
        m.files.len(),
        datasets::catalog::find(&m.dataset)
            .map(|d| d.cli_name)
            .unwrap_or_else(|_| m.dataset.clone())
    );
}

fn main() -> Result<()> {
    cnn_models::ops::keep_freed_memory();
    cnn_models::ops::single_thread_candle_pool();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(a) => bench::bench(a)?,
        Command::Reproduce(a) => reproduce::reproduce(a)?,
        Command::Cluster(ClusterCommand::Up) => cluster::up()?,
        Command::Cluster(ClusterCommand::Down) => cluster::down()?,
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
        Command::Datasets(DatasetsCommand::Fetch { name, root, mirror }) => {
            let ds = datasets::catalog::find(&name)?;
            let root = root.path();
            match datasets::fetch::fetch(&ds, &root, mirror.as_deref())? {
                datasets::fetch::FetchOutcome::AlreadyPresent(m) => {
                    print_manifest("is already in", &root, &m)
                }
                datasets::fetch::FetchOutcome::Fetched(m) => {
                    print_manifest("fetched into", &root, &m)
                }
            }
        }
        Command::Datasets(DatasetsCommand::Import { name, from, root }) => {
            let ds = datasets::catalog::find(&name)?;
            let root = root.path();
            let m = datasets::import::import(&ds, &root, &from)?;
            print_manifest("imported into", &root, &m);
        }
        Command::Datasets(DatasetsCommand::List { root, verify }) => {
            let rows = datasets::listing::list_rows(&root.path(), verify);
            print!("{}", datasets::listing::render(&rows));
        }
    }
    Ok(())
}
