//! The modules of one composition, loaded from the paths a user names: module directories, or
//! directories holding `module_<c>/` directories (what a decomposition writes).

use std::path::{Path, PathBuf};

use candle_core::Device;
use cnn_models::decomposition::describe_collapse;
use cnn_models::module::{load_module, module_dir, Module, MODULE_META};

use crate::error::{ComposerError, Result};

fn artefact(path: &Path, message: String) -> ComposerError {
    ComposerError::Artefact {
        path: path.to_path_buf(),
        message,
    }
}

/// Expands module paths: a module directory (or its `module.json`) stands for itself; any other
/// directory for the module directories in it, `module_0`, `module_1`, … in class order (other
/// names after them, by name).
///
/// ```
/// # fn main() -> Result<(), composer::ComposerError> {
/// let dir = tempfile::tempdir().unwrap();
/// for c in [10, 2] {
///     let m = dir.path().join(format!("module_{c}"));
///     std::fs::create_dir_all(&m).unwrap();
///     std::fs::write(m.join("module.json"), "{}").unwrap();
/// }
/// let dirs = composer::module_dirs(&[dir.path().to_path_buf()])?;
/// assert_eq!(dirs, [dir.path().join("module_2"), dir.path().join("module_10")]);
/// assert!(composer::module_dirs(&[dir.path().join("module_2").join("x")]).is_err());
/// # Ok(())
/// # }
/// ```
pub fn module_dirs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let dir = module_dir(p);
        if dir.join(MODULE_META).exists() {
            out.push(dir);
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            artefact(
                &dir,
                format!("not a module directory and not readable as a folder of modules: {e}"),
            )
        })?;
        let mut found: Vec<(usize, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(MODULE_META).exists())
            .map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let idx = name
                    .trim_start_matches("module_")
                    .parse()
                    .unwrap_or(usize::MAX);
                (idx, e.path())
            })
            .collect();
        if found.is_empty() {
            return Err(artefact(
                &dir,
                "holds no module (no module.json in it or its subfolders)".into(),
            ));
        }
        found.sort();
        out.extend(found.into_iter().map(|(_, p)| p));
    }
    Ok(out)
}

/// Loads the modules [`module_dirs`] finds under `paths` onto `device` and checks that they can
/// be composed: every weights file matches its hash, every module was extracted from the model
/// with weights hash `parent_sha256` when one is given, and all take the same input format.
/// A collapsed module (design §13) is loaded, with a warning naming it and why.
pub fn load_modules(
    paths: &[PathBuf],
    parent_sha256: Option<&str>,
    device: &Device,
) -> Result<Vec<Module>> {
    let mut modules: Vec<Module> = Vec::new();
    for dir in module_dirs(paths)? {
        // the loader's message names the file and the problem already
        let m = load_module(&dir, parent_sha256, device)
            .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
        if let Some(first) = modules.first() {
            if m.meta.input_format != first.meta.input_format {
                return Err(artefact(
                    &dir,
                    format!(
                        "input format {:?} differs from the first module's {:?}: modules of one composition must take the same input",
                        m.meta.input_format, first.meta.input_format
                    ),
                ));
            }
        }
        if !m.meta.collapsed.is_empty() {
            tracing::warn!(
                "module {} (class {} `{}`) is collapsed: {}",
                dir.display(),
                m.meta.class_index,
                m.meta.class_name,
                describe_collapse(&m.meta.collapsed)
            );
        }
        modules.push(m);
    }
    Ok(modules)
}

/// The collapsed modules among `modules` as JSON for a command's output: one
/// `{"class", "name", "collapsed"}` object per collapsed module (design §13), in order.
///
/// ```
/// let none: Vec<cnn_models::Module> = Vec::new();
/// assert_eq!(composer::collapsed_modules_json(&none), serde_json::json!([]));
/// ```
pub fn collapsed_modules_json(modules: &[Module]) -> serde_json::Value {
    serde_json::Value::Array(
        modules
            .iter()
            .filter(|m| !m.meta.collapsed.is_empty())
            .map(|m| {
                serde_json::json!({
                    "class": m.meta.class_index,
                    "name": m.meta.class_name,
                    "collapsed": m.meta.collapsed,
                })
            })
            .collect(),
    )
}
