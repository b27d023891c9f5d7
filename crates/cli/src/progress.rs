//! Logging and progress bars: `tracing` to stderr, indicatif bars with ETA for long loops.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Set up `tracing` output on stderr (warn by default, info with -v, debug with -vv;
/// `RUST_LOG` overrides).
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A progress bar over `len` steps with ETA, hidden when quiet or when stderr is no terminal.
pub fn bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(len),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb.enable_steady_tick(Duration::from_millis(500));
    pb
}

/// Turns training events into a per-epoch progress bar and one summary line per epoch.
pub struct TrainProgress {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl TrainProgress {
    /// A reporter; `quiet` hides bars and epoch lines.
    pub fn new(quiet: bool) -> Self {
        TrainProgress { quiet, bar: None }
    }

    /// Handle one event.
    pub fn event(&mut self, ev: &cnn_models::TrainEvent) {
        use cnn_models::TrainEvent::*;
        match ev {
            EpochStart {
                epoch,
                epochs,
                batches,
            } => {
                self.bar = Some(bar(
                    *batches as u64,
                    &format!("epoch {epoch}/{epochs}"),
                    self.quiet,
                ));
            }
            Batch { loss, .. } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("loss {loss:.4}"));
                    b.inc(1);
                }
            }
            EpochEnd(r) => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                if !self.quiet {
                    eprintln!(
                        "epoch {:>3}: loss {:.4}  train acc {:.2}%  val acc {:.2}%  lr {:.4}  {:.1}s",
                        r.epoch,
                        r.train_loss,
                        100.0 * r.train_accuracy,
                        100.0 * r.val_accuracy,
                        r.lr,
                        r.seconds
                    );
                }
            }
        }
    }
}
