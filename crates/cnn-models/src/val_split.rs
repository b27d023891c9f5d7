//! Which train/validation split a decomposition uses, and where that choice came from.
//!
//! A model trained by `cnnsplit train` records its split in `model.json`; the splitters then
//! choose masks and epochs (or generations) on images the model never trained on. A model
//! without that record (made by `cnnsplit import`, or an older or hand-written `model.json`)
//! gets an *assumed* split, a 20 % holdout with seed 0, which may well overlap the images the
//! model was trained on. [`ValidationSplit::of`] makes that choice and says which it was, so the
//! caller can warn and the decomposition record can carry it (`val_split`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::ModelMeta;
use crate::train::DataSplit;

/// The `val_split` of a decomposition whose model recorded its split.
pub const RECORDED_SPLIT: &str = "recorded";
/// The `val_split` of a decomposition whose model recorded no split: 20 % holdout, seed 0.
pub const ASSUMED_SPLIT: &str = "assumed-20%-seed-0";

/// Where a [`ValidationSplit`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSource {
    /// The model's `model.json` recorded how its training run split the data.
    Recorded,
    /// Nothing was recorded; a 20 % holdout with seed 0 was assumed.
    Assumed,
}

/// The split a decomposition of a model works on, with the seed that draws it and its source.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationSplit {
    /// The split.
    pub split: DataSplit,
    /// The seed its permutation is drawn from (the model's seed, 0 when unrecorded).
    pub seed: u64,
    /// Recorded in `model.json`, or assumed.
    pub source: SplitSource,
}

impl ValidationSplit {
    /// The split `meta` recorded (`training.split` of `model.json`, seed `meta.seed`), else
    /// the assumed 20 % holdout with seed 0.
    ///
    /// ```
    /// use cnn_models::files::ModelMeta;
    /// use cnn_models::val_split::{SplitSource, ValidationSplit, ASSUMED_SPLIT};
    /// use cnn_models::presets;
    /// let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
    /// let meta = ModelMeta::new(presets::simcnn(0.25, 3, 10, true), format, "fashion-mnist".into(),
    ///     (0..10).map(|c| c.to_string()).collect());
    /// let split = ValidationSplit::of(&meta);
    /// assert_eq!(split.source, SplitSource::Assumed);
    /// assert_eq!(split.label(), ASSUMED_SPLIT);
    /// assert!(split.warning(std::path::Path::new("m")).unwrap().contains("trained on"));
    /// ```
    pub fn of(meta: &ModelMeta) -> Self {
        let recorded = meta
            .training
            .as_ref()
            .and_then(|t| t.get("split"))
            .and_then(|v| serde_json::from_value::<DataSplit>(v.clone()).ok());
        match recorded {
            Some(split) => ValidationSplit {
                split,
                seed: meta.seed.unwrap_or(0),
                source: SplitSource::Recorded,
            },
            None => ValidationSplit {
                split: DataSplit::Holdout {
                    val_fraction: 0.2,
                    limit: None,
                },
                seed: 0,
                source: SplitSource::Assumed,
            },
        }
    }

    /// What a decomposition record's `val_split` says: [`RECORDED_SPLIT`] or
    /// [`ASSUMED_SPLIT`].
    pub fn label(&self) -> &'static str {
        match self.source {
            SplitSource::Recorded => RECORDED_SPLIT,
            SplitSource::Assumed => ASSUMED_SPLIT,
        }
    }

    /// The warning an assumed split deserves, naming the model directory `model`; `None` for a
    /// recorded split.
    pub fn warning(&self, model: &Path) -> Option<String> {
        (self.source == SplitSource::Assumed).then(|| {
            format!(
                "{}: model.json records no train/validation split (an imported or older model); \
                 assuming a 20 % holdout with seed 0, so masks and epochs may be chosen on images \
                 the model was trained on",
                model.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets;

    fn meta() -> ModelMeta {
        let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
        ModelMeta::new(
            presets::simcnn(0.25, 3, 10, true),
            format,
            "fashion-mnist".into(),
            (0..10).map(|c| c.to_string()).collect(),
        )
    }

    #[test]
    fn a_model_without_a_recorded_split_gets_the_assumed_one_and_a_warning() {
        let split = ValidationSplit::of(&meta());
        assert_eq!(split.source, SplitSource::Assumed);
        assert_eq!(split.seed, 0);
        assert_eq!(
            split.split,
            DataSplit::Holdout {
                val_fraction: 0.2,
                limit: None
            }
        );
        assert_eq!(split.label(), "assumed-20%-seed-0");
        let warning = split.warning(Path::new("models/imported")).unwrap();
        assert!(warning.starts_with("models/imported: "), "{warning}");
        assert!(
            warning.contains("may be chosen on images the model was trained on"),
            "{warning}"
        );
    }

    #[test]
    fn a_recorded_split_is_used_with_the_models_seed_and_no_warning() {
        let mut m = meta();
        m.seed = Some(7);
        m.training = Some(serde_json::json!({
            "split": serde_json::to_value(DataSplit::Holdout { val_fraction: 0.3, limit: None })
                .unwrap()
        }));
        let split = ValidationSplit::of(&m);
        assert_eq!(split.source, SplitSource::Recorded);
        assert_eq!(split.seed, 7);
        assert_eq!(
            split.split,
            DataSplit::Holdout {
                val_fraction: 0.3,
                limit: None
            }
        );
        assert_eq!(split.label(), "recorded");
        assert_eq!(split.warning(Path::new("m")), None);
    }
}
