//! Running the `cnnsplit` binary from the integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};

/// Run `cnnsplit` with `args`.
pub fn cnnsplit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cnnsplit"))
        .args(args)
        .output()
        .expect("run cnnsplit")
}

/// Run `cnnsplit` with `args`, assert success, and parse its stdout as JSON.
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = cnnsplit(args);
    assert!(
        out.status.success(),
        "cnnsplit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Run `cnnsplit` with `args`, assert that it fails without a panic and that stderr holds
/// every needle.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = cnnsplit(args);
    assert!(!out.status.success(), "cnnsplit {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
}

/// A path as `&str` for an argument list.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
