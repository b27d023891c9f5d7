//! Physical extraction of a module (design §5.9): a smaller network holding only the kernels a
//! per-site mask retains, whose outputs equal the masked model's.
//!
//! Convs whose mask retains nothing keep one zero channel (conv weight and bias 0, BatchNorm
//! γ = β = 0, running mean 0, running variance 1), so the extracted network stays exact; they are
//! listed in [`ExtractInfo::zeroed_convs`] and count 0 kernels.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use cnn_models::extract::{extract_module, mask_tensors};
//! use cnn_models::{presets, ForwardOptions, Model};
//!
//! let model = Model::init(presets::rescnn(0.0625, 3, 10, true), 1, &Device::Cpu).unwrap();
//! // keep the even kernels of every site
//! let masks: Vec<Vec<bool>> =
//!     model.analysis().sites.iter().map(|s| (0..s.channels).map(|k| k % 2 == 0).collect()).collect();
//! let (module, info) = extract_module(&model, &masks).unwrap();
//! assert_eq!(info.kernels, module.analysis().total_kernels() - info.zeroed_convs.len());
//! let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
//! let mt = mask_tensors(&masks, &Device::Cpu).unwrap();
//! let opts = ForwardOptions { masks: Some(&mt), ..Default::default() };
//! let masked = model.forward(&x, opts).unwrap().0;
//! let diff = (masked - module.forward_eval(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
//! assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
//! ```

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::spec::{Analysis, ChannelSource, LayerSpec, ModelSpec};

/// A kernel mask of one mask site: entry k is `true` when kernel k is retained.
pub type KernelMask = Vec<bool>;

/// What an extraction kept, per physical conv.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtractInfo {
    /// Retained kernel indices of every physical conv, ascending (coupled convs share a list).
    pub retained: Vec<Vec<usize>>,
    /// Physical convs that retain nothing and were reduced to one zero channel.
    pub zeroed_convs: Vec<usize>,
    /// Retained kernels summed over physical convs (zeroed convs count 0, design §5.8).
    pub kernels: usize,
}

/// Check that `masks` has one mask per site of `analysis`, each of the site's width.
pub fn check_masks(analysis: &Analysis, masks: &[KernelMask]) -> Result<()> {
    if masks.len() != analysis.sites.len() {
        return Err(ModelError::Mismatch(format!(
            "{} masks given, the model has {} mask sites",
            masks.len(),
            analysis.sites.len()
        )));
    }
    for (s, (site, m)) in analysis.sites.iter().zip(masks).enumerate() {
        if m.len() != site.channels {
            return Err(ModelError::Mismatch(format!(
                "mask of site {s} has {} entries, the site has {} kernels",
                m.len(),
                site.channels
            )));
        }
    }
    Ok(())
}

/// Kernel count of a mask set: Σ over physical convs of the popcount of its site's mask, so a
/// site shared by several convs counts at each of them (design §5.8).
pub fn kernel_count(analysis: &Analysis, masks: &[KernelMask]) -> usize {
    analysis
        .convs
        .iter()
        .map(|c| {
            masks
                .get(c.site)
                .map_or(0, |m| m.iter().filter(|b| **b).count())
        })
        .sum()
}

/// Mask tensors of shape `[1, C_site]` (1.0 = retained), the `masks` argument of a single-module
/// [`Model::forward`].
pub fn mask_tensors(masks: &[KernelMask], device: &Device) -> Result<Vec<Tensor>> {
    masks
        .iter()
        .map(|m| {
            let v: Vec<f32> = m.iter().map(|b| if *b { 1.0 } else { 0.0 }).collect();
            Ok(Tensor::from_vec(v, (1, m.len()), device)?)
        })
        .collect()
}

/// Full-model channel indices a layer reading `src` keeps in the extracted network, given the
/// retained list of every site (an empty site keeps its zero channel 0). Concatenated parts are
/// shifted by the *full* widths of the parts before them (design §5.9 step 2).
pub fn source_indices(src: &ChannelSource, site_retained: &[Vec<usize>]) -> Vec<usize> {
    match src {
        ChannelSource::Input(c) => (0..*c).collect(),
        ChannelSource::Site { site, .. } => {
            let r = &site_retained[*site];
            if r.is_empty() {
                vec![0]
            } else {
                r.clone()
            }
        }
        ChannelSource::Concat(parts) => {
            let mut out = Vec::new();
            let mut offset = 0;
            for p in parts {
                out.extend(
                    source_indices(p, site_retained)
                        .into_iter()
                        .map(|i| i + offset),
                );
                offset += p.channels();
            }
            out
        }
    }
}

fn set_widths(layers: &mut [LayerSpec], widths: &[usize], next: &mut usize) {
    for layer in layers {
        match layer {
            LayerSpec::Conv(c) => {
                c.out_channels = widths[*next];
                if c.groups > 1 {
                    // a depthwise conv keeps one filter per kept input channel
                    c.groups = widths[*next];
                }
                *next += 1;
            }
            LayerSpec::Concat { branches } => {
                for b in branches {
                    set_widths(b, widths, next);
                }
            }
            LayerSpec::Add { shortcut, .. } => set_widths(shortcut, widths, next),
            _ => {}
        }
    }
}

fn select(t: &Tensor, dim: usize, idx: &[usize]) -> Result<Tensor> {
    if idx.len() == t.dim(dim)? && idx.iter().enumerate().all(|(i, k)| i == *k) {
        return Ok(t.clone());
    }
    let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let ids = Tensor::from_vec(ids, idx.len(), t.device())?;
    Ok(t.index_select(&ids, dim)?.contiguous()?)
}

/// Build the module network of a mask set (one [`KernelMask`] per site): the same layers with
/// sliced widths and sliced tensors (design §5.9). Its evaluation-mode outputs equal the model's
/// forward with these masks.
pub fn extract_module(model: &Model, masks: &[KernelMask]) -> Result<(Model, ExtractInfo)> {
    let analysis = model.analysis();
    check_masks(analysis, masks)?;
    let site_retained: Vec<Vec<usize>> = masks
        .iter()
        .map(|m| {
            m.iter()
                .enumerate()
                .filter(|(_, b)| **b)
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let retained: Vec<Vec<usize>> = analysis
        .convs
        .iter()
        .map(|c| site_retained[c.site].clone())
        .collect();
    let zeroed_convs: Vec<usize> = retained
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_empty())
        .map(|(i, _)| i)
        .collect();
    let widths: Vec<usize> = retained.iter().map(|r| r.len().max(1)).collect();

    let mut spec: ModelSpec = model.spec().clone();
    let mut next = 0;
    set_widths(&mut spec.layers, &widths, &mut next);

    let device = model.device();
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for (c, keep) in analysis.convs.iter().zip(&retained) {
        let cols = source_indices(&c.reads, &site_retained);
        let w = model.tensor(&format!("{}.weight", c.name))?;
        let zero = keep.is_empty();
        let w_new = match (zero, c.is_depthwise()) {
            (true, true) => Tensor::zeros((1, 1, c.kernel.h, c.kernel.w), w.dtype(), device)?,
            (true, false) => {
                Tensor::zeros((1, cols.len(), c.kernel.h, c.kernel.w), w.dtype(), device)?
            }
            // a depthwise filter reads only its own channel: keep the rows, not columns
            (false, true) => select(w, 0, keep)?,
            (false, false) => select(&select(w, 0, keep)?, 1, &cols)?,
        };
        tensors.insert(format!("{}.weight", c.name), w_new);
        if c.bias {
            let b = model.tensor(&format!("{}.bias", c.name))?;
            let b_new = if zero {
                Tensor::zeros(1, b.dtype(), device)?
            } else {
                select(b, 0, keep)?
            };
            tensors.insert(format!("{}.bias", c.name), b_new);
        }
        if let Some(bn) = &c.bn {
            for (suffix, fill) in [
                ("weight", 0.0),
                ("bias", 0.0),
                ("running_mean", 0.0),
                ("running_var", 1.0),
            ] {
                let key = format!("{bn}.{suffix}");
                let t = model.tensor(&key)?;
                let t_new = if zero {
                    (Tensor::ones(1, t.dtype(), device)? * fill)?
                } else {
                    select(t, 0, keep)?
                };
                tensors.insert(key, t_new);
            }
        }
    }
    for l in &analysis.linears {
        let w = model.tensor(&format!("{}.weight", l.name))?;
        let w_new = match &l.reads {
            Some((src, hw)) => {
                let cols: Vec<usize> = source_indices(src, &site_retained)
                    .into_iter()
                    .flat_map(|ch| ch * hw..(ch + 1) * hw)
                    .collect();
                select(w, 1, &cols)?
            }
            None => w.clone(),
        };
        tensors.insert(format!("{}.weight", l.name), w_new);
        let b = model.tensor(&format!("{}.bias", l.name))?;
        tensors.insert(format!("{}.bias", l.name), b.clone());
    }
    let kernels = kernel_count(analysis, masks);
    let mut module = Model::from_tensors(spec, tensors, device)?;
    module.set_ops(model.ops());
    Ok((
        module,
        ExtractInfo {
            retained,
            zeroed_convs,
            kernels,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ForwardOptions;
    use crate::presets;
    use crate::spec::{ConvSpec, HeightWidth, InputShape, LinearSpec};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn conv(name: &str, out: usize, k: usize, bn: bool, relu: bool) -> LayerSpec {
        LayerSpec::Conv(ConvSpec {
            name: name.into(),
            out_channels: out,
            kernel: k.into(),
            stride: 1.into(),
            padding: ((k - 1) / 2).into(),
            dilation: 1,
            groups: 1,
            bias: true,
            bn: bn.then(|| format!("{name}_bn")),
            relu,
            relu6: false,
        })
    }

    /// A small spec with a residual add, a concat of three branches (one with two convs) and a
    /// 2×2 flattened map.
    fn custom_spec() -> ModelSpec {
        ModelSpec {
            name: "custom".into(),
            input: InputShape {
                channels: 3,
                height: 8,
                width: 8,
            },
            num_classes: 3,
            conv_init: Default::default(),
            layers: vec![
                conv("a", 5, 3, true, true),
                LayerSpec::Save { slot: "r".into() },
                conv("b", 6, 3, false, true),
                conv("c", 5, 3, true, true),
                LayerSpec::Add {
                    slot: "r".into(),
                    shortcut: vec![],
                },
                LayerSpec::MaxPool {
                    kernel: 2,
                    stride: 2,
                    padding: 0,
                },
                LayerSpec::Concat {
                    branches: vec![
                        vec![conv("d", 3, 1, true, true)],
                        vec![conv("e", 4, 3, false, false), conv("f", 2, 3, true, true)],
                        vec![conv("g", 3, 5, true, true)],
                    ],
                },
                conv("h", 4, 3, true, true),
                LayerSpec::MaxPool {
                    kernel: 2,
                    stride: 2,
                    padding: 0,
                },
                LayerSpec::Flatten,
                LayerSpec::Linear(LinearSpec {
                    name: "fc1".into(),
                    out_features: 7,
                    relu: true,
                }),
                LayerSpec::Linear(LinearSpec {
                    name: "fc2".into(),
                    out_features: 3,
                    relu: false,
                }),
            ],
        }
    }

    fn spec_by_index(i: usize) -> ModelSpec {
        match i {
            0 => presets::simcnn(0.125, 3, 10, true),
            1 => presets::rescnn(0.125, 3, 10, true),
            2 => presets::incecnn(0.125, 3, 10),
            3 => presets::simcnn(0.125, 3, 10, false),
            4 => presets::rescnn(0.125, 3, 10, false),
            5 => custom_spec(),
            6 => presets::resnet18(0.0625, 3, 10),
            7 => presets::vgg16(0.0625, 3, 10),
            8 => presets::mobilenetv2(0.125, 3, 10),
            seed => random_modern_spec(seed as u64),
        }
    }

    /// A random small network of the ResNet/MobileNet families' layer types: rectangular and
    /// dilated convs, basic blocks with identity or projection shortcuts, inverted residuals
    /// with depthwise convs and ReLU6, max-pools with padding and average pools.
    ///
    /// Some draws shrink the map to nothing (a stride-2 pool after strided convs on a 9×10
    /// input); those are redrawn, so every seed gives a valid spec.
    fn random_modern_spec(seed: u64) -> ModelSpec {
        (0u64..)
            .map(|attempt| draw_modern_spec(seed, attempt))
            .find(|spec| spec.analyse().is_ok())
            .expect("some draw is valid")
    }

    fn draw_modern_spec(seed: u64, attempt: u64) -> ModelSpec {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let side = rng.random_range(9..=13);
        let mut names = 0;
        let mut name = |rng: &mut ChaCha8Rng| {
            names += 1;
            let _ = rng;
            format!("l{names}")
        };
        let mut layers = Vec::new();
        let kh = rng.random_range(1..=3);
        let kw = rng.random_range(1..=3);
        let stem_name = name(&mut rng);
        let mut channels = rng.random_range(2..=5);
        layers.push(LayerSpec::Conv(ConvSpec {
            kernel: HeightWidth { h: kh, w: kw },
            padding: HeightWidth {
                h: kh / 2,
                w: kw / 2,
            },
            stride: HeightWidth {
                h: 1,
                w: rng.random_range(1..=2),
            },
            dilation: rng.random_range(1..=2),
            bn: rng.random_bool(0.7).then(|| format!("{stem_name}.bn")),
            relu6: rng.random_bool(0.5),
            ..ConvSpec::new(stem_name, channels, 1)
        }));
        for block in 0..rng.random_range(1..=3) {
            let slot = format!("s{block}");
            match rng.random_range(0..4) {
                0 => {
                    // basic block: identity or projection shortcut, ReLU after the add
                    let out = if rng.random_bool(0.5) {
                        channels
                    } else {
                        channels + 1
                    };
                    let stride = rng.random_range(1..=2);
                    layers.push(LayerSpec::Save { slot: slot.clone() });
                    let (a, b) = (name(&mut rng), name(&mut rng));
                    layers.push(LayerSpec::Conv(ConvSpec {
                        stride: stride.into(),
                        bn: Some(format!("{a}.bn")),
                        bias: false,
                        ..ConvSpec::new(a, out, 3)
                    }));
                    layers.push(LayerSpec::Conv(ConvSpec {
                        bn: Some(format!("{b}.bn")),
                        relu: false,
                        ..ConvSpec::new(b, out, 3)
                    }));
                    let shortcut = if stride != 1 || out != channels {
                        let d = name(&mut rng);
                        vec![LayerSpec::Conv(ConvSpec {
                            stride: stride.into(),
                            bn: rng.random_bool(0.5).then(|| format!("{d}.bn")),
                            relu: false,
                            ..ConvSpec::new(d, out, 1)
                        })]
                    } else {
                        vec![]
                    };
                    layers.push(LayerSpec::Add { slot, shortcut });
                    layers.push(LayerSpec::Relu);
                    channels = out;
                }
                1 => {
                    // inverted residual: expand → depthwise → project (+ add when it fits)
                    let hidden = channels * rng.random_range(1..=3);
                    let dilation = rng.random_range(1..=2);
                    let stride = rng.random_range(1..=2);
                    let out = if rng.random_bool(0.5) {
                        channels
                    } else {
                        channels + 2
                    };
                    let (e, d, p) = (name(&mut rng), name(&mut rng), name(&mut rng));
                    let residual = stride == 1 && out == channels;
                    if residual {
                        layers.push(LayerSpec::Save { slot: slot.clone() });
                    }
                    layers.push(LayerSpec::Conv(ConvSpec {
                        bn: Some(format!("{e}.bn")),
                        relu6: true,
                        ..ConvSpec::new(e, hidden, 1)
                    }));
                    layers.push(LayerSpec::Conv(ConvSpec {
                        groups: hidden,
                        stride: stride.into(),
                        dilation,
                        padding: dilation.into(),
                        bn: rng.random_bool(0.7).then(|| format!("{d}.bn")),
                        relu6: true,
                        ..ConvSpec::new(d, hidden, 3)
                    }));
                    layers.push(LayerSpec::Conv(ConvSpec {
                        bn: Some(format!("{p}.bn")),
                        relu: false,
                        ..ConvSpec::new(p, out, 1)
                    }));
                    if residual {
                        layers.push(LayerSpec::Add {
                            slot,
                            shortcut: vec![],
                        });
                    }
                    channels = out;
                }
                2 => layers.push(LayerSpec::MaxPool {
                    kernel: 3,
                    stride: rng.random_range(1..=2),
                    padding: 1,
                }),
                _ => {
                    layers.push(LayerSpec::AvgPool {
                        kernel: 3,
                        stride: rng.random_range(1..=2),
                        padding: rng.random_range(0..=1),
                        count_include_pad: rng.random_bool(0.5),
                    });
                    layers.push(LayerSpec::Relu6);
                }
            }
        }
        if rng.random_bool(0.5) {
            layers.push(LayerSpec::GlobalAvgPool);
        } else {
            layers.push(LayerSpec::Flatten);
            layers.push(LayerSpec::Linear(LinearSpec {
                name: "hidden".into(),
                out_features: 5,
                relu: true,
            }));
        }
        layers.push(LayerSpec::Linear(LinearSpec {
            name: "fc".into(),
            out_features: 3,
            relu: false,
        }));
        ModelSpec {
            name: format!("random-{seed}"),
            input: InputShape {
                channels: 3,
                height: side,
                width: side + 1,
            },
            num_classes: 3,
            conv_init: Default::default(),
            layers,
        }
    }

    /// Random masks: per site all-off, a single kernel, all-on or random, by `seed`.
    fn random_masks(a: &Analysis, seed: u64) -> Vec<KernelMask> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        a.sites
            .iter()
            .map(|s| match rng.random_range(0..5) {
                0 => vec![false; s.channels],
                1 => {
                    let k = rng.random_range(0..s.channels);
                    (0..s.channels).map(|i| i == k).collect()
                }
                2 => vec![true; s.channels],
                _ => (0..s.channels).map(|_| rng.random_bool(0.5)).collect(),
            })
            .collect()
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

    fn check(spec_index: usize, seed: u64) {
        let dev = Device::Cpu;
        let spec = spec_by_index(spec_index);
        let model = Model::init(spec.clone(), seed, &dev).unwrap();
        let masks = random_masks(model.analysis(), seed);
        let (module, info) = extract_module(&model, &masks).unwrap();
        let inp = spec.input;
        let x = Tensor::randn(0f32, 1.0, (2, inp.channels, inp.height, inp.width), &dev).unwrap();
        let mt = mask_tensors(&masks, &dev).unwrap();
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
        let extracted = module.forward_eval(&x).unwrap();
        let d = max_diff(&masked, &extracted);
        assert!(
            d < 1e-4,
            "spec {spec_index} seed {seed}: masked vs extracted differ by {d}"
        );
        // kernel count: module widths minus zeroed convs = popcount over physical convs
        let popcount: usize = model
            .analysis()
            .convs
            .iter()
            .map(|c| masks[c.site].iter().filter(|b| **b).count())
            .sum();
        assert_eq!(info.kernels, popcount);
        assert_eq!(
            module.analysis().total_kernels() - info.zeroed_convs.len(),
            popcount
        );
        // coupled convs share retained sets
        for s in &model.analysis().sites {
            for c in &s.convs {
                assert_eq!(info.retained[*c], info.retained[s.convs[0]]);
            }
        }
        for p in &info.zeroed_convs {
            assert!(info.retained[*p].is_empty());
            assert_eq!(module.analysis().convs[*p].out_channels, 1);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn masked_equals_extracted(spec_index in 0usize..6, seed in any::<u64>()) {
            check(spec_index, seed);
        }

        #[test]
        fn masked_equals_extracted_for_modern_layer_types(
            family in 9usize..10_000,
            seed in any::<u64>(),
        ) {
            check(family, seed);
        }
    }

    #[test]
    fn random_modern_specs_are_valid_for_every_family() {
        // family 4169 once drew a 3×3 pool over a 4×1 map (CI, stop 23)
        check(4169, 168_169_052);
        for family in 9..400 {
            random_modern_spec(family as u64).analyse().unwrap();
        }
    }

    #[test]
    fn resnet_vgg_mobilenet_masked_equals_extracted() {
        for i in 6..9 {
            check(i, 5 + i as u64);
        }
    }

    #[test]
    fn depthwise_and_projection_convs_share_their_sites() {
        let a = presets::mobilenetv2(0.125, 3, 10).analyse().unwrap();
        let site_of = |name: &str| a.convs.iter().find(|c| c.name == name).unwrap().site;
        // block 2's depthwise conv joins its expand conv's site
        assert_eq!(
            site_of("features.2.conv.1.0"),
            site_of("features.2.conv.0.0")
        );
        // block 1 (t = 1) has no expand conv: its depthwise joins the stem
        assert_eq!(site_of("features.1.conv.0.0"), site_of("features.0.0"));
        // the residual of block 3 couples its projection with block 2's
        assert_eq!(site_of("features.3.conv.2"), site_of("features.2.conv.2"));
        assert_ne!(site_of("features.2.conv.2"), site_of("features.2.conv.0.0"));
        let r = presets::resnet18(0.0625, 3, 10).analyse().unwrap();
        let site_of = |name: &str| r.convs.iter().find(|c| c.name == name).unwrap().site;
        assert_eq!(site_of("layer2.0.downsample.0"), site_of("layer2.0.conv2"));
        assert_eq!(site_of("layer2.1.conv2"), site_of("layer2.0.conv2"));
        assert_eq!(site_of("layer1.1.conv2"), site_of("conv1"));
        assert_ne!(site_of("layer2.0.conv2"), site_of("conv1"));
    }

    #[test]
    fn every_architecture_masked_equals_extracted() {
        for i in 0..6 {
            check(i, 11 + i as u64);
        }
    }

    #[test]
    fn all_ones_extraction_reproduces_every_tensor() {
        for i in 0..6 {
            let model = Model::init(spec_by_index(i), 3, &Device::Cpu).unwrap();
            let masks: Vec<KernelMask> = model
                .analysis()
                .sites
                .iter()
                .map(|s| vec![true; s.channels])
                .collect();
            let (module, info) = extract_module(&model, &masks).unwrap();
            assert!(info.zeroed_convs.is_empty());
            assert_eq!(info.kernels, model.analysis().total_kernels());
            assert_eq!(module.spec(), model.spec());
            assert_eq!(module.tensors().len(), model.tensors().len());
            for (k, t) in model.tensors() {
                let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let b = module
                    .tensor(k)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert_eq!(a, b, "tensor {k}");
            }
        }
    }

    #[test]
    fn concat_offsets_use_full_widths() {
        let model = Model::init(custom_spec(), 5, &Device::Cpu).unwrap();
        let a = model.analysis();
        // sites: a/c coupled, b, d, e, f, g, h
        let mut masks: Vec<KernelMask> = a.sites.iter().map(|s| vec![false; s.channels]).collect();
        let site_of = |name: &str| a.convs.iter().find(|c| c.name == name).unwrap().site;
        masks[site_of("d")] = vec![false, true, true];
        masks[site_of("f")] = vec![true, false];
        masks[site_of("g")] = vec![false, false, true];
        let (module, info) = extract_module(&model, &masks).unwrap();
        let h = a.convs.iter().position(|c| c.name == "h").unwrap();
        let site_retained: Vec<Vec<usize>> = masks
            .iter()
            .map(|m| {
                m.iter()
                    .enumerate()
                    .filter(|(_, b)| **b)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        assert_eq!(
            source_indices(&a.convs[h].reads, &site_retained),
            vec![1, 2, 3, 5 + 2]
        );
        assert_eq!(module.analysis().convs[h].in_channels, 4);
        // a and c are coupled and empty: both zeroed, b reads the zero channel
        let ia = a.convs.iter().position(|c| c.name == "a").unwrap();
        let ic = a.convs.iter().position(|c| c.name == "c").unwrap();
        assert!(info.zeroed_convs.contains(&ia) && info.zeroed_convs.contains(&ic));
        assert_eq!(module.analysis().convs[ia + 1].in_channels, 1);
    }

    #[test]
    fn wrong_mask_shapes_are_rejected() {
        let model = Model::init(custom_spec(), 5, &Device::Cpu).unwrap();
        assert!(extract_module(&model, &[]).is_err());
        let mut masks: Vec<KernelMask> = model
            .analysis()
            .sites
            .iter()
            .map(|s| vec![true; s.channels])
            .collect();
        masks[0].push(true);
        assert!(extract_module(&model, &masks).is_err());
    }
}
