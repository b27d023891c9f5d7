//! Readers on small files written in the real formats.

use std::io::Write;
use std::path::Path;

use cnn_data::svhn_mat::read_mat_arrays;
use cnn_data::{
    cifar, gzip_deterministic, idx, image_folder, load_dataset, mnist_csv, svhn_mat, DataError,
    DatasetKind, DatasetSpec,
};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn assert_names_file(e: &DataError, file: &str) {
    let msg = e.to_string();
    assert!(msg.contains(file), "message {msg:?} does not name {file}");
}

#[test]
fn idx_raw_and_gzip_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    // 3 images of 2x3, pixel = 10*image + position.
    let pixels: Vec<u8> = (0..3)
        .flat_map(|i| (0..6).map(move |p| 10 * i + p))
        .collect();
    let img = idx_images(3, 2, 3, &pixels);
    let lab = idx_labels(&[2, 0, 1]);
    std::fs::write(dir.path().join("i.raw"), &img).unwrap();
    std::fs::write(dir.path().join("l.raw"), &lab).unwrap();
    std::fs::write(dir.path().join("i.gz"), gzip_deterministic(&img)).unwrap();
    std::fs::write(dir.path().join("l.gz"), gzip_deterministic(&lab)).unwrap();
    for (i, l) in [("i.raw", "l.raw"), ("i.gz", "l.gz")] {
        let set =
            idx::read_idx_set(&dir.path().join(i), &dir.path().join(l), "t", &names(3)).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(
            (set.shape.channels, set.shape.height, set.shape.width),
            (1, 2, 3)
        );
        assert_eq!(set.labels, vec![2, 0, 1]);
        assert_eq!(set.image(1), &[10, 11, 12, 13, 14, 15]);
        assert_eq!(set.images, pixels);
    }
    // Encoders produce the same bytes as the hand-written files.
    assert_eq!(idx::encode_idx_images(3, 2, 3, &pixels).unwrap(), img);
    assert_eq!(idx::encode_idx_labels(&[2, 0, 1]).unwrap(), lab);
}

#[test]
fn idx_rejects_bad_files_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let good_img = idx_images(2, 2, 2, &[1; 8]);
    std::fs::write(p("good-images"), &good_img).unwrap();
    std::fs::write(p("good-labels"), idx_labels(&[0, 1])).unwrap();

    // Wrong magic: a label file given as images, and garbage.
    std::fs::write(p("wrong-magic"), idx_labels(&[0, 1])).unwrap();
    let e = idx::read_idx_images(&p("wrong-magic")).unwrap_err();
    assert_names_file(&e, "wrong-magic");
    assert!(e.to_string().contains("magic"));
    let e = idx::read_idx_labels(&p("good-images")).unwrap_err();
    assert_names_file(&e, "good-images");

    // Truncated payload, raw and gzip'd.
    std::fs::write(p("trunc-images"), &good_img[..good_img.len() - 1]).unwrap();
    let e = idx::read_idx_images(&p("trunc-images")).unwrap_err();
    assert_names_file(&e, "trunc-images");
    assert!(e.to_string().contains("truncated"));
    std::fs::write(
        p("trunc.gz"),
        gzip_deterministic(&idx_labels(&[0, 1, 2])[..9]),
    )
    .unwrap();
    let e = idx::read_idx_labels(&p("trunc.gz")).unwrap_err();
    assert_names_file(&e, "trunc.gz");
    // Truncated header.
    std::fs::write(p("short"), [0u8, 0, 8]).unwrap();
    assert_names_file(&idx::read_idx_images(&p("short")).unwrap_err(), "short");
    // Corrupt gzip stream.
    let mut gz = gzip_deterministic(&good_img);
    let k = gz.len() / 2;
    gz.truncate(k);
    std::fs::write(p("corrupt.gz"), &gz).unwrap();
    assert_names_file(
        &idx::read_idx_images(&p("corrupt.gz")).unwrap_err(),
        "corrupt.gz",
    );

    // Count mismatch.
    std::fs::write(p("three-labels"), idx_labels(&[0, 1, 0])).unwrap();
    let e = idx::read_idx_set(&p("good-images"), &p("three-labels"), "t", &names(2)).unwrap_err();
    assert_names_file(&e, "three-labels");
    assert!(e.to_string().contains("count mismatch"));

    // Label out of range.
    std::fs::write(p("big-label"), idx_labels(&[0, 5])).unwrap();
    let e = idx::read_idx_set(&p("good-images"), &p("big-label"), "t", &names(2)).unwrap_err();
    assert_names_file(&e, "big-label");
    assert!(e.to_string().contains("out of range"));

    // Missing file.
    let e = idx::read_idx_images(&p("nope")).unwrap_err();
    assert_names_file(&e, "nope");
}

#[test]
fn fashion_mnist_dir_accepts_gz_and_raw_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("train-images-idx3-ubyte.gz"),
        gzip_deterministic(&idx_images(2, 28, 28, &[7; 2 * 784])),
    )
    .unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[9, 0])).unwrap();
    std::fs::write(
        d.join("t10k-images-idx3-ubyte"),
        idx_images(1, 28, 28, &[3; 784]),
    )
    .unwrap();
    let spec: DatasetSpec = format!("fashion-mnist={}", d.display()).parse().unwrap();
    // The test labels are missing: the error names the folder and the expected file.
    let e = load_dataset(&spec).unwrap_err();
    assert!(e.to_string().contains("t10k-labels-idx1-ubyte"), "{e}");
    std::fs::write(
        d.join("t10k-labels-idx1-ubyte.gz"),
        gzip_deterministic(&idx_labels(&[4])),
    )
    .unwrap();
    let s = load_dataset(&spec).unwrap();
    assert_eq!(s.train.labels, vec![9, 0]);
    assert_eq!(s.train.class_names[9], "Ankle boot");
    assert_eq!(s.test.labels, vec![4]);
    assert_eq!(s.test.image(0)[100], 3);
}

fn cifar10_record(label: u8, r: u8, g: u8, b: u8) -> Vec<u8> {
    let mut v = vec![label];
    for c in [r, g, b] {
        v.extend((0..1024).map(|p| c.wrapping_add((p % 7) as u8)));
    }
    v
}

#[test]
fn cifar10_and_100_read_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&d).unwrap();
    for i in 1..=5u8 {
        std::fs::write(
            d.join(format!("data_batch_{i}.bin")),
            cifar10_record(i, 10 * i, 100, 200),
        )
        .unwrap();
    }
    let mut test = cifar10_record(9, 1, 2, 3);
    test.extend(cifar10_record(0, 4, 5, 6));
    std::fs::write(d.join("test_batch.bin"), &test).unwrap();
    // The parent folder works too (the archive's subfolder is found).
    let spec: DatasetSpec = format!("cifar10={}", dir.path().display()).parse().unwrap();
    let s = load_dataset(&spec).unwrap();
    assert_eq!(s.train.labels, vec![1, 2, 3, 4, 5]);
    assert_eq!(s.train.image(2)[0], 30);
    assert_eq!(s.train.image(2)[1024], 100);
    assert_eq!(s.train.image(2)[2048 + 8], 201);
    assert_eq!(s.test.labels, vec![9, 0]);
    assert_eq!(s.test.image(1)[1024 + 1], 6);
    assert_eq!(s.test.class_names[9], "truck");
    assert_eq!(s.train.shape.channels, 3);

    // Bad length.
    std::fs::write(d.join("test_batch.bin"), &test[..3000]).unwrap();
    let e = load_dataset(&spec).unwrap_err();
    assert_names_file(&e, "test_batch.bin");
    assert!(e.to_string().contains("multiple"));

    // CIFAR-100: coarse then fine label.
    let d100 = tempfile::tempdir().unwrap();
    let rec = |coarse: u8, fine: u8, v: u8| {
        let mut r = vec![coarse, fine];
        r.extend(std::iter::repeat_n(v, 3072));
        r
    };
    let mut train = rec(3, 99, 5);
    train.extend(rec(0, 42, 6));
    std::fs::write(d100.path().join("train.bin"), &train).unwrap();
    std::fs::write(d100.path().join("test.bin"), rec(1, 7, 8)).unwrap();
    let s = load_dataset(&DatasetSpec {
        kind: DatasetKind::Cifar100,
        dir: d100.path().into(),
    })
    .unwrap();
    assert_eq!(s.train.labels, vec![99, 42]);
    assert_eq!(s.train.class_names[99], "worm");
    assert_eq!(s.train.num_classes(), 100);
    assert_eq!(s.train.image(1), &[6; 3072][..]);
    assert_eq!(s.test.labels, vec![7]);
    let mut coarse = Vec::new();
    let mut labels = Vec::new();
    cifar::read_cifar_file(
        &d100.path().join("train.bin"),
        cifar::CifarLayout::Cifar100Coarse,
        20,
        &mut coarse,
        &mut labels,
    )
    .unwrap();
    assert_eq!(labels, vec![3, 0]);
    // A CIFAR-10 layout on a CIFAR-100 file has the wrong length.
    let e = cifar::read_cifar_file(
        &d100.path().join("train.bin"),
        cifar::CifarLayout::Cifar10,
        10,
        &mut coarse,
        &mut labels,
    )
    .unwrap_err();
    assert_names_file(&e, "train.bin");
    // Label out of range.
    std::fs::write(d100.path().join("test.bin"), rec(1, 100, 8)).unwrap();
    assert_names_file(
        &load_dataset(&DatasetSpec {
            kind: DatasetKind::Cifar100,
            dir: d100.path().into(),
        })
        .unwrap_err(),
        "test.bin",
    );
}

/// Minimal MAT v5 writer for the tests (little-endian).
mod mat {
    pub fn element(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        if data.len() <= 4 && ty != 14 && ty != 15 {
            v.extend_from_slice(&(((data.len() as u32) << 16) | ty).to_le_bytes());
            let mut d = data.to_vec();
            d.resize(4, 0);
            v.extend_from_slice(&d);
            return v;
        }
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        if ty != 15 {
            while v.len() % 8 != 0 {
                v.push(0);
            }
        }
        v
    }

    /// `data_ty`/`data` is the stored real part; `class` the MATLAB class.
    pub fn matrix(name: &str, class: u8, dims: &[i32], data_ty: u32, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut flags = (class as u32).to_le_bytes().to_vec();
        flags.extend_from_slice(&[0; 4]);
        body.extend(element(6, &flags));
        let dims: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
        body.extend(element(5, &dims));
        body.extend(element(1, name.as_bytes()));
        body.extend(element(data_ty, data));
        element(14, &body)
    }

    pub fn compressed(inner: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(inner).unwrap();
        element(15, &z.finish().unwrap())
    }

    pub fn file(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut h = b"MATLAB 5.0 MAT-file, written by cnn-data tests".to_vec();
        h.resize(116, b' ');
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&0x0100u16.to_le_bytes());
        h.extend_from_slice(b"IM");
        for e in elements {
            h.extend_from_slice(e);
        }
        h
    }
}

/// Two 2×3 (H×W) RGB images as MATLAB X (H×W×C×N column-major) plus the NCHW expectation.
fn svhn_x() -> (Vec<u8>, Vec<u8>) {
    let (h, w, c, n) = (2, 3, 3, 2);
    let val =
        |img: usize, ch: usize, r: usize, col: usize| (100 * img + 30 * ch + 10 * r + col) as u8;
    let mut x = vec![0u8; h * w * c * n];
    let mut nchw = vec![0u8; h * w * c * n];
    for img in 0..n {
        for ch in 0..c {
            for r in 0..h {
                for col in 0..w {
                    x[r + h * col + h * w * ch + h * w * c * img] = val(img, ch, r, col);
                    nchw[img * c * h * w + ch * h * w + r * w + col] = val(img, ch, r, col);
                }
            }
        }
    }
    (x, nchw)
}

#[test]
fn svhn_mat_uncompressed_and_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let (x, nchw) = svhn_x();
    let y: Vec<u8> = [10.0f64, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let xm = mat::matrix("X", 9, &[2, 3, 3, 2], 2, &x);
    let ym = mat::matrix("y", 6, &[2, 1], 9, &y);
    // An unrelated variable (a char array) before them is skipped.
    let other = mat::matrix("note", 4, &[1, 2], 4, &[104, 0, 105, 0]);
    std::fs::write(
        dir.path().join("train_32x32.mat"),
        mat::file(&[other, xm.clone(), ym.clone()]),
    )
    .unwrap();
    // Compressed variables, and y stored as uint8 inside a double array (as MATLAB does).
    let ym8 = mat::matrix("y", 6, &[2, 1], 2, &[10, 3]);
    std::fs::write(
        dir.path().join("test_32x32.mat"),
        mat::file(&[mat::compressed(&xm), mat::compressed(&ym8)]),
    )
    .unwrap();
    let s = load_dataset(&format!("svhn={}", dir.path().display()).parse().unwrap()).unwrap();
    for set in [&s.train, &s.test] {
        assert_eq!(
            (set.shape.channels, set.shape.height, set.shape.width),
            (3, 2, 3)
        );
        assert_eq!(set.labels, vec![0, 3]);
        assert_eq!(set.images, nchw);
        assert_eq!(set.class_names[0], "0");
    }
    let arrays = read_mat_arrays(&dir.path().join("test_32x32.mat"), &[]).unwrap();
    assert_eq!(arrays.len(), 2);
    assert_eq!(arrays[1].dims, vec![2, 1]);
    assert_eq!(arrays[1].data, svhn_mat::MatData::U8(vec![10, 3]));
}

#[test]
fn svhn_mat_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (x, _) = svhn_x();
    let xm = mat::matrix("X", 9, &[2, 3, 3, 2], 2, &x);
    let ym = mat::matrix("y", 6, &[2, 1], 2, &[1, 2]);

    // Missing X.
    std::fs::write(p("no-x.mat"), mat::file(std::slice::from_ref(&ym))).unwrap();
    let e = svhn_mat::read_svhn_mat(&p("no-x.mat"), "t", &names(10)).unwrap_err();
    assert_names_file(&e, "no-x.mat");
    assert!(e.to_string().contains("`X`"));

    // Truncated in the middle of X, and in the header.
    let full = mat::file(&[xm.clone(), ym.clone()]);
    std::fs::write(p("trunc.mat"), &full[..200]).unwrap();
    let e = svhn_mat::read_svhn_mat(&p("trunc.mat"), "t", &names(10)).unwrap_err();
    assert_names_file(&e, "trunc.mat");
    assert!(e.to_string().contains("truncated"), "{e}");
    std::fs::write(p("header.mat"), &full[..100]).unwrap();
    assert_names_file(
        &svhn_mat::read_svhn_mat(&p("header.mat"), "t", &names(10)).unwrap_err(),
        "header.mat",
    );

    // Corrupt compressed element.
    let mut c = mat::compressed(&xm);
    let len = c.len();
    for b in &mut c[12..len - 4] {
        *b ^= 0x5a;
    }
    std::fs::write(p("zlib.mat"), mat::file(&[c, ym.clone()])).unwrap();
    assert_names_file(
        &svhn_mat::read_svhn_mat(&p("zlib.mat"), "t", &names(10)).unwrap_err(),
        "zlib.mat",
    );

    // Not a MAT file.
    std::fs::write(p("text.mat"), vec![b'x'; 300]).unwrap();
    assert_names_file(
        &svhn_mat::read_svhn_mat(&p("text.mat"), "t", &names(10)).unwrap_err(),
        "text.mat",
    );

    // Label out of range and label/image count mismatch.
    let bad_y = mat::matrix("y", 6, &[2, 1], 2, &[11, 2]);
    std::fs::write(p("label.mat"), mat::file(&[xm.clone(), bad_y])).unwrap();
    assert_names_file(
        &svhn_mat::read_svhn_mat(&p("label.mat"), "t", &names(10)).unwrap_err(),
        "label.mat",
    );
    let short_y = mat::matrix("y", 6, &[1, 1], 2, &[2]);
    std::fs::write(p("count.mat"), mat::file(&[xm.clone(), short_y])).unwrap();
    assert_names_file(
        &svhn_mat::read_svhn_mat(&p("count.mat"), "t", &names(10)).unwrap_err(),
        "count.mat",
    );

    // Dimensions that disagree with the data length.
    let bad_dims = mat::matrix("X", 9, &[2, 3, 3, 3], 2, &x);
    std::fs::write(p("dims.mat"), mat::file(&[bad_dims, ym])).unwrap();
    assert_names_file(
        &svhn_mat::read_svhn_mat(&p("dims.mat"), "t", &names(10)).unwrap_err(),
        "dims.mat",
    );
}

fn save_png_rgb(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)))
        .save(path)
        .unwrap();
}

#[test]
fn image_folder_reads_sorted_classes() {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        for class in ["zebra", "apple"] {
            std::fs::create_dir_all(dir.path().join(split).join(class)).unwrap();
        }
    }
    let t = dir.path().join("train");
    save_png_rgb(&t.join("apple/b.png"), 3, 2, |x, y| {
        [(10 * y + x) as u8, 50, 60]
    });
    save_png_rgb(&t.join("apple/a.png"), 3, 2, |_, _| [1, 2, 3]);
    save_png_rgb(&t.join("zebra/z.png"), 3, 2, |_, _| [200, 201, 202]);
    std::fs::write(t.join("zebra/notes.txt"), "ignored").unwrap();
    image::GrayImage::from_fn(3, 2, |x, _| image::Luma([x as u8 * 40]))
        .save(dir.path().join("test/zebra/g.png"))
        .unwrap();
    let s = load_dataset(&format!("folder={}", dir.path().display()).parse().unwrap()).unwrap();
    assert_eq!(s.train.class_names, vec!["apple", "zebra"]);
    assert_eq!(s.train.labels, vec![0, 0, 1]);
    assert_eq!(
        (
            s.train.shape.channels,
            s.train.shape.height,
            s.train.shape.width
        ),
        (3, 2, 3)
    );
    // a.png first (sorted file names), channel-major.
    assert_eq!(&s.train.image(0)[..6], &[1; 6]);
    assert_eq!(&s.train.image(0)[6..12], &[2; 6]);
    assert_eq!(&s.train.image(1)[..6], &[0, 1, 2, 10, 11, 12]);
    // The grey test image is promoted to RGB to match the training split.
    assert_eq!(s.test.labels, vec![1]);
    assert_eq!(s.test.shape.channels, 3);
    assert_eq!(&s.test.image(0)[6..12], &[0, 40, 80, 0, 40, 80]);

    // A grey-only folder stays one channel.
    let g = image_folder::read_image_folder(&dir.path().join("test"), &["zebra".into()], "g", None)
        .unwrap();
    assert_eq!(g.shape.channels, 1);
}

#[test]
fn image_folder_rejects_mixed_sizes_and_corrupt_images() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("cls");
    std::fs::create_dir_all(&c).unwrap();
    save_png_rgb(&c.join("a.png"), 4, 4, |_, _| [0, 0, 0]);
    save_png_rgb(&c.join("b.png"), 5, 4, |_, _| [0, 0, 0]);
    let e = image_folder::read_image_folder(dir.path(), &["cls".into()], "t", None).unwrap_err();
    assert_names_file(&e, "b.png");
    assert!(e.to_string().contains("one size"));

    std::fs::remove_file(c.join("b.png")).unwrap();
    let mut f = std::fs::File::create(c.join("broken.jpg")).unwrap();
    f.write_all(b"\xff\xd8\xff\xe0 definitely not a jpeg")
        .unwrap();
    drop(f);
    let e = image_folder::read_image_folder(dir.path(), &["cls".into()], "t", None).unwrap_err();
    assert_names_file(&e, "broken.jpg");

    // No images at all.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("x")).unwrap();
    assert!(image_folder::read_image_folder(empty.path(), &["x".into()], "t", None).is_err());
    assert!(image_folder::class_folders(&empty.path().join("missing")).is_err());
}

#[test]
fn mnist_csv_with_and_without_header() {
    let dir = tempfile::tempdir().unwrap();
    let row = |label: u8, v: u8| {
        let mut s: Vec<String> = (0..784)
            .map(|p| if p == 5 { v.to_string() } else { "0".into() })
            .collect();
        s.push(label.to_string());
        s.join(",")
    };
    let mut text = String::new();
    for (l, v) in [(0, 10), (0, 11), (1, 20), (1, 21), (1, 22)] {
        text.push_str(&row(l, v));
        text.push('\n');
    }
    std::fs::write(
        dir.path().join("mnist_5k.csv.gz"),
        gzip_deterministic(text.as_bytes()),
    )
    .unwrap();
    let header: String = (0..784).map(|i| format!("p{i},")).collect::<String>() + "label\n";
    std::fs::write(dir.path().join("h.csv"), header + &text).unwrap();
    let a =
        mnist_csv::read_mnist_csv(&dir.path().join("mnist_5k.csv.gz"), "a", &names(10)).unwrap();
    let b = mnist_csv::read_mnist_csv(&dir.path().join("h.csv"), "b", &names(10)).unwrap();
    assert_eq!(a.labels, vec![0, 0, 1, 1, 1]);
    assert_eq!(a.images, b.images);
    assert_eq!(a.image(2)[5], 20);
    // Via the spec (folder form): per-class 80/20 head split.
    let s = load_dataset(
        &format!("mnist-5k={}", dir.path().display())
            .parse()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(s.train.labels, vec![0, 1, 1]);
    assert_eq!(s.test.labels, vec![0, 1]);
    assert_eq!(s.test.image(1)[5], 22);

    std::fs::write(dir.path().join("bad.csv"), "1,2,3\n").unwrap();
    assert_names_file(
        &mnist_csv::read_mnist_csv(&dir.path().join("bad.csv"), "c", &names(10)).unwrap_err(),
        "bad.csv",
    );
    std::fs::write(dir.path().join("label.csv"), row(12, 0)).unwrap();
    assert_names_file(
        &mnist_csv::read_mnist_csv(&dir.path().join("label.csv"), "c", &names(10)).unwrap_err(),
        "label.csv",
    );
    std::fs::write(
        dir.path().join("pixel.csv"),
        row(1, 0).replacen("0", "256", 1),
    )
    .unwrap();
    assert_names_file(
        &mnist_csv::read_mnist_csv(&dir.path().join("pixel.csv"), "c", &names(10)).unwrap_err(),
        "pixel.csv",
    );
}

#[test]
fn spec_parsing_and_display() {
    let s: DatasetSpec = "cifar10=/data/c10".parse().unwrap();
    assert_eq!(s.kind, DatasetKind::Cifar10);
    assert_eq!(s.to_string(), "cifar10=/data/c10");
    assert_eq!(s.to_string().parse::<DatasetSpec>().unwrap(), s);
    let f: DatasetSpec = "fashion-mnist".parse().unwrap();
    assert_eq!(f.dir, cnn_data::bundled_dataset_dir());
    assert_eq!(
        "folder=a=b".parse::<DatasetSpec>().unwrap().dir,
        Path::new("a=b")
    );
    assert_eq!(
        "svhn=x".parse::<DatasetSpec>().unwrap().kind,
        DatasetKind::Svhn
    );
    assert_eq!(
        "mnist-5k=f.csv.gz".parse::<DatasetSpec>().unwrap().kind,
        DatasetKind::Mnist5k
    );
    assert_eq!(
        "cifar100=x".parse::<DatasetSpec>().unwrap().kind,
        DatasetKind::Cifar100
    );
    assert_eq!(
        "mnist=x".parse::<DatasetSpec>().unwrap().kind,
        DatasetKind::Mnist
    );
    // A name alone is the dataset's folder under the data root (where `cargo xtask datasets
    // fetch|import` puts it); plain fashion-mnist stays the bundled subset.
    for (name, kind, folder) in [
        ("cifar10", DatasetKind::Cifar10, "cifar10"),
        ("svhn", DatasetKind::Svhn, "svhn"),
        ("mnist", DatasetKind::Mnist, "mnist"),
        ("mnist5k", DatasetKind::Mnist5k, "mnist-5k"),
        (
            "fashion-mnist-full",
            DatasetKind::FashionMnist,
            "fashion-mnist",
        ),
    ] {
        let s: DatasetSpec = name.parse().unwrap();
        assert_eq!(s.kind, kind, "{name}");
        assert_eq!(s.dir, cnn_data::data_root().join(folder), "{name}");
    }
    assert_eq!(
        "fashion-mnist-full=/d".parse::<DatasetSpec>().unwrap(),
        "fashion-mnist=/d".parse::<DatasetSpec>().unwrap()
    );
    for bad in ["imagenet=x", "folder", "cifar10=", ""] {
        assert!(bad.parse::<DatasetSpec>().is_err(), "{bad}");
    }
    assert_eq!(
        serde_json::to_string(&DatasetKind::FashionMnist).unwrap(),
        "\"fashion-mnist\""
    );
    let missing = DatasetSpec {
        kind: DatasetKind::Cifar10,
        dir: "/definitely/not/here".into(),
    };
    assert!(load_dataset(&missing)
        .unwrap_err()
        .to_string()
        .contains("/definitely/not/here"));
}

#[test]
fn bundled_fashion_mnist_loads() {
    let s = load_dataset(&"fashion-mnist".parse().unwrap()).unwrap();
    assert_eq!(s.train.len(), 6000);
    assert_eq!(s.test.len(), 1000);
    assert_eq!(s.train.class_counts(), vec![600; 10]);
    assert_eq!(s.test.class_counts(), vec![100; 10]);
    assert_eq!((s.train.shape.height, s.train.shape.width), (28, 28));
}

/// Found while writing the SVHN fuzz target: an `X` with a zero height made the image
/// conversion panic (a chunk size of 0) instead of failing.
#[test]
fn svhn_mat_with_empty_images_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train_32x32.mat");
    let x = mat::matrix("X", 9, &[0, 4, 3, 2], 2, &[]);
    let y: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let y = mat::matrix("y", 6, &[2, 1], 9, &y);
    std::fs::write(&path, mat::file(&[x, y])).unwrap();
    let e = cnn_data::svhn_mat::read_svhn_mat(&path, "t", &names(10)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: MAT file: `X` has dimensions [0, 4, 3, 2]: empty images",
            path.display()
        )
    );
}

/// An IDX header announcing 0-pixel images needs no payload at all, so any image count
/// passed the length check; empty images are now refused.
#[test]
fn idx_images_of_no_pixels_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    std::fs::write(&path, idx_images(1_000_000, 0, 28, &[])).unwrap();
    let e = idx::read_idx_images(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: IDX header announces empty 0x28 images", path.display())
    );
}
