//! `cargo xtask fuzz-seeds`: writes the seed corpora of the cargo-fuzz targets (fuzz/) — small
//! files in each real format, laid out as each target cuts its input.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use cnn_data::gzip_deterministic;
use cnn_data::idx::{encode_idx_images, encode_idx_labels};
use cnn_models::files::{save_model, ModelMeta, META_FILE, WEIGHTS_FILE};
use cnn_models::module::{save_module, MODULE_META, MODULE_WEIGHTS};
use cnn_models::{presets, Model};

// One source for the fuzz targets and their seeds: the fixtures file of the fuzz crate.
#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_fixtures;

use fuzz_fixtures::{join_two, tiny_module, tiny_spec};

struct Seeds {
    dir: PathBuf,
    written: usize,
    bytes: usize,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> Result<Self> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Seeds {
            dir,
            written: 0,
            bytes: 0,
        })
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        cnn_models::files::atomic_write(&path, bytes)?;
        self.written += 1;
        self.bytes += bytes.len();
        Ok(())
    }

    fn with_pick(&mut self, name: &str, pick: u8, bytes: &[u8]) -> Result<()> {
        let mut all = vec![pick];
        all.extend_from_slice(bytes);
        self.put(name, &all)
    }
}

/// The first `n` images and labels of the bundled Fashion-MNIST test split, as IDX files.
fn fashion_idx(n: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let spec: cnn_data::DatasetSpec = "fashion-mnist".parse()?;
    let splits = cnn_data::load_dataset(&spec)?;
    let set = splits.test.subset(&(0..n).collect::<Vec<_>>());
    let labels: Vec<u8> = set.labels.iter().map(|&l| l as u8).collect();
    let (h, w) = (set.shape.height, set.shape.width);
    Ok((
        encode_idx_images(n, h, w, &set.images)?,
        encode_idx_labels(&labels)?,
    ))
}

fn cifar_record(label_bytes: &[u8], seed: u8) -> Vec<u8> {
    let mut r = label_bytes.to_vec();
    r.extend((0..cnn_data::cifar::CIFAR_PIXELS).map(|i| (i as u8).wrapping_mul(seed)));
    r
}

/// A little-endian MAT v5 file writer: just what the SVHN seeds need.
mod mat {
    const MI_INT8: u32 = 1;
    const MI_UINT8: u32 = 2;
    const MI_INT32: u32 = 5;
    const MI_UINT32: u32 = 6;
    const MI_DOUBLE: u32 = 9;
    const MI_MATRIX: u32 = 14;
    const MI_COMPRESSED: u32 = 15;

    fn element(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut out = ty.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
        out
    }

    /// An `miMATRIX` of class `class` with `data` stored as uint8 or double.
    pub fn matrix(name: &str, class: u8, dims: &[i32], data: &[u8], double: bool) -> Vec<u8> {
        let mut body = element(MI_UINT32, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let d: Vec<u8> = dims.iter().flat_map(|v| v.to_le_bytes()).collect();
        body.extend(element(MI_INT32, &d));
        body.extend(element(MI_INT8, name.as_bytes()));
        body.extend(if double {
            let v: Vec<u8> = data
                .iter()
                .flat_map(|&b| f64::from(b).to_le_bytes())
                .collect();
            element(MI_DOUBLE, &v)
        } else {
            element(MI_UINT8, data)
        });
        element(MI_MATRIX, &body)
    }

    /// `inner` wrapped in a zlib-compressed element.
    pub fn compressed(inner: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(inner);
        let data = z.finish().unwrap_or_default();
        let mut out = MI_COMPRESSED.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    /// A MAT v5 file: the 128-byte header, then the elements.
    pub fn file(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"MATLAB 5.0 MAT-file, cnnsplit fuzz seed".to_vec();
        out.resize(116, b' ');
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&0x0100u16.to_le_bytes());
        out.extend_from_slice(b"IM");
        for e in elements {
            out.extend_from_slice(e);
        }
        out
    }
}

fn png(w: u32, h: u32, colour: bool) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    let img: image::DynamicImage = if colour {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 30) as u8, (y * 30) as u8, 90])
        })
        .into()
    } else {
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x + y) * 15) as u8])).into()
    };
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

fn jpeg(w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 30) as u8, 40, (y * 30) as u8])
    });
    image::DynamicImage::from(img).write_to(&mut out, image::ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

/// Writes every target's seeds under `out/<target>/`; returns (target, files, bytes) rows.
pub fn write_seeds(out: &Path) -> Result<Vec<(String, usize, usize)>> {
    let mut report = Vec::new();
    let mut done = |s: Seeds| {
        let target = s.dir.file_name().map(|n| n.to_string_lossy().into_owned());
        report.push((target.unwrap_or_default(), s.written, s.bytes));
    };

    let mut s = Seeds::new(out, "idx")?;
    let (img, lab) = fashion_idx(2)?;
    s.put("fashion-raw", &join_two(&img, &lab))?;
    s.put(
        "fashion-gzip",
        &join_two(&gzip_deterministic(&img), &gzip_deterministic(&lab)),
    )?;
    let small = encode_idx_images(3, 2, 3, &[0, 50, 100, 150, 200, 250].repeat(3))?;
    s.put(
        "small-raw",
        &join_two(&small, &encode_idx_labels(&[0, 4, 9])?),
    )?;
    done(s);

    let mut s = Seeds::new(out, "cifar")?;
    s.with_pick("cifar10", 0, &cifar_record(&[3], 7))?;
    let two = [cifar_record(&[2, 71], 3), cifar_record(&[19, 99], 5)].concat();
    s.with_pick("cifar100-fine", 1, &two)?;
    s.with_pick("cifar100-coarse", 2, &cifar_record(&[4, 40], 11))?;
    done(s);

    let mut s = Seeds::new(out, "svhn_mat")?;
    let (h, w, c, n) = (4, 4, 3, 2);
    let pixels: Vec<u8> = (0..h * w * c * n).map(|i| (i * 7 % 256) as u8).collect();
    let x = mat::matrix("X", 9, &[h, w, c, n], &pixels, false);
    let y = mat::matrix("y", 6, &[n, 1], &[10, 3], true);
    s.put("svhn-plain.mat", &mat::file(&[x.clone(), y.clone()]))?;
    s.put(
        "svhn-compressed.mat",
        &mat::file(&[mat::compressed(&x), mat::compressed(&y)]),
    )?;
    let xd = mat::matrix("X", 6, &[h, w, c, n], &pixels, true);
    s.put("svhn-double-pixels.mat", &mat::file(&[xd, y]))?;
    done(s);

    let mut s = Seeds::new(out, "image_folder")?;
    s.with_pick(
        "png-rgb-grey",
        0,
        &join_two(&png(8, 8, true)?, &png(8, 8, false)?),
    )?;
    s.with_pick("png-grey", 4, &join_two(&png(8, 8, false)?, &[]))?;
    s.with_pick("jpg-png", 1, &join_two(&jpeg(8, 8)?, &png(8, 8, true)?))?;
    s.with_pick(
        "png-sizes-differ",
        0,
        &join_two(&png(8, 8, true)?, &png(6, 8, true)?),
    )?;
    done(s);

    let cpu = Device::Cpu;
    let tmp = std::env::temp_dir().join(format!("cnnsplit-fuzz-seeds-{}", std::process::id()));
    let model = Model::init(tiny_spec(), 0, &cpu)?;
    let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::Cifar10);
    let mut meta = ModelMeta::new(
        tiny_spec(),
        format,
        "cifar10=/data/cifar10".into(),
        fuzz_fixtures::class_names(3),
    );
    meta.seed = Some(0);
    let model_dir = tmp.join("model");
    let model_sha = save_model(&model_dir, &model, &meta)?;
    let (mut module_files, mut module_sha) = (Vec::new(), String::new());
    for head in [false, true] {
        let dir = tmp.join(format!("module-{head}"));
        module_sha = save_module(&dir, &tiny_module(head))?;
        module_files.push((
            std::fs::read(dir.join(MODULE_WEIGHTS))?,
            std::fs::read(dir.join(MODULE_META))?,
        ));
    }

    let mut s = Seeds::new(out, "safetensors")?;
    s.with_pick("model", 0, &std::fs::read(model_dir.join(WEIGHTS_FILE))?)?;
    s.with_pick("module-logit", 1, &module_files[0].0)?;
    s.with_pick("module-head", 2, &module_files[1].0)?;
    done(s);

    let mut s = Seeds::new(out, "manifest")?;
    s.with_pick("model.json", 0, &std::fs::read(model_dir.join(META_FILE))?)?;
    s.with_pick("module-logit.json", 1, &module_files[0].1)?;
    s.with_pick("module-head.json", 1, &module_files[1].1)?;
    let manifest = composer::PatchManifest {
        format: composer::PATCH_FORMAT.into(),
        format_version: composer::PATCH_FORMAT_VERSION,
        rule: composer::PatchRule::last_column(
            3,
            composer::Calibration::MinMax {
                min: -1.5,
                max: 2.0,
            },
            false,
        ),
        target_class: "c2".into(),
        model_sha256: model_sha,
        module_sha256: module_sha,
        crate_version: env!("CARGO_PKG_VERSION").into(),
    };
    s.with_pick("patch.json", 2, &serde_json::to_vec_pretty(&manifest)?)?;
    let classes = (0..2)
        .map(|k| composer::ComposedClass {
            label: k,
            name: format!("task-{k}"),
            source_class: format!("c{k}"),
            source_dataset: Some("fashion-mnist".into()),
            source_dir: format!("modules/module_{k}").into(),
            parent_sha256: "parent".into(),
            module_sha256: "module".into(),
        })
        .collect();
    let composition =
        composer::CompositionManifest::new("new-task", classes, vec!["fashion-mnist".into()], 0.2);
    s.with_pick(
        "composition.json",
        3,
        &serde_json::to_vec_pretty(&composition)?,
    )?;
    done(s);
    std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;

    let mut s = Seeds::new(out, "model_spec")?;
    let specs = [
        ("tiny.json", tiny_spec()),
        ("simcnn.json", presets::simcnn(0.0625, 3, 10, true)),
        ("rescnn.json", presets::rescnn(0.0625, 3, 10, true)),
        ("incecnn.json", presets::incecnn(0.0625, 3, 10)),
        ("simcnn-weak.json", presets::simcnn_weak(0.0625, 3, 10)),
    ];
    for (name, spec) in specs {
        s.put(name, &serde_json::to_vec(&spec)?)?;
    }
    done(s);

    // ONNX files written by PyTorch's exporters (scripts/make_onnx_fixtures.py): the two
    // small ones, which between them hold every operator the importer reads
    let mut s = Seeds::new(out, "onnx")?;
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/onnx-import/tests/fixtures");
    for name in ["geometry.ts-folded.onnx", "branches.onnx"] {
        let path = fixtures.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        s.put(name, &bytes)?;
    }
    done(s);
    Ok(report)
}
