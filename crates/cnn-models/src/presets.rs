//! The paper's architectures as [`ModelSpec`] presets (design §3), scaled by a width multiplier.

use crate::spec::{ConvInit, ConvSpec, HeightWidth, InputShape, LayerSpec, LinearSpec, ModelSpec};

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
    "resnet18",
    "vgg16",
    "mobilenetv2",
];

/// Scale a width: max(1, round(w·c)).
pub fn scaled(width: f64, c: usize) -> usize {
    ((width * c as f64).round() as usize).max(1)
}

fn conv(name: String, bn: Option<String>, out: usize, k: usize) -> LayerSpec {
    LayerSpec::Conv(ConvSpec {
        name,
        out_channels: out,
        kernel: k.into(),
        stride: 1.into(),
        padding: ((k - 1) / 2).into(),
        dilation: 1,
        groups: 1,
        bias: true,
        bn,
        relu: true,
        relu6: false,
    })
}

fn pool() -> LayerSpec {
    LayerSpec::MaxPool {
        kernel: 2,
        stride: 2,
        padding: 0,
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
            3 => layers.push(LayerSpec::Add {
                slot: "r1".into(),
                shortcut: vec![],
            }),
            4 | 8 => layers.push(pool()),
            5 => layers.extend([pool(), LayerSpec::Save { slot: "r2".into() }]),
            7 => layers.push(LayerSpec::Add {
                slot: "r2".into(),
                shortcut: vec![],
            }),
            9 => layers.extend([pool(), LayerSpec::Save { slot: "r3".into() }]),
            11 => layers.push(LayerSpec::Add {
                slot: "r3".into(),
                shortcut: vec![],
            }),
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

/// A conv → BN block without bias, named as torchvision names it (`{name}` for the conv and
/// `{bn}` for its BatchNorm).
fn conv_bn(name: String, bn: String, out: usize, k: usize, stride: usize, relu: bool) -> ConvSpec {
    ConvSpec {
        stride: HeightWidth::square(stride),
        bias: false,
        bn: Some(bn),
        relu,
        ..ConvSpec::new(name, out, k)
    }
}

/// ResNet-18, CIFAR style (design §3.5): a 3×3 stem conv (no initial max-pool), four stages
/// of two basic blocks (64, 128, 256, 512 channels · w; stages 2–4 start with stride 2 and a
/// 1×1 conv + BN projection shortcut), global average pool and `fc`. Tensor names are
/// torchvision's (`conv1`, `bn1`, `layer2.0.downsample.0`, `fc`).
///
/// ```
/// let spec = cnn_models::presets::resnet18(1.0, 3, 10);
/// let a = spec.analyse().unwrap();
/// assert_eq!(a.convs.len(), 20);
/// assert_eq!(a.params(), 11_173_962); // torchvision's ResNet-18 with a 3×3 stem and 10 classes
/// assert_eq!(a.sites.len(), 12); // the stem and each stage's block outputs are one site each
/// ```
pub fn resnet18(width: f64, in_channels: usize, num_classes: usize) -> ModelSpec {
    let mut layers = vec![LayerSpec::Conv(conv_bn(
        "conv1".into(),
        "bn1".into(),
        scaled(width, 64),
        3,
        1,
        true,
    ))];
    let mut in_c = scaled(width, 64);
    for (stage, base) in [64usize, 128, 256, 512].into_iter().enumerate() {
        let c = scaled(width, base);
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let p = format!("layer{}.{block}", stage + 1);
            let slot = format!("{p}.in");
            layers.push(LayerSpec::Save { slot: slot.clone() });
            layers.push(LayerSpec::Conv(conv_bn(
                format!("{p}.conv1"),
                format!("{p}.bn1"),
                c,
                3,
                stride,
                true,
            )));
            layers.push(LayerSpec::Conv(conv_bn(
                format!("{p}.conv2"),
                format!("{p}.bn2"),
                c,
                3,
                1,
                false,
            )));
            let shortcut = if stride != 1 || in_c != c {
                vec![LayerSpec::Conv(conv_bn(
                    format!("{p}.downsample.0"),
                    format!("{p}.downsample.1"),
                    c,
                    1,
                    stride,
                    false,
                ))]
            } else {
                vec![]
            };
            layers.push(LayerSpec::Add { slot, shortcut });
            layers.push(LayerSpec::Relu);
            in_c = c;
        }
    }
    layers.push(LayerSpec::GlobalAvgPool);
    layers.push(linear("fc", num_classes, false));
    ModelSpec {
        name: "resnet18".into(),
        input: input(in_channels),
        num_classes,
        conv_init: ConvInit::TorchDefault,
        layers,
    }
}

/// VGG-16 with BatchNorm, CIFAR style (design §3.5): torchvision's 13 convs
/// (64, 64, M, 128, 128, M, 256 × 3, M, 512 × 3, M, 512 × 3, M; channels · w), each conv →
/// BN → ReLU named `features.{i}` / `features.{i+1}` as in torchvision's `vgg16_bn`, then one
/// linear layer `classifier` on the 1×1 map (the CIFAR head, not ImageNet's 4096-wide one).
///
/// ```
/// let spec = cnn_models::presets::vgg16(1.0, 3, 10);
/// let a = spec.analyse().unwrap();
/// assert_eq!(a.total_kernels(), 4224);
/// assert_eq!(a.params(), 14_728_266);
/// ```
pub fn vgg16(width: f64, in_channels: usize, num_classes: usize) -> ModelSpec {
    const PLAN: [usize; 18] = [
        64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
    ];
    let mut layers = Vec::new();
    let mut index = 0;
    for c in PLAN {
        if c == 0 {
            layers.push(pool());
            index += 1;
        } else {
            let spec = ConvSpec {
                bn: Some(format!("features.{}", index + 1)),
                ..ConvSpec::new(format!("features.{index}"), scaled(width, c), 3)
            };
            layers.push(LayerSpec::Conv(spec));
            index += 3;
        }
    }
    layers.push(LayerSpec::Flatten);
    layers.push(linear("classifier", num_classes, false));
    ModelSpec {
        name: "vgg16".into(),
        input: input(in_channels),
        num_classes,
        conv_init: ConvInit::TorchDefault,
        layers,
    }
}

/// MobileNetV2, CIFAR style (design §3.5): torchvision's layout — a 3×3 stem (stride 1 here),
/// 17 inverted-residual blocks (1×1 expand → 3×3 depthwise → 1×1 project, ReLU6, a residual
/// add where stride is 1 and widths match), a 1×1 conv to 1280 · w, global average pool,
/// dropout 0.2 and `classifier.1` — with the second stage at stride 1 so a 32×32 input ends at
/// 4×4. Channels are max(1, round(w·c)) (not torchvision's multiples of 8); tensor names are
/// torchvision's (`features.2.conv.1.0` is block 2's depthwise conv).
///
/// ```
/// let spec = cnn_models::presets::mobilenetv2(1.0, 3, 10);
/// let a = spec.analyse().unwrap();
/// assert_eq!(a.convs.len(), 52);
/// assert_eq!(a.params(), 2_236_682); // torchvision's mobilenet_v2 with 10 classes
/// ```
pub fn mobilenetv2(width: f64, in_channels: usize, num_classes: usize) -> ModelSpec {
    const SETTINGS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 1),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let relu6 = |mut c: ConvSpec| {
        c.relu6 = true;
        LayerSpec::Conv(c)
    };
    let mut in_c = scaled(width, 32);
    let mut layers = vec![relu6(conv_bn(
        "features.0.0".into(),
        "features.0.1".into(),
        in_c,
        3,
        1,
        true,
    ))];
    let mut feature = 1;
    for (t, c, n, s) in SETTINGS {
        let out_c = scaled(width, c);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = in_c * t;
            let p = format!("features.{feature}.conv");
            let mut block = Vec::new();
            let mut part = 0;
            if t != 1 {
                block.push(relu6(conv_bn(
                    format!("{p}.0.0"),
                    format!("{p}.0.1"),
                    hidden,
                    1,
                    1,
                    true,
                )));
                part = 1;
            }
            block.push(relu6(ConvSpec {
                groups: hidden,
                ..conv_bn(
                    format!("{p}.{part}.0"),
                    format!("{p}.{part}.1"),
                    hidden,
                    3,
                    stride,
                    true,
                )
            }));
            block.push(LayerSpec::Conv(conv_bn(
                format!("{p}.{}", part + 1),
                format!("{p}.{}", part + 2),
                out_c,
                1,
                1,
                false,
            )));
            if stride == 1 && in_c == out_c {
                let slot = format!("features.{feature}.in");
                layers.push(LayerSpec::Save { slot: slot.clone() });
                layers.extend(block);
                layers.push(LayerSpec::Add {
                    slot,
                    shortcut: vec![],
                });
            } else {
                layers.extend(block);
            }
            in_c = out_c;
            feature += 1;
        }
    }
    layers.push(relu6(conv_bn(
        format!("features.{feature}.0"),
        format!("features.{feature}.1"),
        scaled(width, 1280),
        1,
        1,
        true,
    )));
    layers.push(LayerSpec::GlobalAvgPool);
    layers.push(LayerSpec::Dropout { p: 0.2 });
    layers.push(linear("classifier.1", num_classes, false));
    ModelSpec {
        name: "mobilenetv2".into(),
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
        "resnet18" => resnet18(width, in_channels, num_classes),
        "vgg16" => vgg16(width, in_channels, num_classes),
        "mobilenetv2" => mobilenetv2(width, in_channels, num_classes),
        _ => return None,
    })
}

/// Why [`resolve`] refused an architecture. The messages name no command-line flag; the CLI
/// and the Python binding add their own argument names.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The width multiplier is not a positive finite number.
    #[error("width must be a positive number, got {0}")]
    Width(f64),
    /// The name is neither a preset nor an existing file.
    #[error("{0}: neither a preset ({names}) nor an existing ModelSpec JSON file", names = PRESET_NAMES.join(", "))]
    UnknownArch(String),
    /// The spec's class count differs from the dataset's.
    #[error("model spec `{name}` has {found} classes, the dataset has {expected}")]
    Classes {
        /// Spec name.
        name: String,
        /// Classes of the spec.
        found: usize,
        /// Classes of the dataset.
        expected: usize,
    },
    /// The spec's input differs from the dataset's images.
    #[error("model spec `{name}` takes {}×{}×{} input, the dataset gives {}×{}×{}", found[0], found[1], found[2], expected[0], expected[1], expected[2])]
    Input {
        /// Spec name.
        name: String,
        /// Channels, height, width of the spec's input.
        found: [usize; 3],
        /// Channels, height, width the dataset gives.
        expected: [usize; 3],
    },
    /// The JSON file is unreadable or not a valid spec.
    #[error(transparent)]
    Model(#[from] crate::ModelError),
}

/// The spec `arch` names for images of `channels`×`size`×`size` and `num_classes` classes: a
/// preset ([`PRESET_NAMES`]) at `width`, sized to the input, or a ModelSpec JSON file, which
/// must match the input and class count. The result is validated.
///
/// ```
/// use cnn_models::presets::{resolve, ResolveError};
/// let spec = resolve("resnet18", 0.25, 3, 32, 10).unwrap();
/// assert_eq!(spec.input.height, 32);
/// assert!(matches!(resolve("lenet", 1.0, 3, 32, 10), Err(ResolveError::UnknownArch(_))));
/// assert!(matches!(resolve("simcnn", 0.0, 3, 32, 10), Err(ResolveError::Width(_))));
/// ```
pub fn resolve(
    arch: &str,
    width: f64,
    channels: usize,
    size: usize,
    num_classes: usize,
) -> Result<ModelSpec, ResolveError> {
    if !(width > 0.0 && width.is_finite()) {
        return Err(ResolveError::Width(width));
    }
    let spec = match by_name(arch, width, channels, num_classes) {
        Some(mut s) => {
            s.input.height = size;
            s.input.width = size;
            s
        }
        None => {
            let path = std::path::Path::new(arch);
            if !path.exists() {
                return Err(ResolveError::UnknownArch(arch.to_string()));
            }
            ModelSpec::from_json_file(path)?
        }
    };
    if spec.num_classes != num_classes {
        return Err(ResolveError::Classes {
            name: spec.name,
            found: spec.num_classes,
            expected: num_classes,
        });
    }
    let found = [spec.input.channels, spec.input.height, spec.input.width];
    if found != [channels, size, size] {
        return Err(ResolveError::Input {
            name: spec.name,
            found,
            expected: [channels, size, size],
        });
    }
    spec.analyse()?;
    Ok(spec)
}
