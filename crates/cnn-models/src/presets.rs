//! The paper's architectures as [`ModelSpec`] presets (design §3), scaled by a width multiplier.

use crate::spec::{ConvInit, ConvSpec, InputShape, LayerSpec, LinearSpec, ModelSpec};

/// Names of the presets [`by_name`] knows.
pub const PRESET_NAMES: &[&str] = &[
    "simcnn",
    "rescnn",
    "incecnn",
    "simcnn-cs",
    "rescnn-cs",
    "simcnn-weak",
    "simcnn-cs-poorfit",
    "rescnn-cs-poorfit",
];

/// Scale a width: max(1, round(w·c)).
pub fn scaled(width: f64, c: usize) -> usize {
    ((width * c as f64).round() as usize).max(1)
}

fn conv(name: String, bn: Option<String>, out: usize, k: usize) -> LayerSpec {
    LayerSpec::Conv(ConvSpec {
        name,
        out_channels: out,
        kernel: k,
        stride: 1,
        padding: (k - 1) / 2,
        bias: true,
        bn,
        relu: true,
    })
}

fn pool() -> LayerSpec {
    LayerSpec::MaxPool {
        kernel: 2,
        stride: 2,
    }
}

fn linear(name: &str, out: usize, relu: bool) -> LayerSpec {
    LayerSpec::Linear(LinearSpec {
        name: name.to_string(),
        out_features: out,
        relu,
    })
}

fn input(in_channels: usize) -> InputShape {
    InputShape {
        channels: in_channels,
        height: 32,
        width: 32,
    }
}

/// SimCNN (VGG-16 style, 13 convs, 3 FC). `batch_norm = true` is GradSplitter's version
/// (`conv_{i}.0` + BN `conv_{i}.1`, FC hidden 4096·w); `false` is CNNSplitter's SimCNN-CS
/// (`conv_{i}`, FC hidden 512·w). `dropout = false` gives the poor-fit variant.
///
/// ```
/// let spec = cnn_models::presets::simcnn(1.0, 3, 10, true);
/// assert_eq!(spec.analyse().unwrap().params(), 33_646_666);
/// ```
pub fn simcnn(width: f64, in_channels: usize, num_classes: usize, batch_norm: bool) -> ModelSpec {
    simcnn_with(width, in_channels, num_classes, batch_norm, true)
}

/// [`simcnn`] with dropout optional (the poor-fit models have none).
pub fn simcnn_with(
    width: f64,
    in_channels: usize,
    num_classes: usize,
    batch_norm: bool,
    dropout: bool,
) -> ModelSpec {
    const CH: [usize; 13] = [
        64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
    ];
    const POOL_AFTER: [usize; 5] = [1, 3, 6, 9, 12];
    let mut layers = Vec::new();
    for (i, &c) in CH.iter().enumerate() {
        let (name, bn) = if batch_norm {
            (format!("conv_{i}.0"), Some(format!("conv_{i}.1")))
        } else {
            (format!("conv_{i}"), None)
        };
        layers.push(conv(name, bn, scaled(width, c), 3));
        if POOL_AFTER.contains(&i) {
            layers.push(pool());
        }
    }
    let hidden = scaled(width, if batch_norm { 4096 } else { 512 });
    layers.push(LayerSpec::Flatten);
    if dropout {
        layers.push(LayerSpec::Dropout { p: 0.5 });
    }
    layers.push(linear("fc_13", hidden, true));
    if dropout {
        layers.push(LayerSpec::Dropout { p: 0.5 });
    }
    layers.push(linear("fc_14", hidden, true));
    layers.push(linear("fc_15", num_classes, false));
    ModelSpec {
        name: if batch_norm {
            "simcnn".into()
        } else {
            "simcnn-cs".into()
        },
        input: input(in_channels),
        num_classes,
        conv_init: ConvInit::HeNormalFanOut,
        layers,
    }
}

/// ResCNN (12 convs, residual pairs (1,3), (5,7), (9,11), one FC). `batch_norm = true` is
/// GradSplitter's version; `false` is CNNSplitter's ResCNN-CS (`classifier.2` FC, dropout 0.4).
///
/// ```
/// let spec = cnn_models::presets::rescnn(1.0, 3, 10, true);
/// let a = spec.analyse().unwrap();
/// assert_eq!(a.total_kernels(), 4288);
/// assert_eq!(a.sites.len(), 9);
/// ```
pub fn rescnn(width: f64, in_channels: usize, num_classes: usize, batch_norm: bool) -> ModelSpec {
    rescnn_with(width, in_channels, num_classes, batch_norm, true)
}

/// [`rescnn`] with dropout optional (the poor-fit ResCNN has none; its FC is `classifier.1`).
pub fn rescnn_with(
    width: f64,
    in_channels: usize,
    num_classes: usize,
    batch_norm: bool,
    dropout: bool,
) -> ModelSpec {
    const CH: [usize; 12] = [64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512];
    let mut layers = Vec::new();
    for (i, &c) in CH.iter().enumerate() {
        let bn = batch_norm.then(|| format!("conv_{i}.1"));
        layers.push(conv(format!("conv_{i}.0"), bn, scaled(width, c), 3));
        match i {
            1 => layers.extend([pool(), LayerSpec::Save { slot: "r1".into() }]),
            3 => layers.push(LayerSpec::Add { slot: "r1".into() }),
            4 | 8 => layers.push(pool()),
            5 => layers.extend([pool(), LayerSpec::Save { slot: "r2".into() }]),
            7 => layers.push(LayerSpec::Add { slot: "r2".into() }),
            9 => layers.extend([pool(), LayerSpec::Save { slot: "r3".into() }]),
            11 => layers.push(LayerSpec::Add { slot: "r3".into() }),
            _ => {}
        }
    }
    layers.push(LayerSpec::Flatten);
    let fc = if batch_norm {
        "fc_12"
    } else if dropout {
        "classifier.2"
    } else {
        "classifier.1"
    };
    if dropout {
        layers.push(LayerSpec::Dropout {
            p: if batch_norm { 0.5 } else { 0.4 },
        });
    }
    layers.push(linear(fc, num_classes, false));
    ModelSpec {
        name: if batch_norm {
            "rescnn".into()
        } else {
            "rescnn-cs".into()
        },
        input: input(in_channels),
        num_classes,
        conv_init: ConvInit::TorchDefault,
        layers,
    }
}

/// InceCNN (a stem of 3 convs, then three Inception-style blocks of 1×1/3×3/5×5 branches,
/// global average pooling, one FC).
///
/// ```
/// let a = cnn_models::presets::incecnn(1.0, 3, 10).analyse().unwrap();
/// assert_eq!(a.total_kernels(), 3200);
/// ```
pub fn incecnn(width: f64, in_channels: usize, num_classes: usize) -> ModelSpec {
    let s = |c| scaled(width, c);
    let c = |i: usize, out: usize, k: usize| {
        conv(format!("conv_{i}.0"), Some(format!("conv_{i}.1")), out, k)
    };
    let block = |first: usize| LayerSpec::Concat {
        branches: vec![
            vec![c(first, s(if first == 3 { 256 } else { 512 }), 1)],
            vec![c(first + 1, s(if first == 3 { 256 } else { 512 }), 3)],
            vec![c(first + 2, s(64), 5)],
        ],
    };
    let layers = vec![
        c(0, s(64), 3),
        c(1, s(128), 3),
        c(2, s(256), 3),
        pool(),
        block(3),
        pool(),
        block(6),
        pool(),
        block(9),
        LayerSpec::GlobalAvgPool,
        LayerSpec::Dropout { p: 0.4 },
        linear("fc_12", num_classes, false),
    ];
    ModelSpec {
        name: "incecnn".into(),
        input: input(in_channels),
        num_classes,
        conv_init: ConvInit::TorchDefault,
        layers,
    }
}

/// SimCNNWeak, the small "simple" weak model of patching (design §3.2): 4 × [conv 3×3 → 64·w,
/// ReLU, max-pool 2] → flatten (64·w × 2 × 2) → FC → N, no BatchNorm (conv names `conv_{i}`).
///
/// ```
/// let spec = cnn_models::presets::simcnn_weak(1.0, 3, 10);
/// let a = spec.analyse().unwrap();
/// assert_eq!(a.total_kernels(), 256);
/// assert_eq!(a.params(), (64 * 27 + 64) + 3 * (64 * 576 + 64) + 256 * 10 + 10);
/// ```
pub fn simcnn_weak(width: f64, in_channels: usize, num_classes: usize) -> ModelSpec {
    let c = scaled(width, 64);
    let mut layers = Vec::new();
    for i in 0..4 {
        layers.push(conv(format!("conv_{i}"), None, c, 3));
        layers.push(pool());
    }
    layers.push(LayerSpec::Flatten);
    layers.push(linear("fc_4", num_classes, false));
    ModelSpec {
        name: "simcnn-weak".into(),
        input: input(in_channels),
        num_classes,
        conv_init: ConvInit::TorchDefault,
        layers,
    }
}

/// A preset by name (see [`PRESET_NAMES`]).
pub fn by_name(
    name: &str,
    width: f64,
    in_channels: usize,
    num_classes: usize,
) -> Option<ModelSpec> {
    Some(match name {
        "simcnn" => simcnn(width, in_channels, num_classes, true),
        "rescnn" => rescnn(width, in_channels, num_classes, true),
        "incecnn" => incecnn(width, in_channels, num_classes),
        "simcnn-cs" => simcnn(width, in_channels, num_classes, false),
        "rescnn-cs" => rescnn(width, in_channels, num_classes, false),
        "simcnn-weak" => simcnn_weak(width, in_channels, num_classes),
        "simcnn-cs-poorfit" => simcnn_with(width, in_channels, num_classes, false, false),
        "rescnn-cs-poorfit" => rescnn_with(width, in_channels, num_classes, false, false),
        _ => return None,
    })
}
