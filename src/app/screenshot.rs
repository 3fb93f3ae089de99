//! Screenshot tour for the README and for checking the real window by eye (scripts/screenshot.sh):
//! with `KEEPERS_SCREENSHOTS=DIR`, the app waits for the album's thumbnails, scores and previews,
//! then shows each view in turn, saves it as `DIR/NN-name.png` through eframe's own screenshot of
//! the rendered frame, and closes. Writes only into DIR.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use super::KeepersApp;
use super::commands::{Command, View};
use super::textures::PreviewState;

/// The tour: (file name, commands that set the view up).
fn steps() -> Vec<(&'static str, Vec<Command>)> {
    vec![
        ("grid", vec![Command::SetView(View::Grid), Command::Home]),
        ("loupe", vec![Command::Move(2), Command::SetView(View::Loupe)]),
        ("loupe-heatmap", vec![Command::ToggleHeatmap]),
        ("loupe-100", vec![Command::ToggleZoom]),
        ("compare", vec![Command::ToggleZoom, Command::ToggleHeatmap, Command::SetView(View::Compare)]),
        ("shortcuts", vec![Command::SetView(View::Grid), Command::ShowShortcuts(true)]),
    ]
}

pub struct Tour {
    dir: PathBuf,
    step: usize,
    /// Waiting for the screenshot of the current step.
    requested: bool,
    settle: Option<Instant>,
    started: Instant,
    shots: (Sender<Arc<egui::ColorImage>>, Receiver<Arc<egui::ColorImage>>),
    pub done: bool,
}

/// Longest wait for the album to be ready before shooting anyway.
const MAX_WAIT: Duration = Duration::from_secs(240);

impl Tour {
    pub fn from_env() -> Option<Tour> {
        let dir = PathBuf::from(std::env::var_os("KEEPERS_SCREENSHOTS")?);
        Some(Tour { dir, step: 0, requested: false, settle: None, started: Instant::now(), shots: channel(), done: false })
    }

    fn ready(app: &KeepersApp) -> bool {
        let Some(s) = &app.session else { return false };
        let scored = app.scoring_progress().is_none_or(|p| !p.busy && p.done + p.failed >= s.state.len());
        let previews = match app.ui.view {
            View::Grid => true,
            View::Loupe => s.state.current().is_none_or(|i| !matches!(app.previews().get(s.state.photos[i].id), PreviewState::Loading)),
            View::Compare => {
                s.state.compare_frames().iter().all(|&i| !matches!(app.previews().get(s.state.photos[i].id), PreviewState::Loading))
            }
        };
        s.finished && scored && previews
    }

    /// Drives the tour; returns commands for this frame.
    pub fn frame(&mut self, ctx: &egui::Context, app: &KeepersApp) -> Vec<Command> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        ctx.request_repaint_after(Duration::from_millis(100));
        if let Ok(img) = self.shots.1.try_recv() {
            let name = steps()[self.step].0;
            let path = self.dir.join(format!("{:02}-{name}.png", self.step + 1));
            let _ = std::fs::create_dir_all(&self.dir);
            let rgba: Vec<u8> = img.pixels.iter().flat_map(|c| c.to_array()).collect();
            match image::RgbaImage::from_raw(img.size[0] as u32, img.size[1] as u32, rgba).map(|i| i.save(&path)) {
                Some(Ok(())) => eprintln!("saved {}", path.display()),
                Some(Err(e)) => eprintln!("{}: {e}", path.display()),
                None => eprintln!("{}: screenshot has the wrong size", path.display()),
            }
            self.step += 1;
            self.requested = false;
            self.settle = None;
            if self.step == steps().len() {
                self.done = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                return out;
            }
        }
        if self.requested {
            return out;
        }
        if app.session.is_none() || !(Self::ready(app) || self.started.elapsed() > MAX_WAIT) {
            return out;
        }
        match self.settle {
            None => {
                out.extend(steps()[self.step].1.clone());
                self.settle = Some(Instant::now());
            }
            // A few frames for layout and textures to settle, then the shot.
            Some(t) if t.elapsed() > Duration::from_millis(1500) && (Self::ready(app) || self.started.elapsed() > MAX_WAIT) => {
                let (tx, wake) = (self.shots.0.clone(), ctx.clone());
                ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::ScreenshotCallback::new(move |img| {
                    let _ = tx.send(img);
                    wake.request_repaint();
                })));
                self.requested = true;
            }
            Some(_) => {}
        }
        out
    }
}
