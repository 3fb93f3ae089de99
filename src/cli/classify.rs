//! `keepers classify IMG|DIR...`: top-k ImageNet classes per photo, computed by the worker.
//! A photo that cannot be read is reported by name and the others go on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::channel;

use crate::worker::{CancelToken, Event, Job, Worker};

pub fn run(paths: &[PathBuf], top: usize) -> anyhow::Result<ExitCode> {
    let (files, folder_problems) = super::collect_files(paths)?;
    let worker = Worker::spawn(None);
    let (tx, rx) = channel();
    let total = files.len();
    worker.submit(Job::Classify { paths: files, top, batch: 16, cancel: CancelToken::new(), events: tx });
    for event in rx {
        match event {
            Event::Classified { path, top } => {
                println!("{}", path.display());
                for (_, name, p) in top {
                    println!("  {p:7.4}  {name}");
                }
            }
            Event::PhotoFailed { error, .. } => eprintln!("error: {error}"),
            Event::JobFailed { error } => anyhow::bail!(error),
            Event::Done { failed, .. } => return Ok(super::photos_exit_code(failed, total, folder_problems)),
        }
    }
    Ok(ExitCode::SUCCESS)
}
