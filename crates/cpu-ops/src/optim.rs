//! The SGD update (weight decay + momentum) as one parallel pass per parameter.

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `d = g + wd·w; v' = momentum·v + d (or d without a buffer); w' = w - lr·v'`, element-wise,
/// in the same order of f32 operations as the equivalent sequence of tensor ops (no fused
/// multiply-add), so both give the same bits.
pub(crate) fn sgd_update(
    w: &[f32],
    g: &[f32],
    v: Option<&[f32]>,
    lr: f32,
    momentum: f32,
    wd: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = w.len();
    let (mut nw, mut nv) = (vec![0f32; n], vec![0f32; n]);
    nw.par_chunks_mut(CHUNK)
        .zip(nv.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(ci, (ow, ov))| {
            let r = ci * CHUNK..ci * CHUNK + ow.len();
            let (w, g) = (&w[r.clone()], &g[r.clone()]);
            let v = v.map(|v| &v[r]);
            for i in 0..ow.len() {
                let d = if wd != 0.0 { g[i] + w[i] * wd } else { g[i] };
                let vi = match v {
                    Some(v) => v[i] * momentum + d,
                    None => d,
                };
                ov[i] = vi;
                ow[i] = w[i] - vi * lr;
            }
        });
    (nw, nv)
}
