//! Fused 1x1 convolution for inference: `y = act(x W + b)` on channels-last rows.
//!
//! With BatchNorm folded into `W` and `b`, each 1x1 convolution of the backbone is a matmul
//! `(N*H*W, Cin) x (Cin, Cout)` followed by a bias and (for expand and head layers) ReLU6.
//! Done as separate candle ops that is four passes over the largest activations of the
//! network (matmul, add, max, min), which costs more than the matmul itself at batch 16.
//! Here the rows are cut into blocks; each block's output is pre-filled with the bias, the
//! `gemm` crate (the same kernels candle uses) accumulates `x W` into it, and ReLU6 is
//! applied while the block is still in cache. Blocks run in parallel (rayon), each gemm
//! single-threaded. Inference only: no backward (training uses `matmul` + candle ops).
//!
//! [`StemConvBias`] does the same for the stem's 3x3 stride-2 convolution: each block of
//! output pixels is gathered into an im2col block (`rows x 27`, TF SAME zero padding) from
//! the NCHW image and multiplied in place, giving channels-last output directly.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::padding::SamePadding;
use rayon::prelude::*;

/// Rows per block: enough to amortise packing `W`, small enough to stay in L2.
const BLOCK_ROWS: usize = 96;

#[derive(Debug, Clone, Copy)]
pub struct PointwiseBias {
    pub relu6: bool,
}

/// The three f32 operands of an inference op (input, weight, bias) as contiguous slices.
fn f32_operands<'a>(op: &str, ops: [(&'a CpuStorage, &Layout); 3]) -> Result<[&'a [f32]; 3]> {
    if ops.iter().any(|(s, _)| s.dtype() != DType::F32) {
        candle_core::bail!("{op}: f32 only (inference path)");
    }
    let [a, b, c] = ops;
    Ok([super::cpu_slice(a.0, a.1, op)?, super::cpu_slice(b.0, b.1, op)?, super::cpu_slice(c.0, c.1, op)?])
}

impl CustomOp3 for PointwiseBias {
    fn name(&self) -> &'static str {
        "pointwise-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (k2, n) = l2.shape().dims2()?;
        if k != k2 || l3.shape().dims() != [n] {
            candle_core::bail!("pointwise: shapes {:?} x {:?} + {:?} do not match", l1.shape(), l2.shape(), l3.shape());
        }
        let [x, w, b] = f32_operands("pointwise", [(s1, l1), (s2, l2), (s3, l3)])?;
        let mut out = vec![0f32; m * n];
        let relu6 = self.relu6;
        if m < BLOCK_ROWS * 2 * rayon::current_num_threads() {
            // Too few row blocks to keep every core busy (late layers, batch 1): one gemm
            // parallel inside; the whole output is small enough to stay in cache.
            gemm_bias_act(x, w, b, relu6, k, &mut out, gemm::Parallelism::Rayon(rayon::current_num_threads()));
        } else {
            out.par_chunks_mut(BLOCK_ROWS * n).enumerate().for_each(|(blk, o)| {
                let rows = o.len() / n;
                gemm_bias_act(&x[blk * BLOCK_ROWS * k..][..rows * k], w, b, relu6, k, o, gemm::Parallelism::None);
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// `out = act(x W + b)` for one block: `x (rows, k)`, `w (k, n)`, `out (rows, n)`.
fn gemm_bias_act(x: &[f32], w: &[f32], b: &[f32], relu6: bool, k: usize, out: &mut [f32], par: gemm::Parallelism) {
    let n = b.len();
    let rows = out.len() / n;
    debug_assert_eq!(x.len(), rows * k);
    debug_assert_eq!(w.len(), k * n);
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(b);
    }
    // SAFETY: the pointers cover rows x k, k x n and rows x n contiguous row-major f32
    // matrices (checked above) that outlive the call; `out` does not alias the inputs.
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    if relu6 {
        for v in out.iter_mut() {
            *v = v.clamp(0.0, 6.0);
        }
    }
}

/// Stem convolution `(N, C, H, W)` NCHW image -> `(N, OH, OW, O)` channels-last, with TF
/// SAME padding, bias and optional ReLU6. Weight as `(K*K*C, O)`, rows ordered (ky, kx, c).
#[derive(Debug, Clone, Copy)]
pub struct StemConvBias {
    pub kernel: usize,
    pub stride: usize,
    pub relu6: bool,
}

impl CustomOp3 for StemConvBias {
    fn name(&self) -> &'static str {
        "stem-conv-im2col-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (kk, o) = l2.shape().dims2()?;
        let (k, s) = (self.kernel, self.stride);
        if kk != k * k * c || l3.shape().dims() != [o] {
            candle_core::bail!("stem conv: weight {:?} / bias {:?} do not match {c} channels, kernel {k}", l2.shape(), l3.shape());
        }
        let p = SamePadding::new(h, w, k, s);
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        let [x, wt, b] = f32_operands("stem conv", [(s1, l1), (s2, l2), (s3, l3)])?;
        let total = n * oh * ow;
        let mut out = vec![0f32; total * o];
        let relu6 = self.relu6;
        out.par_chunks_mut(BLOCK_ROWS * o).enumerate().for_each(|(blk, ob)| {
            let rows = ob.len() / o;
            let mut cols = vec![0f32; rows * kk];
            for (r, col) in cols.chunks_exact_mut(kk).enumerate() {
                let pix = blk * BLOCK_ROWS + r;
                let (bi, oy, ox) = (pix / (oh * ow), (pix / ow) % oh, pix % ow);
                for ky in 0..k {
                    let iy = (oy * s + ky) as isize - p.top as isize;
                    for kx in 0..k {
                        let ix = (ox * s + kx) as isize - p.left as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue; // zero padding: `cols` starts zeroed
                        }
                        for ci in 0..c {
                            col[(ky * k + kx) * c + ci] = x[((bi * c + ci) * h + iy as usize) * w + ix as usize];
                        }
                    }
                }
            }
            gemm_bias_act(&cols, wt, b, relu6, kk, ob, gemm::Parallelism::None);
        });
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, o))))
    }
}

/// `act(x W + b)` for `x (M, K)`, `w (K, N)`, `b (N)`; candle ops on non-CPU devices.
pub fn pointwise_bias(x: &Tensor, w: &Tensor, b: &Tensor, relu6: bool) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &PointwiseBias { relu6 })
    } else {
        let y = x.matmul(w)?.broadcast_add(b)?;
        if relu6 { y.clamp(0f32, 6f32) } else { Ok(y) }
    }
}

/// Stem convolution of an NCHW image with a `(K*K*C, O)` weight -> NHWC, fused on the CPU.
pub fn stem_conv_bias(x: &Tensor, w: &Tensor, b: &Tensor, kernel: usize, stride: usize, relu6: bool) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &StemConvBias { kernel, stride, relu6 })
    } else {
        let (kk, o) = w.dims2()?;
        let c = kk / (kernel * kernel);
        let w_oikk = w.reshape((kernel, kernel, c, o))?.permute((3, 2, 0, 1))?.contiguous()?;
        let y = super::padding::conv2d_same(x, &w_oikk, stride)?.permute((0, 2, 3, 1))?.broadcast_add(b)?;
        if relu6 { y.clamp(0f32, 6f32) } else { Ok(y) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    /// Matches matmul + bias + clamp, including a last block shorter than `BLOCK_ROWS`.
    #[test]
    fn pointwise_matches_unfused() -> Result<()> {
        let dev = Device::Cpu;
        for &(m, k, n) in &[(1usize, 3usize, 5usize), (BLOCK_ROWS * 3 + 7, 24, 144), (50, 320, 1280)] {
            let x = (Tensor::randn(0f32, 1.0, (m, k), &dev)? * 3.0)?;
            let w = Tensor::randn(0f32, 1.0, (k, n), &dev)?;
            let b = Tensor::randn(0f32, 1.0, n, &dev)?;
            for relu6 in [false, true] {
                let fused = x.apply_op3_no_bwd(&w, &b, &PointwiseBias { relu6 })?;
                let mut plain = x.matmul(&w)?.broadcast_add(&b)?;
                if relu6 {
                    plain = plain.clamp(0f32, 6f32)?;
                }
                assert!(max_diff(&fused, &plain) < 1e-3, "{m}x{k}x{n} relu6={relu6}");
            }
        }
        Ok(())
    }

    /// Matches padded conv2d + bias + ReLU6 + permute, on odd and even sizes.
    #[test]
    fn stem_matches_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        for &(h, w) in &[(224usize, 224usize), (33, 20), (7, 9)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev)?;
            let w_oikk = Tensor::randn(0f32, 1.0, (8, 3, 3, 3), &dev)?;
            let b = Tensor::randn(0f32, 1.0, 8, &dev)?;
            let w_col = w_oikk.permute((2, 3, 1, 0))?.reshape((27, 8))?.contiguous()?;
            let fused = x.apply_op3_no_bwd(&w_col, &b, &StemConvBias { kernel: 3, stride: 2, relu6: true })?;
            let plain = super::super::padding::conv2d_same(&x, &w_oikk, 2)?.permute((0, 2, 3, 1))?.broadcast_add(&b)?.clamp(0f32, 6f32)?;
            assert_eq!(fused.dims(), plain.dims());
            assert!(max_diff(&fused, &plain) < 1e-4, "{h}x{w}");
        }
        Ok(())
    }
}
