//! Output heads, any of which can sit on any system's feature (issue 3, item 4).
//!
//! - `Binary`: high / low aesthetic quality, 2-way softmax (papers 000-002; AVA's label is
//!   "mean score > 5", with paper 002's delta margin applied by the dataset, not here).
//! - `Distribution { bins }`: K-bin score histogram (papers 003, 004; K = 10 for AVA),
//!   softmax; the score is its mean over 1..K and its spread the standard deviation.
//! - `Styles { tags }`: multi-label sigmoid over AVA's 14 photographic styles or the user's own
//!   tag set.
//! - `Quality`: one scalar regressed on a mean opinion score (technical quality).
//!
//! A head is one linear layer applied to the last axis, so it works on a pooled feature
//! `(B, D)`, on per-patch features `(B, P, D)` and on a channels-last feature map
//! `(B, h, w, D)`. Because it is linear, the mean of its map outputs equals its output on the
//! mean-pooled feature: that per-position output is the system's own spatial score map, not a
//! post-hoc explanation (tested in `tests/heads.rs`).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// AVA's 14 photographic style labels, in the order of the published style lists.
pub const AVA_STYLES: [&str; 14] = [
    "Complementary_Colors",
    "Duotones",
    "HDR",
    "Image_Grain",
    "Light_On_White",
    "Long_Exposure",
    "Macro",
    "Motion_Blur",
    "Negative_Image",
    "Rule_of_Thirds",
    "Shallow_DOF",
    "Silhouettes",
    "Soft_Focus",
    "Vanishing_Point",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadKind {
    Binary,
    Distribution { bins: usize },
    Styles { tags: Vec<String> },
    Quality,
}

impl HeadKind {
    pub fn ava_distribution() -> Self {
        Self::Distribution { bins: 10 }
    }

    pub fn ava_styles() -> Self {
        Self::Styles { tags: AVA_STYLES.iter().map(|s| s.to_string()).collect() }
    }

    pub fn outputs(&self) -> usize {
        match self {
            Self::Binary => 2,
            Self::Distribution { bins } => *bins,
            Self::Styles { tags } => tags.len(),
            Self::Quality => 1,
        }
    }
}

/// What a head predicts for one input, in the units people read.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Probability of the "high quality" class.
    Binary {
        p_high: f32,
    },
    /// Histogram over 1..K, its mean score and standard deviation.
    Distribution {
        probs: Vec<f32>,
        mean: f32,
        std: f32,
    },
    /// Independent probability per tag.
    Styles {
        probs: Vec<f32>,
    },
    Quality {
        score: f32,
    },
}

#[derive(Debug, Clone)]
pub struct Head {
    kind: HeadKind,
    fc: Linear,
}

impl Head {
    pub fn new(kind: HeadKind, in_dim: usize, vb: VarBuilder) -> Result<Self> {
        let n = kind.outputs();
        if n == 0 {
            candle_core::bail!("a head needs at least one output (empty tag set?)");
        }
        Ok(Self { fc: candle_nn::linear(in_dim, n, vb)?, kind })
    }

    pub fn kind(&self) -> &HeadKind {
        &self.kind
    }

    /// The linear layer's weight `(outputs, in_dim)` (for exact per-feature decompositions).
    pub fn weight(&self) -> &Tensor {
        self.fc.weight()
    }

    /// Raw outputs (logits, or the scalar for `Quality`) on the last axis of `features`.
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        self.fc.forward(features)
    }

    /// Turns raw outputs `(N, outputs)` into predictions, one per row.
    pub fn predict(&self, raw: &Tensor) -> Result<Vec<Prediction>> {
        let rows = raw.to_dtype(candle_core::DType::F32)?;
        Ok(match &self.kind {
            HeadKind::Binary => {
                let p = candle_nn::ops::softmax(&rows, D::Minus1)?.to_vec2::<f32>()?;
                p.into_iter().map(|r| Prediction::Binary { p_high: r[1] }).collect()
            }
            HeadKind::Distribution { .. } => {
                let p = candle_nn::ops::softmax(&rows, D::Minus1)?.to_vec2::<f32>()?;
                p.into_iter()
                    .map(|probs| {
                        let (mean, std) = distribution_stats(&probs);
                        Prediction::Distribution { probs, mean, std }
                    })
                    .collect()
            }
            HeadKind::Styles { .. } => {
                let p = candle_nn::ops::sigmoid(&rows)?.to_vec2::<f32>()?;
                p.into_iter().map(|probs| Prediction::Styles { probs }).collect()
            }
            HeadKind::Quality => rows.to_vec2::<f32>()?.into_iter().map(|r| Prediction::Quality { score: r[0] }).collect(),
        })
    }
}

/// Mean and standard deviation of a histogram over scores 1..=K.
pub fn distribution_stats(probs: &[f32]) -> (f32, f32) {
    let total: f32 = probs.iter().sum();
    let mean = probs.iter().enumerate().map(|(i, p)| (i + 1) as f32 * p).sum::<f32>() / total;
    let var = probs.iter().enumerate().map(|(i, p)| ((i + 1) as f32 - mean).powi(2) * p).sum::<f32>() / total;
    (mean, var.sqrt())
}
