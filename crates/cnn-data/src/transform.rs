//! Conversion of u8 images into normalised f32 tensors, training augmentation and batching.

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, DatasetKind, ImageSet};

/// Per-channel normalisation of \[0,1\]-scaled pixels: `(x/255 − mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Normalization {
    /// The ImageNet statistics, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), which
    /// the reference code uses for CIFAR-10, CIFAR-100 and SVHN.
    pub fn imagenet() -> Self {
        Normalization {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// The same mean and std on each of `channels` channels.
    pub fn uniform(mean: f32, std: f32, channels: usize) -> Self {
        Normalization {
            mean: vec![mean; channels],
            std: vec![std; channels],
        }
    }

    /// Three-channel statistics fitted to `channels`: used as they are for 3 channels, else
    /// the average of the three repeated.
    fn fit3(mean: [f32; 3], std: [f32; 3], channels: usize) -> Self {
        if channels == 3 {
            Normalization {
                mean: mean.to_vec(),
                std: std.to_vec(),
            }
        } else {
            Normalization::uniform(
                mean.iter().sum::<f32>() / 3.0,
                std.iter().sum::<f32>() / 3.0,
                channels,
            )
        }
    }

    /// The default statistics of a dataset kind (design §2.1): Fashion-MNIST 0.2860/0.3530 and
    /// MNIST 0.1307/0.3081 on every channel; CIFAR-10/100 and SVHN the ImageNet statistics
    /// (as the reference code); image folders 0.5/0.5. For a channel count other than 3 the
    /// three-channel statistics are averaged.
    pub fn for_dataset(kind: DatasetKind, channels: usize) -> Self {
        match kind {
            DatasetKind::FashionMnist => Normalization::uniform(0.2860, 0.3530, channels),
            DatasetKind::Mnist | DatasetKind::Mnist5k => {
                Normalization::uniform(0.1307, 0.3081, channels)
            }
            DatasetKind::Cifar10 | DatasetKind::Cifar100 | DatasetKind::Svhn => {
                Normalization::fit3(IMAGENET_MEAN, IMAGENET_STD, channels)
            }
            DatasetKind::ImageFolder => Normalization::uniform(0.5, 0.5, channels),
        }
    }

    /// The datasets' own statistics (the spec's option): CIFAR mean (0.4914, 0.4822, 0.4465)
    /// std (0.2470, 0.2435, 0.2616); SVHN mean (0.4377, 0.4438, 0.4728) std (0.1980, 0.2010,
    /// 0.1970); other kinds as [`Normalization::for_dataset`].
    pub fn per_dataset(kind: DatasetKind, channels: usize) -> Self {
        match kind {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
                Normalization::fit3([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616], channels)
            }
            DatasetKind::Svhn => {
                Normalization::fit3([0.4377, 0.4438, 0.4728], [0.1980, 0.2010, 0.1970], channels)
            }
            _ => Normalization::for_dataset(kind, channels),
        }
    }

    /// Mean and (population) standard deviation per stored channel of `set`, in \[0,1\] scale.
    /// A constant channel gets std 1 so that normalising never divides by zero.
    pub fn from_images(set: &ImageSet) -> Self {
        let c = set.shape.channels;
        let plane = set.shape.height * set.shape.width;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for img in set.images.chunks_exact((c * plane).max(1)) {
            for ch in 0..c {
                for &v in &img[ch * plane..(ch + 1) * plane] {
                    let x = f64::from(v) / 255.0;
                    sum[ch] += x;
                    sq[ch] += x * x;
                }
            }
        }
        let n = (set.len() * plane).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| {
                let m = s / n;
                let sd = (q / n - m * m).max(0.0).sqrt();
                if sd > 1e-12 {
                    sd as f32
                } else {
                    1.0
                }
            })
            .collect();
        Normalization { mean, std }
    }
}

/// What a model consumes: `channels × size × size` normalised f32 images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputFormat {
    /// Channels of the model input (grey images are repeated to fill them).
    pub channels: usize,
    /// Height and width of the model input; smaller images are zero-padded centred, larger
    /// ones centre-cropped.
    pub size: usize,
    /// Normalisation applied after scaling to \[0,1\].
    pub norm: Normalization,
}

impl InputFormat {
    /// 3 channels, 32×32 and [`Normalization::for_dataset`] for every kind (grey 28×28
    /// images: zero-pad to 32×32, normalise, repeat the channel three times; design §2.1).
    pub fn for_dataset(kind: DatasetKind) -> Self {
        InputFormat {
            channels: 3,
            size: 32,
            norm: Normalization::for_dataset(kind, 3),
        }
    }
}

/// Training augmentation (design §2.2): optional horizontal flip with p = 0.5, then padding by
/// `crop_padding` pixels of raw value 0 per side and a random crop back to the input size at
/// an offset uniform in `{0..2·crop_padding}²`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Flip horizontally with probability 0.5.
    pub hflip: bool,
    /// Padding per side before the random crop (0 = no crop).
    pub crop_padding: usize,
}

impl Augment {
    /// Fashion-MNIST, CIFAR-10/100, SVHN and image folders: flip + pad 4; MNIST digits:
    /// pad 4 without flip.
    pub fn for_dataset(kind: DatasetKind) -> Option<Self> {
        let hflip = !matches!(kind, DatasetKind::Mnist | DatasetKind::Mnist5k);
        Some(Augment {
            hflip,
            crop_padding: 4,
        })
    }
}

fn check_format(set: &ImageSet, format: &InputFormat) -> Result<(), DataError> {
    let bad = |m: String| Err(DataError::InvalidArgument(m));
    if format.size == 0 || format.channels == 0 {
        return bad(format!(
            "input format {}x{}x{} is empty",
            format.channels, format.size, format.size
        ));
    }
    if format.norm.mean.len() != format.channels || format.norm.std.len() != format.channels {
        return bad(format!(
            "normalisation has {} means and {} stds for {} channels",
            format.norm.mean.len(),
            format.norm.std.len(),
            format.channels
        ));
    }
    if let Some(s) = format
        .norm
        .std
        .iter()
        .find(|s| !(s.is_finite() && **s > 0.0))
    {
        return bad(format!("normalisation std {s} is not positive"));
    }
    let c = set.shape.channels;
    if c != format.channels && c != 1 {
        return bad(format!(
            "image set {} has {c} channels; the input format needs {} (only grey images are \
             repeated)",
            set.name, format.channels
        ));
    }
    if set.images.len() != set.len() * set.shape.pixels() {
        return bad(format!(
            "image set {}: pixel buffer does not match {} images",
            set.name,
            set.len()
        ));
    }
    Ok(())
}

/// Converts the images at `indices` into a normalised f32 tensor `[n, c, s, s]` and their
/// labels into a u32 tensor `[n]`.
///
/// Each image is placed centred on an `s × s` canvas (zero-padded or centre-cropped), grey
/// images are repeated over the format's channels, and pixels become `(v/255 − mean)/std`.
/// With `augment`, each image draws (in this order) its flip and its crop offsets from the
/// generator; without it the conversion is deterministic.
pub fn to_tensor(
    set: &ImageSet,
    indices: &[usize],
    format: &InputFormat,
    augment: Option<(&Augment, &mut ChaCha8Rng)>,
    device: &Device,
) -> Result<(Tensor, Tensor), DataError> {
    check_format(set, format)?;
    let s = format.size;
    let c_out = format.channels;
    let (h, w) = (set.shape.height, set.shape.width);
    let plane = h * w;
    let luts: Vec<[f32; 256]> = (0..c_out)
        .map(|ch| {
            let (m, sd) = (format.norm.mean[ch], format.norm.std[ch]);
            let mut lut = [0f32; 256];
            for (v, out) in lut.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - m) / sd;
            }
            lut
        })
        .collect();
    let off_y = (s as isize - h as isize) / 2;
    let off_x = (s as isize - w as isize) / 2;
    let mut augment = augment;
    let mut data = Vec::with_capacity(indices.len() * c_out * s * s);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        let img = set.get_image(i).ok_or_else(|| {
            DataError::InvalidArgument(format!(
                "index {i} out of range for image set {} of {} images",
                set.name,
                set.len()
            ))
        })?;
        labels.push(u32::from(set.labels[i]));
        let (flip, pad, dy, dx) = match augment.as_mut() {
            Some((a, rng)) => {
                let flip = a.hflip && rng.random_bool(0.5);
                let p = a.crop_padding;
                let (dy, dx) = if p > 0 {
                    let dy = rng.random_range(0..=2 * p);
                    (dy, rng.random_range(0..=2 * p))
                } else {
                    (0, 0)
                };
                (flip, p as isize, dy as isize, dx as isize)
            }
            None => (false, 0, 0, 0),
        };
        // Source column for each output column, or None for a padded pixel.
        let cols: Vec<Option<usize>> = (0..s as isize)
            .map(|x| {
                let cx = x + dx - pad;
                if cx < 0 || cx >= s as isize {
                    return None;
                }
                let fx = if flip { s as isize - 1 - cx } else { cx };
                let ix = fx - off_x;
                (0..w as isize).contains(&ix).then_some(ix as usize)
            })
            .collect();
        for (ch, lut) in luts.iter().enumerate() {
            let src = if set.shape.channels == 1 { 0 } else { ch };
            let src = &img[src * plane..(src + 1) * plane];
            for y in 0..s as isize {
                let cy = y + dy - pad;
                let iy = cy - off_y;
                if cy < 0 || cy >= s as isize || iy < 0 || iy >= h as isize {
                    data.extend(std::iter::repeat_n(lut[0], s));
                    continue;
                }
                let row = &src[iy as usize * w..(iy as usize + 1) * w];
                data.extend(cols.iter().map(|c| match c {
                    Some(ix) => lut[usize::from(row[*ix])],
                    None => lut[0],
                }));
            }
        }
    }
    let n = indices.len();
    let x = Tensor::from_vec(data, (n, c_out, s, s), device)?;
    let y = Tensor::from_vec(labels, n, device)?;
    Ok((x, y))
}

/// Batches of `(images [b, c, s, s] f32, labels [b] u32)` over a list of indices, shuffled
/// once at construction when asked; the last partial batch is kept. Augmentation draws from
/// the same generator after the shuffle.
pub struct Batches<'a> {
    set: &'a ImageSet,
    indices: Vec<usize>,
    batch_size: usize,
    format: InputFormat,
    augment: Option<Augment>,
    rng: ChaCha8Rng,
    device: Device,
    next: usize,
}

impl<'a> Batches<'a> {
    /// One epoch over `indices` in batches of `batch_size` (a size of 0 is treated as 1).
    /// Out-of-range indices surface as an error from the iterator.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        set: &'a ImageSet,
        indices: Vec<usize>,
        batch_size: usize,
        format: InputFormat,
        augment: Option<Augment>,
        shuffle: bool,
        rng: ChaCha8Rng,
        device: Device,
    ) -> Self {
        let mut rng = rng;
        let mut indices = indices;
        if shuffle {
            indices.shuffle(&mut rng);
        }
        Batches {
            set,
            indices,
            batch_size: batch_size.max(1),
            format,
            augment,
            rng,
            device,
            next: 0,
        }
    }

    /// Total number of batches of the epoch (`⌈n / batch_size⌉`).
    pub fn len(&self) -> usize {
        self.indices.len().div_ceil(self.batch_size)
    }

    /// Whether the epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The epoch's index order (after shuffling).
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The generator's state, e.g. to continue drawing after the epoch.
    pub fn rng(&self) -> &ChaCha8Rng {
        &self.rng
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(Tensor, Tensor), DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.indices.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.indices.len());
        let batch = &self.indices[self.next..end];
        self.next = end;
        let aug = self.augment.as_ref().map(|a| (a, &mut self.rng));
        Some(to_tensor(self.set, batch, &self.format, aug, &self.device))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.indices.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}
