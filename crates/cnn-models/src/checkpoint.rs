//! Checkpoints of long runs: training ([`crate::train()`]), the GradSplitter search and the
//! CNNSplitter GA all write theirs with a [`Checkpointer`].
//!
//! A checkpoint is a directory holding a *commit record*, a JSON file with a format tag and a
//! version, and (for runs with tensors) one safetensors file per step, named by the record.
//! [`Checkpointer::commit`] writes the tensors first, under their own name, then the record
//! that names them and carries their SHA-256, then deletes every other tensors file: a crash at
//! any moment leaves the previous record and the tensors it names whole, and a tensors file
//! that no record names is never read. Each file is written with [`atomic_write`], and temp
//! files that an interrupted write left behind are removed when a run opens its checkpoint.
//!
//! A run ties its checkpoint to what it computes: its settings, its model and a
//! [`fingerprint`] of its data. A resume into a checkpoint of another run fails with
//! [`DifferentRun`], which says what differs.
//!
//! Whether a run keeps a checkpoint, and whether it continues from one, is a [`Checkpointing`]:
//!
//! ```
//! use std::path::Path;
//! use cnn_models::checkpoint::{Checkpointing, Resume};
//!
//! let dir = Path::new("out/checkpoint");
//! let plan = Checkpointing::In { dir, resume: Resume::Continue };
//! assert_eq!(plan.dir(), Some(dir));
//! assert!(plan.resumes());
//! assert!(!Checkpointing::Off.resumes());
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::files::{atomic_write, check_format, read_json_value, remove_stale_temp_files};

/// Whether a run that keeps a checkpoint starts over or continues from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// Start from the beginning; the checkpoint already in the directory, if any, is
    /// replaced as the run goes.
    #[default]
    Fresh,
    /// Continue from the checkpoint in the directory (made with the same settings, model and
    /// data) and end where an uninterrupted run would; with no checkpoint there, start from
    /// the beginning.
    Continue,
}

impl Resume {
    /// [`Resume::Continue`] if `resume`, else [`Resume::Fresh`]: for a `--resume` switch.
    pub fn continue_if(resume: bool) -> Self {
        if resume {
            Resume::Continue
        } else {
            Resume::Fresh
        }
    }
}

/// Where a long run keeps its checkpoint, and whether it continues from it.
///
/// ```
/// use std::path::Path;
/// use cnn_models::checkpoint::{Checkpointing, Resume};
///
/// // no checkpoint: an interrupted run starts over
/// assert_eq!(Checkpointing::Off.dir(), None);
/// // a checkpoint after every epoch, continuing from the one already there
/// let plan = Checkpointing::In { dir: Path::new("ckpt"), resume: Resume::Continue };
/// assert!(plan.resumes());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpointing<'a> {
    /// Keep no checkpoint.
    Off,
    /// Keep a checkpoint in `dir` (created if needed), written after every epoch or
    /// generation.
    In {
        /// The checkpoint directory; it belongs to this run.
        dir: &'a Path,
        /// Whether to continue from the checkpoint already there.
        resume: Resume,
    },
}

impl<'a> Checkpointing<'a> {
    /// The checkpoint directory, if the run keeps one.
    pub fn dir(&self) -> Option<&'a Path> {
        match *self {
            Checkpointing::Off => None,
            Checkpointing::In { dir, .. } => Some(dir),
        }
    }

    /// Whether the run continues from the checkpoint in its directory.
    pub fn resumes(&self) -> bool {
        matches!(
            self,
            Checkpointing::In {
                resume: Resume::Continue,
                ..
            }
        )
    }

    /// The [`Checkpointer`] of a run whose checkpoints are of `kind`, if it keeps any. Opening
    /// it removes the temp files an interrupted write left in the directory.
    pub fn open(&self, kind: &'static CheckpointKind) -> Result<Option<Checkpointer>> {
        self.dir()
            .map(|dir| Checkpointer::open(dir, kind))
            .transpose()
    }
}

/// The fingerprint a checkpoint records of the data (and anything else) a run depends on:
/// the lower-case hex SHA-256 of `parts`, one after the other.
///
/// ```
/// use cnn_models::checkpoint::fingerprint;
///
/// assert_eq!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"abc"]));
/// assert_ne!(fingerprint(&[b"abc"]), fingerprint(&[b"abd"]));
/// ```
pub fn fingerprint(parts: &[&[u8]]) -> String {
    cnn_data::sha256_bytes(&parts.concat())
}

/// A resume found a checkpoint made by a different run: other settings, another model or
/// other data.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: the checkpoint was made with different {what} ({})", path.display(), differences.join(", "))]
pub struct DifferentRun {
    /// The checkpoint's commit record.
    pub path: PathBuf,
    /// What the run's identity is made of (`settings`, `training settings`).
    pub what: &'static str,
    /// What differs: `name: checkpoint → this run` for a setting, or a word such as
    /// `model weights`.
    pub differences: Vec<String>,
}

/// The settings that differ between `old` (a checkpoint's) and `new` (this run's), compared
/// as JSON, as `name: old → new`; nested fields are named by their dotted path.
///
/// ```
/// use cnn_models::checkpoint::setting_differences;
/// use serde_json::json;
///
/// let old = json!({"lr": 0.1, "ga": {"generations": 3, "keep": 2}});
/// let new = json!({"lr": 0.1, "ga": {"generations": 5, "keep": 2}});
/// assert_eq!(setting_differences(&old, &new).unwrap(), ["ga.generations: 3 → 5"]);
/// ```
pub fn setting_differences(old: &impl Serialize, new: &impl Serialize) -> Result<Vec<String>> {
    let json = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| ModelError::Mismatch(format!("settings as JSON: {e}")))
    };
    let (a, b) = (
        json(serde_json::to_value(old))?,
        json(serde_json::to_value(new))?,
    );
    let mut out = Vec::new();
    differences(&a, &b, "", &mut out);
    Ok(out)
}

fn differences(a: &serde_json::Value, b: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            for (k, va) in x {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match y.get(k) {
                    Some(vb) => differences(va, vb, &path, out),
                    None => out.push(format!("{path}: {va} → (absent)")),
                }
            }
        }
        _ if a != b => out.push(format!("{at}: {a} → {b}")),
        _ => {}
    }
}

/// How a commit record is laid out as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonLayout {
    /// Indented, one field a line.
    Pretty,
    /// One line.
    Compact,
}

/// The tensors files of a kind of checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct TensorFiles {
    /// Name of the file of step `n` without `n` and the extension: `checkpoint-epoch` gives
    /// `checkpoint-epoch3.safetensors`.
    pub prefix: &'static str,
    /// The one tensors file of format version 1, whose record does not name it.
    pub version_1_file: &'static str,
}

impl TensorFiles {
    /// The tensors file of step `step`.
    pub fn file_name(&self, step: usize) -> String {
        format!("{}{step}.safetensors", self.prefix)
    }

    /// Whether `name` is a tensors file of this kind (of any step, or of version 1).
    pub fn is_file_name(&self, name: &str) -> bool {
        name == self.version_1_file
            || (name.starts_with(self.prefix) && name.ends_with(".safetensors"))
    }
}

/// The files and format of one kind of checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointKind {
    /// The record's `format` tag.
    pub format: &'static str,
    /// What the checkpoint is called in errors (`training checkpoint`).
    pub name: &'static str,
    /// The `format_version` this build writes.
    pub version: u32,
    /// The format versions this build reads.
    pub versions_read: &'static [u32],
    /// File name of the commit record.
    pub record_file: &'static str,
    /// The tensors files, for a kind that keeps tensors.
    pub tensors: Option<TensorFiles>,
    /// How the record is written.
    pub layout: JsonLayout,
}

/// The beginning and end of every commit record, around a kind's own fields.
#[derive(Serialize)]
struct RecordOut<'a, B> {
    format: &'static str,
    format_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tensors_file: Option<&'a str>,
    #[serde(flatten)]
    body: &'a B,
    #[serde(skip_serializing_if = "Option::is_none")]
    tensors_sha256: Option<&'a str>,
}

/// A commit record read back, with the tensors it names.
pub struct Committed<B> {
    /// The record file.
    pub path: PathBuf,
    /// The format version it was written in.
    pub version: u32,
    /// The kind's own fields.
    pub body: B,
    /// The tensors file and its tensors (on the CPU), for a kind that keeps tensors.
    tensors: Option<(PathBuf, std::collections::HashMap<String, Tensor>)>,
}

impl<B> Committed<B> {
    /// The tensor `name` of the checkpoint, on the CPU.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let (path, map) = self
            .tensors
            .as_ref()
            .ok_or_else(|| ModelError::bad(&self.path, "this checkpoint keeps no tensors"))?;
        map.get(name)
            .cloned()
            .ok_or_else(|| ModelError::bad(path, format!("missing tensor `{name}`")))
    }
}

/// Writes and reads the checkpoints of one kind in one directory.
///
/// ```
/// use std::collections::BTreeMap;
/// use candle_core::{Device, Tensor};
/// use cnn_models::checkpoint::{CheckpointKind, Checkpointer, JsonLayout, TensorFiles};
///
/// static KIND: CheckpointKind = CheckpointKind {
///     format: "example-checkpoint",
///     name: "example checkpoint",
///     version: 1,
///     versions_read: &[1],
///     record_file: "example.json",
///     tensors: Some(TensorFiles { prefix: "example-step", version_1_file: "example.safetensors" }),
///     layout: JsonLayout::Pretty,
/// };
/// let dir = std::env::temp_dir().join(format!("ckpt-doc-{}", std::process::id()));
/// let ckpt = Checkpointer::open(&dir, &KIND).unwrap();
/// assert!(ckpt.load::<serde_json::Value>().unwrap().is_none());
/// for step in 1..=2 {
///     let w = Tensor::new(&[step as f32], &Device::Cpu).unwrap();
///     let tensors = BTreeMap::from([("w".to_string(), w)]);
///     ckpt.commit(step, &tensors, &serde_json::json!({ "steps_done": step })).unwrap();
/// }
/// let back = ckpt.load::<serde_json::Value>().unwrap().unwrap();
/// assert_eq!(back.body["steps_done"], 2);
/// assert_eq!(back.tensor("w").unwrap().to_vec1::<f32>().unwrap(), [2.0]);
/// // only the last step's tensors are kept
/// assert!(!dir.join("example-step1.safetensors").exists());
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Checkpointer {
    dir: PathBuf,
    kind: &'static CheckpointKind,
}

impl Checkpointer {
    /// The checkpoints of `kind` in `dir`. Removes the temp files an interrupted write left
    /// there (the directory belongs to the run).
    pub fn open(dir: &Path, kind: &'static CheckpointKind) -> Result<Self> {
        remove_stale_temp_files(dir, 0)?;
        Ok(Checkpointer {
            dir: dir.to_path_buf(),
            kind,
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The commit record's path.
    pub fn record_path(&self) -> PathBuf {
        self.dir.join(self.kind.record_file)
    }

    fn tensor_files(&self) -> Result<&'static TensorFiles> {
        self.kind
            .tensors
            .as_ref()
            .ok_or_else(|| ModelError::Mismatch(format!("a {} keeps no tensors", self.kind.name)))
    }

    fn json_bytes<T: Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        match self.kind.layout {
            JsonLayout::Pretty => serde_json::to_vec_pretty(value),
            JsonLayout::Compact => serde_json::to_vec(value),
        }
        .map_err(|e| ModelError::Mismatch(e.to_string()))
    }

    /// Commit the checkpoint after step `step`: `tensors` into this step's tensors file, then
    /// the record (`body`'s fields between the format tag and the tensors' SHA-256), then
    /// delete the tensors files of other steps.
    pub fn commit<B: Serialize>(
        &self,
        step: usize,
        tensors: &BTreeMap<String, Tensor>,
        body: &B,
    ) -> Result<()> {
        let files = self.tensor_files()?;
        let bytes = crate::weights::safetensors_bytes(tensors, &[])?;
        let tensors_file = files.file_name(step);
        let sha = cnn_data::sha256_bytes(&bytes);
        let record = self.json_bytes(&RecordOut {
            format: self.kind.format,
            format_version: self.kind.version,
            tensors_file: Some(&tensors_file),
            body,
            tensors_sha256: Some(&sha),
        })?;
        // tensors first under their own name, then the record that points to them: until
        // the record's rename, the previous checkpoint stays whole
        atomic_write(&self.dir.join(&tensors_file), &bytes)?;
        atomic_write(&self.record_path(), &record)?;
        self.remove_other_tensors_files(files, &tensors_file)
    }

    /// Commit a record of a kind that keeps no tensors.
    pub fn commit_record<B: Serialize>(&self, body: &B) -> Result<()> {
        let record = self.json_bytes(&RecordOut {
            format: self.kind.format,
            format_version: self.kind.version,
            tensors_file: None,
            body,
            tensors_sha256: None,
        })?;
        atomic_write(&self.record_path(), &record)
    }

    /// Delete the tensors files of earlier checkpoints (and of an interrupted attempt).
    fn remove_other_tensors_files(&self, files: &TensorFiles, keep: &str) -> Result<()> {
        let dir = &self.dir;
        let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ModelError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name != keep && files.is_file_name(&name) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| ModelError::write(&entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// Read the committed checkpoint: `None` if the directory holds no record; otherwise
    /// the record, its format and version checked, with the tensors it names, their SHA-256
    /// checked.
    pub fn load<B: DeserializeOwned>(&self) -> Result<Option<Committed<B>>> {
        let path = self.record_path();
        if !path.exists() {
            return Ok(None);
        }
        let value = read_json_value(&path)?;
        let kind = self.kind;
        let version = check_format(&path, &value, kind.format, kind.versions_read, kind.name)?;
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let (tensors_file, tensors_sha256) = (field("tensors_file"), field("tensors_sha256"));
        let body: B = serde_json::from_value(value)
            .map_err(|e| ModelError::bad(&path, format!("not a {}: {e}", kind.name)))?;
        let tensors = match &kind.tensors {
            None => None,
            Some(files) => Some(self.read_tensors(&path, files, tensors_file, tensors_sha256)?),
        };
        Ok(Some(Committed {
            path,
            version,
            body,
            tensors,
        }))
    }

    fn read_tensors(
        &self,
        record: &Path,
        files: &TensorFiles,
        tensors_file: Option<String>,
        tensors_sha256: Option<String>,
    ) -> Result<(PathBuf, std::collections::HashMap<String, Tensor>)> {
        let name = tensors_file.unwrap_or_else(|| files.version_1_file.to_string());
        if !files.is_file_name(&name) {
            return Err(ModelError::bad(
                record,
                format!("tensors_file `{name}` is not a checkpoint tensors file name"),
            ));
        }
        let sha = tensors_sha256.ok_or_else(|| {
            ModelError::bad(
                record,
                format!("not a {}: no tensors_sha256", self.kind.name),
            )
        })?;
        let path = self.dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        if cnn_data::sha256_bytes(&bytes) != sha {
            let record_name = self.kind.record_file;
            return Err(ModelError::bad(
                &path,
                format!("checkpoint tensors do not match {record_name} (SHA-256)"),
            ));
        }
        let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| ModelError::bad(&path, e.to_string()))?;
        Ok((path, map))
    }

    /// Write `value` to the file `name` of the checkpoint directory, atomically, laid out like
    /// the record: for a run's state besides its record (the GA's generations).
    pub fn write_file<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let bytes = self.json_bytes(value)?;
        atomic_write(&self.dir.join(name), &bytes)
    }

    /// The JSON of the file `name` of the checkpoint directory, `None` if there is none.
    pub fn read_file(&self, name: &str) -> Result<Option<(PathBuf, serde_json::Value)>> {
        let path = self.dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some((path.clone(), read_json_value(&path)?)))
    }

    /// Delete the file `name` of the checkpoint directory, if it is there.
    pub fn remove_file(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| ModelError::write(&path, e))?;
        }
        Ok(())
    }
}
