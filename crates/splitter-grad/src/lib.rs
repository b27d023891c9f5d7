//! # splitter-grad
//!
//! GradSplitter (design §5): for every class c of a trained CNN, a real-valued kernel mask per
//! mask site and a small head are trained by gradient descent through a binarising
//! straight-through estimator, while the model stays frozen. The N modules run as one batched
//! masked forward; every epoch is validated and checkpointed, and the final epoch is chosen by
//! the rule of design §5.7. [`cnn_models::module::build_module`] then extracts a class's module as
//! a smaller network plus its head, in the module format both splitters share.
//!
//! [`decompose`] does all of it in one call: search, module extraction and calibration, and the
//! run record ([`GradRecord`]); [`cnn_models::Decomposition::save`] writes the result. The
//! example below shows the steps one by one.
//!
//! ```
//! use candle_core::Device;
//! use cnn_data::{ImageSet, ImageShape, InputFormat, Normalization};
//! use cnn_models::spec::{ConvSpec, InputShape, LinearSpec};
//! use cnn_models::{LayerSpec, Model, ModelSpec, TrainData};
//! use splitter_grad::{grad_split, Checkpointing, GradSplitConfig};
//!
//! // 2 classes of 8×8 grey images: dark or bright
//! let images: Vec<u8> = (0..16).flat_map(|i| vec![if i % 2 == 0 { 20u8 } else { 220 }; 64]).collect();
//! let labels: Vec<u16> = (0..16).map(|i| (i % 2) as u16).collect();
//! let set = ImageSet::new("toy", ImageShape { channels: 1, height: 8, width: 8 }, images, labels,
//!     vec!["dark".into(), "bright".into()]).unwrap();
//! let format = InputFormat { channels: 1, size: 8, norm: Normalization { mean: vec![0.5], std: vec![0.5] } };
//! let spec = ModelSpec {
//!     name: "toy".into(),
//!     input: InputShape { channels: 1, height: 8, width: 8 },
//!     num_classes: 2,
//!     conv_init: Default::default(),
//!     layers: vec![
//!         LayerSpec::Conv(ConvSpec { name: "conv_0.0".into(), out_channels: 4, kernel: 3.into(), stride: 1.into(), padding: 1.into(), dilation: 1, groups: 1,
//!             bias: true, bn: Some("conv_0.1".into()), relu: true, relu6: false }),
//!         LayerSpec::GlobalAvgPool,
//!         LayerSpec::Linear(LinearSpec { name: "fc_1".into(), out_features: 2, relu: false }),
//!     ],
//! };
//! let model = Model::init(spec, 0, &Device::Cpu).unwrap();
//! let data = TrainData { set: &set, train: (0..12).collect(), val: (12..16).collect(), format };
//! let cfg = GradSplitConfig { warmup_epochs: 1, mask_epochs: 2, batch_size: 4, ..Default::default() };
//! let result = grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
//! assert_eq!(result.log.len(), 3);
//! assert_eq!(result.masks.len(), 2); // one mask set per class
//! let head = cnn_models::ModuleSource::Head(result.heads.module(1).unwrap());
//! let module = cnn_models::module::build_module(&model, "parent-sha", &result.masks[1],
//!     head, 1, "bright", data.format.clone(), None).unwrap();
//! let (x, _) = cnn_data::to_tensor(&set, &[0, 1], &data.format, None, &Device::Cpu).unwrap();
//! assert_eq!(module.score(&x).unwrap().dims(), &[2]);
//! ```

mod adam;
pub mod checkpoint;
pub mod config;
pub mod decompose;
pub mod error;
pub mod heads;
pub mod search;
pub mod ste;

pub use cnn_models::checkpoint::{Checkpointing, Resume};
pub use config::{
    choose_epoch, class_imbalanced, krr_stalled, limit_training_part, GradSplitConfig,
    LimitSampling, MaskInit, Phase, SearchEpoch, SelectionMetric, IMBALANCE_RATIO,
};
pub use decompose::{decompose, GradRecord};
pub use error::{GradSplitError, Result};
pub use heads::{ce_on_scores, Heads, ModuleHead};
pub use search::{grad_split, GradSplitEvent, GradSplitResult, MaskSearchStep};
pub use ste::{binarize, binarize_detached};
