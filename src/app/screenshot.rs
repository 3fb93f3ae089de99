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

/// The sample album's simulated photographer (assets/samples): the photos it keeps and rejects
/// before training a taste profile, in the tour and in the taste tests.
pub const SAMPLE_KEEPS: [&str; 5] = [
    "Dragonfly_by_Bolly.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
    "flower.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
];
pub const SAMPLE_REJECTS: [&str; 5] = ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "rocket.jpg"];

const STEPS: [&str; 9] =
    ["grid", "loupe", "loupe-heatmap", "loupe-100", "compare", "shortcuts", "taste-trained", "taste-active", "label-next"];

/// The commands that set step `i` up (some depend on the album: which photo is where).
fn step(i: usize, app: &KeepersApp) -> Vec<Command> {
    use super::taste::TasteCommand as T;
    use crate::library::album::DecisionChange;
    match STEPS[i] {
        "grid" => vec![Command::SetView(View::Grid), Command::Home],
        "loupe" => vec![Command::Move(2), Command::SetView(View::Loupe)],
        "loupe-heatmap" => vec![Command::ToggleHeatmap],
        "loupe-100" => vec![Command::ToggleZoom],
        "compare" => vec![Command::ToggleZoom, Command::ToggleHeatmap, Command::SetView(View::Compare)],
        "shortcuts" => vec![Command::SetView(View::Grid), Command::ShowShortcuts(true)],
        "taste-trained" => {
            let mut out = vec![Command::ShowShortcuts(false), Command::ClearCompare];
            if let Some(st) = app.state() {
                for (names, change) in [(&SAMPLE_KEEPS, DecisionChange::Pick), (&SAMPLE_REJECTS, DecisionChange::Reject)] {
                    for n in names.iter() {
                        if let Some(i) = st.photos.iter().position(|p| p.name == *n) {
                            out.push(Command::Select(i));
                            out.push(Command::Decide(change));
                        }
                    }
                }
            }
            out.extend([Command::Home, Command::Taste(T::Show(true)), Command::Taste(T::Start)]);
            out
        }
        "taste-active" => {
            let file = app.taste_ui.result.as_ref().map(|r| r.file.clone());
            vec![Command::Taste(T::Activate(file)), Command::SetSort(super::state::SortKey::Score)]
        }
        "label-next" => vec![Command::Taste(T::SuggestLabels)],
        _ => Vec::new(),
    }
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
        let taste = app.taste_ui.running.is_none()
            && (app.active_profile.is_none()
                || s.state.photos.iter().all(|p| p.taste.is_some() || !matches!(p.scores, super::state::ScoreState::Ready(_))));
        s.finished && scored && previews && taste
    }

    /// Drives the tour; returns commands for this frame.
    pub fn frame(&mut self, ctx: &egui::Context, app: &KeepersApp) -> Vec<Command> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        ctx.request_repaint_after(Duration::from_millis(100));
        if let Ok(img) = self.shots.1.try_recv() {
            let name = STEPS[self.step];
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
            if self.step == STEPS.len() {
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
                out.extend(step(self.step, app));
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
