//! Finite-difference gradient checking (f64), the test every trainable layer and loss passes.
//!
//! For a scalar function `f` of some variables, compares the gradient candle's backward pass
//! computes with central differences `(f(x + e) - f(x - e)) / 2e` for each checked element.
//! Used by `tests/gradients.rs`; kept in the library so later layers and losses reuse it.

use candle_core::{DType, Result, Tensor, Var};

#[derive(Debug, Clone)]
pub struct GradCheckReport {
    /// Largest `|analytic - numeric|` over all checked elements.
    pub max_abs_err: f64,
    /// Largest `|analytic - numeric| / max(1, |numeric|)`.
    pub max_scaled_err: f64,
    /// Largest `|numeric|` seen (a check on an all-zero gradient proves little).
    pub max_numeric: f64,
    pub checked: usize,
}

/// Checks up to `max_per_var` elements of each variable (evenly spread over the tensor).
/// Variables must be f64.
pub fn check_gradients<F>(vars: &[&Var], f: F, eps: f64, max_per_var: usize) -> Result<GradCheckReport>
where
    F: Fn() -> Result<Tensor>,
{
    let loss = f()?;
    if loss.elem_count() != 1 {
        candle_core::bail!("gradient check needs a scalar function, got shape {:?}", loss.shape());
    }
    let grads = loss.backward()?;
    let mut report = GradCheckReport { max_abs_err: 0.0, max_scaled_err: 0.0, max_numeric: 0.0, checked: 0 };
    for var in vars {
        if var.dtype() != DType::F64 {
            candle_core::bail!("gradient check needs f64 variables");
        }
        let shape = var.shape().clone();
        let analytic: Vec<f64> = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1()?,
            None => vec![0.0; shape.elem_count()],
        };
        let base: Vec<f64> = var.flatten_all()?.to_vec1()?;
        let n = base.len();
        let step = n.div_ceil(max_per_var.max(1)).max(1);
        let eval = |vals: &[f64]| -> Result<f64> {
            var.set(&Tensor::from_slice(vals, &shape, var.device())?)?;
            f()?.flatten_all()?.to_vec1::<f64>().map(|v| v[0])
        };
        let mut vals = base.clone();
        for i in (0..n).step_by(step) {
            vals[i] = base[i] + eps;
            let up = eval(&vals)?;
            vals[i] = base[i] - eps;
            let down = eval(&vals)?;
            vals[i] = base[i];
            let numeric = (up - down) / (2.0 * eps);
            let err = (analytic[i] - numeric).abs();
            report.max_abs_err = report.max_abs_err.max(err);
            report.max_scaled_err = report.max_scaled_err.max(err / numeric.abs().max(1.0));
            report.max_numeric = report.max_numeric.max(numeric.abs());
            report.checked += 1;
        }
        var.set(&Tensor::from_slice(&base, &shape, var.device())?)?;
    }
    Ok(report)
}
