//! The dataset folders under the data root: checking a received file against the catalog
//! before it is renamed into place, unpacking archives, and the manifest that records what
//! was checked.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::{Checksum, Dataset, SourceFile};

/// File name of the manifest in a dataset folder.
pub const MANIFEST_FILE: &str = "cnnsplit-dataset.json";
/// Format tag of the manifest.
pub const MANIFEST_FORMAT: &str = "cnnsplit-dataset";
/// Manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Suffix of a file being received (downloaded or copied), kept for resuming.
pub const PART_SUFFIX: &str = ".part";

/// What a dataset folder's manifest records: which source files were checked and how, and
/// every file the folder holds with its size and SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`MANIFEST_VERSION`].
    pub format_version: u32,
    /// Catalog name of the dataset.
    pub dataset: String,
    /// `fetch` or `import`.
    pub source: String,
    /// The address prefix or the folder the files came from.
    pub origin: String,
    /// The source files and the check each passed.
    pub checked: Vec<CheckedFile>,
    /// The files the folder holds (paths relative to it).
    pub files: Vec<StoredFile>,
}

/// A source file that passed its check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedFile {
    /// File name.
    pub name: String,
    /// `sha256`, `md5` or `size`: the strongest value it was compared with.
    pub check: String,
    /// Origin of the values it matched (e.g. `upstream release`).
    pub matched: String,
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// A file of a dataset folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Path relative to the dataset folder, `/`-separated.
    pub path: String,
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// Length, SHA-256 and MD5 of some bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// Length in bytes.
    pub bytes: u64,
    /// Lower-case hexadecimal SHA-256.
    pub sha256: String,
    /// Lower-case hexadecimal MD5.
    pub md5: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer (or sink) that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    sha256: Sha256,
    md5: Md5,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            sha256: Sha256::new(),
            md5: Md5::new(),
            bytes: 0,
        }
    }

    /// The digests of everything written, and the inner writer.
    pub fn finish(self) -> (Digests, W) {
        let d = Digests {
            bytes: self.bytes,
            sha256: hex(&self.sha256.finalize()),
            md5: hex(&self.md5.finalize()),
        };
        (d, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.md5.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Digests of a file's bytes.
pub fn digest_file(path: &Path) -> Result<Digests> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut w = HashingWriter::new(std::io::sink());
    std::io::copy(&mut f, &mut w).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(w.finish().0)
}

/// The first accepted form of `file` that `found` matches entirely.
pub fn matching<'a>(file: &'a SourceFile, found: &Digests) -> Option<&'a Checksum> {
    file.accepted.iter().find(|c| {
        c.size.is_none_or(|n| n == found.bytes)
            && c.sha256.as_deref().is_none_or(|h| h == found.sha256)
            && c.md5.as_deref().is_none_or(|h| h == found.md5)
    })
}

/// Error text for a file that matches none of its accepted forms.
fn mismatch_message(what: &str, file: &SourceFile, found: &Digests) -> String {
    let expected: Vec<String> = file.accepted.iter().map(Checksum::describe).collect();
    format!(
        "{what}: {} does not match its recorded checksum: found size {} bytes, SHA-256 {}, \
         MD5 {}; expected {}",
        file.name,
        found.bytes,
        found.sha256,
        found.md5,
        expected.join(" or ")
    )
}

/// Checks `found` (the digests of `what`) against `file`'s accepted forms.
pub fn check(what: &str, file: &SourceFile, found: &Digests) -> Result<CheckedFile> {
    match matching(file, found) {
        Some(c) => Ok(checked_file(file, c, found)),
        None => bail!("{}", mismatch_message(what, file, found)),
    }
}

/// The `.part` path next to `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(PART_SUFFIX);
    dest.with_file_name(name)
}

/// Checks the received `part` file against `file` and renames it to `dest`; on a mismatch
/// deletes `part` and fails naming `what` (the address or source path), the expected and the
/// found values.
pub fn verify_and_place(
    part: &Path,
    dest: &Path,
    file: &SourceFile,
    what: &str,
) -> Result<CheckedFile> {
    let found = digest_file(part)?;
    let Some(accepted) = matching(file, &found) else {
        let note = match std::fs::remove_file(part) {
            Ok(()) => format!("deleted {}", part.display()),
            Err(e) => format!("could not delete {}: {e}", part.display()),
        };
        bail!("{}; {note}", mismatch_message(what, file, &found));
    };
    std::fs::rename(part, dest)
        .with_context(|| format!("cannot rename {} to {}", part.display(), dest.display()))?;
    tracing::info!(file = %dest.display(), check = accepted.check_name(), "verified");
    Ok(checked_file(file, accepted, &found))
}

fn checked_file(file: &SourceFile, accepted: &Checksum, found: &Digests) -> CheckedFile {
    CheckedFile {
        name: file.name.clone(),
        check: accepted.check_name().to_string(),
        matched: accepted.origin.clone(),
        bytes: found.bytes,
        sha256: found.sha256.clone(),
    }
}

/// A path of a dataset folder as the manifest records it.
fn manifest_path(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Extracts the gzip'd tar `archive` into `dir` (regular files and folders only; a member
/// path that is absolute or climbs out with `..` is refused) and returns the extracted
/// files. Members go to a staging folder first and are moved into `dir` once all are out.
pub fn unpack_tar_gz(archive: &Path, dir: &Path) -> Result<Vec<StoredFile>> {
    let staging = dir.join(".unpack.tmp");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let f = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut files = Vec::new();
    let mut tops = Vec::new();
    let entries = tar
        .entries()
        .with_context(|| format!("{}: not a tar archive", archive.display()))?;
    for entry in entries {
        let mut entry =
            entry.with_context(|| format!("{}: corrupt tar archive", archive.display()))?;
        let rel = entry
            .path()
            .with_context(|| format!("{}: bad member name", archive.display()))?
            .into_owned();
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            bail!(
                "{}: member {} leaves the extraction folder",
                archive.display(),
                rel.display()
            );
        }
        let rel: PathBuf = rel
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let Some(top) = rel.components().next() else {
            continue;
        };
        let top = PathBuf::from(top.as_os_str());
        if !tops.contains(&top) {
            tops.push(top);
        }
        let out = staging.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
            }
            tar::EntryType::Regular => {
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                let f = std::fs::File::create(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
                let mut w = HashingWriter::new(f);
                std::io::copy(&mut entry, &mut w).with_context(|| {
                    format!("{}: cannot extract {}", archive.display(), rel.display())
                })?;
                let (d, f) = w.finish();
                f.sync_all()
                    .with_context(|| format!("cannot write {}", out.display()))?;
                files.push(StoredFile {
                    path: manifest_path(&rel),
                    bytes: d.bytes,
                    sha256: d.sha256,
                });
            }
            other => tracing::warn!(
                member = %rel.display(),
                "skipping tar member of type {other:?}"
            ),
        }
    }
    for top in tops {
        let dest = dir.join(&top);
        if dest.is_dir() {
            std::fs::remove_dir_all(&dest)
                .with_context(|| format!("cannot replace {}", dest.display()))?;
        } else if dest.exists() {
            std::fs::remove_file(&dest)
                .with_context(|| format!("cannot replace {}", dest.display()))?;
        }
        std::fs::rename(staging.join(&top), &dest)
            .with_context(|| format!("cannot move the extracted {}", dest.display()))?;
    }
    std::fs::remove_dir_all(&staging)
        .with_context(|| format!("cannot remove {}", staging.display()))?;
    Ok(files)
}

/// Unpacks what `checked` holds in `dir` as `ds` says (deleting an archive once extracted)
/// and writes the manifest; returns it.
pub fn finish_dataset(
    ds: &Dataset,
    dir: &Path,
    checked: Vec<CheckedFile>,
    source: &str,
    origin: &str,
) -> Result<Manifest> {
    let files = match ds.unpack {
        super::catalog::Unpack::Keep => checked
            .iter()
            .map(|c| StoredFile {
                path: c.name.clone(),
                bytes: c.bytes,
                sha256: c.sha256.clone(),
            })
            .collect(),
        super::catalog::Unpack::TarGz => {
            let mut all = Vec::new();
            for c in &checked {
                let archive = dir.join(&c.name);
                all.extend(unpack_tar_gz(&archive, dir)?);
                std::fs::remove_file(&archive)
                    .with_context(|| format!("cannot delete {}", archive.display()))?;
            }
            all
        }
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        format_version: MANIFEST_VERSION,
        dataset: ds.name.clone(),
        source: source.to_string(),
        origin: origin.to_string(),
        checked,
        files,
    };
    write_manifest(dir, &manifest)?;
    Ok(manifest)
}

/// Writes `dir/`[`MANIFEST_FILE`] (temp file, then rename).
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let json = serde_json::to_vec_pretty(manifest)?;
    cnn_models::files::atomic_write(&dir.join(MANIFEST_FILE), &json)?;
    Ok(())
}

/// Reads `dir/`[`MANIFEST_FILE`]; `Ok(None)` when there is none.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let value = cnn_models::files::read_versioned_json(
        &path,
        MANIFEST_FORMAT,
        MANIFEST_VERSION,
        "dataset manifest",
    )?;
    let m: Manifest = serde_json::from_value(value)
        .with_context(|| format!("{}: not a valid dataset manifest", path.display()))?;
    Ok(Some(m))
}

/// Whether every file the manifest lists exists with its recorded size (cheap check);
/// with `rehash` also its SHA-256. Returns the problems found, empty when none.
pub fn check_stored(dir: &Path, manifest: &Manifest, rehash: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for f in &manifest.files {
        let path = dir.join(&f.path);
        match std::fs::metadata(&path) {
            Err(_) => problems.push(format!("{} missing", f.path)),
            Ok(m) if m.len() != f.bytes => problems.push(format!(
                "{}: {} bytes, recorded {}",
                f.path,
                m.len(),
                f.bytes
            )),
            Ok(_) if rehash => match digest_file(&path) {
                Ok(d) if d.sha256 == f.sha256 => {}
                Ok(d) => problems.push(format!(
                    "{}: SHA-256 {}, recorded {}",
                    f.path, d.sha256, f.sha256
                )),
                Err(e) => problems.push(format!("{e:#}")),
            },
            Ok(_) => {}
        }
    }
    problems
}
