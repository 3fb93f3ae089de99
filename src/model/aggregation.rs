//! Orderless multi-patch aggregation of DMA-Net (Lu et al., ICCV 2015; paper 000, sec. 4).
//!
//! A bag of `M` patches gives features `D = {d_m}`, each `K`-dimensional, as a tensor
//! `(B, M, K)`. `T_k` is the set of the `k`-th components over the bag.
//! - Statistics layer (eq. 3): `⊕_u ⊕_k S_u(T_k)` with `S = {min, max, median, mean}`, the
//!   input of DMA-stat's fully-connected layer. Output `(B, U*K)`, grouped by statistic.
//! - Sorting layer (eq. 6): `⊕_k τ(T_k)`, each component's `M` values in ascending order,
//!   the input of DMA-fc's fully-connected layer. Output `(B, K*M)`, grouped by component.
//!
//! Both are "weighted sums of the previous layer's outputs" (eq. 4-5), so the backward pass
//! routes each output's gradient to the patch value it came from. Ties are where the choice
//! matters: which of two equal values is "the max" is arbitrary, so the sort op here gives
//! every element of a tie group the *mean* gradient of the sorted positions the group
//! occupies. That keeps the gradient independent of patch order (as the forward pass is) and
//! makes the total gradient of a tie group equal to the directional derivative when the
//! tied values move together (checked by finite differences in `tests/layers.rs`). candle's
//! own `max`/`min` reductions give the full gradient to *every* tied element instead.
//! For even `M` the median is the mean of the two middle values.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;

/// One orderless statistic of the statistics layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    Min,
    Max,
    Median,
    Mean,
}

impl Statistic {
    /// The paper's set, in its order.
    pub const DMA: [Statistic; 4] = [Statistic::Min, Statistic::Max, Statistic::Median, Statistic::Mean];
}

/// Sorts `(B, M, K)` along `M` (ascending) with the tie-averaged backward pass above.
#[derive(Debug, Clone, Copy)]
struct SortPatches;

/// Stable ascending order of the `m` values `get(0..m)`.
fn order<T: Float>(m: usize, get: impl Fn(usize) -> T) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&a, &b| get(a).partial_cmp(&get(b)).unwrap_or(std::cmp::Ordering::Equal));
    idx
}

fn sort_fwd<T: Float>(x: &[T], b: usize, m: usize, k: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    for bi in 0..b {
        let base = bi * m * k;
        for ki in 0..k {
            let at = |i: usize| x[base + i * k + ki];
            for (pos, &src) in order(m, at).iter().enumerate() {
                out[base + pos * k + ki] = at(src);
            }
        }
    }
    out
}

fn sort_bwd<T: Float>(x: &[T], g: &[T], b: usize, m: usize, k: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    for bi in 0..b {
        let base = bi * m * k;
        for ki in 0..k {
            let at = |i: usize| x[base + i * k + ki];
            let ord = order(m, at);
            let mut start = 0;
            while start < m {
                let mut end = start + 1;
                while end < m && at(ord[end]) == at(ord[start]) {
                    end += 1;
                }
                let n = T::from(end - start).unwrap();
                let mean = (start..end).map(|p| g[base + p * k + ki]).fold(T::zero(), |a, v| a + v) / n;
                for &src in &ord[start..end] {
                    out[base + src * k + ki] = mean;
                }
                start = end;
            }
        }
    }
    out
}

fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    super::cpu_slice(s, l, "sort layer")
}

impl CustomOp1 for SortPatches {
    fn name(&self) -> &'static str {
        "sort-patches"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, m, k) = l.shape().dims3()?;
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(sort_fwd(contiguous::<f32>(s, l)?, b, m, k)),
            DType::F64 => CpuStorage::F64(sort_fwd(contiguous::<f64>(s, l)?, b, m, k)),
            dt => candle_core::bail!("sort layer: dtype {dt:?} not supported"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &SortPatchesGrad)?))
    }
}

struct SortPatchesGrad;

impl CustomOp2 for SortPatchesGrad {
    fn name(&self) -> &'static str {
        "sort-patches-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, m, k) = l1.shape().dims3()?;
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(sort_bwd(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?, b, m, k)),
            DType::F64 => CpuStorage::F64(sort_bwd(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?, b, m, k)),
            dt => candle_core::bail!("sort layer: dtype {dt:?} not supported"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// `(B, M, K)` sorted ascending along the patch axis `M`.
pub fn sort_patches(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(SortPatches)
    } else {
        // GPU: candle's sort + gather (ties get the gradient of one position, not averaged).
        let xt = x.transpose(1, 2)?.contiguous()?;
        let idx = xt.arg_sort_last_dim(true)?;
        xt.gather(&idx, 2)?.transpose(1, 2)?.contiguous()
    }
}

/// Statistics layer (paper 000 eq. 3, before its FC): `(B, M, K)` -> `(B, U*K)`.
pub fn statistics_layer(x: &Tensor, stats: &[Statistic]) -> Result<Tensor> {
    let m = x.dim(1)?;
    if m == 0 {
        candle_core::bail!("statistics layer: empty bag");
    }
    let sorted = sort_patches(x)?;
    let parts = stats
        .iter()
        .map(|s| match s {
            Statistic::Min => sorted.narrow(1, 0, 1)?.squeeze(1),
            Statistic::Max => sorted.narrow(1, m - 1, 1)?.squeeze(1),
            Statistic::Median if m % 2 == 1 => sorted.narrow(1, m / 2, 1)?.squeeze(1),
            Statistic::Median => sorted.narrow(1, m / 2 - 1, 2)?.mean(1),
            Statistic::Mean => x.mean(1),
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// Sorting layer (paper 000 eq. 6, before its FC): `(B, M, K)` -> `(B, K*M)`.
pub fn sorting_layer(x: &Tensor) -> Result<Tensor> {
    let (b, m, k) = x.dims3()?;
    sort_patches(x)?.transpose(1, 2)?.reshape((b, k * m))
}
