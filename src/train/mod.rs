//! Training: procedures, optimisers and the checks that keep them honest.
//!
//! So far: [`gradcheck`], the finite-difference check every trainable layer passes.

pub mod gradcheck;
