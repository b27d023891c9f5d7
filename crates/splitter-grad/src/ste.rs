//! Binarisation with a straight-through estimator (design §5.2): forward b = 1[m > 0], backward
//! ∂L/∂m = clip(∂L/∂b, −1, 1) for each use separately (every call is its own autograd node, so
//! the contributions of several uses are clipped one by one and then summed).

use candle_core::{bail, CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};

struct BinarizeSte;

impl CustomOp1 for BinarizeSte {
    fn name(&self) -> &'static str {
        "binarize-ste"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            bail!("binarize-ste: masks must be f32")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("binarize-ste: the mask tensor must be contiguous")
        };
        let out: Vec<f32> = data[start..end]
            .iter()
            .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
            .collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.clamp(-1f32, 1f32)?))
    }
}

/// b = 1[m > 0] as f32 with the clipped straight-through backward of design §5.2.
///
/// The op runs on the CPU; a tensor on another device is moved there and back (both moves are
/// differentiable), so it works on every device. Masks are small, so the copies cost little.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// let m = Var::new(&[0.5f32, -0.2, 0.0, 3.0], &Device::Cpu).unwrap();
/// let b = splitter_grad::binarize(m.as_tensor()).unwrap();
/// assert_eq!(b.to_vec1::<f32>().unwrap(), [1.0, 0.0, 0.0, 1.0]);
/// let g = (b * 5.0).unwrap().sum_all().unwrap().backward().unwrap();
/// assert_eq!(g.get(&m).unwrap().to_vec1::<f32>().unwrap(), [1.0; 4]); // clip(5) = 1
/// ```
pub fn binarize(m: &Tensor) -> candle_core::Result<Tensor> {
    let device = m.device().clone();
    if device.is_cpu() {
        m.contiguous()?.apply_op1(BinarizeSte)
    } else {
        m.to_device(&Device::Cpu)?
            .contiguous()?
            .apply_op1(BinarizeSte)?
            .to_device(&device)
    }
}

/// b = 1[m > 0] as f32 without any gradient (evaluation, head phases).
pub fn binarize_detached(m: &Tensor) -> candle_core::Result<Tensor> {
    m.detach().gt(0f32)?.to_dtype(candle_core::DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn forward_is_binary_and_backward_clips_each_use(
            m in proptest::collection::vec(-3f32..3.0, 1..20),
            s1 in -4f32..4.0,
            s2 in -4f32..4.0,
        ) {
            let n = m.len();
            let var = Var::from_vec(m.clone(), n, &Device::Cpu).unwrap();
            let b1 = binarize(var.as_tensor()).unwrap();
            let b2 = binarize(var.as_tensor()).unwrap();
            let v = b1.to_vec1::<f32>().unwrap();
            for (x, b) in m.iter().zip(&v) {
                prop_assert!(*b == 0.0 || *b == 1.0);
                prop_assert_eq!(*b == 1.0, *x > 0.0);
            }
            // two uses with upstream gradients s1·k and s2 (k = 1..n): each clipped on its own
            let ramp = Tensor::arange(1f32, n as f32 + 1.0, &Device::Cpu).unwrap();
            let loss = ((b1 * (&ramp * s1 as f64).unwrap()).unwrap().sum_all().unwrap()
                + (b2 * s2 as f64).unwrap().sum_all().unwrap())
            .unwrap();
            let g = loss.backward().unwrap().get(&var).unwrap().to_vec1::<f32>().unwrap();
            for (k, gk) in g.iter().enumerate() {
                let want = (s1 * (k + 1) as f32).clamp(-1.0, 1.0) + s2.clamp(-1.0, 1.0);
                prop_assert!((gk - want).abs() < 1e-6, "k {}: {} vs {}", k, gk, want);
            }
        }
    }

    #[test]
    fn detached_matches() {
        let m = Tensor::new(&[[0.1f32, -0.1], [0.0, 2.0]], &Device::Cpu).unwrap();
        assert_eq!(
            binarize_detached(&m).unwrap().to_vec2::<f32>().unwrap(),
            [[1.0, 0.0], [0.0, 1.0]]
        );
    }
}
