//! Module heads (design §5.4 step 3): for module c, y_c = sigmoid(W2·ReLU(W1·ReLU(z_c) + b1) + b2),
//! held for all N modules at once as batched tensors.

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{GradSplitError, Result};

pub use cnn_models::module::{ModuleHead, HEAD_KEYS};

/// The heads of all N modules: `w1` `[N, H, N]`, `b1` `[N, H]`, `w2` `[N, 1, H]`, `b2` `[N, 1]`.
#[derive(Clone, Debug)]
pub struct Heads {
    /// First layer weights, one `[H, N]` matrix per module.
    pub w1: Tensor,
    /// First layer biases.
    pub b1: Tensor,
    /// Second layer weights, one `[1, H]` matrix per module.
    pub w2: Tensor,
    /// Second layer biases.
    pub b2: Tensor,
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
}

impl Heads {
    /// PyTorch's default Linear init (weights and biases ~ U(±1/√fan_in)), module by module.
    pub fn init(
        modules: usize,
        classes: usize,
        hidden: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let (mut w1, mut b1, mut w2, mut b2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..modules {
            w1.extend(uniform(rng, hidden * classes, classes));
            b1.extend(uniform(rng, hidden, classes));
            w2.extend(uniform(rng, hidden, hidden));
            b2.extend(uniform(rng, 1, hidden));
        }
        Ok(Heads {
            w1: Tensor::from_vec(w1, (modules, hidden, classes), device)?,
            b1: Tensor::from_vec(b1, (modules, hidden), device)?,
            w2: Tensor::from_vec(w2, (modules, 1, hidden), device)?,
            b2: Tensor::from_vec(b2, (modules, 1), device)?,
        })
    }

    /// The four tensors in [`HEAD_KEYS`] order.
    pub fn tensors(&self) -> [&Tensor; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// Build from four tensors in [`HEAD_KEYS`] order (shapes checked).
    pub fn from_tensors(t: [Tensor; 4]) -> Result<Self> {
        let [w1, b1, w2, b2] = t;
        let (n, h, _) = w1.dims3()?;
        if b1.dims() != [n, h] || w2.dims() != [n, 1, h] || b2.dims() != [n, 1] {
            return Err(GradSplitError::Invalid(format!(
                "inconsistent head shapes {:?} {:?} {:?} {:?}",
                w1.dims(),
                b1.dims(),
                w2.dims(),
                b2.dims()
            )));
        }
        Ok(Heads { w1, b1, w2, b2 })
    }

    /// Number of modules.
    pub fn modules(&self) -> usize {
        self.w1.dims()[0]
    }

    /// Scores Y `[B, N]` from the masked model's logits `[N·B, N]` (group c = module c's rows).
    pub fn forward(&self, logits: &Tensor) -> Result<Tensor> {
        let n = self.modules();
        let (rows, classes) = logits.dims2()?;
        if rows % n != 0 {
            return Err(GradSplitError::Invalid(format!(
                "{rows} logit rows are not {n} equal groups"
            )));
        }
        let z = logits.relu()?.reshape((n, rows / n, classes))?;
        let h = z
            .matmul(&self.w1.transpose(1, 2)?.contiguous()?)?
            .broadcast_add(&self.b1.unsqueeze(1)?)?
            .relu()?;
        let o = h
            .matmul(&self.w2.transpose(1, 2)?.contiguous()?)?
            .broadcast_add(&self.b2.unsqueeze(1)?)?;
        let y = candle_nn::ops::sigmoid(&o)?.squeeze(2)?;
        Ok(y.t()?.contiguous()?)
    }

    /// The head of module `c` alone.
    pub fn module(&self, c: usize) -> Result<ModuleHead> {
        if c >= self.modules() {
            return Err(GradSplitError::Invalid(format!(
                "module {c} does not exist ({} modules)",
                self.modules()
            )));
        }
        Ok(ModuleHead {
            w1: self.w1.get(c)?.contiguous()?,
            b1: self.b1.get(c)?.contiguous()?,
            w2: self.w2.get(c)?.contiguous()?,
            b2: self.b2.get(c)?.contiguous()?,
        })
    }

    /// Detached copies on `device` (snapshots for the per-epoch record).
    pub fn snapshot(&self, device: &Device) -> Result<Heads> {
        let c = |t: &Tensor| -> Result<Tensor> { Ok(t.detach().to_device(device)?.copy()?) };
        Ok(Heads {
            w1: c(&self.w1)?,
            b1: c(&self.b1)?,
            w2: c(&self.w2)?,
            b2: c(&self.b2)?,
        })
    }
}

/// Mean softmax cross-entropy applied to the sigmoid scores as if they were logits (design §5.5).
pub fn ce_on_scores(y: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let lse = y.exp()?.sum_keepdim(1)?.log()?;
    let picked = y.gather(&labels.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?;
    Ok((lse - picked)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ce_on_sigmoid_has_its_floor(vals in proptest::collection::vec(0.0f32..1.0, 10 * 4), labels in proptest::collection::vec(0u32..10, 4)) {
            let y = Tensor::from_vec(vals, (4, 10), &Device::Cpu).unwrap();
            let l = Tensor::from_vec(labels, 4, &Device::Cpu).unwrap();
            let ce = ce_on_scores(&y, &l).unwrap().to_scalar::<f32>().unwrap() as f64;
            let floor = (std::f64::consts::E + 9.0).ln() - 1.0;
            prop_assert!(ce >= floor - 1e-5, "{} < {}", ce, floor);
        }
    }

    #[test]
    fn batched_heads_equal_per_module_heads() {
        let mut rng = cnn_models::seeded(1, cnn_models::Stream::Splitter);
        let heads = Heads::init(3, 3, 10, &mut rng, &Device::Cpu).unwrap();
        let logits = Tensor::randn(0f32, 2.0, (3 * 4, 3), &Device::Cpu).unwrap();
        let y = heads.forward(&logits).unwrap();
        assert_eq!(y.dims(), &[4, 3]);
        for c in 0..3 {
            let s = heads
                .module(c)
                .unwrap()
                .score(&logits.narrow(0, 4 * c, 4).unwrap())
                .unwrap();
            let col = y.narrow(1, c, 1).unwrap().squeeze(1).unwrap();
            let d = (s - col)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-6);
        }
    }
}
