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
    lr: f64,
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
        Ok(Adam {
            params,
            m,
            v,
            t: 0,
            lr,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
        })
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
            var.set(&(var.as_tensor().detach() - (update * self.lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}
