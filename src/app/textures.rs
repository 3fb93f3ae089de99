//! Pixels on the GPU: thumbnail textures (one per photo, kept while the album is open) and loupe
//! previews decoded on a background thread (latest request wins; the current photo first, then its
//! neighbours as prefetch), kept in a small least-recently-used set.
//!
//! Textures are mipmapped with trilinear filtering, so a 320 px thumbnail drawn at 150 px or a 24 MP
//! preview fitted to the window is not aliased. Touches no file except reading the photos it decodes.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};

use egui::{ColorImage, TextureFilter, TextureHandle, TextureOptions};
use image::RgbImage;

use crate::library::decode::{Size, decode_path};

/// Previews kept on the GPU (the current photo, its neighbours, the compare set).
pub const PREVIEW_CAPACITY: usize = 8;

pub fn texture_options() -> TextureOptions {
    TextureOptions::LINEAR.with_mipmap_mode(Some(TextureFilter::Linear))
}

pub fn upload(ctx: &egui::Context, name: &str, img: &RgbImage) -> TextureHandle {
    let ci = ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw());
    ctx.load_texture(name, ci, texture_options())
}

/// A decoded loupe preview.
pub struct Preview {
    pub texture: TextureHandle,
    /// Pixel size of the decoded image (the texture).
    pub size: [u32; 2],
    /// Pixel size of the photo at full resolution (scores' patch rectangles are in these pixels).
    pub full: [u32; 2],
    /// Set when the file is damaged and only part of it decoded (the rest shows grey).
    pub warning: Option<String>,
}

pub enum PreviewState<'a> {
    Ready(&'a Preview),
    Loading,
    Failed(&'a str),
}

struct Queue {
    items: VecDeque<(i64, PathBuf)>,
    stop: bool,
}

/// A decoded preview (the image and the photo's full size) or why it failed, by photo id.
type PreviewResult = (i64, Result<(RgbImage, [u32; 2], Option<String>), String>);

/// Background decoder for loupe previews.
pub struct Previews {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    results: Receiver<PreviewResult>,
    ready: HashMap<i64, Preview>,
    failed: HashMap<i64, String>,
    lru: VecDeque<i64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Previews {
    pub fn start(ctx: egui::Context, max_side: u32) -> Previews {
        let queue = Arc::new((Mutex::new(Queue { items: VecDeque::new(), stop: false }), Condvar::new()));
        let (tx, results) = channel();
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("keepers-previews".into())
            .spawn(move || decode_loop(q, tx, ctx, max_side))
            .expect("spawn preview thread");
        Previews { queue, results, ready: HashMap::new(), failed: HashMap::new(), lru: VecDeque::new(), thread: Some(thread) }
    }

    /// Wants these photos, most needed first; replaces whatever was still waiting.
    pub fn want(&mut self, items: &[(i64, PathBuf)]) {
        let todo: VecDeque<(i64, PathBuf)> = items
            .iter()
            .filter(|(id, _)| !self.ready.contains_key(id) && !self.failed.contains_key(id))
            .take(PREVIEW_CAPACITY)
            .cloned()
            .collect();
        for (id, _) in items {
            if let Some(pos) = self.lru.iter().position(|x| x == id) {
                let id = self.lru.remove(pos).expect("position is valid");
                self.lru.push_back(id);
            }
        }
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().expect("preview queue");
        let changed = q.items != todo;
        q.items = todo;
        drop(q);
        if changed {
            cv.notify_one();
        }
    }

    /// Moves finished decodes to the GPU.
    pub fn poll(&mut self, ctx: &egui::Context) {
        while let Ok((id, r)) = self.results.try_recv() {
            match r {
                Ok((img, full, warning)) => {
                    let texture = upload(ctx, &format!("preview-{id}"), &img);
                    self.ready.insert(id, Preview { texture, size: [img.width(), img.height()], full, warning });
                    self.lru.retain(|x| *x != id);
                    self.lru.push_back(id);
                    while self.lru.len() > PREVIEW_CAPACITY {
                        if let Some(old) = self.lru.pop_front() {
                            self.ready.remove(&old);
                        }
                    }
                }
                Err(e) => {
                    self.failed.insert(id, e);
                }
            }
        }
    }

    pub fn get(&self, id: i64) -> PreviewState<'_> {
        if let Some(p) = self.ready.get(&id) {
            PreviewState::Ready(p)
        } else if let Some(e) = self.failed.get(&id) {
            PreviewState::Failed(e)
        } else {
            PreviewState::Loading
        }
    }

    pub fn clear(&mut self) {
        self.want(&[]);
        self.ready.clear();
        self.failed.clear();
        self.lru.clear();
    }
}

impl Drop for Previews {
    fn drop(&mut self) {
        let (lock, cv) = &*self.queue;
        lock.lock().expect("preview queue").stop = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn decode_loop(queue: Arc<(Mutex<Queue>, Condvar)>, tx: Sender<PreviewResult>, ctx: egui::Context, max_side: u32) {
    let (lock, cv) = &*queue;
    loop {
        let (id, path) = {
            let mut q = lock.lock().expect("preview queue");
            loop {
                if q.stop {
                    return;
                }
                if let Some(item) = q.items.pop_front() {
                    break item;
                }
                q = cv.wait(q).expect("preview queue");
            }
        };
        let r =
            decode_path(&path, Size::Fit(max_side)).map(|d| (d.image, [d.full_width, d.full_height], d.warning)).map_err(|e| e.to_string());
        if tx.send((id, r)).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}
