//! TensorFlow "SAME" padding, as the EfficientNet-Lite checkpoints were trained with.
//!
//! For input size `i`, kernel `k` and stride `s`, the output size is `ceil(i / s)` and the
//! total padding is `max((ceil(i / s) - 1) * s + k - i, 0)`, split with the smaller half on
//! the top/left and the larger on the bottom/right. At stride 2 on even sizes this gives
//! asymmetric padding (e.g. 224, k=3: 0 before, 1 after), which PyTorch's symmetric
//! `padding=` cannot express; getting it wrong shifts every feature by half a pixel.

/// Zero padding on the four sides of a 2-D input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SamePadding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

/// (before, after) padding along one axis.
pub fn same_padding_1d(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

impl SamePadding {
    pub fn new(h: usize, w: usize, kernel: usize, stride: usize) -> Self {
        let (top, bottom) = same_padding_1d(h, kernel, stride);
        let (left, right) = same_padding_1d(w, kernel, stride);
        Self { top, bottom, left, right }
    }
}

/// NCHW convolution with TF "SAME" padding (explicit zero padding, then a valid conv2d).
/// Trainable: padding and convolution both have candle gradients (checked in tests).
pub fn conv2d_same(x: &candle_core::Tensor, w: &candle_core::Tensor, stride: usize) -> candle_core::Result<candle_core::Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let p = SamePadding::new(h, wd, k, stride);
    let xp = x.pad_with_zeros(2, p.top, p.bottom)?.pad_with_zeros(3, p.left, p.right)?;
    xp.conv2d(w, 0, stride, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_same_values() {
        // Values as TensorFlow's conv2d(padding="SAME") computes them.
        assert_eq!(same_padding_1d(224, 3, 2), (0, 1));
        assert_eq!(same_padding_1d(225, 3, 2), (1, 1));
        assert_eq!(same_padding_1d(56, 5, 2), (1, 2));
        assert_eq!(same_padding_1d(28, 5, 1), (2, 2));
        assert_eq!(same_padding_1d(14, 3, 1), (1, 1));
        assert_eq!(same_padding_1d(7, 1, 1), (0, 0));
        // output size is ceil(i / s)
        for i in 1..40 {
            for (k, s) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
                let (a, b) = same_padding_1d(i, k, s);
                assert_eq!((i + a + b - k) / s + 1, i.div_ceil(s), "i={i} k={k} s={s}");
            }
        }
    }
}
