//! The optimiser of the GradSplitter search: Adam as PyTorch's `torch.optim.Adam` does it,
//! with its moments open to the search's checkpoints.

use candle_core::{backprop::GradStore, Tensor, Var};

use crate::config::GradSplitConfig;
use crate::error::Result;

/// Adam (β1, β2, ε, no weight decay) over named parameters; the update is PyTorch's:
/// m̂/(√v̂ + ε). The moments and the step count are fields so that a checkpoint can save and
/// restore them.
pub(crate) struct Adam {
    /// The parameters, by checkpoint name (`mask.S`, `head.K`).
    pub(crate) params: Vec<(String, Var)>,
    /// First moments, one per parameter.
    pub(crate) m: Vec<Tensor>,
    /// Second moments, one per parameter.
    pub(crate) v: Vec<Tensor>,
    /// Steps taken.
    pub(crate) t: usize,
    /// Learning rate of each parameter.
    lrs: Vec<f64>,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    /// Zero moments at learning rate `lr`, with β1, β2 and ε from `cfg`.
    pub(crate) fn new(params: Vec<(String, Var)>, lr: f64, cfg: &GradSplitConfig) -> Result<Self> {
        let m = params
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        let lrs = vec![lr; params.len()];
        Ok(Adam {
            params,
            m,
            v,
            t: 0,
            lrs,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
        })
    }

    /// Gives the heads' parameters (names `head.*`) their own learning rate, when `head_lr`
    /// is set (`GradSplitConfig::mask_phase_head_lr` in mask phases).
    pub(crate) fn with_head_lr(mut self, head_lr: Option<f64>) -> Self {
        if let Some(lr) = head_lr {
            for (i, (name, _)) in self.params.iter().enumerate() {
                if name.starts_with("head.") {
                    self.lrs[i] = lr;
                }
            }
        }
        self
    }

    /// One update of every parameter that has a gradient in `grads`.
    pub(crate) fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let sm = 1.0 / (1.0 - self.beta1.powi(self.t as i32));
        let sv = 1.0 / (1.0 - self.beta2.powi(self.t as i32));
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let g = g.detach();
            let m = ((&self.m[i] * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&m * sm)? / ((&v * sv)?.sqrt()? + self.eps)?)?;
            var.set(&(var.as_tensor().detach() - (update * self.lrs[i])?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn heads_take_their_own_rate_when_one_is_set() {
        let cfg = GradSplitConfig::default();
        let mask = Var::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let head = Var::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let params = vec![
            ("mask.0".to_string(), mask.clone()),
            ("head.w1".to_string(), head.clone()),
        ];
        let loss =
            (mask.as_tensor().sum_all().unwrap() + head.as_tensor().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let mut adam = Adam::new(params, 0.1, &cfg)
            .unwrap()
            .with_head_lr(Some(0.01));
        adam.step(&grads).unwrap();
        // Adam's first step moves each parameter by its learning rate
        let m: Vec<f32> = mask.as_tensor().to_vec1().unwrap();
        let h: Vec<f32> = head.as_tensor().to_vec1().unwrap();
        assert!(m.iter().all(|v| (v - 0.9).abs() < 1e-5), "{m:?}");
        assert!(h.iter().all(|v| (v - 0.99).abs() < 1e-5), "{h:?}");
        // without an override every parameter takes the one rate
        let (a, b) = (
            Var::ones(1, candle_core::DType::F32, &Device::Cpu).unwrap(),
            Var::ones(1, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        let grads = (a.as_tensor() + b.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let mut adam = Adam::new(
            vec![("mask.0".into(), a.clone()), ("head.b1".into(), b.clone())],
            0.1,
            &cfg,
        )
        .unwrap()
        .with_head_lr(None);
        adam.step(&grads).unwrap();
        assert_eq!(
            a.as_tensor().to_vec1::<f32>().unwrap(),
            b.as_tensor().to_vec1::<f32>().unwrap()
        );
    }
}
