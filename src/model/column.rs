//! The "Arch 1" CNN column of RAPID/DCNN (Lu et al., paper 002, Fig. 2 and Table I), also the
//! column of DMA-Net (paper 000, Fig. 1), trained from scratch.
//!
//! conv1 -> ReLU -> max-pool -> LRN -> conv2 -> ReLU -> max-pool -> LRN -> conv3 -> ReLU ->
//! conv4 -> ReLU -> fc1000 -> ReLU -> dropout -> fc256 -> ReLU -> dropout; the fc256 vector is
//! the column's feature (the systems put their own heads and aggregation on it).
//!
//! Filter counts are configurable: paper 000 uses 64 filters in conv1 and conv4 and 32 (style,
//! quality) or 64 (aesthetics) in conv2 and conv3. The papers' text does not give the kernel
//! sizes past conv1 (11x11x3, Fig. 5/11 of paper 002); we follow the AlexNet-style layout the
//! column was derived from: conv1 11x11 stride 2, conv2 5x5, conv3 and conv4 3x3, all "same"
//! padding, max-pool 3x3 stride 2, cross-channel LRN (n = 5, k = 2, alpha = 1e-4, beta = 0.75)
//! and dropout 0.5 on the fully-connected layers (paper 002 sec. III-G). All of it is built
//! from layers whose gradients are checked (`tests/layers.rs`, `tests/columns.rs`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};

use super::init::Dropout;
use super::pooling::{LrnConfig, local_response_norm, max_pool2d};

/// Shape of one Arch-1 column.
#[derive(Debug, Clone, PartialEq)]
pub struct Arch1Config {
    /// Filters of conv1..conv4.
    pub filters: [usize; 4],
    /// Kernel sizes of conv1..conv4.
    pub kernels: [usize; 4],
    pub conv1_stride: usize,
    pub fc: [usize; 2],
    pub dropout: f32,
    pub lrn: LrnConfig,
    pub input: usize,
}

impl Arch1Config {
    /// Aesthetics column: 64 filters everywhere, 224 x 224 input.
    pub fn aesthetics() -> Self {
        Self {
            filters: [64, 64, 64, 64],
            kernels: [11, 5, 3, 3],
            conv1_stride: 2,
            fc: [1000, 256],
            dropout: 0.5,
            lrn: LrnConfig::default(),
            input: 224,
        }
    }

    /// Style / quality column: 32 filters in conv2 and conv3 (paper 000 sec. 5.1).
    pub fn style_quality() -> Self {
        Self { filters: [64, 32, 32, 64], ..Self::aesthetics() }
    }

    /// A reduced column for CPU training and tests (`arch1-small`): the same layers and
    /// layout with 32 filters, fc 256/128 and 96 x 96 input.
    pub fn small() -> Self {
        Self { filters: [32, 32, 32, 32], fc: [256, 128], input: 96, ..Self::aesthetics() }
    }

    /// Spatial side after conv4 for this config's input.
    pub fn conv_out_side(&self) -> usize {
        let after_conv1 = self.input.div_ceil(self.conv1_stride);
        let pool = |s: usize| (s - 3) / 2 + 1;
        pool(pool(after_conv1))
    }

    pub fn feature_dim(&self) -> usize {
        self.fc[1]
    }
}

/// One trainable Arch-1 column.
#[derive(Debug, Clone)]
pub struct Arch1Column {
    cfg: Arch1Config,
    convs: Vec<Conv2d>,
    fc1: Linear,
    fc2: Linear,
    dropout: Dropout,
}

impl Arch1Column {
    pub fn new(cfg: &Arch1Config, vb: VarBuilder) -> Result<Self> {
        let mut convs = Vec::with_capacity(4);
        let mut cin = 3;
        for i in 0..4 {
            let k = cfg.kernels[i];
            let conv_cfg = Conv2dConfig { padding: k / 2, stride: if i == 0 { cfg.conv1_stride } else { 1 }, ..Default::default() };
            convs.push(candle_nn::conv2d(cin, cfg.filters[i], k, conv_cfg, vb.pp(format!("conv{}", i + 1)))?);
            cin = cfg.filters[i];
        }
        let side = cfg.conv_out_side();
        let fc1 = candle_nn::linear(cin * side * side, cfg.fc[0], vb.pp("fc1"))?;
        let fc2 = candle_nn::linear(cfg.fc[0], cfg.fc[1], vb.pp("fc2"))?;
        let dropout = Dropout::for_path(cfg.dropout, &vb.prefix());
        Ok(Self { cfg: cfg.clone(), convs, fc1, fc2, dropout })
    }

    pub fn config(&self) -> &Arch1Config {
        &self.cfg
    }

    /// Restarts the dropout masks' stream (a training step calls this so a resumed run draws
    /// the same masks as the uninterrupted one).
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    /// `x (N, 3, S, S)` normalised patches -> fc256 features `(N, 256)`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.conv1_t(x)?;
        self.after_pool1_t(&max_pool2d(&h, 3, 2)?, train)
    }

    /// conv1 + ReLU: `(N, 3, S, S)` -> `(N, filters[0], S/2, S/2)` (the part before the
    /// first pooling layer, which THEME-EMD replaces with ROI pooling).
    pub fn conv1_t(&self, x: &Tensor) -> Result<Tensor> {
        self.convs[0].forward(x)?.relu()
    }

    /// Side of the first pooling layer's output for this config's input (the ROI output size
    /// that keeps fc1's input size).
    pub fn pool1_side(&self) -> usize {
        (self.cfg.input.div_ceil(self.cfg.conv1_stride) - 3) / 2 + 1
    }

    /// Everything after the first pooling layer: LRN, conv2..conv4, fc1000, fc256.
    pub fn after_pool1_t(&self, pooled: &Tensor, train: bool) -> Result<Tensor> {
        let lrn = self.cfg.lrn;
        let mut h = local_response_norm(pooled, lrn)?;
        h = self.convs[1].forward(&h)?.relu()?;
        h = local_response_norm(&max_pool2d(&h, 3, 2)?, lrn)?;
        h = self.convs[2].forward(&h)?.relu()?;
        h = self.convs[3].forward(&h)?.relu()?;
        let h = h.flatten_from(1)?;
        let drop = |t: Tensor| self.dropout.forward_t(&t, train);
        let h = drop(self.fc1.forward(&h)?.relu()?)?;
        drop(self.fc2.forward(&h)?.relu()?)
    }
}
