//! Recursive album scan: finds the photos under a folder, format from each file's first bytes, and
//! pairs a RAW file with the JPEG of the same name in the same folder (one item, e.g. `IMG_1.CR2` +
//! `IMG_1.JPG`).
//!
//! Problems are reported as [`ScanIssue`]s and the scan goes on: unreadable folders or files
//! (permissions), symlink loops, files that vanish between listing and reading, and files whose
//! extension says "photo" but whose bytes are empty, unknown or an unsupported format. Files with other
//! extensions are included when their bytes are a supported format, and silently ignored otherwise.
//! Hidden files and folders (name starting with `.`) and XMP sidecars are skipped. Folders are read one
//! at a time, in name order; the files of one folder are sniffed in parallel (rayon).
//!
//! Reads directory listings and the first bytes of files; writes nothing.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;

use super::formats::{self, Format, Sniffed};

/// One file of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFile {
    pub path: PathBuf,
    pub format: Format,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 if unknown).
    pub mtime_ns: i64,
}

/// One photo of the album: a single file, or a RAW file with its JPEG twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanItem {
    /// The original: the RAW file of a pair, else the only file. Its path is the item's identity.
    pub primary: ScanFile,
    /// The JPEG of a RAW+JPEG pair.
    pub companion: Option<ScanFile>,
}

impl ScanItem {
    pub fn path(&self) -> &Path {
        &self.primary.path
    }

    /// The file to show: the camera's JPEG of a pair (full size), else the primary (a RAW alone is shown
    /// through its embedded preview).
    pub fn display(&self) -> &ScanFile {
        self.companion.as_ref().unwrap_or(&self.primary)
    }

    /// All files of the item (primary first); decisions go to a sidecar of each.
    pub fn files(&self) -> impl Iterator<Item = &ScanFile> {
        std::iter::once(&self.primary).chain(self.companion.as_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueKind {
    PermissionDenied,
    /// A symbolic link leads back to a folder already on the way to it (or the OS reports a loop).
    SymlinkLoop,
    /// A symbolic link whose target does not exist.
    BrokenLink,
    /// Listed, then gone before it could be read.
    Vanished,
    /// Photo extension, zero bytes.
    Empty,
    /// Photo extension, recognised but unsupported format (named).
    Unsupported(&'static str),
    /// Photo extension, bytes of no known image format.
    NotAnImage,
    Io(String),
}

/// A problem with one path; the scan went on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanIssue {
    pub path: PathBuf,
    pub kind: IssueKind,
}

impl ScanIssue {
    /// What is wrong, without the path.
    pub fn reason(&self) -> String {
        match &self.kind {
            IssueKind::PermissionDenied => "permission denied, skipped".into(),
            IssueKind::SymlinkLoop => "symbolic link loop, not followed".into(),
            IssueKind::BrokenLink => "symbolic link to nothing, skipped".into(),
            IssueKind::Vanished => "disappeared during the scan".into(),
            IssueKind::Empty => "file is empty".into(),
            IssueKind::Unsupported(what) => format!("{what} images are not supported"),
            IssueKind::NotAnImage => "not an image Keepers can read (the extension says it is)".into(),
            IssueKind::Io(e) => e.clone(),
        }
    }
}

impl fmt::Display for ScanIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason())
    }
}

#[derive(Debug, Clone)]
pub enum ScanEvent {
    Item(ScanItem),
    Issue(ScanIssue),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    pub items: usize,
    pub files: usize,
    pub issues: usize,
    pub folders: usize,
    pub cancelled: bool,
}

fn is_loop_error(e: &io::Error) -> bool {
    // ELOOP: 40 on Linux, 62 on macOS and the BSDs.
    matches!(e.raw_os_error(), Some(40) if cfg!(target_os = "linux"))
        || matches!(e.raw_os_error(), Some(62) if cfg!(target_vendor = "apple"))
}

fn issue_for(path: &Path, e: &io::Error) -> ScanIssue {
    let kind = match e.kind() {
        io::ErrorKind::PermissionDenied => IssueKind::PermissionDenied,
        io::ErrorKind::NotFound => IssueKind::Vanished,
        _ if is_loop_error(e) => IssueKind::SymlinkLoop,
        _ => IssueKind::Io(e.to_string()),
    };
    ScanIssue { path: path.to_owned(), kind }
}

/// Identity of a folder (device + inode where the platform has them, else its canonical path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DirId {
    #[allow(dead_code)]
    Ino(u64, u64),
    #[allow(dead_code)]
    Path(PathBuf),
}

fn dir_id(path: &Path, meta: &std::fs::Metadata) -> DirId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = path;
        DirId::Ino(meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        DirId::Path(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()))
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

enum Found {
    File(ScanFile),
    Issue(ScanIssue),
    Skip,
}

fn examine_file(path: PathBuf, meta: &std::fs::Metadata) -> Found {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_owned);
    if ext.as_deref().is_some_and(|e| e.eq_ignore_ascii_case("xmp")) {
        return Found::Skip;
    }
    let photo_ext = ext.as_deref().is_some_and(formats::is_image_extension);
    let sniffed = match formats::sniff_file(&path) {
        Ok(s) => s,
        Err(e) => return Found::Issue(issue_for(&path, &e)),
    };
    match sniffed {
        Sniffed::Supported(format) => Found::File(ScanFile { path, format, size: meta.len(), mtime_ns: mtime_ns(meta) }),
        _ if !photo_ext => Found::Skip,
        Sniffed::Empty => Found::Issue(ScanIssue { path, kind: IssueKind::Empty }),
        Sniffed::Unsupported(what) => Found::Issue(ScanIssue { path, kind: IssueKind::Unsupported(what) }),
        Sniffed::Unknown => Found::Issue(ScanIssue { path, kind: IssueKind::NotAnImage }),
    }
}

/// Looks at one file as the scan does: `Ok(Some)` a photo, `Ok(None)` not a photo (ignored), `Err` a
/// problem to report (gone, unreadable, empty, unsupported...).
pub fn examine(path: &Path) -> Result<Option<ScanFile>, ScanIssue> {
    let meta = std::fs::metadata(path).map_err(|e| match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() && e.kind() == io::ErrorKind::NotFound => {
            ScanIssue { path: path.to_owned(), kind: IssueKind::BrokenLink }
        }
        _ => issue_for(path, &e),
    })?;
    match examine_file(path.to_owned(), &meta) {
        Found::File(f) => Ok(Some(f)),
        Found::Issue(i) => Err(i),
        Found::Skip => Ok(None),
    }
}

/// The key files of one photo share: the stem, lower-cased; a stem that is not valid Unicode is
/// compared byte for byte, ASCII letters lower-cased (two such names never merge through a
/// replacement character, and no such key equals a valid Unicode one).
pub fn stem_key(path: &Path) -> Vec<u8> {
    match path.file_stem() {
        Some(s) => match s.to_str() {
            Some(u) => u.to_lowercase().into_bytes(),
            None => s.as_encoded_bytes().to_ascii_lowercase(),
        },
        None => Vec::new(),
    }
}

/// Pairs RAW + JPEG files with the same stem (case-insensitive) in one folder; everything else is an item
/// of its own. Keeps name order.
pub fn pair_files(files: Vec<ScanFile>) -> Vec<ScanItem> {
    let stem = |f: &ScanFile| stem_key(&f.path);
    let mut groups: BTreeMap<Vec<u8>, Vec<ScanFile>> = BTreeMap::new();
    let mut order = Vec::new();
    for f in files {
        let s = stem(&f);
        if !groups.contains_key(&s) {
            order.push(s.clone());
        }
        groups.entry(s).or_default().push(f);
    }
    let mut items = Vec::new();
    for s in order {
        let group = groups.remove(&s).unwrap_or_default();
        let raws = group.iter().filter(|f| f.format.is_raw()).count();
        let jpegs = group.iter().filter(|f| f.format == Format::Jpeg).count();
        if raws == 1 && jpegs == 1 {
            let (mut raw, mut jpeg) = (None, None);
            let mut rest = Vec::new();
            for f in group {
                match f.format {
                    Format::Raw(_) => raw = Some(f),
                    Format::Jpeg => jpeg = Some(f),
                    _ => rest.push(f),
                }
            }
            items.push(ScanItem { primary: raw.expect("counted"), companion: jpeg });
            items.extend(rest.into_iter().map(|f| ScanItem { primary: f, companion: None }));
        } else {
            items.extend(group.into_iter().map(|f| ScanItem { primary: f, companion: None }));
        }
    }
    items
}

/// Scans `root` recursively, calling `on_event` for each item and issue as folders are read; stops
/// early (summary `cancelled`) once `cancel` is set.
pub fn scan(root: &Path, cancel: &AtomicBool, mut on_event: impl FnMut(ScanEvent)) -> ScanSummary {
    let mut summary = ScanSummary::default();
    let mut emit = |summary: &mut ScanSummary, ev: ScanEvent| {
        match &ev {
            ScanEvent::Item(it) => {
                summary.items += 1;
                summary.files += 1 + it.companion.is_some() as usize;
            }
            ScanEvent::Issue(_) => summary.issues += 1,
        }
        on_event(ev);
    };
    let root_meta = match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            emit(&mut summary, ScanEvent::Issue(ScanIssue { path: root.to_owned(), kind: IssueKind::Io("not a folder".into()) }));
            return summary;
        }
        Err(e) => {
            emit(&mut summary, ScanEvent::Issue(issue_for(root, &e)));
            return summary;
        }
    };
    // Depth-first with an explicit stack; each entry carries the folder ids on its way from the root.
    let mut visited: HashSet<DirId> = HashSet::new();
    let root_id = dir_id(root, &root_meta);
    visited.insert(root_id.clone());
    let mut stack: Vec<(PathBuf, Vec<DirId>)> = vec![(root.to_owned(), vec![root_id])];
    while let Some((dir, ancestors)) = stack.pop() {
        if cancel.load(Ordering::Relaxed) {
            summary.cancelled = true;
            return summary;
        }
        summary.folders += 1;
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                emit(&mut summary, ScanEvent::Issue(issue_for(&dir, &e)));
                continue;
            }
        };
        let mut entries: Vec<(PathBuf, bool)> = Vec::new();
        for entry in rd {
            match entry {
                Ok(e) => {
                    let name = e.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue;
                    }
                    let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
                    entries.push((e.path(), is_link));
                }
                Err(e) => emit(&mut summary, ScanEvent::Issue(issue_for(&dir, &e))),
            }
        }
        entries.sort();
        // stat (following links) and sniff in parallel; results keep name order.
        let found: Vec<(PathBuf, Result<std::fs::Metadata, io::Error>, bool)> =
            entries.into_par_iter().map(|(p, is_link)| (p.clone(), std::fs::metadata(&p), is_link)).collect();
        let mut subdirs = Vec::new();
        let mut files = Vec::new();
        for (path, meta, is_link) in found {
            match meta {
                Ok(m) if m.is_dir() => {
                    let id = dir_id(&path, &m);
                    if ancestors.contains(&id) {
                        emit(&mut summary, ScanEvent::Issue(ScanIssue { path, kind: IssueKind::SymlinkLoop }));
                    } else if visited.insert(id.clone()) {
                        let mut a = ancestors.clone();
                        a.push(id);
                        subdirs.push((path, a));
                    } // else: a second way into a folder already scanned (a link to a sibling): skip quietly.
                }
                Ok(m) if m.is_file() => files.push((path, m)),
                Ok(_) => {} // sockets, fifos, devices
                Err(e) if is_link && e.kind() == io::ErrorKind::NotFound => {
                    emit(&mut summary, ScanEvent::Issue(ScanIssue { path, kind: IssueKind::BrokenLink }))
                }
                Err(e) => emit(&mut summary, ScanEvent::Issue(issue_for(&path, &e))),
            }
        }
        let examined: Vec<Found> = files.into_par_iter().map(|(p, m)| examine_file(p, &m)).collect();
        let mut good = Vec::new();
        for f in examined {
            match f {
                Found::File(f) => good.push(f),
                Found::Issue(i) => emit(&mut summary, ScanEvent::Issue(i)),
                Found::Skip => {}
            }
        }
        for item in pair_files(good) {
            emit(&mut summary, ScanEvent::Item(item));
        }
        // Reverse so the stack pops sub-folders in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    summary
}

/// Scans `root` to completion and returns the items and issues.
pub fn scan_all(root: &Path) -> (Vec<ScanItem>, Vec<ScanIssue>, ScanSummary) {
    let (mut items, mut issues) = (Vec::new(), Vec::new());
    let summary = scan(root, &AtomicBool::new(false), |ev| match ev {
        ScanEvent::Item(i) => items.push(i),
        ScanEvent::Issue(i) => issues.push(i),
    });
    (items, issues, summary)
}

/// The photos under `dir` as the album sees them (recursive, hidden files and sidecars skipped,
/// format from the bytes), one path per item: the file the app shows and scores (the JPEG of a
/// RAW+JPEG pair), in scan order; and the problems met, for the caller to report. What the
/// command line and the dataset readers list, so that they see the album the app sees.
pub fn list_photos(dir: &Path) -> (Vec<PathBuf>, Vec<ScanIssue>) {
    let (items, issues, _) = scan_all(dir);
    (items.iter().map(|i| i.display().path.clone()).collect(), issues)
}
