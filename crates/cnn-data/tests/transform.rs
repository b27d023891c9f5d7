//! Normalisation, padding, augmentation, batching and ImageSet operations.

use candle_core::{Device, Tensor};
use cnn_data::{
    to_tensor, Augment, Batches, DatasetKind, ImageSet, ImageShape, InputFormat, Normalization,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn grey_set(n: usize) -> ImageSet {
    // Image i: pixel (r, c) = (i*7 + r*28 + c) mod 251 + 1 (never 0, so padding is visible).
    let mut images = Vec::new();
    for i in 0..n {
        for r in 0..28 {
            for c in 0..28 {
                images.push(((i * 7 + r * 28 + c) % 251 + 1) as u8);
            }
        }
    }
    ImageSet::new(
        "grey",
        ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        images,
        (0..n).map(|i| (i % 3) as u16).collect(),
        vec!["a".into(), "b".into(), "c".into()],
    )
    .unwrap()
}

fn to_vec4(t: &Tensor) -> Vec<Vec<Vec<Vec<f32>>>> {
    let dims = t.dims4().unwrap();
    let flat: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let (n, c, h, w) = dims;
    (0..n)
        .map(|i| {
            (0..c)
                .map(|ch| {
                    (0..h)
                        .map(|y| {
                            (0..w)
                                .map(|x| flat[((i * c + ch) * h + y) * w + x])
                                .collect()
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn grey_28_becomes_normalised_3x32x32() {
    let set = grey_set(2);
    let fmt = InputFormat::for_dataset(DatasetKind::FashionMnist);
    assert_eq!(fmt.norm.mean, vec![0.2860; 3]);
    let (x, y) = to_tensor(&set, &[1, 0], &fmt, None, &Device::Cpu).unwrap();
    assert_eq!(x.dims(), &[2, 3, 32, 32]);
    assert_eq!(y.to_vec1::<u32>().unwrap(), vec![1, 0]);
    let v = to_vec4(&x);
    let border = -0.2860f32 / 0.3530;
    for plane in &v[0] {
        for k in 0..32 {
            for (yy, xx) in [
                (0, k),
                (1, k),
                (30, k),
                (31, k),
                (k, 0),
                (k, 1),
                (k, 30),
                (k, 31),
            ] {
                assert!((plane[yy][xx] - border).abs() < 1e-6);
            }
        }
        // Centre: output (r+2, c+2) = source (r, c) of image 1.
        for (r, c) in [(0, 0), (13, 14), (27, 27), (5, 20)] {
            let raw = set.image(1)[r * 28 + c] as f32;
            let want = (raw / 255.0 - 0.2860) / 0.3530;
            assert!((plane[r + 2][c + 2] - want).abs() < 1e-6);
        }
    }
    // Channels are identical copies.
    assert_eq!(v[0][0], v[0][2]);
}

#[test]
fn rgb_centre_crop_and_channel_stats() {
    // A 3-channel 34×34 image is centre-cropped to 32: output (0,0) = source (1,1).
    let mut images = vec![0u8; 3 * 34 * 34];
    for ch in 0..3 {
        for r in 0..34 {
            for c in 0..34 {
                images[ch * 34 * 34 + r * 34 + c] = (ch * 50 + r + c) as u8;
            }
        }
    }
    let set = ImageSet::new(
        "rgb",
        ImageShape {
            channels: 3,
            height: 34,
            width: 34,
        },
        images,
        vec![0],
        vec!["x".into()],
    )
    .unwrap();
    let fmt = InputFormat {
        channels: 3,
        size: 32,
        norm: Normalization::imagenet(),
    };
    let v = to_vec4(&to_tensor(&set, &[0], &fmt, None, &Device::Cpu).unwrap().0);
    for (ch, plane) in v[0].iter().enumerate() {
        let raw = (ch * 50 + 2) as f32;
        let want = (raw / 255.0 - fmt.norm.mean[ch]) / fmt.norm.std[ch];
        assert!((plane[0][0] - want).abs() < 1e-6);
    }
    // Channel-count mismatch and bad normalisation are errors, not panics.
    let one = InputFormat {
        channels: 1,
        size: 32,
        norm: Normalization::uniform(0.5, 0.5, 1),
    };
    assert!(to_tensor(&set, &[0], &one, None, &Device::Cpu).is_err());
    let bad = InputFormat {
        channels: 3,
        size: 32,
        norm: Normalization::uniform(0.5, 0.0, 3),
    };
    assert!(to_tensor(&set, &[0], &bad, None, &Device::Cpu).is_err());
    assert!(to_tensor(&set, &[1], &fmt, None, &Device::Cpu).is_err());
    let stats = Normalization::from_images(&set);
    assert_eq!(stats.mean.len(), 3);
    assert!(stats.mean[1] > stats.mean[0]);
}

#[test]
fn augmentation_keeps_shape_and_is_reproducible() {
    let set = grey_set(8);
    let fmt = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let aug = Augment::for_dataset(DatasetKind::FashionMnist).unwrap();
    assert_eq!(
        aug,
        Augment {
            hflip: true,
            crop_padding: 4
        }
    );
    assert!(!Augment::for_dataset(DatasetKind::Mnist).unwrap().hflip);
    let idx: Vec<usize> = (0..8).collect();
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        to_tensor(&set, &idx, &fmt, Some((&aug, &mut rng)), &Device::Cpu)
            .unwrap()
            .0
    };
    let a: Vec<f32> = run(5).flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = run(5).flatten_all().unwrap().to_vec1().unwrap();
    let c: Vec<f32> = run(6).flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(run(5).dims(), &[8, 3, 32, 32]);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let plain: Vec<f32> = to_tensor(&set, &idx, &fmt, None, &Device::Cpu)
        .unwrap()
        .0
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_ne!(a, plain);
}

#[test]
fn flip_only_mirrors_and_crop_only_shifts() {
    let set = grey_set(1);
    let fmt = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let plain = to_vec4(&to_tensor(&set, &[0], &fmt, None, &Device::Cpu).unwrap().0);
    // Flip without crop: over seeds, every output is either the image or its mirror.
    let flip = Augment {
        hflip: true,
        crop_padding: 0,
    };
    let mut seen = [false; 2];
    for seed in 0..16 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v = to_vec4(
            &to_tensor(&set, &[0], &fmt, Some((&flip, &mut rng)), &Device::Cpu)
                .unwrap()
                .0,
        );
        let mirrored: Vec<Vec<f32>> = plain[0][0]
            .iter()
            .map(|r| r.iter().rev().copied().collect())
            .collect();
        if v[0][0] == plain[0][0] {
            seen[0] = true;
        } else {
            assert_eq!(v[0][0], mirrored);
            seen[1] = true;
        }
    }
    assert_eq!(seen, [true, true]);
    // Crop without flip: the output equals the plain image shifted by (dy−4, dx−4) with
    // raw-0 fill.
    let crop = Augment {
        hflip: false,
        crop_padding: 4,
    };
    for seed in 0..8 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v = to_vec4(
            &to_tensor(&set, &[0], &fmt, Some((&crop, &mut rng)), &Device::Cpu)
                .unwrap()
                .0,
        );
        let border = -0.2860f32 / 0.3530;
        let found = (0..=8)
            .flat_map(|dy| (0..=8).map(move |dx| (dy, dx)))
            .any(|(dy, dx)| {
                (0..32).all(|y| {
                    (0..32).all(|x| {
                        let (sy, sx) = (y as isize + dy - 4, x as isize + dx - 4);
                        let want = if (0..32).contains(&sy) && (0..32).contains(&sx) {
                            plain[0][1][sy as usize][sx as usize]
                        } else {
                            border
                        };
                        v[0][1][y][x] == want
                    })
                })
            });
        assert!(found, "seed {seed}: not a shifted copy");
    }
}

#[test]
fn evaluation_conversion_is_identical_on_two_passes() {
    let set = grey_set(10);
    let fmt = InputFormat::for_dataset(DatasetKind::Mnist);
    let idx: Vec<usize> = (0..10).collect();
    let pass = || -> Vec<Vec<f32>> {
        Batches::new(
            &set,
            idx.clone(),
            4,
            fmt.clone(),
            None,
            false,
            ChaCha8Rng::seed_from_u64(0),
            Device::Cpu,
        )
        .map(|b| b.unwrap().0.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
    };
    assert_eq!(pass(), pass());
}

#[test]
fn batches_cover_every_index_once_with_partial_last() {
    let set = grey_set(10);
    let fmt = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let aug = Augment::for_dataset(DatasetKind::FashionMnist);
    let make = |seed| {
        Batches::new(
            &set,
            (0..10).collect(),
            4,
            fmt.clone(),
            aug,
            true,
            ChaCha8Rng::seed_from_u64(seed),
            Device::Cpu,
        )
    };
    let b = make(3);
    assert_eq!(b.len(), 3);
    assert!(!b.is_empty());
    let order = b.indices().to_vec();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_ne!(order, sorted, "shuffled");
    let mut sizes = Vec::new();
    let mut labels = Vec::new();
    for batch in b {
        let (x, y) = batch.unwrap();
        sizes.push(x.dims()[0]);
        labels.extend(y.to_vec1::<u32>().unwrap());
    }
    assert_eq!(sizes, vec![4, 4, 2]);
    let want: Vec<u32> = order.iter().map(|&i| set.labels[i] as u32).collect();
    assert_eq!(labels, want);
    assert_eq!(make(3).indices(), &order[..]);
    assert_ne!(make(4).indices(), &order[..]);
    // Same seed, same augmented tensors.
    let t1: Vec<f32> = make(3)
        .next()
        .unwrap()
        .unwrap()
        .0
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let t2: Vec<f32> = make(3)
        .next()
        .unwrap()
        .unwrap()
        .0
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(t1, t2);
    // Unshuffled keeps the given order; empty input has no batch; bad index is an error.
    let fixed = Batches::new(
        &set,
        vec![9, 1, 5],
        2,
        fmt.clone(),
        None,
        false,
        ChaCha8Rng::seed_from_u64(0),
        Device::Cpu,
    );
    assert_eq!(fixed.indices(), &[9, 1, 5]);
    let empty = Batches::new(
        &set,
        vec![],
        2,
        fmt.clone(),
        None,
        false,
        ChaCha8Rng::seed_from_u64(0),
        Device::Cpu,
    );
    assert!(empty.is_empty());
    assert_eq!(empty.count(), 0);
    let mut bad = Batches::new(
        &set,
        vec![0, 99],
        2,
        fmt,
        None,
        false,
        ChaCha8Rng::seed_from_u64(0),
        Device::Cpu,
    );
    assert!(bad.next().unwrap().is_err());
}

#[test]
fn subset_and_filter_classes() {
    let set = grey_set(9); // labels 0,1,2,0,1,2,0,1,2
    let sub = set.subset(&[4, 0, 4]);
    assert_eq!(sub.labels, vec![1, 0, 1]);
    assert_eq!(sub.image(1), set.image(0));
    assert!(set.try_subset(&[9]).is_err());
    let f = set.filter_classes(&[2, 0]);
    assert_eq!(f.class_names, vec!["c", "a"]);
    assert_eq!(f.labels, vec![1, 0, 1, 0, 1, 0]);
    assert_eq!(f.image(0), set.image(0));
    assert_eq!(f.image(1), set.image(2));
    assert_eq!(f.class_counts(), vec![3, 3]);
    assert_eq!(set.class_counts(), vec![3, 3, 3]);
    assert!(set.try_filter_classes(&[3]).is_err());
    assert_eq!(set.get_image(9), None);
    assert_eq!(set.indices_of_class(1), vec![1, 4, 7]);
    assert!(ImageSet::new("x", set.shape, vec![0; 10], vec![0], vec!["a".into()]).is_err());
    assert!(ImageSet::new("x", set.shape, vec![0; 784], vec![1], vec!["a".into()]).is_err());
}

#[test]
fn normalisation_presets() {
    assert_eq!(
        Normalization::for_dataset(DatasetKind::Cifar10, 3),
        Normalization::imagenet()
    );
    assert_eq!(
        Normalization::for_dataset(DatasetKind::Svhn, 3),
        Normalization::imagenet()
    );
    assert_eq!(
        Normalization::for_dataset(DatasetKind::Mnist, 3).mean,
        vec![0.1307; 3]
    );
    assert_eq!(
        Normalization::for_dataset(DatasetKind::ImageFolder, 1).std,
        vec![0.5]
    );
    assert_eq!(
        Normalization::per_dataset(DatasetKind::Cifar100, 3).mean,
        vec![0.4914, 0.4822, 0.4465]
    );
    assert_eq!(
        Normalization::per_dataset(DatasetKind::Svhn, 3).std,
        vec![0.1980, 0.2010, 0.1970]
    );
    let f = InputFormat::for_dataset(DatasetKind::Cifar100);
    assert_eq!((f.channels, f.size), (3, 32));
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(serde_json::from_str::<InputFormat>(&json).unwrap(), f);
}
