//! PyTorch's own logits for the ResNet-18, VGG-16 and MobileNetV2 presets and for a network
//! holding every newer layer type (design §3.5): the state_dicts written by
//! `scripts/make_torch_fixtures.py` load by their torchvision-style names and give PyTorch's
//! logits within 1e-4, through the fast ops and through candle's.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cnn_models::files::import_state_dict;
use cnn_models::{presets, ModelSpec, OpsBackend};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

fn check(name: &str, spec: ModelSpec) {
    let probe =
        candle_core::safetensors::load(fixture(&format!("{name}.probe.safetensors")), &Device::Cpu)
            .unwrap();
    let (x, expected) = (&probe["input"], &probe["logits"]);
    let mut model =
        import_state_dict(&fixture(&format!("{name}.safetensors")), spec, &Device::Cpu).unwrap();
    for ops in [OpsBackend::Fast, OpsBackend::Candle] {
        model.set_ops(ops);
        let got = model.forward_eval(x).unwrap();
        let diff = max_diff(&got, expected);
        assert!(
            diff < 1e-4,
            "{name} ({ops:?}): logits differ from PyTorch's by {diff}"
        );
    }
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

#[test]
fn resnet18_state_dict_gives_pytorch_logits() {
    check("resnet18", presets::resnet18(0.0625, 3, 10));
}

#[test]
fn vgg16_state_dict_gives_pytorch_logits() {
    check("vgg16", presets::vgg16(0.0625, 3, 10));
}

#[test]
fn mobilenetv2_state_dict_gives_pytorch_logits() {
    check("mobilenetv2", presets::mobilenetv2(0.125, 3, 10));
}

#[test]
fn rectangular_dilated_depthwise_convs_and_padded_pools_give_pytorch_logits() {
    let spec = ModelSpec::from_json_file(&fixture("geometry.spec.json")).unwrap();
    let a = spec.analyse().unwrap();
    // the depthwise conv joins the site of the conv feeding it, the shortcut joins the add
    let site = |n: &str| a.convs.iter().find(|c| c.name == n).unwrap().site;
    assert_eq!(site("dw"), site("dilated"));
    assert_eq!(site("short"), site("proj"));
    assert_eq!(a.sites.len(), 3);
    check("geometry", spec);
}

#[test]
fn fast_and_candle_depthwise_convs_agree_in_value_and_gradient() {
    use cnn_models::ops::{conv2d_general, ConvGeometry};
    let dev = Device::Cpu;
    let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 9, 8), &dev).unwrap())
        .unwrap();
    let w = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 1, 3, 2), &dev).unwrap())
        .unwrap();
    let b = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
    let geometry = ConvGeometry {
        stride: cnn_models::HeightWidth { h: 2, w: 1 },
        padding: cnn_models::HeightWidth { h: 2, w: 1 },
        dilation: 2,
        groups: 5,
    };
    let run = |ops| {
        let y = conv2d_general(ops, x.as_tensor(), w.as_tensor(), Some(&b), &geometry).unwrap();
        // a loss that weighs every output differently
        let weights = Tensor::arange(0f32, y.elem_count() as f32, &dev)
            .unwrap()
            .reshape(y.shape())
            .unwrap()
            .cos()
            .unwrap();
        let grads = (&y * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        (
            y,
            grads.get(x.as_tensor()).unwrap().clone(),
            grads.get(w.as_tensor()).unwrap().clone(),
        )
    };
    let (yf, dxf, dwf) = run(OpsBackend::Fast);
    let (yc, dxc, dwc) = run(OpsBackend::Candle);
    // height (9 + 2·2 − 5)/2 + 1 = 5, width (8 + 2·1 − 3)/1 + 1 = 8
    assert_eq!(yf.dims(), &[2, 5, 5, 8]);
    for (what, a, b) in [
        ("output", &yf, &yc),
        ("input gradient", &dxf, &dxc),
        ("weight gradient", &dwf, &dwc),
    ] {
        let d = max_diff(a, b);
        assert!(d < 1e-4, "{what}: fast and candle differ by {d}");
    }
}
