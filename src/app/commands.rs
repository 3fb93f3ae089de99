//! What panels ask the app to do. Panels draw and return [`Command`]s; the app applies them after the
//! frame (so no panel mutates the album while another is drawing it), and the keyboard map produces
//! the same commands as the buttons.

use std::path::PathBuf;

use egui::Key;

use super::state::{Filter, SortKey};
use crate::library::album::DecisionChange;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Grid,
    Loupe,
    Compare,
}

impl View {
    pub fn label(self) -> &'static str {
        match self {
            View::Grid => "Grid",
            View::Loupe => "Loupe",
            View::Compare => "Compare",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Open(PathBuf),
    OpenDialog,
    CloseAlbum,
    /// Change the current photo's decision.
    Decide(DecisionChange),
    Undo,
    Redo,
    Move(isize),
    /// Move by this many grid rows (arrows up/down in the grid).
    MoveRows(isize),
    Home,
    End,
    /// Make photo (index) current.
    Select(usize),
    SetView(View),
    /// Loupe: toggle between fit and 100 %.
    ToggleZoom,
    ToggleHeatmap,
    ToggleCompare(usize),
    ToggleCompareCurrent,
    ClearCompare,
    SetSort(SortKey),
    SetDescending(bool),
    SetFilter(Filter),
    ToggleGroup(usize),
    ToggleCurrentGroup,
    SetCollapseBursts(bool),
    SetAutoAdvance(bool),
    SetThumbSize(f32),
    SetTheme(Option<usize>),
    SuggestCovers,
    AcceptCovers,
    ExportCovers,
    DismissCovers,
    ShowShortcuts(bool),
    ToggleSidePanel,
    DismissMessage(usize),
    /// Clears every message but those waiting on a sidecar retry (their decisions are not written yet).
    DismissAllMessages,
    RetrySidecars,
    /// The taste panel's commands.
    Taste(super::taste::TasteCommand),
}

/// One line of the shortcut sheet.
pub struct Shortcut {
    pub keys: &'static str,
    pub what: &'static str,
}

pub const SHORTCUTS: &[Shortcut] = &[
    Shortcut { keys: "P", what: "Pick" },
    Shortcut { keys: "X", what: "Reject" },
    Shortcut { keys: "U", what: "Unflag" },
    Shortcut { keys: "0 - 5", what: "Stars (0 clears)" },
    Shortcut { keys: "6 / 7 / 8 / 9", what: "Red / yellow / green / blue label (again: clear)" },
    Shortcut { keys: "Left / Right", what: "Previous / next photo" },
    Shortcut { keys: "Up / Down", what: "Row up / down (grid)" },
    Shortcut { keys: "Home / End", what: "First / last photo" },
    Shortcut { keys: "Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y", what: "Undo / redo" },
    Shortcut { keys: "G", what: "Grid" },
    Shortcut { keys: "E or Enter", what: "Loupe" },
    Shortcut { keys: "C", what: "Compare (the marked frames, else the current burst)" },
    Shortcut { keys: "M", what: "Mark / unmark for compare" },
    Shortcut { keys: "Z or Space", what: "Loupe at 100 % / fit" },
    Shortcut { keys: "H", what: "Heatmap overlay" },
    Shortcut { keys: "A", what: "Auto-advance after a decision" },
    Shortcut { keys: "I", what: "Info panel" },
    Shortcut { keys: "B", what: "Expand / collapse the current burst" },
    Shortcut { keys: "T", what: "Taste panel: train and choose taste profiles" },
    Shortcut { keys: "Esc", what: "Back to the grid / close this sheet" },
    Shortcut { keys: "Ctrl+O", what: "Open a folder" },
    Shortcut { keys: "?", what: "This sheet" },
];

/// The keyboard map: keys pressed this frame -> commands. `auto_advance` is read by the app, not here.
pub fn from_keys(input: &egui::InputState, view: View, shortcuts_open: bool, auto_advance: bool) -> Vec<Command> {
    use crate::library::album::DecisionChange as D;
    let mut out = Vec::new();
    let pressed = |k: Key| input.key_pressed(k);
    let cmd = input.modifiers.command;
    if shortcuts_open {
        if pressed(Key::Escape) || pressed(Key::Questionmark) {
            out.push(Command::ShowShortcuts(false));
        }
        return out;
    }
    if cmd {
        if pressed(Key::Z) && input.modifiers.shift || pressed(Key::Y) {
            out.push(Command::Redo);
        } else if pressed(Key::Z) {
            out.push(Command::Undo);
        }
        if pressed(Key::O) {
            out.push(Command::OpenDialog);
        }
        return out;
    }
    let digits = [Key::Num0, Key::Num1, Key::Num2, Key::Num3, Key::Num4, Key::Num5, Key::Num6, Key::Num7, Key::Num8, Key::Num9];
    for (n, k) in digits.iter().enumerate() {
        if pressed(*k) {
            if n <= 5 {
                out.push(Command::Decide(D::Stars(n as u8)));
            } else {
                out.push(Command::Decide(D::Label(super::state::label_for_key(n as u8))));
            }
        }
    }
    for (k, c) in [
        (Key::P, Command::Decide(D::Pick)),
        (Key::X, Command::Decide(D::Reject)),
        (Key::U, Command::Decide(D::Unflag)),
        (Key::ArrowLeft, Command::Move(-1)),
        (Key::ArrowRight, Command::Move(1)),
        (Key::Home, Command::Home),
        (Key::End, Command::End),
        (Key::G, Command::SetView(View::Grid)),
        (Key::E, Command::SetView(View::Loupe)),
        (Key::C, Command::SetView(View::Compare)),
        (Key::H, Command::ToggleHeatmap),
        (Key::A, Command::SetAutoAdvance(!auto_advance)),
        (Key::I, Command::ToggleSidePanel),
        (Key::T, Command::Taste(super::taste::TasteCommand::Toggle)),
    ] {
        if pressed(k) {
            out.push(c);
        }
    }
    if pressed(Key::ArrowUp) {
        out.push(if view == View::Grid { Command::MoveRows(-1) } else { Command::Move(-1) });
    }
    if pressed(Key::ArrowDown) {
        out.push(if view == View::Grid { Command::MoveRows(1) } else { Command::Move(1) });
    }
    if pressed(Key::Enter) && view == View::Grid {
        out.push(Command::SetView(View::Loupe));
    }
    if pressed(Key::Z) || pressed(Key::Space) {
        out.push(Command::ToggleZoom);
    }
    if pressed(Key::Escape) && view != View::Grid {
        out.push(Command::SetView(View::Grid));
    }
    if input.events.iter().any(|e| matches!(e, egui::Event::Text(t) if t == "?")) || pressed(Key::Questionmark) {
        out.push(Command::ShowShortcuts(true));
    }
    if pressed(Key::M) {
        out.push(Command::ToggleCompareCurrent);
    }
    if pressed(Key::B) {
        out.push(Command::ToggleCurrentGroup);
    }
    out
}
