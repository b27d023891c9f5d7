//! ONNX files written by PyTorch's exporters (scripts/make_onnx_fixtures.py) import into models
//! whose logits equal PyTorch's, with the layer names, kernel counts and mask sites of the
//! matching presets; bad files give errors that name the file, the node and the problem.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use cnn_models::{presets, OpsBackend};
use onnx_import::{import_onnx, parse_onnx, proto, OnnxError};
use prost::Message;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn probe(net: &str) -> (Tensor, Tensor) {
    let t =
        candle_core::safetensors::load(fixture(&format!("{net}.probe.safetensors")), &Device::Cpu)
            .unwrap();
    (t["input"].clone(), t["logits"].clone())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

const FILES: [(&str, &str); 8] = [
    ("resnet18.folded.onnx", "resnet18"),
    ("resnet18.bn.onnx", "resnet18"),
    ("vgg16.folded.onnx", "vgg16"),
    ("vgg16.bn.onnx", "vgg16"),
    ("mobilenetv2.folded.onnx", "mobilenetv2"),
    ("mobilenetv2.bn.onnx", "mobilenetv2"),
    ("geometry.ts-folded.onnx", "geometry"),
    ("branches.onnx", "branches"),
];

#[test]
fn every_fixture_gives_pytorchs_logits_on_both_op_backends() {
    for (file, net) in FILES {
        let (mut model, _) = import_onnx(&fixture(file), &Device::Cpu).unwrap();
        let (x, want) = probe(net);
        for ops in [OpsBackend::Fast, OpsBackend::Candle] {
            model.set_ops(ops);
            let got = model.forward_eval(&x).unwrap();
            assert_eq!(got.dims(), want.dims(), "{file}");
            let d = max_diff(&got, &want);
            assert!(
                d < 1e-4,
                "{file} ({ops:?}): logits differ from PyTorch's by {d}"
            );
        }
    }
}

#[test]
fn the_three_families_import_with_the_presets_kernels_and_mask_sites() {
    let presets = [
        ("resnet18", presets::resnet18(0.0625, 3, 10)),
        ("vgg16", presets::vgg16(0.0625, 3, 10)),
        ("mobilenetv2", presets::mobilenetv2(0.125, 3, 10)),
    ];
    for (net, preset) in presets {
        let want = preset.analyse().unwrap();
        for kind in ["folded", "bn"] {
            let file = format!("{net}.{kind}.onnx");
            let (model, summary) = import_onnx(&fixture(&file), &Device::Cpu).unwrap();
            let a = model.analysis();
            assert_eq!(a.total_kernels(), want.total_kernels(), "{file}");
            assert_eq!(a.convs.len(), want.convs.len(), "{file}");
            assert_eq!(a.sites.len(), want.sites.len(), "{file}: mask sites");
            let convs_per_site = |a: &cnn_models::Analysis| {
                let mut v: Vec<usize> = a.sites.iter().map(|s| s.convs.len()).collect();
                v.sort_unstable();
                v
            };
            assert_eq!(convs_per_site(a), convs_per_site(&want), "{file}: coupling");
            let bns = if kind == "bn" {
                want.batch_norms.len()
            } else {
                0
            };
            assert_eq!(summary.batch_norms, bns, "{file}");
            assert_eq!(model.spec().num_classes, 10);
            assert_eq!(model.spec().name, format!("{net}.{kind}"));
        }
    }
}

#[test]
fn layer_names_come_from_the_initialisers_or_the_node_paths() {
    let names = |file: &str| -> Vec<String> {
        let (m, _) = import_onnx(&fixture(file), &Device::Cpu).unwrap();
        m.analysis().convs.iter().map(|c| c.name.clone()).collect()
    };
    // BN kept: torchvision-style names, the BN under its own name
    let (m, _) = import_onnx(&fixture("resnet18.bn.onnx"), &Device::Cpu).unwrap();
    for key in [
        "conv1.weight",
        "bn1.running_var",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.weight",
        "fc.weight",
    ] {
        assert!(
            m.tensors().contains_key(key),
            "resnet18.bn.onnx lacks {key}"
        );
    }
    // folded by the default exporter: the conv keeps its name and gains the folded bias
    let (m, _) = import_onnx(&fixture("resnet18.folded.onnx"), &Device::Cpu).unwrap();
    assert!(m.tensors().contains_key("layer1.0.conv1.bias"));
    assert!(names("mobilenetv2.folded.onnx").contains(&"features.2.conv.1.0".to_string()));
    // folded by the TorchScript exporter: weights are onnx::Conv_N, names from node paths
    let g = names("geometry.ts-folded.onnx");
    assert_eq!(g, ["stem", "dilated", "dw", "proj", "short"]);
}

#[test]
fn gradsplitter_modules_of_an_imported_resnet18_equal_the_masked_model() {
    use cnn_data::{ImageSet, ImageShape, InputFormat, Normalization};
    use cnn_models::extract::{extract_module, mask_tensors};
    use cnn_models::{ForwardOptions, TrainData};
    use splitter_grad::{grad_split, Checkpointing, GradSplitConfig};

    let (model, _) = import_onnx(&fixture("resnet18.folded.onnx"), &Device::Cpu).unwrap();
    // 40 random 32×32 RGB images of 10 classes
    let n = 40;
    let mut state = 7u32;
    let images: Vec<u8> = (0..n * 3 * 32 * 32)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % 10) as u16).collect();
    let set = ImageSet::new(
        "random",
        ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        },
        images,
        labels,
        (0..10).map(|c| c.to_string()).collect(),
    )
    .unwrap();
    let format = InputFormat {
        channels: 3,
        size: 32,
        norm: Normalization {
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
        },
    };
    let data = TrainData {
        set: &set,
        train: (0..30).collect(),
        val: (30..40).collect(),
        format: format.clone(),
    };
    let cfg = GradSplitConfig {
        warmup_epochs: 1,
        mask_epochs: 2,
        batch_size: 10,
        mask_lr: 0.5,
        lambda: 5.0,
        ..Default::default()
    };
    let result = grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
    assert_eq!(result.masks.len(), 10);
    let (x, _) = cnn_data::to_tensor(&set, &[0, 1, 2], &format, None, &Device::Cpu).unwrap();
    let mut pruned_somewhere = false;
    for masks in &result.masks {
        let (module, info) = extract_module(&model, masks).unwrap();
        pruned_somewhere |= info.kernels < model.analysis().total_kernels();
        let mt = mask_tensors(masks, &Device::Cpu).unwrap();
        let masked = model
            .forward(
                &x,
                ForwardOptions {
                    masks: Some(&mt),
                    ..Default::default()
                },
            )
            .unwrap()
            .0;
        let d = max_diff(&masked, &module.forward_eval(&x).unwrap());
        assert!(
            d < 1e-4,
            "extracted module differs from the masked model by {d}"
        );
    }
    assert!(pruned_somewhere, "the search removed no kernel at all");
}

fn decoded(file: &str) -> proto::ModelProto {
    proto::ModelProto::decode(std::fs::read(fixture(file)).unwrap().as_slice()).unwrap()
}

fn import_edited(edit: impl FnOnce(&mut proto::ModelProto)) -> OnnxError {
    let mut m = decoded("geometry.ts-folded.onnx");
    edit(&mut m);
    let err = parse_onnx(Path::new("edited.onnx"), &m.encode_to_vec()).unwrap_err();
    assert!(err.to_string().starts_with("edited.onnx: "), "{err}");
    err
}

fn node<'m>(m: &'m mut proto::ModelProto, op: &str) -> &'m mut proto::NodeProto {
    m.graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.op_type == op)
        .unwrap()
}

fn ints_attr<'n>(n: &'n mut proto::NodeProto, name: &str) -> &'n mut Vec<i64> {
    &mut n
        .attribute
        .iter_mut()
        .find(|a| a.name == name)
        .unwrap()
        .ints
}

#[test]
fn truncated_empty_and_foreign_files_are_named_errors() {
    let bytes = std::fs::read(fixture("resnet18.folded.onnx")).unwrap();
    for (what, cut) in [
        ("truncated", &bytes[..bytes.len() / 2]),
        ("empty", &bytes[..0]),
    ] {
        let err = parse_onnx(Path::new("m.onnx"), cut).unwrap_err();
        assert!(matches!(err, OnnxError::NotOnnx { .. }), "{what}: {err}");
        assert!(
            err.to_string().starts_with("m.onnx: not an ONNX model"),
            "{what}: {err}"
        );
    }
    let probe = std::fs::read(fixture("resnet18.probe.safetensors")).unwrap();
    let err = parse_onnx(Path::new("weights.safetensors"), &probe).unwrap_err();
    assert!(err.to_string().contains("not an ONNX model"), "{err}");
    let err = import_onnx(Path::new("no/such/file.onnx"), &Device::Cpu).unwrap_err();
    assert!(err.to_string().starts_with("no/such/file.onnx: "), "{err}");
}

#[test]
fn unsupported_operators_attributes_and_shapes_name_the_node() {
    let err = import_edited(|m| node(m, "MaxPool").op_type = "LpPool".into());
    assert_eq!(
        err.to_string().split(": operator").next().unwrap(),
        "edited.onnx: node `/mp/MaxPool` (LpPool)"
    );
    assert!(err
        .to_string()
        .contains("operator LpPool is not supported; cnnsplit imports Conv"));

    let err = import_edited(|m| *ints_attr(node(m, "Conv"), "pads") = vec![1, 2, 0, 2]);
    assert!(
        err.to_string()
            .contains("node `/stem/Conv` (Conv): pads [1, 2, 0, 2]: only symmetric padding"),
        "{err}"
    );

    let err = import_edited(|m| node(m, "Flatten").op_type = "Softmax".into());
    assert!(
        err.to_string()
            .contains("(Softmax): operator Softmax is not supported"),
        "{err}"
    );

    let err = import_edited(|m| {
        let n = node(m, "Conv");
        n.attribute
            .iter_mut()
            .find(|a| a.name == "group")
            .unwrap()
            .i = 3;
    });
    assert!(
        err.to_string()
            .contains("group = 3 with 3 input and 6 output channels"),
        "{err}"
    );

    let err = import_edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let extra = g.output[0].clone();
        g.output.push(extra);
    });
    assert!(err.to_string().contains("the graph has 2 outputs"), "{err}");

    // a tensor written twice (graphs must be in single-assignment form): no endless walk
    let err = import_edited(|m| {
        let nodes = &mut m.graph.as_mut().unwrap().node;
        let first = nodes.iter().find(|n| n.op_type == "Relu").unwrap().clone();
        let relu = nodes
            .iter_mut()
            .filter(|n| n.op_type == "Relu")
            .nth(1)
            .unwrap();
        relu.output = first.output.clone();
    });
    assert!(err.to_string().contains("already defines"), "{err}");

    let err = import_edited(|m| {
        m.opset_import.iter_mut().for_each(|o| o.version = 7);
    });
    assert!(
        err.to_string()
            .contains("opset 7 is not supported (opsets 11 to 23 are)"),
        "{err}"
    );

    let err = import_edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let t = g
            .initializer
            .iter_mut()
            .find(|t| t.name == "fc.weight")
            .unwrap();
        t.raw_data.truncate(12);
    });
    assert!(
        err.to_string()
            .contains("initialiser `fc.weight`: shape [10, 10] needs 100 values, the file holds 3"),
        "{err}"
    );
}
