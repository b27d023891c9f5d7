//! Opening any runnable cnnsplit directory: a model, a patched model, a composed model or a
//! class module.

use std::path::Path;

use candle_core::Device;
use cnn_models::files::{load_model, model_dir, ModelMeta, META_FILE};
use cnn_models::module::{load_module, module_dir, MODULE_META};
use cnn_models::{Model, Module, OpsBackend};

use crate::composed::{is_composed, load_composed, ComposedModel};
use crate::error::{ComposerError, Result};
use crate::patched::{is_patched, load_patched, PatchedModel};

/// What kind of artefact a directory holds, as [`ArtifactKind::of`] tells from its files
/// without loading anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A trained model (`model.json`).
    Model,
    /// A patched model (`patch.json`).
    Patched,
    /// A composed model (`composition.json`).
    Composed,
    /// A class module (`module.json`).
    Module,
}

impl ArtifactKind {
    /// The kind of artefact at `path`, a directory (or, for a model or a module, its JSON
    /// file); `None` when it holds none of the four.
    ///
    /// ```
    /// use composer::ArtifactKind;
    /// let dir = tempfile::tempdir().unwrap();
    /// assert_eq!(ArtifactKind::of(dir.path()), None);
    /// std::fs::write(dir.path().join("composition.json"), "{}").unwrap();
    /// assert_eq!(ArtifactKind::of(dir.path()), Some(ArtifactKind::Composed));
    /// ```
    pub fn of(path: &Path) -> Option<ArtifactKind> {
        if is_patched(path) {
            Some(ArtifactKind::Patched)
        } else if is_composed(path) {
            Some(ArtifactKind::Composed)
        } else if model_dir(path).join(META_FILE).exists() {
            Some(ArtifactKind::Model)
        } else if module_dir(path).join(MODULE_META).exists() {
            Some(ArtifactKind::Module)
        } else {
            None
        }
    }
}

/// A loaded artefact: whatever [`Artifact::open`] found in a directory.
#[derive(Debug)]
pub enum Artifact {
    /// A trained model and its metadata.
    Model(Box<Model>, Box<ModelMeta>),
    /// A patched model.
    Patched(Box<PatchedModel>),
    /// A composed model.
    Composed(ComposedModel),
    /// A class module.
    Module(Box<Module>),
}

impl Artifact {
    /// Loads the artefact at `path` onto `device`, whichever of the four kinds it is
    /// ([`ArtifactKind::of`]). A path that holds none is opened as a model, so the error says
    /// what a model directory lacks.
    pub fn open(path: &Path, device: &Device) -> Result<Artifact> {
        let model_error = |e: cnn_models::ModelError| ComposerError::Model(e.to_string());
        Ok(match ArtifactKind::of(path) {
            Some(ArtifactKind::Patched) => Artifact::Patched(Box::new(load_patched(path, device)?)),
            Some(ArtifactKind::Composed) => Artifact::Composed(load_composed(path, device)?),
            Some(ArtifactKind::Module) => Artifact::Module(Box::new(
                load_module(&module_dir(path), None, device).map_err(model_error)?,
            )),
            Some(ArtifactKind::Model) | None => {
                let (model, meta) = load_model(path, device).map_err(model_error)?;
                Artifact::Model(Box::new(model), Box::new(meta))
            }
        })
    }

    /// Its kind.
    pub fn kind(&self) -> ArtifactKind {
        match self {
            Artifact::Model(..) => ArtifactKind::Model,
            Artifact::Patched(_) => ArtifactKind::Patched,
            Artifact::Composed(_) => ArtifactKind::Composed,
            Artifact::Module(_) => ArtifactKind::Module,
        }
    }

    /// Runs every network in it with `ops` (on CPU; see [`Model::set_ops`]).
    pub fn set_ops(&mut self, ops: OpsBackend) {
        match self {
            Artifact::Model(m, _) => m.set_ops(ops),
            Artifact::Patched(p) => p.set_ops(ops),
            Artifact::Composed(c) => c.set_ops(ops),
            Artifact::Module(m) => m.model.set_ops(ops),
        }
    }
}
