//! Active labelling (issue 8): which unlabelled photos to label next so a taste profile needs fewer
//! decisions. Uncertainty sampling weighted by diversity, chosen greedily:
//!
//! `gain(i) = u(i) * d(i)`, where `u(i) = 1 - |2 p(i) - 1|` is the current profile's uncertainty
//! (1 at p = 0.5, 0 at p = 0 or 1; every photo counts as fully uncertain while there is no
//! profile), and `d(i) = min(1, min_j (1 - cos(e_i, e_j)) / D)` is how far the photo's embedding lies
//! from every photo already labelled or already suggested (`D` = [`DIVERSITY_SCALE`]). Each round
//! takes the photo of highest gain and updates `d`; ties go to the earlier photo. Near-duplicates
//! of a labelled or chosen frame (the same burst) get gain near 0, so one decision per look is
//! asked for, and without a profile the rule is a farthest-first traversal of the album (a spread
//! of its content to start from).

/// Cosine distance at which a photo counts as fully new (embeddings of different scenes under
/// the Lite0 backbone are typically 0.3-0.6 apart; frames of one burst below 0.05).
pub const DIVERSITY_SCALE: f32 = 0.3;

/// An unlabelled photo: its embedding and, when a profile exists, its keep probability.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub embedding: &'a [f32],
    pub p_keep: Option<f32>,
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

/// Uncertainty of a keep probability: `1 - |2p - 1|`; 1 without a profile.
pub fn uncertainty(p: Option<f32>) -> f32 {
    p.map_or(1.0, |p| 1.0 - (2.0 * p.clamp(0.0, 1.0) - 1.0).abs())
}

/// Indices of up to `n` candidates to label next (in the order chosen), given the embeddings of
/// the photos already labelled. Candidates without an embedding (empty) are never chosen.
pub fn suggest(candidates: &[Candidate], labelled: &[&[f32]], n: usize) -> Vec<usize> {
    let cands: Vec<Vec<f32>> = candidates.iter().map(|c| normalised(c.embedding)).collect();
    let u: Vec<f32> = candidates.iter().map(|c| uncertainty(c.p_keep)).collect();
    let mut d: Vec<f32> = vec![1.0; cands.len()];
    let update = |d: &mut [f32], e: &[f32]| {
        for (di, c) in d.iter_mut().zip(&cands) {
            if !c.is_empty() && c.len() == e.len() {
                *di = di.min((cosine_distance(c, e) / DIVERSITY_SCALE).clamp(0.0, 1.0));
            }
        }
    };
    for l in labelled {
        update(&mut d, &normalised(l));
    }
    let mut chosen = Vec::new();
    let mut taken = vec![false; cands.len()];
    while chosen.len() < n {
        let mut best: Option<(usize, f32)> = None;
        for i in 0..cands.len() {
            if taken[i] || candidates[i].embedding.is_empty() {
                continue;
            }
            let g = u[i] * d[i];
            if best.is_none_or(|(_, bg)| g > bg) {
                best = Some((i, g));
            }
        }
        let Some((i, _)) = best else { break };
        taken[i] = true;
        chosen.push(i);
        let e = cands[i].clone();
        update(&mut d, &e);
    }
    chosen
}
