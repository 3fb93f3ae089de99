//! Metrics against values computed by hand (worked out in the comments), including ties.

use keepers::train::metrics::*;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
}

#[test]
fn accuracy_and_balanced_accuracy() {
    close(accuracy(&[1, 0, 1, 1], &[1, 1, 1, 0]).unwrap(), 0.5);
    // class 0: 2 of 2 right; class 1: 2 of 3 right -> (1 + 2/3) / 2.
    close(balanced_accuracy(&[0, 0, 0, 1, 1], &[0, 0, 1, 1, 1]).unwrap(), 5.0 / 6.0);
    // predictions >= 0.5: [0, 1, 1, 0] vs [0, 1, 1, 1].
    close(binary_accuracy(&[0.2, 0.5, 0.7, 0.4], &[false, true, true, true], 0.5).unwrap(), 0.75);
    assert_eq!(accuracy(&[], &[]), None);
}

#[test]
fn roc_auc_with_ties() {
    // Positives 0.4 and 0.8, negatives 0.1, 0.4, 0.4. Pairs won: 0.4 beats 0.1 (1) and ties two
    // 0.4s (1/2 each) = 2; 0.8 beats all three = 3. AUC = 5 / 6.
    close(roc_auc(&[0.1, 0.4, 0.4, 0.8, 0.4], &[false, true, false, true, false]).unwrap(), 5.0 / 6.0);
    // Perfect and reversed.
    close(roc_auc(&[0.1, 0.2, 0.9], &[false, false, true]).unwrap(), 1.0);
    close(roc_auc(&[0.9, 0.2, 0.1], &[false, false, true]).unwrap(), 0.0);
    // All tied: 1/2.
    close(roc_auc(&[0.3; 4], &[true, false, true, false]).unwrap(), 0.5);
    assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
}

#[test]
fn roc_auc_equals_pairwise_probability_on_data_with_many_ties() {
    // Independent definition: P(score_pos > score_neg) + P(equal) / 2 over all pairs.
    let scores: Vec<f64> = (0..60).map(|i| ((i * 37 % 11) as f64) / 10.0).collect();
    let labels: Vec<bool> = (0..60).map(|i| (i * 13 % 7) < 3).collect();
    let (mut won, mut pairs) = (0.0, 0.0);
    for i in 0..60 {
        for j in 0..60 {
            if labels[i] && !labels[j] {
                pairs += 1.0;
                won += if scores[i] > scores[j] {
                    1.0
                } else if scores[i] == scores[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    close(roc_auc(&scores, &labels).unwrap(), won / pairs);
}

#[test]
fn average_precision_and_map_with_ties() {
    // Scores 0.9 T, 0.8 F, 0.8 T, 0.3 F, 0.1 T; 3 positives. Thresholds:
    // 0.9: R 1/3, P 1 -> 1/3; 0.8 (two tied, one threshold): R 2/3, P 2/3 -> (1/3)(2/3);
    // 0.3: R unchanged -> 0; 0.1: R 1, P 3/5 -> (1/3)(3/5). AP = 1/3 + 2/9 + 1/5 = 34/45.
    let s = [0.9, 0.8, 0.8, 0.3, 0.1];
    let l = [true, false, true, false, true];
    close(average_precision(&s, &l).unwrap(), 34.0 / 45.0);
    assert_eq!(average_precision(&s, &[false; 5]), None);
    // mAP over 3 labels: the first as above, the second ranked perfectly (AP 1), the third has
    // no positive and is left out: (34/45 + 1) / 2.
    let scores: Vec<Vec<f64>> = (0..5).map(|i| vec![s[i], 0.1 * (i + 1) as f64, 0.5]).collect();
    let labels: Vec<Vec<bool>> = (0..5).map(|i| vec![l[i], i == 4, false]).collect();
    close(mean_average_precision(&scores, &labels).unwrap(), (34.0 / 45.0 + 1.0) / 2.0);
}

#[test]
fn srcc_and_plcc() {
    // x = [1, 2, 2, 3] has average ranks [1, 2.5, 2.5, 4]; y ranks [1, 3, 2, 4].
    // Deviations from 2.5: dx = [-1.5, 0, 0, 1.5], dy = [-1.5, 0.5, -0.5, 1.5];
    // sxy = 4.5, sxx = 4.5, syy = 5 -> 4.5 / sqrt(22.5) = 3 / sqrt(10). (The no-ties formula
    // 1 - 6 sum d^2 / (n (n^2 - 1)) would give 0.95.)
    close(srcc(&[1.0, 2.0, 2.0, 3.0], &[10.0, 30.0, 20.0, 40.0]).unwrap(), 3.0 / 10f64.sqrt());
    // x = [1, 2, 3, 4], y = [2, 4, 5, 9]: dx = [-1.5, -.5, .5, 1.5], dy = [-3, -1, 0, 4];
    // sxy = 11, sxx = 5, syy = 26 -> 11 / sqrt(130).
    close(plcc(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]).unwrap(), 11.0 / 130f64.sqrt());
    close(srcc(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]).unwrap(), 1.0);
    assert_eq!(plcc(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
}

#[test]
fn mse_mae() {
    // errors -1, 0, -2
    close(mse(&[1.0, 2.0, 3.0], &[2.0, 2.0, 5.0]).unwrap(), 5.0 / 3.0);
    close(mae(&[1.0, 2.0, 3.0], &[2.0, 2.0, 5.0]).unwrap(), 1.0);
}

#[test]
fn distribution_distances() {
    let p = [0.5, 0.5, 0.0];
    let q = [0.0, 0.5, 0.5];
    // CDFs 0.5, 1, 1 and 0, 0.5, 1: differences 0.5, 0.5, 0.
    close(emd(&p, &q, 1), 1.0 / 3.0);
    close(emd(&p, &q, 2), (0.5f64 / 3.0).sqrt());
    close(emd(&p, &p, 2), 0.0);
    // KL([.5, .5] || [.25, .75]) = .5 ln 2 + .5 ln(2/3).
    close(kl_divergence(&[0.5, 0.5], &[0.25, 0.75]), 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln());
    close(kl_divergence(&[1.0, 0.0], &[0.5, 0.5]), 2f64.ln());
    assert_eq!(kl_divergence(&[0.5, 0.5], &[1.0, 0.0]), f64::INFINITY);
    // Disjoint supports: JS = ln 2 (its maximum); identical: 0.
    close(js_divergence(&[1.0, 0.0], &[0.0, 1.0]), 2f64.ln());
    close(js_divergence(&p, &p), 0.0);
    // (0.25 / 0.5) + 0 + (0.25 / 0.5).
    close(chi_square(&p, &q), 1.0);
    close(cosine_similarity(&[1.0, 0.0, 1.0], &[1.0, 1.0, 0.0]).unwrap(), 0.5);
    close(euclidean_distance(&[0.0, 0.0], &[3.0, 4.0]), 5.0);
    close(mean_over(&[p.to_vec(), p.to_vec()], &[q.to_vec(), p.to_vec()], |a, b| emd(a, b, 1)).unwrap(), 1.0 / 6.0);
}

#[test]
fn std_of_distributions_and_their_correlations() {
    // Scores 2 and 4 with equal mass: mean 3, std 1.
    close(distribution_mean(&[0.0, 1.0, 0.0, 1.0]), 3.0);
    close(distribution_std(&[0.0, 1.0, 0.0, 1.0]), 1.0);
    // Predicted stds [0.5, 1, 1.5], true stds [1, 1.5, 0.5]: ranks [1,2,3] vs [2,3,1] give
    // sxy = -1, sxx = syy = 2 -> -0.5; values: deviations [-.5, 0, .5] and [0, .5, -.5] -> -0.5.
    let pred = vec![vec![0.0, 1.0, 1.0, 0.0], vec![0.0, 1.0, 0.0, 1.0], vec![1.0, 0.0, 0.0, 1.0]];
    let truth = vec![vec![0.0, 1.0, 0.0, 1.0], vec![1.0, 0.0, 0.0, 1.0], vec![0.0, 1.0, 1.0, 0.0]];
    let (s, p) = std_correlations(&pred, &truth);
    close(s.unwrap(), -0.5);
    close(p.unwrap(), -0.5);
}

#[test]
fn mae_per_aspect_ratio_bin() {
    // |errors| 0.5, 1, 0, 1, 2 at aspect ratios 0.5, 0.66, 0.75, 1.0, 1.5; edges [0.7, 1.0].
    let bins = mae_by_aspect_bin(&[5.0, 6.0, 5.0, 4.0, 7.0], &[5.5, 5.0, 5.0, 5.0, 5.0], &[0.5, 0.66, 0.75, 1.0, 1.5], &[0.7, 1.0]);
    assert_eq!(bins.len(), 3);
    assert_eq!(bins.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 1, 2]);
    close(bins[0].mae.unwrap(), 0.75);
    close(bins[1].mae.unwrap(), 0.0);
    close(bins[2].mae.unwrap(), 1.5);
    assert_eq!((bins[1].lo, bins[1].hi), (0.7, 1.0));
    let empty = mae_by_aspect_bin(&[1.0], &[1.0], &[0.3], DEFAULT_ASPECT_EDGES);
    assert_eq!(empty.len(), DEFAULT_ASPECT_EDGES.len() + 1);
    assert_eq!((empty[0].count, empty[1].mae), (1, None));
}
