//! The worker runs jobs off the caller's thread, reports bad photos by name without stopping,
//! and stops within one batch when cancelled.

use std::path::Path;
use std::sync::mpsc::channel;

use keepers::library::decode::list_images;
use keepers::worker::{CancelToken, Event, Job, Worker};

fn samples() -> Vec<std::path::PathBuf> {
    list_images(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples")).unwrap()
}

fn collect(rx: std::sync::mpsc::Receiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    for e in rx {
        let done = matches!(e, Event::Done { .. });
        v.push(e);
        if done {
            break;
        }
    }
    v
}

#[test]
fn classify_job_reports_every_photo_and_bad_ones_by_name() {
    let dir = std::env::temp_dir().join(format!("keepers-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("truncated.jpg");
    let good = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/china.jpg")).unwrap();
    std::fs::write(&bad, &good[..good.len() / 3]).unwrap();
    let mut paths = samples();
    let n = paths.len();
    paths.insert(3, bad.clone());
    let worker = Worker::spawn(None);
    let (tx, rx) = channel();
    worker.submit(Job::Classify { paths, top: 3, batch: 4, cancel: CancelToken::new(), events: tx });
    let events = collect(rx);
    let classified = events.iter().filter(|e| matches!(e, Event::Classified { .. })).count();
    let failed: Vec<_> = events.iter().filter_map(|e| if let Event::PhotoFailed { path, .. } = e { Some(path) } else { None }).collect();
    // A truncated JPEG may decode partially (the decoder fills the rest) or fail; either way
    // every photo is accounted for exactly once.
    assert_eq!(classified + failed.len(), n + 1);
    assert!(failed.iter().all(|p| **p == bad));
    assert_eq!(events.last(), Some(&Event::Done { processed: n + 1, failed: failed.len(), cancelled: false }));
    let coffee = events.iter().find_map(|e| match e {
        Event::Classified { path, top } if path.ends_with("coffee.png") => Some(top[0].1),
        _ => None,
    });
    assert_eq!(coffee, Some("espresso"));
}

#[test]
fn cancelled_job_stops_within_a_batch() {
    let paths = samples();
    let total = paths.len();
    let worker = Worker::spawn(None);
    let (tx, rx) = channel();
    let cancel = CancelToken::new();
    worker.submit(Job::Classify { paths, top: 1, batch: 2, cancel: cancel.clone(), events: tx });
    let mut seen = 0;
    let mut done = None;
    for e in rx {
        match e {
            Event::Classified { .. } | Event::PhotoFailed { .. } => {
                seen += 1;
                cancel.cancel();
            }
            Event::Done { processed, cancelled, .. } => {
                done = Some((processed, cancelled));
                break;
            }
            Event::JobFailed { error } => panic!("{error}"),
        }
    }
    let (processed, cancelled) = done.expect("job ends with Done");
    assert!(cancelled);
    assert_eq!(processed, seen);
    // Cancelled after the first photo of batch 1: the worker may already have started batch 2
    // (it checks the token between batches), never more.
    assert!(processed <= 4 && processed < total, "processed {processed} of {total} after cancelling");
}
