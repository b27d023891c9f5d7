//! A model's decomposition by GradSplitter, from the model to calibrated class modules and the
//! run record: [`decompose`] runs [`grad_split`], extracts every class's module with its head
//! ([`cnn_models::module::build_module`]), measures its calibration range
//! ([`cnn_models::Module::calibrate`]) and fills a [`GradRecord`]. Save the result with
//! [`cnn_models::Decomposition::save`].

use std::time::Instant;

use cnn_models::decomposition::{Decomposition, DecompositionRecord, ModuleSummary, ParentModel};
use cnn_models::{ModuleSource, TrainData};
use serde::{Deserialize, Serialize};

use crate::config::{GradSplitConfig, SearchEpoch, SelectionMetric};
use crate::error::Result;
use crate::search::{grad_split, GradSplitEvent};
use cnn_models::checkpoint::Checkpointing;

/// The `method` of a GradSplitter record.
pub const METHOD: &str = "grad";

/// The GradSplitter fields of a `decomposition.json`
/// ([`cnn_models::DecompositionRecord`]`<GradRecord>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradRecord {
    /// The search settings.
    pub config: GradSplitConfig,
    /// Images of the training part the masks trained on.
    pub train_images: usize,
    /// 1-based chosen epoch.
    pub chosen_epoch: usize,
    /// Every epoch's metrics.
    pub log: Vec<SearchEpoch>,
    /// The validation score the epoch choice compared: `accuracy`, or `balanced-accuracy`
    /// when the validation part is class-imbalanced (design §5.7).
    #[serde(default)]
    pub selection_metric: SelectionMetric,
    /// The model's balanced validation accuracy (mean per-class recall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_val_balanced_accuracy: Option<f64>,
    /// Epochs the search ran (its log's length).
    #[serde(default)]
    pub epochs_run: usize,
    /// Whether it stopped before its last scheduled epoch because the mean KRR stalled
    /// (`config.krr_patience`).
    #[serde(default)]
    pub stopped_early: bool,
}

/// Decomposes `parent` with GradSplitter: trains masks and heads on `data.train`, chooses the
/// epoch on `data.val`, and extracts one module per class; each module's calibration range is
/// measured on its class's images of `data.val`, `config.eval_batch` images at a time.
/// `checkpointing` works as in [`grad_split`]; `on_event` sees its progress.
///
/// ```
/// use std::path::Path;
/// use candle_core::Device;
/// use cnn_data::{ImageSet, ImageShape, InputFormat, Normalization};
/// use cnn_models::files::ModelMeta;
/// use cnn_models::{presets, Model, ParentModel, TrainData};
/// use splitter_grad::{Checkpointing, GradSplitConfig};
///
/// let set = ImageSet::new("toy", ImageShape { channels: 1, height: 28, width: 28 },
///     (0..16).flat_map(|i| vec![if i % 2 == 0 { 20u8 } else { 220 }; 784]).collect(),
///     (0..16).map(|i| (i % 2) as u16).collect(), vec!["dark".into(), "bright".into()]).unwrap();
/// let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
/// let model = Model::init(presets::simcnn(0.0625, 3, 2, true), 0, &Device::Cpu).unwrap();
/// let meta = ModelMeta::new(model.spec().clone(), format.clone(), "toy".into(), set.class_names.clone());
/// let parent = ParentModel { model: &model, meta: &meta, path: Path::new("model"), dataset: "toy" };
/// let data = TrainData { set: &set, train: (0..12).collect(), val: (12..16).collect(), format };
/// let cfg = GradSplitConfig { warmup_epochs: 1, mask_epochs: 1, batch_size: 4, ..Default::default() };
/// let d = splitter_grad::decompose(&parent, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
/// assert_eq!(d.modules.len(), 2);
/// assert_eq!(d.record.method, "grad");
/// assert_eq!(d.record.method_fields.log.len(), 2);
/// assert!(d.modules.iter().all(|m| m.meta.calibration.is_some()));
/// ```
pub fn decompose(
    parent: &ParentModel<'_>,
    data: &TrainData<'_>,
    config: &GradSplitConfig,
    checkpointing: Checkpointing<'_>,
    on_event: &mut dyn FnMut(&GradSplitEvent),
) -> Result<Decomposition<GradRecord>> {
    let started = Instant::now();
    let meta = parent.meta;
    let result = grad_split(parent.model, data, config, checkpointing, on_event)?;
    let seconds = started.elapsed().as_secs_f64();
    let composed_val_accuracy = result
        .log
        .iter()
        .find(|r| r.epoch == result.chosen_epoch)
        .map(|r| r.val_accuracy);
    let metrics = serde_json::json!({
        "chosen_epoch": result.chosen_epoch,
        "model_val_accuracy": result.model_accuracy,
        "composed_val_accuracy": composed_val_accuracy,
    });
    let sources = (0..meta.class_names.len())
        .map(|c| Ok(ModuleSource::Head(result.heads.module(c)?)))
        .collect::<Result<Vec<_>>>()?;
    let modules =
        parent.class_modules(data, &result.masks, sources, &metrics, config.eval_batch)?;
    let record = DecompositionRecord {
        method: METHOD.into(),
        model: parent.path.to_path_buf(),
        model_sha256: meta.weights_sha256.clone(),
        dataset: parent.dataset.to_string(),
        val_images: data.val.len(),
        model_val_accuracy: result.model_accuracy,
        modules: modules.iter().map(ModuleSummary::of).collect(),
        seconds,
        ..DecompositionRecord::new(GradRecord {
            config: config.clone(),
            train_images: data.train.len(),
            chosen_epoch: result.chosen_epoch,
            selection_metric: result.selection_metric,
            model_val_balanced_accuracy: Some(result.model_balanced_accuracy),
            epochs_run: result.log.len(),
            stopped_early: result.stopped_early,
            log: result.log,
        })
    };
    Ok(Decomposition { modules, record })
}
