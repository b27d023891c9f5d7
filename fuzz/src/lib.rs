//! What the cnnsplit fuzz targets share: how one fuzz input is cut into several files, the
//! small fixed model the weight targets load into, and the checks run on whatever a parser
//! accepts (an accepted input must then be usable without a panic).

use candle_core::{DType, Device, Tensor};
use cnn_data::{to_tensor, DatasetKind, ImageSet, InputFormat};
use cnn_models::spec::{ConvSpec, InputShape, LayerSpec, LinearSpec, ModelSpec};

/// Cuts one input into two files: the first two bytes (little-endian) give the length of the
/// first file, clamped to what is there; the rest is the second file.
pub fn split_in_two(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return (data, &[]);
    };
    let first = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    rest.split_at(first)
}

/// The inverse of [`split_in_two`], for writing seeds.
pub fn join_two(first: &[u8], second: &[u8]) -> Vec<u8> {
    let len = u16::try_from(first.len()).expect("seed files are below 64 KiB");
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(first);
    out.extend_from_slice(second);
    out
}

/// Class names `c0`, `c1`, … for `n` classes.
pub fn class_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

/// Converts the first (up to) two images of a set a parser accepted into the model input of
/// `kind`, which must succeed.
pub fn convert_first_images(set: &ImageSet, kind: DatasetKind) {
    let format = InputFormat::for_dataset(kind);
    let indices: Vec<usize> = (0..set.len().min(2)).collect();
    let (x, y) = to_tensor(set, &indices, &format, None, &Device::Cpu)
        .expect("an image set a reader accepted converts to tensors");
    assert_eq!(x.dims(), &[indices.len(), 3, 32, 32]);
    assert_eq!(y.dims(), &[indices.len()]);
}

/// The small network the weight targets load into: conv+BN, max-pool, a residual pair of
/// convs, global pooling and two linear layers, on 3×8×8 inputs with 3 classes.
pub fn tiny_spec() -> ModelSpec {
    let conv = |name: &str, bn: Option<&str>, out| {
        LayerSpec::Conv(ConvSpec {
            name: name.into(),
            out_channels: out,
            kernel: 3.into(),
            stride: 1.into(),
            padding: 1.into(),
            dilation: 1,
            groups: 1,
            bias: bn.is_none(),
            bn: bn.map(Into::into),
            relu: true,
            relu6: false,
        })
    };
    ModelSpec {
        name: "tiny".into(),
        input: InputShape {
            channels: 3,
            height: 8,
            width: 8,
        },
        num_classes: 3,
        conv_init: Default::default(),
        layers: vec![
            conv("conv_0.0", Some("conv_0.1"), 4),
            LayerSpec::MaxPool {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            LayerSpec::Save { slot: "r".into() },
            conv("conv_1", None, 4),
            LayerSpec::Add {
                slot: "r".into(),
                shortcut: vec![],
            },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear(LinearSpec {
                name: "fc_2".into(),
                out_features: 5,
                relu: true,
            }),
            LayerSpec::Linear(LinearSpec {
                name: "fc_3".into(),
                out_features: 3,
                relu: false,
            }),
        ],
    }
}

/// A batch of one zero image of `spec`'s input shape.
pub fn zero_input(spec: &ModelSpec) -> Tensor {
    let i = spec.input;
    Tensor::zeros((1, i.channels, i.height, i.width), DType::F32, &Device::Cpu)
        .expect("a zero input of a validated spec")
}

/// Hidden width of the head of [`tiny_module`]'s GradSplitter variant.
pub const TINY_HEAD_HIDDEN: usize = 4;

/// A module of class 1 extracted from [`tiny_spec`] (seed 0) keeping every other kernel:
/// with a GradSplitter head when `head` is set, else a CNNSplitter (logit) module.
pub fn tiny_module(head: bool) -> cnn_models::Module {
    use cnn_models::module::{build_module, ModuleHead, ModuleSource};
    let cpu = Device::Cpu;
    let parent = cnn_models::Model::init(tiny_spec(), 0, &cpu).expect("the tiny spec builds");
    let masks: Vec<Vec<bool>> = parent
        .analysis()
        .sites
        .iter()
        .map(|s| (0..s.channels).map(|k| k % 2 == 0).collect())
        .collect();
    let n = parent.spec().num_classes;
    let source = if head {
        let t =
            |dims: &[usize]| Tensor::ones(dims, DType::F32, &cpu).expect("a small tensor of ones");
        ModuleSource::Head(ModuleHead {
            w1: t(&[TINY_HEAD_HIDDEN, n]),
            b1: t(&[TINY_HEAD_HIDDEN]),
            w2: t(&[1, TINY_HEAD_HIDDEN]),
            b2: t(&[1]),
        })
    } else {
        ModuleSource::Logit
    };
    let format = InputFormat::for_dataset(DatasetKind::Cifar10);
    build_module(&parent, "parent-sha", &masks, source, 1, "c1", format, None)
        .expect("the tiny module extracts")
}
