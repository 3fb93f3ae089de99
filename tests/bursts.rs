//! Bursts and near-duplicates on a shoot with known bursts: JPEGs written with EXIF capture times
//! (DateTimeOriginal + SubSecTimeOriginal) and body serials, read back through the EXIF summary, grouped
//! with and without embeddings; best frame by quality score.

mod libsupport;

use std::fs;

use keepers::library::burst::{BurstParams, Frame, GroupKind, cosine, group};
use keepers::library::exif::read_summary;
use keepers::library::formats::Format;
use libsupport::*;

/// (name, camera serial, time "HH:MM:SS", subsec, scene for the embedding)
const SHOOT: &[(&str, &str, &str, &str, u32)] = &[
    ("A1", "111", "10:00:00", "00", 1), // burst 1 (camera 111): 0.0 s, 0.2 s, 0.4 s
    ("A2", "111", "10:00:00", "20", 1),
    ("A3", "111", "10:00:00", "40", 1),
    ("B1", "222", "10:00:00", "10", 2), // camera 222 in the same second: its own burst
    ("B2", "222", "10:00:00", "30", 2),
    ("A4", "111", "10:00:10", "00", 3), // burst 2: 10.00 .. 10.45 s, subject changes after A5
    ("A5", "111", "10:00:10", "15", 3),
    ("A6", "111", "10:00:10", "30", 4),
    ("A7", "111", "10:00:10", "45", 4),
    ("A8", "111", "10:00:30", "00", 5), // single
    ("A9", "111", "10:01:00", "00", 6), // single
];

fn embedding(scene: u32, frame: u32) -> Vec<f32> {
    // A direction per scene plus a little per-frame noise.
    (0..64u32)
        .map(|i| {
            let base = (((i + 1) * (scene * 7919 + 13)) % 97) as f32 / 97.0 - 0.5;
            let noise = (((i * 31 + frame * 17) % 23) as f32 / 23.0 - 0.5) * 0.05;
            base + noise
        })
        .collect()
}

fn frames(with_embeddings: bool) -> (Vec<String>, Vec<Frame>) {
    let dir = tempfile::tempdir().unwrap();
    let base = jpeg(32, 24);
    let mut names = Vec::new();
    let mut out = Vec::new();
    for (k, (name, serial, time, subsec, scene)) in SHOOT.iter().enumerate() {
        let exif = exif_block(&ExifSpec {
            make: "Canon",
            model: "EOS R6",
            orientation: None,
            date_time_original: Some(&format!("2024:05:18 {time}")),
            subsec: Some(subsec),
            serial: Some(serial),
        });
        let p = dir.path().join(format!("{name}.jpg"));
        fs::write(&p, with_exif(&base, &exif)).unwrap();
        let s = read_summary(&p, Format::Jpeg).unwrap();
        names.push(name.to_string());
        out.push(Frame {
            capture_ms: s.capture_ms(),
            camera: s.camera_id(),
            embedding: with_embeddings.then(|| embedding(*scene, k as u32)),
            quality: None,
        });
    }
    (names, out)
}

fn named(names: &[String], groups: &[keepers::library::burst::Group]) -> Vec<(GroupKind, Vec<String>)> {
    groups.iter().map(|g| (g.kind, g.members.iter().map(|&i| names[i].clone()).collect())).collect()
}

fn v(x: &[&str]) -> Vec<String> {
    x.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bursts_from_capture_time_and_camera() {
    let (names, frames) = frames(false);
    assert_eq!(frames[1].capture_ms.unwrap() - frames[0].capture_ms.unwrap(), 200, "subseconds read from EXIF");
    assert_ne!(frames[0].camera, frames[3].camera, "serials tell the bodies apart");
    let groups = group(&frames, &BurstParams::default());
    assert_eq!(
        named(&names, &groups),
        vec![
            (GroupKind::Burst, v(&["A1", "A2", "A3"])),
            (GroupKind::Burst, v(&["B1", "B2"])),
            (GroupKind::Burst, v(&["A4", "A5", "A6", "A7"])),
        ]
    );
    assert!(groups.iter().all(|g| g.best.is_none()), "no quality scores yet: no best frame claimed");
    // A tighter gap splits burst 2 (0.15 s steps) from nothing and keeps burst 1 (0.2 s steps) apart.
    let tight = group(&frames, &BurstParams { max_gap_ms: 160, ..BurstParams::default() });
    assert_eq!(named(&names, &tight), vec![(GroupKind::Burst, v(&["A4", "A5", "A6", "A7"]))]);
}

#[test]
fn embeddings_split_a_burst_at_a_subject_change_and_find_duplicates() {
    let (mut names, mut frames) = frames(true);
    assert!(cosine(frames[5].embedding.as_ref().unwrap(), frames[6].embedding.as_ref().unwrap()) > 0.95);
    assert!(cosine(frames[6].embedding.as_ref().unwrap(), frames[7].embedding.as_ref().unwrap()) < 0.75);
    // Two copies of A9's scene without capture time (e.g. exported duplicates): near-duplicates of A9.
    for (i, n) in ["copy1", "copy2"].iter().enumerate() {
        names.push(n.to_string());
        frames.push(Frame { capture_ms: None, camera: None, embedding: Some(embedding(6, 100 + i as u32)), quality: None });
    }
    // Quality scores: the best frame of each group is its highest score.
    let q = [0.2, 0.9, 0.5, 0.4, 0.41, 0.7, 0.6, 0.1, 0.3, 0.5, 0.8, 0.85, 0.2];
    for (f, q) in frames.iter_mut().zip(q) {
        f.quality = Some(q);
    }
    let groups = group(&frames, &BurstParams::default());
    let got = named(&names, &groups);
    assert_eq!(
        got,
        vec![
            (GroupKind::Burst, v(&["A1", "A2", "A3"])),
            (GroupKind::Burst, v(&["B1", "B2"])),
            (GroupKind::Burst, v(&["A4", "A5"])),
            (GroupKind::Burst, v(&["A6", "A7"])),
            (GroupKind::NearDuplicate, v(&["A9", "copy1", "copy2"])),
        ]
    );
    let best: Vec<Option<String>> = groups.iter().map(|g| g.best.map(|i| names[i].clone())).collect();
    assert_eq!(best, vec![Some("A2".into()), Some("B2".into()), Some("A4".into()), Some("A7".into()), Some("copy1".into())]);
}
