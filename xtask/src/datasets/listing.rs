//! `cargo xtask datasets list`: which datasets the data root holds, and in what state.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::catalog::{catalog, Dataset};
use super::store;

/// State of one dataset folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// No folder, or an empty one.
    Absent,
    /// `.part` files of an interrupted fetch or import (names and bytes held).
    Partial(Vec<(String, u64)>),
    /// Dataset files without a manifest (put there by hand): not checked.
    Unverified,
    /// The manifest's files are all there with their recorded sizes (and SHA-256 when
    /// rechecked); `check` is the weakest check its source files passed.
    Present {
        /// `sha256`, `md5` or `size`.
        check: String,
        /// `fetch`, `import` or `bundled`.
        source: String,
        /// Whether the SHA-256 of every file was recomputed now.
        rehashed: bool,
    },
    /// A manifest whose files are missing or changed (the problems found).
    Damaged(Vec<String>),
}

/// One row of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    /// Folder name under the data root.
    pub name: String,
    /// What `cnnsplit --dataset` takes for it.
    pub cli_name: String,
    /// State of the folder.
    pub presence: Presence,
    /// The folder.
    pub path: PathBuf,
}

fn part_files(dir: &Path) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(store::PART_SUFFIX) {
                let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                parts.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    parts.sort();
    parts
}

/// The state of `ds` under `root`; `rehash` recomputes the SHA-256 of every stored file.
pub fn presence(ds: &Dataset, root: &Path, rehash: bool) -> Presence {
    let dir = root.join(&ds.name);
    if !dir.is_dir() {
        return Presence::Absent;
    }
    match store::read_manifest(&dir) {
        Ok(Some(m)) => {
            let problems = store::check_stored(&dir, &m, rehash);
            if !problems.is_empty() {
                return Presence::Damaged(problems);
            }
            let checks: Vec<&str> = m.checked.iter().map(|c| c.check.as_str()).collect();
            let weakest = ["size", "md5", "sha256"]
                .into_iter()
                .find(|c| checks.contains(c))
                .unwrap_or("size");
            Presence::Present {
                check: weakest.to_string(),
                source: m.source,
                rehashed: rehash,
            }
        }
        Err(e) => Presence::Damaged(vec![format!("{e:#}")]),
        Ok(None) => {
            let parts = part_files(&dir);
            if !parts.is_empty() {
                return Presence::Partial(parts);
            }
            let dir = dir.as_path();
            let unpacked = ds
                .unpacked
                .iter()
                .flat_map(|(sub, files)| files.iter().map(move |f| dir.join(sub).join(&f.name)));
            let any = ds
                .files
                .iter()
                .map(|f| dir.join(&f.name))
                .chain(unpacked)
                .any(|p| p.exists());
            if any {
                Presence::Unverified
            } else {
                Presence::Absent
            }
        }
    }
}

/// Rows for every catalog dataset under `root`, then the bundled Fashion-MNIST subset.
pub fn list_rows(root: &Path, rehash: bool) -> Vec<ListRow> {
    let mut rows: Vec<ListRow> = catalog()
        .iter()
        .map(|ds| ListRow {
            name: ds.name.clone(),
            cli_name: ds.cli_name.clone(),
            presence: presence(ds, root, rehash),
            path: root.join(&ds.name),
        })
        .collect();
    let bundled = cnn_data::bundled_dataset_dir();
    let presence = match super::verify_bundle(&bundled) {
        Ok(()) => Presence::Present {
            check: "sha256".into(),
            source: "bundled".into(),
            rehashed: true,
        },
        Err(e) => Presence::Damaged(vec![format!("{e:#}")]),
    };
    rows.push(ListRow {
        name: "fashion-mnist-small".into(),
        cli_name: "fashion-mnist".into(),
        presence,
        path: std::fs::canonicalize(&bundled).unwrap_or(bundled),
    });
    rows
}

/// The listing as a text table, one line per dataset, with the problems or partial files
/// indented below their dataset.
pub fn render(rows: &[ListRow]) -> String {
    let mut table = vec![[
        "dataset".to_string(),
        "state".to_string(),
        "checked".to_string(),
        "--dataset".to_string(),
        "path".to_string(),
    ]];
    let mut notes: Vec<Vec<String>> = vec![Vec::new()];
    for r in rows {
        let (state, checked, note) = match &r.presence {
            Presence::Absent => ("absent".to_string(), "-".to_string(), Vec::new()),
            Presence::Partial(parts) => (
                "partial".to_string(),
                "-".to_string(),
                parts
                    .iter()
                    .map(|(p, n)| format!("{p}: {n} bytes so far; `fetch` resumes it"))
                    .collect(),
            ),
            Presence::Unverified => (
                "unverified".to_string(),
                "no".to_string(),
                vec![format!(
                    "no manifest; check the files with `cargo xtask datasets import {} --from {}`",
                    r.name,
                    r.path.display()
                )],
            ),
            Presence::Present {
                check,
                source,
                rehashed,
            } => (
                "present".to_string(),
                format!(
                    "{check} at {source}{}",
                    if *rehashed {
                        ", files rehashed now"
                    } else {
                        ""
                    }
                ),
                Vec::new(),
            ),
            Presence::Damaged(problems) => {
                ("damaged".to_string(), "no".to_string(), problems.clone())
            }
        };
        table.push([
            r.name.clone(),
            state,
            checked,
            r.cli_name.clone(),
            r.path.display().to_string(),
        ]);
        notes.push(note);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (row, note) in table.iter().zip(&notes) {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        for n in note {
            let _ = writeln!(out, "    {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_shows_each_state_with_its_notes() {
        let root = tempfile::tempdir().unwrap();
        // mnist: a partial download; svhn: a file put there by hand; the rest absent.
        let mnist = root.path().join("mnist");
        std::fs::create_dir_all(&mnist).unwrap();
        std::fs::write(mnist.join("train-images-idx3-ubyte.gz.part"), [0u8; 77]).unwrap();
        let svhn = root.path().join("svhn");
        std::fs::create_dir_all(&svhn).unwrap();
        std::fs::write(svhn.join("test_32x32.mat"), [0u8; 3]).unwrap();
        let rows = list_rows(root.path(), false);
        let states: Vec<(&str, &Presence)> = rows
            .iter()
            .map(|r| (r.name.as_str(), &r.presence))
            .collect();
        assert_eq!(
            states,
            [
                ("fashion-mnist", &Presence::Absent),
                (
                    "mnist",
                    &Presence::Partial(vec![("train-images-idx3-ubyte.gz.part".into(), 77)])
                ),
                ("mnist-5k", &Presence::Absent),
                ("cifar10", &Presence::Absent),
                ("svhn", &Presence::Unverified),
                (
                    "fashion-mnist-small",
                    &Presence::Present {
                        check: "sha256".into(),
                        source: "bundled".into(),
                        rehashed: true
                    }
                ),
            ]
        );
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("dataset "), "{text}");
        assert!(
            lines[2].starts_with("mnist ") && lines[2].contains(" partial "),
            "{text}"
        );
        assert_eq!(
            lines[3],
            "    train-images-idx3-ubyte.gz.part: 77 bytes so far; `fetch` resumes it"
        );
        assert!(lines.iter().any(|l| l.contains(&format!(
            "check the files with `cargo xtask datasets import svhn --from {}`",
            svhn.display()
        ))));
        assert!(
            text.contains("sha256 at bundled, files rehashed now  fashion-mnist"),
            "{text}"
        );
    }
}
