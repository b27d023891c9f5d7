//! Datasets: loaded by the CLI's names (`fashion-mnist`, `mnist=DIR`, …) or built from raw
//! uint8 images and labels.

use std::sync::Arc;

use cnn_data::{DatasetKind, DatasetSpec, DatasetSplits, ImageSet, ImageShape, InputFormat};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{detached, lib_err, value_err};

/// A dataset's train and test splits, with the input format a model trained on it takes.
#[pyclass(module = "cnnsplit._native", name = "Dataset", frozen)]
pub struct PyDataset {
    /// The images.
    pub splits: Arc<DatasetSplits>,
    /// The dataset as a model records it (`fashion-mnist=/path`, or `arrays:NAME`).
    pub spec: String,
    /// The dataset kind, when loaded by name (it picks the default augmentation).
    pub kind: Option<DatasetKind>,
    /// Input format of a model trained on it.
    pub format: InputFormat,
}

impl PyDataset {
    /// The split `name` (`train` or `test`).
    pub fn split(&self, name: &str) -> PyResult<&ImageSet> {
        match name {
            "train" => Ok(&self.splits.train),
            "test" => Ok(&self.splits.test),
            other => Err(value_err(format!(
                "split must be \"train\" or \"test\", got {other:?}"
            ))),
        }
    }
}

/// Images `[n, c, h, w]` (or `[n, h, w]`, grey) of `bytes` as an image set with `labels`.
pub fn image_set(
    name: &str,
    bytes: &[u8],
    shape: &[usize],
    labels: Vec<u16>,
    class_names: Vec<String>,
) -> PyResult<ImageSet> {
    let shape = match *shape {
        [_, c, h, w] => ImageShape {
            channels: c,
            height: h,
            width: w,
        },
        [_, h, w] => ImageShape {
            channels: 1,
            height: h,
            width: w,
        },
        _ => {
            return Err(value_err(format!(
                "{name}: images must have shape [N, C, H, W] or [N, H, W], got {shape:?}"
            )))
        }
    };
    ImageSet::new(name, shape, bytes.to_vec(), labels, class_names).map_err(lib_err)
}

#[pymethods]
impl PyDataset {
    /// Load a dataset by the name the CLI's `--dataset` takes: `fashion-mnist` (the bundled
    /// subset), `fashion-mnist-full`, `mnist=DIR`, `mnist-5k=FILE`, `cifar10=DIR`,
    /// `cifar100=DIR`, `svhn=DIR`, `folder=DIR`.
    #[staticmethod]
    fn load(py: Python<'_>, name: &str) -> PyResult<Self> {
        let spec: DatasetSpec = name
            .parse()
            .map_err(|e| value_err(format!("dataset {name:?}: {e}")))?;
        let splits = detached(py, || {
            cnn_data::load_dataset(&spec)
                .map_err(|e| lib_err(format!("loading dataset {spec}: {e}")))
        })?;
        Ok(PyDataset {
            splits: Arc::new(splits),
            spec: spec.to_string(),
            kind: Some(spec.kind),
            format: InputFormat::for_dataset(spec.kind),
        })
    }

    /// A dataset of raw uint8 images (`[N, C, H, W]` or `[N, H, W]` buffers) and u16 labels
    /// (little-endian buffers). Models trained on it take 3×32×32 inputs (larger images keep
    /// their size), normalised with the training images' per-channel mean and deviation.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn from_buffers(
        name: &str,
        train_images: &[u8],
        train_shape: Vec<usize>,
        train_labels: Vec<u16>,
        test_images: &[u8],
        test_shape: Vec<usize>,
        test_labels: Vec<u16>,
        class_names: Vec<String>,
    ) -> PyResult<Self> {
        let train = image_set(
            &format!("{name}/train"),
            train_images,
            &train_shape,
            train_labels,
            class_names.clone(),
        )?;
        let test = image_set(
            &format!("{name}/test"),
            test_images,
            &test_shape,
            test_labels,
            class_names,
        )?;
        if train.shape != test.shape {
            return Err(value_err(format!(
                "{name}: train images are {:?}, test images {:?}",
                train.shape, test.shape
            )));
        }
        if train.is_empty() {
            return Err(value_err(format!("{name}: no training images")));
        }
        let mut norm = cnn_data::Normalization::from_images(&train);
        if norm.mean.len() == 1 {
            norm = cnn_data::Normalization::uniform(norm.mean[0], norm.std[0], 3);
        }
        if norm.mean.len() != 3 {
            return Err(value_err(format!(
                "{name}: images need 1 or 3 channels, got {}",
                norm.mean.len()
            )));
        }
        let format = InputFormat {
            channels: 3,
            size: train.shape.height.max(train.shape.width).max(32),
            norm,
        };
        Ok(PyDataset {
            splits: Arc::new(DatasetSplits { train, test }),
            spec: format!("arrays:{name}"),
            kind: None,
            format,
        })
    }

    /// The dataset as models record it (`fashion-mnist=/path`, `arrays:NAME`).
    #[getter]
    fn spec(&self) -> String {
        self.spec.clone()
    }

    /// Class names, in label order.
    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.splits.train.class_names.clone()
    }

    /// Stored image shape `(channels, height, width)`.
    #[getter]
    fn image_shape(&self) -> (usize, usize, usize) {
        let s = self.splits.train.shape;
        (s.channels, s.height, s.width)
    }

    /// Number of images of a split (`train` or `test`).
    fn len_of(&self, split: &str) -> PyResult<usize> {
        Ok(self.split(split)?.len())
    }

    /// The raw uint8 images of a split as bytes, `[N, C, H, W]`.
    fn image_bytes<'py>(&self, py: Python<'py>, split: &str) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.split(split)?.images))
    }

    /// The labels of a split.
    fn labels(&self, split: &str) -> PyResult<Vec<u16>> {
        Ok(self.split(split)?.labels.clone())
    }

    /// The input format of a model trained on this dataset, as JSON.
    fn input_format_json(&self) -> PyResult<String> {
        crate::to_json(&self.format)
    }
}

/// Registers the dataset class.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDataset>()
}
