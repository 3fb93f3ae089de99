//! Learning-rate schedules, stepped once per epoch, serialisable into checkpoints.
//!
//! | schedule | paper |
//! |---|---|
//! | [`Schedule::Step`] `{ every: 10, factor: 0.5 }` | 003: "divided by 2 every 10 epochs"; 001: halved every 20; 004: x0.95 every 10 |
//! | [`Schedule::Plateau`] `{ factor: 0.1, .. }` | 000: "annealed by 0.1 every time the training loss plateaus" (Keepers monitors the validation loss, or whatever the caller passes) |
//! | [`Schedule::Exponential`] | `lr = base * gamma^epoch` (`torch.optim.lr_scheduler.ExponentialLR`) |
//!
//! `Plateau` follows `torch.optim.lr_scheduler.ReduceLROnPlateau` in `min` mode with a relative
//! threshold: a value is an improvement when `value < best * (1 - threshold)` (for a positive
//! `best`; `best - |best| * threshold` in general); after more than `patience` epochs without
//! improvement the rate is multiplied by `factor` (not below `min_lr`) and `cooldown` epochs
//! follow in which bad epochs are not counted.
//!
//! Use: `let mut s = LrScheduler::new(schedule, base_lr); opt.set_base_lr(s.lr());` before
//! epoch 0, then after each epoch `let lr = s.end_epoch(Some(val_loss))?; opt.set_base_lr(lr);`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// `lr = base * factor^floor(epoch / every)`.
    Step {
        every: usize,
        factor: f64,
    },
    /// `lr = base * gamma^epoch`.
    Exponential {
        gamma: f64,
    },
    /// Multiply by `factor` when the monitored value has not improved for more than `patience` epochs.
    Plateau {
        factor: f64,
        patience: usize,
        threshold: f64,
        cooldown: usize,
        min_lr: f64,
    },
}

impl Schedule {
    /// Paper 000's plateau annealing (x0.1) with PyTorch's defaults (patience 10, threshold 1e-4).
    pub fn plateau(factor: f64, patience: usize) -> Self {
        Schedule::Plateau { factor, patience, threshold: 1e-4, cooldown: 0, min_lr: 0.0 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("the plateau schedule needs the monitored (validation) loss at the end of every epoch")]
    NoMonitoredValue,
    #[error("the monitored value is not finite ({0})")]
    NotFinite(f64),
}

/// A schedule and its progress (everything needed to resume it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrScheduler {
    pub schedule: Schedule,
    pub base_lr: f64,
    /// Epochs completed so far (the learning rate [`lr`](Self::lr) is for epoch `epochs_done`).
    pub epochs_done: usize,
    lr: f64,
    best: Option<f64>,
    bad_epochs: usize,
    cooldown_left: usize,
}

impl LrScheduler {
    pub fn new(schedule: Schedule, base_lr: f64) -> Self {
        Self { schedule, base_lr, epochs_done: 0, lr: base_lr, best: None, bad_epochs: 0, cooldown_left: 0 }
    }

    /// The learning rate for the current epoch (`epochs_done`, counted from 0).
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Best monitored value so far (plateau schedule).
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Call at the end of each epoch with the monitored value (validation loss; required by
    /// `Plateau`, ignored otherwise). Returns the learning rate for the next epoch.
    pub fn end_epoch(&mut self, monitored: Option<f64>) -> Result<f64, ScheduleError> {
        let next = self.epochs_done + 1;
        match self.schedule {
            Schedule::Constant => {}
            Schedule::Step { every, factor } => self.lr = self.base_lr * factor.powi((next / every.max(1)) as i32),
            Schedule::Exponential { gamma } => self.lr = self.base_lr * gamma.powi(next as i32),
            Schedule::Plateau { factor, patience, threshold, cooldown, min_lr } => {
                let v = monitored.ok_or(ScheduleError::NoMonitoredValue)?;
                if !v.is_finite() {
                    return Err(ScheduleError::NotFinite(v));
                }
                let improved = match self.best {
                    None => true,
                    Some(b) => v < b - b.abs() * threshold,
                };
                if improved {
                    self.best = Some(v);
                    self.bad_epochs = 0;
                } else {
                    self.bad_epochs += 1;
                }
                if self.cooldown_left > 0 {
                    self.cooldown_left -= 1;
                    self.bad_epochs = 0;
                }
                if self.bad_epochs > patience {
                    self.lr = (self.lr * factor).max(min_lr);
                    self.cooldown_left = cooldown;
                    self.bad_epochs = 0;
                }
            }
        }
        self.epochs_done = next;
        Ok(self.lr)
    }
}
