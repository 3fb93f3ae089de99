//! Training: procedures, optimisers and the checks that keep them honest.
//!
//! So far: [`gradcheck`], the finite-difference check every trainable layer passes;
//! [`losses`], the seed systems' losses (cross-entropy, BCE, MP_avg/min/ada, EMD, MPEMD).

pub mod features;
pub mod gradcheck;
pub mod losses;
pub mod small_data;
