//! `cargo xtask datasets …`: fetching, importing and listing the datasets under the data
//! root (`datasets/` of the source tree), verification of the Fashion-MNIST source files and
//! creation of the small deterministic subset bundled under `datasets/fashion-mnist-small/`.

pub mod catalog;
pub mod fetch;
pub mod import;
pub mod listing;
pub mod store;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cnn_data::{gzip_deterministic, idx, sha256_bytes, sha256_file, FASHION_MNIST_CLASSES};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Debian package version whose Fashion-MNIST files the checksums below belong to.
pub const FASHION_MNIST_DEBIAN_VERSION: &str = "0.0~git20200523.55506a9-1";

/// SHA-256 of the four Fashion-MNIST files (gzip'd IDX) of the Debian package
/// `dataset-fashion-mnist` [`FASHION_MNIST_DEBIAN_VERSION`], in the order train images, train
/// labels, test images, test labels. The package re-compressed the upstream files (same
/// images, other gzip bytes); the upstream files' MD5 are in [`catalog`].
pub const FASHION_MNIST_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
];

/// Parameters of the committed bundle: train images per class, test images per class, seed.
pub const BUNDLE_PARAMS: (usize, usize, u64) = (600, 100, 20260101);

/// SHA-256 of the files of the bundled subset (`datasets/fashion-mnist-small`, 600 train +
/// 100 test images per class, seed 20260101), as [`bundle`] writes them.
pub const BUNDLE_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "b252110478d59e49e6578864a8a88a112285898438c16db295e61b14820d0d6a",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "01dfb025b114eb5e897e906cbbe6ff2ec5c637caa390030fb6b171d39df218a2",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "485243ee8dae0511ee70553b895d623b00f037207a27fa68ca556634dd0ba642",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "a7937e789ed28f6d4803577ae8ea415ab9a5dda8feb20b13ac18679ce1db8523",
    ),
];

/// The MIT licence of Fashion-MNIST, reproduced in the bundle's README.
const FASHION_MNIST_LICENSE: &str = "> The MIT License (MIT)
>
> Copyright (c) 2017 Zalando SE
>
> Permission is hereby granted, free of charge, to any person obtaining a copy of this
> software and associated documentation files (the \"Software\"), to deal in the Software
> without restriction, including without limitation the rights to use, copy, modify, merge,
> publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
> to whom the Software is furnished to do so, subject to the following conditions:
>
> The above copyright notice and this permission notice shall be included in all copies or
> substantial portions of the Software.
>
> THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
> INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
> PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
> FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
> OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
> DEALINGS IN THE SOFTWARE.
";

/// Where `apt-get install dataset-fashion-mnist` puts the files.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Checks the SHA-256 of the four official Fashion-MNIST files in `dir` against
/// [`FASHION_MNIST_SHA256`]; the error names every missing or mismatching file.
pub fn verify_fashion_mnist(dir: &Path) -> Result<()> {
    verify_files(dir, &FASHION_MNIST_SHA256)
}

/// Checks the four IDX files of a bundled subset in `dir` against [`BUNDLE_SHA256`].
pub fn verify_bundle(dir: &Path) -> Result<()> {
    verify_files(dir, &BUNDLE_SHA256)
}

fn verify_files(dir: &Path, expected: &[(&str, &str)]) -> Result<()> {
    let mut problems = Vec::new();
    for (name, want) in expected {
        let path = dir.join(name);
        match sha256_file(&path) {
            Ok(got) if got == *want => {}
            Ok(got) => problems.push(format!(
                "{}: SHA-256 {got}, expected {want}",
                path.display()
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        bail!(
            "Fashion-MNIST verification failed:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Sorted indices of `per_class` images of each class, drawn without replacement.
fn draw_per_class(
    labels: &[u16],
    num_classes: usize,
    per_class: usize,
    rng: &mut ChaCha8Rng,
    what: &str,
) -> Result<Vec<usize>> {
    let mut picked = Vec::with_capacity(per_class * num_classes);
    for c in 0..num_classes {
        let idx: Vec<usize> = (0..labels.len())
            .filter(|&i| usize::from(labels[i]) == c)
            .collect();
        if idx.len() < per_class {
            bail!(
                "{what}: class {c} has {} images, fewer than the {per_class} asked for",
                idx.len()
            );
        }
        picked.extend(
            rand::seq::index::sample(rng, idx.len(), per_class)
                .into_iter()
                .map(|k| idx[k]),
        );
    }
    picked.sort_unstable();
    Ok(picked)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Writes a deterministic Fashion-MNIST subset to `out`.
///
/// Verifies the four source files in `from` ([`verify_fashion_mnist`]), draws
/// `train_per_class` training and `test_per_class` test images of each class with a
/// `ChaCha8Rng` seeded by `seed` (training split first, classes in label order, drawn
/// indices sorted ascending so the source order is kept), and writes them as gzip'd IDX
/// files with the official names (fixed gzip header, so regenerating is byte-identical)
/// plus `out/README.md` stating source, licence, drawing procedure and checksums.
pub fn bundle(
    from: &Path,
    out: &Path,
    train_per_class: usize,
    test_per_class: usize,
    seed: u64,
) -> Result<()> {
    verify_fashion_mnist(from)?;
    bundle_unverified(from, out, train_per_class, test_per_class, seed)
}

fn bundle_unverified(
    from: &Path,
    out: &Path,
    train_per_class: usize,
    test_per_class: usize,
    seed: u64,
) -> Result<()> {
    let classes: Vec<String> = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names = cnn_data::IDX_FILE_NAMES;
    let train = idx::read_idx_set(
        &from.join(names[0].0),
        &from.join(names[1].0),
        "train",
        &classes,
    )?;
    let test = idx::read_idx_set(
        &from.join(names[2].0),
        &from.join(names[3].0),
        "test",
        &classes,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let train_idx = draw_per_class(
        &train.labels,
        classes.len(),
        train_per_class,
        &mut rng,
        "train",
    )?;
    let test_idx = draw_per_class(
        &test.labels,
        classes.len(),
        test_per_class,
        &mut rng,
        "test",
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut sums = Vec::new();
    for (set, picked, img_name, lab_name) in [
        (&train, &train_idx, names[0].0, names[1].0),
        (&test, &test_idx, names[2].0, names[3].0),
    ] {
        let sub = set.subset(picked);
        let labels: Vec<u8> = sub.labels.iter().map(|&l| l as u8).collect();
        let img =
            idx::encode_idx_images(sub.len(), sub.shape.height, sub.shape.width, &sub.images)?;
        let lab = idx::encode_idx_labels(&labels)?;
        for (name, raw) in [(img_name, img), (lab_name, lab)] {
            let gz = gzip_deterministic(&raw);
            write_atomic(&out.join(name), &gz)?;
            sums.push((name, sha256_bytes(&gz), gz.len()));
        }
    }
    let readme = readme_text(train_per_class, test_per_class, seed, &sums);
    write_atomic(&out.join("README.md"), readme.as_bytes())?;
    if (train_per_class, test_per_class, seed) == BUNDLE_PARAMS {
        // The default parameters must reproduce the committed bundle; a different gzip
        // implementation could change the bytes (not the images), so only warn.
        if let Err(e) = verify_bundle(out) {
            tracing::warn!("the regenerated bundle differs from the recorded checksums: {e:#}");
        }
    }
    Ok(())
}

fn readme_text(
    train_per_class: usize,
    test_per_class: usize,
    seed: u64,
    sums: &[(&str, String, usize)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Fashion-MNIST subset bundled with cnnsplit\n");
    let _ = writeln!(
        s,
        "{} training and {} test images (28×28 grey, 10 classes): {train_per_class} training \
         and {test_per_class} test images per class, in the original gzip'd IDX format and \
         with the official file names, so `cnnsplit demo` and the tests run on a fresh clone \
         without a download.\n",
        train_per_class * 10,
        test_per_class * 10
    );
    let _ = writeln!(s, "## Source and licence\n");
    let _ = writeln!(
        s,
        "Fashion-MNIST by Zalando Research (<https://github.com/zalandoresearch/fashion-mnist>), \
         taken from the Debian package `dataset-fashion-mnist` version \
         `{FASHION_MNIST_DEBIAN_VERSION}`, whose four files were checked against the SHA-256 \
         values recorded in `xtask/src/datasets.rs`.\n"
    );
    let _ = writeln!(
        s,
        "Licence: MIT, Copyright (c) 2017 Zalando SE. The licence of the data, as it must \
         accompany copies:\n"
    );
    let _ = writeln!(s, "{FASHION_MNIST_LICENSE}");
    let _ = writeln!(s, "## How the subset was drawn\n");
    let _ = writeln!(
        s,
        "A `ChaCha8Rng` (crate `rand_chacha`) seeded with `{seed}` (`seed_from_u64`) draws, \
         for the training split first and then the test split, for each class in label order \
         0–9, {train_per_class} (train) or {test_per_class} (test) of that class's images \
         without replacement (`rand::seq::index::sample`). The drawn indices of a split are \
         sorted ascending, so images keep their original relative order. Labels are the \
         original ones (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, \
         6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot). Files are gzip'd at level 9 with a fixed \
         header (no name, mtime 0), so regeneration is byte-identical.\n"
    );
    let _ = writeln!(s, "## Files\n");
    let _ = writeln!(s, "| file | bytes | SHA-256 |");
    let _ = writeln!(s, "|---|---|---|");
    for (name, sum, len) in sums {
        let _ = writeln!(s, "| `{name}` | {len} | `{sum}` |");
    }
    let _ = writeln!(s, "\n## Regenerate\n");
    let _ = writeln!(
        s,
        "```sh\nsudo apt-get install -y dataset-fashion-mnist\ncargo xtask datasets bundle \
         --from {DEBIAN_FASHION_MNIST_DIR} --out datasets/fashion-mnist-small \
         --train-per-class {train_per_class} --test-per-class {test_per_class} --seed {seed}\n```"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("cnnsplit-xtask-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write_gz(path: &Path, raw: &[u8]) {
        std::fs::write(path, gzip_deterministic(raw)).unwrap();
    }

    #[test]
    fn bundles_a_synthetic_set_deterministically() {
        let src = TempDir::new("src");
        // 5 images per class: pixel value = index, so the drawn indices are visible.
        let n = 50;
        let pixels: Vec<u8> = (0..n).flat_map(|i| vec![i as u8; 28 * 28]).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let names = cnn_data::IDX_FILE_NAMES;
        for (img, lab) in [(names[0].0, names[1].0), (names[2].0, names[3].0)] {
            write_gz(
                &src.path().join(img),
                &idx::encode_idx_images(n, 28, 28, &pixels).unwrap(),
            );
            write_gz(
                &src.path().join(lab),
                &idx::encode_idx_labels(&labels).unwrap(),
            );
        }
        // The synthetic files are not the real ones: verification must refuse them.
        let err = bundle(src.path(), src.path(), 2, 1, 7)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");

        let out1 = TempDir::new("out1");
        let out2 = TempDir::new("out2");
        bundle_unverified(src.path(), out1.path(), 3, 1, 7).unwrap();
        bundle_unverified(src.path(), out2.path(), 3, 1, 7).unwrap();
        for (name, _) in names {
            let a = std::fs::read(out1.path().join(name)).unwrap();
            let b = std::fs::read(out2.path().join(name)).unwrap();
            assert_eq!(a, b, "{name} differs between runs");
        }
        let classes: Vec<String> = FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let train = idx::read_idx_set(
            &out1.path().join(names[0].0),
            &out1.path().join(names[1].0),
            "t",
            &classes,
        )
        .unwrap();
        assert_eq!(train.len(), 30);
        assert_eq!(train.class_counts(), vec![3; 10]);
        let firsts: Vec<u8> = (0..train.len()).map(|i| train.image(i)[0]).collect();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "indices sorted: {firsts:?}"
        );
        for (&label, &first) in train.labels.iter().zip(&firsts) {
            assert_eq!(usize::from(label), usize::from(first) % 10);
        }
        let readme = std::fs::read_to_string(out1.path().join("README.md")).unwrap();
        assert!(readme.contains("Zalando SE") && readme.contains(FASHION_MNIST_DEBIAN_VERSION));
        assert!(readme.contains(&sha256_file(&out1.path().join(names[0].0)).unwrap()));
        // Too many per class is an error, not a panic.
        assert!(bundle_unverified(src.path(), out1.path(), 6, 1, 7).is_err());
    }

    #[test]
    fn committed_bundle_matches_and_regenerates_byte_identically() {
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/fashion-mnist-small");
        verify_bundle(&bundled).unwrap();
        let src = Path::new(DEBIAN_FASHION_MNIST_DIR);
        if !src.join(FASHION_MNIST_SHA256[0].0).is_file() {
            eprintln!("{DEBIAN_FASHION_MNIST_DIR} not installed: regeneration not checked");
            return;
        }
        let out = TempDir::new("regen");
        let (train, test, seed) = BUNDLE_PARAMS;
        bundle(src, out.path(), train, test, seed).unwrap();
        verify_bundle(out.path()).unwrap();
        let a = std::fs::read(out.path().join("README.md")).unwrap();
        let b = std::fs::read(bundled.join("README.md")).unwrap();
        assert_eq!(a, b, "README.md differs");
    }
}
