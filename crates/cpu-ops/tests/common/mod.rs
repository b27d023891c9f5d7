//! Helpers shared by the integration tests: deterministic data and a mixed abs/rel comparison.

#![allow(dead_code)]

use candle_core::{Device, Result, Tensor, Var};

/// Deterministic pseudo-random values in [-1, 1) from a seed (xorshift64*), so that proptest
/// can shrink and replay failures.
pub fn rand_vec(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A random tensor of the given shape.
pub fn rand_tensor(seed: u64, dims: &[usize]) -> Tensor {
    let len = dims.iter().product();
    Tensor::from_vec(rand_vec(seed, len), dims, &Device::Cpu).unwrap()
}

/// A random variable of the given shape.
pub fn rand_var(seed: u64, dims: &[usize]) -> Var {
    Var::from_tensor(&rand_tensor(seed, dims)).unwrap()
}

/// Largest mismatch of `got` against `want`, as a multiple of the allowed tolerance
/// `1e-4·|want| + 1e-5·max|want| + 1e-6`: ≤ 1 passes. Shapes must agree.
pub fn mismatch(got: &Tensor, want: &Tensor) -> Result<f32> {
    if got.dims() != want.dims() {
        candle_core::bail!("shape {:?} vs {:?}", got.dims(), want.dims())
    }
    let g: Vec<f32> = got.flatten_all()?.to_vec1()?;
    let w: Vec<f32> = want.flatten_all()?.to_vec1()?;
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for (a, b) in g.iter().zip(&w) {
        let tol = 1e-4 * b.abs() + 1e-5 * scale + 1e-6;
        let r = (a - b).abs() / tol;
        if r.is_nan() {
            return Ok(f32::INFINITY);
        }
        worst = worst.max(r);
    }
    Ok(worst)
}

/// Asserts `got ≈ want` (see [`mismatch`]) with a message naming `what`.
pub fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    let m = mismatch(got, want).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        m <= 1.0,
        "{what}: mismatch {m} × tolerance\n got {got}\nwant {want}"
    );
}
