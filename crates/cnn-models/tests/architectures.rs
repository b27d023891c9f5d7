//! Shapes, sizes, mask sites and costs of the paper's architectures (design §3, §9, §12.9).

use candle_core::{DType, Device, Tensor};
use cnn_models::spec::{ChannelSource, ConvSpec, InputShape, LayerSpec, LinearSpec};
use cnn_models::{presets, Model, ModelSpec};

#[test]
fn parameter_counts_match_the_paper_at_width_one() {
    let cases = [
        (presets::simcnn(1.0, 3, 10, true), 33_646_666u64, 4224usize),
        (presets::rescnn(1.0, 3, 10, true), 16_018_698, 4288),
        (presets::incecnn(1.0, 3, 10), 12_637_898, 3200),
        (presets::simcnn(1.0, 3, 10, false), 15_245_130, 4224),
        (presets::rescnn(1.0, 3, 10, false), 16_010_122, 4288),
    ];
    for (spec, params, kernels) in cases {
        let a = spec.analyse().unwrap();
        assert_eq!(a.params(), params, "{}", spec.name);
        assert_eq!(a.total_kernels(), kernels, "{}", spec.name);
    }
}

#[test]
fn kernel_totals_scale_with_width() {
    assert_eq!(
        presets::simcnn(0.25, 3, 10, true)
            .analyse()
            .unwrap()
            .total_kernels(),
        1056
    );
    assert_eq!(
        presets::rescnn(0.25, 3, 10, true)
            .analyse()
            .unwrap()
            .total_kernels(),
        1072
    );
    assert_eq!(
        presets::incecnn(0.25, 3, 10)
            .analyse()
            .unwrap()
            .total_kernels(),
        800
    );
    // width 0.25: channels 16…128 and FC 128→1024→1024→N
    let a = presets::simcnn(0.25, 3, 10, true).analyse().unwrap();
    assert_eq!(a.convs[0].out_channels, 16);
    assert_eq!(a.convs[12].out_channels, 128);
    let fc: Vec<(usize, usize)> = a
        .linears
        .iter()
        .map(|l| (l.in_features, l.out_features))
        .collect();
    assert_eq!(fc, vec![(128, 1024), (1024, 1024), (1024, 10)]);
}

#[test]
fn mac_totals_match_the_reference_counter() {
    let sim = presets::simcnn(1.0, 3, 10, true).analyse().unwrap();
    assert_eq!(sim.conv_macs(), 313_196_544);
    assert_eq!(sim.macs() - sim.conv_macs(), 18_915_328);
    let res = presets::rescnn(1.0, 3, 10, true).analyse().unwrap();
    assert_eq!(res.conv_macs(), 431_161_344);
    assert_eq!(res.macs() - res.conv_macs(), 5_120);
    let inc = presets::incecnn(1.0, 3, 10).analyse().unwrap();
    assert_eq!(inc.conv_macs(), 1_016_594_432);
    assert_eq!(inc.macs() - inc.conv_macs(), 10_880);
    let cs = presets::simcnn(1.0, 3, 10, false).analyse().unwrap();
    assert_eq!(cs.macs(), 313_725_952);
}

#[test]
fn rescnn_couples_residual_pairs_into_nine_sites() {
    let a = presets::rescnn(1.0, 3, 10, true).analyse().unwrap();
    assert_eq!(a.sites.len(), 9);
    for (src, sink) in [(1, 3), (5, 7), (9, 11)] {
        assert_eq!(a.convs[src].site, a.convs[sink].site);
        // the layer after each sum reads the shared site
        let shared = ChannelSource::Site {
            site: a.convs[src].site,
            channels: a.convs[src].out_channels,
        };
        match a.convs.get(sink + 1) {
            Some(next) => assert_eq!(next.reads, shared),
            None => assert_eq!(a.linears[0].reads, Some((shared, 1))),
        }
    }
    let sites_with_two: Vec<Vec<usize>> = a
        .sites
        .iter()
        .filter(|s| s.convs.len() == 2)
        .map(|s| s.convs.clone())
        .collect();
    assert_eq!(sites_with_two, vec![vec![1, 3], vec![5, 7], vec![9, 11]]);
    // input sizes of the table in design §3.1
    let sizes: Vec<usize> = a.convs.iter().map(|c| c.in_hw.0).collect();
    assert_eq!(sizes, vec![32, 32, 16, 16, 16, 8, 4, 4, 4, 2, 1, 1]);
}

#[test]
fn incecnn_blocks_concatenate_with_full_width_offsets() {
    let a = presets::incecnn(1.0, 3, 10).analyse().unwrap();
    assert_eq!(a.sites.len(), 12);
    // block B convs read the concat of block A's three branches: 256 + 256 + 64 = 576
    for i in 6..9 {
        assert_eq!(a.convs[i].in_channels, 576);
        let ChannelSource::Concat(parts) = &a.convs[i].reads else {
            panic!("expected a concat")
        };
        let widths: Vec<usize> = parts.iter().map(ChannelSource::channels).collect();
        assert_eq!(widths, vec![256, 256, 64]);
    }
    assert_eq!(a.convs[9].in_channels, 1088);
    let (src, hw) = a.linears[0].reads.clone().unwrap();
    assert_eq!((src.channels(), hw), (1088, 1));
    assert_eq!(a.convs[5].kernel, 5.into());
    assert_eq!(a.convs[5].padding, 2.into());
}

#[test]
fn forward_shapes_for_every_preset() {
    let dev = Device::Cpu;
    for name in presets::PRESET_NAMES {
        let spec = presets::by_name(name, 0.125, 3, 7).unwrap();
        let model = Model::init(spec, 1, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 3, 32, 32), &dev).unwrap();
        let y = model.forward_eval(&x).unwrap();
        assert_eq!(y.dims(), &[3, 7], "{name}");
    }
}

#[test]
fn wrong_input_shape_is_an_error_naming_both_shapes() {
    let model = Model::init(presets::simcnn(0.125, 3, 10, true), 0, &Device::Cpu).unwrap();
    let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward_eval(&x).unwrap_err().to_string();
    assert!(
        err.contains("[2, 1, 28, 28]") && err.contains("[B, 3, 32, 32]"),
        "{err}"
    );
}

fn conv(name: &str, out: usize) -> LayerSpec {
    LayerSpec::Conv(ConvSpec {
        name: name.into(),
        out_channels: out,
        kernel: 3.into(),
        stride: 1.into(),
        padding: 1.into(),
        dilation: 1,
        groups: 1,
        bias: true,
        bn: None,
        relu: true,
        relu6: false,
    })
}

fn small(layers: Vec<LayerSpec>) -> ModelSpec {
    ModelSpec {
        name: "custom".into(),
        input: InputShape {
            channels: 3,
            height: 8,
            width: 8,
        },
        num_classes: 4,
        conv_init: Default::default(),
        layers,
    }
}

#[test]
fn impossible_specs_are_rejected_naming_the_layer() {
    let fc = |n| {
        LayerSpec::Linear(LinearSpec {
            name: "fc".into(),
            out_features: n,
            relu: false,
        })
    };
    let pool = LayerSpec::MaxPool {
        kernel: 2,
        stride: 2,
        padding: 0,
    };
    let cases: Vec<(ModelSpec, &str)> = vec![
        // pooling below 1×1
        (
            small(vec![
                conv("c0", 4),
                pool.clone(),
                pool.clone(),
                pool.clone(),
                pool.clone(),
                LayerSpec::Flatten,
                fc(4),
            ]),
            "layer 4",
        ),
        // residual add of different shapes
        (
            small(vec![
                conv("c0", 4),
                LayerSpec::Save { slot: "r".into() },
                conv("c1", 8),
                LayerSpec::Add {
                    slot: "r".into(),
                    shortcut: vec![],
                },
                LayerSpec::Flatten,
                fc(4),
            ]),
            "different shapes",
        ),
        // add of a slot never saved
        (
            small(vec![
                conv("c0", 4),
                LayerSpec::Add {
                    slot: "nope".into(),
                    shortcut: vec![],
                },
                LayerSpec::Flatten,
                fc(4),
            ]),
            "no earlier layer saved",
        ),
        // wrong class count at the output
        (
            small(vec![conv("c0", 4), LayerSpec::Flatten, fc(5)]),
            "num_classes = 4",
        ),
        // absurd size
        (
            small(vec![conv("c0", 1 << 30), LayerSpec::Flatten, fc(4)]),
            "too large",
        ),
        // linear on a map
        (small(vec![conv("c0", 4), fc(4)]), "flatten"),
        // duplicate parameter names
        (
            small(vec![
                conv("c0", 4),
                conv("c0", 4),
                LayerSpec::Flatten,
                fc(4),
            ]),
            "used twice",
        ),
    ];
    for (spec, needle) in cases {
        let err = spec.analyse().unwrap_err().to_string();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
}

#[test]
fn a_user_spec_with_residual_and_concat_runs() {
    let spec = small(vec![
        conv("a", 6),
        LayerSpec::Save { slot: "r".into() },
        conv("b", 6),
        LayerSpec::Add {
            slot: "r".into(),
            shortcut: vec![],
        },
        LayerSpec::Concat {
            branches: vec![vec![conv("c", 3)], vec![conv("d", 5)]],
        },
        LayerSpec::GlobalAvgPool,
        LayerSpec::Linear(LinearSpec {
            name: "fc".into(),
            out_features: 4,
            relu: false,
        }),
    ]);
    let json = serde_json::to_string(&spec).unwrap();
    let back: ModelSpec = serde_json::from_str(&json).unwrap();
    let a = back.analyse().unwrap();
    assert_eq!(a.sites.len(), 3);
    assert_eq!(a.convs[0].site, a.convs[1].site);
    assert_eq!(a.linears[0].in_features, 8);
    let model = Model::init(back, 3, &Device::Cpu).unwrap();
    let y = model
        .forward_eval(&Tensor::ones((2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(y.dims(), &[2, 4]);
}

/// The layer path and message of an `InvalidSpec` error.
fn invalid_spec(spec: &ModelSpec) -> (String, String) {
    match spec.analyse() {
        Err(cnn_models::ModelError::InvalidSpec { layer, message }) => (layer, message),
        other => panic!("expected an invalid-spec error, got {other:?}"),
    }
}

#[test]
fn impossible_networks_are_rejected_at_validation_naming_the_layer() {
    let fc = |name: &str, n| {
        LayerSpec::Linear(LinearSpec {
            name: name.into(),
            out_features: n,
            relu: false,
        })
    };
    let big_conv = |padding: usize, kernel: usize| {
        LayerSpec::Conv(ConvSpec {
            name: "c1".into(),
            out_channels: 4,
            kernel: kernel.into(),
            stride: 1.into(),
            padding: padding.into(),
            dilation: 1,
            groups: 1,
            bias: true,
            bn: None,
            relu: true,
            relu6: false,
        })
    };
    let cases: Vec<(&str, ModelSpec, &str, &str)> = vec![
        (
            "channel mismatch at a residual add",
            small(vec![
                conv("c0", 4),
                LayerSpec::Save { slot: "r".into() },
                conv("c1", 6),
                LayerSpec::Add { slot: "r".into(), shortcut: vec![] },
                LayerSpec::Flatten,
                fc("fc", 4),
            ]),
            "3",
            "residual add of different shapes: current 6×8×8, saved `r` 4×8×8 (channel mismatch: 6 vs 4)",
        ),
        (
            "pooling below 1×1",
            small(vec![
                conv("c0", 4),
                LayerSpec::MaxPool {
                    kernel: 4,
                    stride: 4,
                    padding: 0,
                },
                LayerSpec::MaxPool {
                    kernel: 4,
                    stride: 4,
                    padding: 0,
                },
                LayerSpec::Flatten,
                fc("fc", 4),
            ]),
            "2",
            "pooling a 2×2 map with a 4×4 window leaves nothing",
        ),
        (
            "residual add of different spatial shapes",
            small(vec![
                conv("c0", 4),
                LayerSpec::Save { slot: "r".into() },
                LayerSpec::MaxPool {
                    kernel: 2,
                    stride: 2,
                    padding: 0,
                },
                conv("c1", 4),
                LayerSpec::Add { slot: "r".into(), shortcut: vec![] },
                LayerSpec::Flatten,
                fc("fc", 4),
            ]),
            "4",
            "residual add of different shapes: current 4×4×4, saved `r` 4×8×8",
        ),
        (
            "a cycle: an add reading a slot that is only saved later",
            small(vec![
                conv("c0", 4),
                LayerSpec::Add { slot: "r".into(), shortcut: vec![] },
                conv("c1", 4),
                LayerSpec::Save { slot: "r".into() },
                LayerSpec::Flatten,
                fc("fc", 4),
            ]),
            "1",
            "residual add reads slot `r`, which no earlier layer saved",
        ),
        (
            "a padding whose padded size overflows",
            small(vec![
                conv("c0", 4),
                big_conv(usize::MAX / 2, 3),
                LayerSpec::Flatten,
                fc("fc", 4),
            ]),
            "1",
            "padding 9223372036854775807 is too large",
        ),
        (
            "a conv weight of terabytes",
            small(vec![
                conv("c0", 4),
                big_conv(1 << 20, 1 << 20),
                LayerSpec::Flatten,
                fc("fc", 4),
            ]),
            "1",
            "conv weight too large",
        ),
        (
            "a padded output map of terabytes",
            small(vec![
                conv("c0", 4),
                big_conv(1 << 20, 1),
                LayerSpec::Flatten,
                fc("fc", 4),
            ]),
            "1",
            "output shape 4×2097160×2097160 is too large",
        ),
        (
            // each linear weight is 2^29 values, under the per-tensor limit; the second
            // takes the network past the parameter limit
            "parameters over the limit",
            small(vec![
                conv("c0", 4),
                LayerSpec::GlobalAvgPool,
                fc("fc0", 1 << 27),
                fc("fc1", 4),
                fc("fc2", 4),
            ]),
            "3",
            "the network reaches 1207959668 parameters here, over the limit of 1073741824",
        ),
        (
            "activations over the limit",
            ModelSpec {
                input: InputShape {
                    channels: 1,
                    height: 8192,
                    width: 8192,
                },
                ..small(vec![
                    conv("c0", 4),
                    LayerSpec::GlobalAvgPool,
                    fc("fc", 4),
                ])
            },
            "0",
            "the network's activations reach 335544320 values per image here, over the limit of 268435456",
        ),
    ];
    for (what, spec, layer, message) in cases {
        let (l, m) = invalid_spec(&spec);
        assert_eq!((l.as_str(), m.as_str()), (layer, message), "{what}");
        // validation runs first: building the model fails the same way, allocating nothing
        let err = Model::init(spec, 0, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains(message), "{what}: {err}");
    }
}

#[test]
fn analysis_counts_activation_values_per_image() {
    let spec = small(vec![
        conv("c0", 4),
        LayerSpec::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        },
        LayerSpec::Flatten,
        fc_named("fc", 4),
    ]);
    let a = spec.analyse().unwrap();
    // input 3·8·8, conv 4·8·8, pool 4·4·4, flatten 64, linear 4
    assert_eq!(a.activation_elements, 192 + 256 + 64 + 64 + 4);
}

fn fc_named(name: &str, n: usize) -> LayerSpec {
    LayerSpec::Linear(LinearSpec {
        name: name.into(),
        out_features: n,
        relu: false,
    })
}
