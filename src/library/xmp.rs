//! XMP sidecars: star ratings, colour labels and pick/reject flags, read from sidecars and
//! from XMP embedded in JPEGs, written by merging into sidecars. Originals are never written.
//!
//! # Mapping
//!
//! | Keepers      | XMP written                                                  | also read                                |
//! |--------------|--------------------------------------------------------------|------------------------------------------|
//! | stars 0..=5  | `xmp:Rating` = `0`..`5`                                      | any real, rounded (`3.0` is 3 stars)     |
//! | reject       | `xmp:Rating="-1"` **and** `digiKam:PickLabel="1"`            | either one alone means rejected          |
//! | pick         | `digiKam:PickLabel="3"` (stars kept)                         |                                          |
//! | unflag       | `PickLabel` removed; a `-1` rating back to the prior stars   | `PickLabel` 0 (none), 2 (pending)        |
//! | colour label | `xmp:Label` = `Red`, `Yellow`, `Green`, `Blue`, `Purple`     | `darktable:colorlabels`                  |
//! | no label     | `xmp:Label` removed                                          |                                          |
//!
//! - `xmp:Rating` (namespace `http://ns.adobe.com/xap/1.0/`) with `-1` for a reject is what Lightroom,
//!   Bridge and darktable read and write.
//! - The pick flag is digiKam's `digiKam:PickLabel` (namespace `http://www.digikam.org/ns/1.0/`): 0 = no
//!   pick label, 1 = rejected, 2 = pending, 3 = accepted (digiKam's `NoPickLabel` .. `AcceptedLabel`, the
//!   range digiKam itself accepts when reading `Xmp.digiKam.PickLabel`). Lightroom keeps its pick flag in
//!   the catalogue only, so for Lightroom a reject is the `-1` rating.
//! - Because XMP has one rating field, a reject overwrites the stars with `-1` in the file; the caller (the
//!   library database) remembers the stars and passes them to [`Decision::unflag`]. Setting stars on a
//!   rejected photo un-rejects it ([`Decision::set_rating`]).
//! - darktable keeps several colour labels in `darktable:colorlabels`, an `rdf:Seq` of integers
//!   0 = red, 1 = yellow, 2 = green, 3 = blue, 4 = purple. When reading, `xmp:Label` wins if present
//!   (darktable's own precedence), else the first darktable label. When writing a label to a file that has
//!   `darktable:colorlabels`, that sequence becomes exactly the one label (or empty), and `xmp:Label` is
//!   only updated if it is already there, never added: darktable would otherwise prefer a stale
//!   `xmp:Label` over its own labels on the next import. Keepers has one label per photo.
//! - Not handled (read nor written): digiKam's numeric `digiKam:ColorLabel`, `MicrosoftPhoto:Rating`,
//!   extended XMP (JPEG `http://ns.adobe.com/xmp/extension/` segments). Unknown label names (e.g. a
//!   renamed or translated Lightroom label set) read as no label and are left alone unless the user sets a
//!   label in Keepers.
//!
//! # Sidecar names
//!
//! - `IMG_1.CR2.xmp` (`<name>.<ext>.xmp`): darktable and digiKam. What Keepers creates, for every format
//!   (JPEGs included, since JPEGs are never rewritten).
//! - `IMG_1.xmp` (`<stem>.xmp`): Lightroom Classic, Camera Raw, Bridge and Capture One, for RAW files (Adobe
//!   tools write into JPEG, TIFF and DNG files themselves).
//!
//! Reading looks at `<name>.<ext>.xmp`, `<name>.<ext>.XMP`, then, if the photo owns it (below),
//! `<stem>.xmp`, `<stem>.XMP`, in that order, and uses the first that exists. Writing merges into that
//! same file, so a photo with only a Lightroom `<stem>.xmp` it owns gets its decision in that file
//! (Lightroom sees it with "Read Metadata from File") and no second sidecar appears; otherwise
//! `<name>.<ext>.xmp` is created. When both exist only the `<name>.<ext>.xmp` one is read and written.
//!
//! A `<stem>.xmp` belongs to one album item ([`owns_stem_sidecar`]). The folder's files of that stem
//! (any case) are classified as the album scan does (format from the bytes, RAW+JPEG pairing): a
//! single item owns it (a RAW+JPEG pair shares it); with several (`IMG_1.jpg` beside `IMG_1.png`,
//! `IMG_1.CR2` beside `IMG_1.DNG`, an exiftool `IMG_1.CR2_original` backup) the item of the only RAW
//! that is not a DNG owns it (Adobe tools write `<stem>.xmp` for such RAWs and embed XMP in the
//! others), else nobody does; a photo file Keepers cannot read of that stem (a HEIC) also makes it
//! nobody's. The others use `<name>.<ext>.xmp` only, so that a decision on one photo never changes
//! another. A folder that cannot be listed counts as shared.
//!
//! Embedded XMP (a JPEG APP1 segment starting `http://ns.adobe.com/xap/1.0/\0`) is read only, when no
//! sidecar exists. The first sidecar Keepers creates for such a JPEG starts from the embedded decision, so
//! the sidecar alone always holds the whole decision.
//!
//! # Merging
//!
//! The existing sidecar is tokenised (quick-xml, with Keepers' own attribute scanner for exact byte
//! spans) and only the byte spans of `xmp:Rating`, `xmp:Label`, `digiKam:PickLabel` and the items of
//! `darktable:colorlabels` are replaced, inserted or removed; every other byte is copied as it was.
//! Properties are found as attributes of a top-level `rdf:Description` or as its child elements; nested
//! descriptions (e.g. Lightroom's `crs:Look`) are never touched. A missing property becomes an attribute on
//! the top-level `rdf:Description` that already has `xmp:` properties or declares the xmp namespace (the
//! first one otherwise), with `xmlns:xmp` / `xmlns:digiKam` added after the last namespace declaration if
//! not in scope, copying the file's own line break and indentation. Only the properties whose meaning
//! changes are edited. The merged text is parsed again and checked before anything is written.
//!
//! A sidecar that cannot be parsed (not XML, truncated, not UTF-8, empty, no `rdf:RDF`) is an error naming
//! the file and is never overwritten. A read-only sidecar (no write permission bits) is not replaced.
//!
//! # Atomic writes
//!
//! Temporary file `.<sidecar>.keepers-<pid>-<n>.tmp` in the sidecar's folder, write, fsync, permissions of
//! the old sidecar copied, rename over the sidecar, fsync the folder. A crash leaves the old or the new
//! file, never a partial one; stray temporary files are never read and are removed by the next write of
//! that sidecar. A symlinked sidecar is written through to its target. An unwritable folder is an
//! [`XmpError::Write`] naming the sidecar; the caller keeps the decision in its database and retries.
//! Writes within one process are serialised.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_xml::Reader;
use quick_xml::events::Event;

pub const NS_RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
pub const NS_XMP: &str = "http://ns.adobe.com/xap/1.0/";
pub const NS_DIGIKAM: &str = "http://www.digikam.org/ns/1.0/";
pub const NS_DARKTABLE: &str = "http://darktable.sf.net/";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// Header of the JPEG APP1 segment that holds the main XMP packet.
pub const JPEG_XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";

/// digiKam `PickLabel` values.
const PICK_NONE: u8 = 0;
const PICK_REJECTED: u8 = 1;
const PICK_PENDING: u8 = 2;
const PICK_ACCEPTED: u8 = 3;

/// A colour label, named as Lightroom, Bridge and darktable write `xmp:Label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorLabel {
    Red,
    Yellow,
    Green,
    Blue,
    Purple,
}

impl ColorLabel {
    pub const ALL: [ColorLabel; 5] = [ColorLabel::Red, ColorLabel::Yellow, ColorLabel::Green, ColorLabel::Blue, ColorLabel::Purple];

    /// The `xmp:Label` text.
    pub fn xmp_name(self) -> &'static str {
        match self {
            ColorLabel::Red => "Red",
            ColorLabel::Yellow => "Yellow",
            ColorLabel::Green => "Green",
            ColorLabel::Blue => "Blue",
            ColorLabel::Purple => "Purple",
        }
    }

    /// Parses an `xmp:Label` text (case-insensitive, surrounding spaces ignored).
    pub fn from_xmp_name(name: &str) -> Option<ColorLabel> {
        let name = name.trim();
        ColorLabel::ALL.into_iter().find(|l| l.xmp_name().eq_ignore_ascii_case(name))
    }

    /// darktable's colour label number (0 = red .. 4 = purple).
    pub fn darktable_index(self) -> u8 {
        match self {
            ColorLabel::Red => 0,
            ColorLabel::Yellow => 1,
            ColorLabel::Green => 2,
            ColorLabel::Blue => 3,
            ColorLabel::Purple => 4,
        }
    }

    pub fn from_darktable_index(i: i64) -> Option<ColorLabel> {
        usize::try_from(i).ok().and_then(|i| ColorLabel::ALL.get(i).copied())
    }
}

/// The pick flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pick {
    Picked,
    Rejected,
    Unflagged,
}

/// A photographer's decision on one photo, as read from or written to XMP.
///
/// Read: `None` means the file does not say. Write ([`write_decision`]): the file ends up saying exactly
/// this, with `None` removing the property (see the module docs for how the fields map to XMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Decision {
    /// -1 = rejected, 0..=5 stars.
    pub rating: Option<i8>,
    pub label: Option<ColorLabel>,
    pub pick: Option<Pick>,
}

impl Decision {
    /// Rejected by the pick flag or by a `-1` rating (Lightroom's way).
    pub fn is_rejected(&self) -> bool {
        self.pick == Some(Pick::Rejected) || self.rating == Some(-1)
    }

    pub fn is_picked(&self) -> bool {
        self.pick == Some(Pick::Picked)
    }

    /// Stars 0..=5 (0 when unrated or rejected).
    pub fn stars(&self) -> u8 {
        self.rating.map_or(0, |r| r.clamp(0, 5) as u8)
    }

    /// Sets the stars (clamped to 5). Stars on a rejected photo un-reject it: XMP has one rating field.
    pub fn set_rating(&mut self, stars: u8) {
        self.rating = Some(stars.min(5) as i8);
        if self.pick == Some(Pick::Rejected) {
            self.pick = Some(Pick::Unflagged);
        }
    }

    pub fn set_label(&mut self, label: Option<ColorLabel>) {
        self.label = label;
    }

    /// Pick (P). Keeps the stars; a `-1` rating goes back to 0.
    pub fn mark_picked(&mut self) {
        self.pick = Some(Pick::Picked);
        if self.rating == Some(-1) {
            self.rating = Some(0);
        }
    }

    /// Reject (X): rating -1 and pick flag rejected.
    pub fn mark_rejected(&mut self) {
        self.pick = Some(Pick::Rejected);
        self.rating = Some(-1);
    }

    /// Unflag (U): no pick flag; a `-1` rating becomes `prior_stars` (the stars before the reject, which the
    /// caller's database knows), or 0.
    pub fn unflag(&mut self, prior_stars: Option<u8>) {
        self.pick = Some(Pick::Unflagged);
        if self.rating == Some(-1) || self.rating.is_none() && prior_stars.is_some() {
            self.rating = Some(prior_stars.unwrap_or(0).min(5) as i8);
        }
    }

    /// The property values this decision stands for in XMP.
    fn xmp_values(&self) -> XmpValues {
        let rating = match self.pick {
            Some(Pick::Rejected) => Some(-1),
            Some(Pick::Picked | Pick::Unflagged) => self.rating.map(|r| r.clamp(0, 5)),
            None => self.rating.map(|r| r.clamp(-1, 5)),
        };
        let pick_label = match self.pick {
            Some(Pick::Picked) => Some(PICK_ACCEPTED),
            Some(Pick::Rejected) => Some(PICK_REJECTED),
            Some(Pick::Unflagged) | None => None,
        };
        XmpValues { rating, label: self.label, pick_label }
    }
}

/// What a [`Decision`] means in XMP; two decisions with equal values need no edit between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct XmpValues {
    rating: Option<i8>,
    label: Option<ColorLabel>,
    pick_label: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum XmpError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: malformed XMP, left as it is: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: cannot write the sidecar ({step}): {source}")]
    Write { path: PathBuf, step: String, source: io::Error },
}

impl XmpError {
    /// The file the error is about (the sidecar, or the JPEG for embedded XMP).
    pub fn path(&self) -> &Path {
        match self {
            XmpError::Read { path, .. } | XmpError::Malformed { path, .. } | XmpError::Write { path, .. } => path,
        }
    }
}

/// Where [`read_decision`] found the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionSource {
    Sidecar(PathBuf),
    /// XMP embedded in the (JPEG) photo itself.
    Embedded,
    /// No XMP anywhere: the default decision.
    None,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The sidecar written (or that already said this).
    pub path: PathBuf,
    /// The decision the sidecar now holds.
    pub decision: Decision,
    /// False when the sidecar already said this and was not touched.
    pub changed: bool,
}

// ---------------------------------------------------------------------------------------------
// Sidecar names

/// Sidecar names looked at for `photo`, in order of preference (see the module docs).
pub fn sidecar_candidates(photo: &Path) -> Vec<PathBuf> {
    let Some(name) = photo.file_name() else { return Vec::new() };
    let mut out = Vec::with_capacity(4);
    for ext in [".xmp", ".XMP"] {
        let mut n = name.to_os_string();
        n.push(ext);
        out.push(photo.with_file_name(n));
    }
    if photo.extension().is_some()
        && let Some(stem) = photo.file_stem()
    {
        for ext in [".xmp", ".XMP"] {
            let mut n = stem.to_os_string();
            n.push(ext);
            out.push(photo.with_file_name(n));
        }
    }
    out
}

/// The existing sidecar of `photo`, if any (a `<stem>.xmp` only where [`owns_stem_sidecar`]).
pub fn find_sidecar(photo: &Path) -> Option<PathBuf> {
    let candidates = sidecar_candidates(photo);
    let exists = |p: &PathBuf| fs::metadata(p).is_ok_and(|m| m.is_file());
    // The first two are `<name>.<ext>.xmp`; the stem's are looked at (and the folder listed) only
    // when one exists.
    candidates.iter().take(2).find(|p| exists(p)).cloned().or_else(|| {
        let stem = candidates.iter().skip(2).find(|p| exists(p))?;
        owns_stem_sidecar(photo).then(|| stem.clone())
    })
}

/// Whether `photo` may read and write `<stem>.xmp` (see the module docs, "Sidecar names"). The
/// files of its folder with its stem ([`crate::library::scan::stem_key`]) are classified as the
/// album scan classifies them ([`crate::library::scan::examine`], format from the bytes, then
/// [`crate::library::scan::pair_files`]), so owners are always the files of one album item:
/// - one item and nothing else of that stem: its files own it (a RAW+JPEG pair shares it);
/// - otherwise the item whose original is the only non-DNG RAW among them owns it (Adobe tools
///   write `<stem>.xmp` for such RAWs and embed XMP in the others);
/// - otherwise nobody: several photos, or a photo file Keepers cannot read (a HEIC, whose
///   sidecar another program may own), share the stem.
///
/// A folder that cannot be listed is treated as shared (nobody owns the stem sidecar): a
/// decision then goes to `<name>.<ext>.xmp`, never to a file another photo may read.
pub fn owns_stem_sidecar(photo: &Path) -> bool {
    use crate::library::formats::{Format, RawKind};
    use crate::library::scan;
    let Some(group) = same_stem_files(photo) else { return false };
    let (mut files, mut blockers) = (Vec::new(), 0usize);
    // Folders of the same name (a `IMG_1/` beside `IMG_1.jpg`) are no one's photo.
    for p in group.iter().filter(|p| p.as_path() != photo && !p.is_dir()) {
        match scan::examine(p) {
            Ok(Some(f)) => files.push(f),
            Ok(None) => {}
            // A photo extension with bytes Keepers cannot read: someone else's photo.
            Err(_) => blockers += 1,
        }
    }
    match scan::examine(photo) {
        Ok(Some(f)) => files.push(f),
        // `photo` is not one Keepers reads (the caller still asks for its sidecar): it owns the
        // stem sidecar only alone.
        _ => return files.is_empty() && blockers == 0,
    }
    let items = scan::pair_files(files);
    let Some(mine) = items.iter().position(|it| it.files().any(|f| f.path == photo)) else { return false };
    if items.len() == 1 && blockers == 0 {
        return true;
    }
    let raw_owners: Vec<usize> =
        (0..items.len()).filter(|&k| matches!(items[k].primary.format, Format::Raw(kind) if kind != RawKind::Dng)).collect();
    raw_owners == [mine]
}

/// Folder listings kept for [`same_stem_files`]: per folder, its modification time when listed and
/// its entries by stem key. Cleared when it holds [`LISTINGS_KEPT`] folders.
type Listing = (std::time::SystemTime, std::sync::Arc<std::collections::HashMap<Vec<u8>, Vec<PathBuf>>>);
static LISTINGS: std::sync::LazyLock<Mutex<std::collections::HashMap<PathBuf, Listing>>> = std::sync::LazyLock::new(Default::default);
const LISTINGS_KEPT: usize = 64;
/// A listing is kept only once its folder's modification time is this far in the past, so that a
/// change within the file system's timestamp resolution (2 s on FAT) cannot hide behind it (Git's
/// "racy" rule); until then the folder is listed on every call.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(3);

/// The folder `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The entries of `photo`'s folder whose stem key is the photo's (the photo included if it
/// exists), from a listing reused while the folder's modification time is unchanged (adding,
/// removing or renaming a file changes it; see [`SETTLED`]). `None` when the folder cannot be read.
fn same_stem_files(photo: &Path) -> Option<Vec<PathBuf>> {
    use crate::library::scan::stem_key;
    let dir = parent_dir(photo);
    let mtime = fs::metadata(&dir).and_then(|m| m.modified()).ok()?;
    let cached = LISTINGS.lock().unwrap_or_else(|e| e.into_inner()).get(&dir).filter(|(t, _)| *t == mtime).map(|(_, l)| l.clone());
    let listing = match cached {
        Some(l) => l,
        None => {
            let mut by_stem: std::collections::HashMap<Vec<u8>, Vec<PathBuf>> = Default::default();
            for e in fs::read_dir(&dir).ok()? {
                let p = photo.with_file_name(e.ok()?.file_name());
                by_stem.entry(stem_key(&p)).or_default().push(p);
            }
            let l = std::sync::Arc::new(by_stem);
            let settled = std::time::SystemTime::now().duration_since(mtime).is_ok_and(|age| age >= SETTLED);
            if settled {
                let mut all = LISTINGS.lock().unwrap_or_else(|e| e.into_inner());
                if all.len() >= LISTINGS_KEPT {
                    all.clear();
                }
                all.insert(dir, (mtime, l.clone()));
            }
            l
        }
    };
    Some(listing.get(&stem_key(photo)).cloned().unwrap_or_default())
}

/// After Keepers wrote a sidecar in `dir` (which adds or replaces only `.xmp` files, never a
/// photo), a listing taken at the folder's modification time `before` still holds: it is kept
/// under the new time instead of being taken again on the next decision.
fn listing_survives_own_write(dir: &Path, before: Option<std::time::SystemTime>) {
    let (Some(before), Ok(after)) = (before, fs::metadata(dir).and_then(|m| m.modified())) else { return };
    let mut all = LISTINGS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = all.get_mut(dir).filter(|(t, _)| *t == before) {
        entry.0 = after;
    }
}

/// The sidecar a write for `photo` goes to: the existing one, else `<name>.<ext>.xmp`.
pub fn sidecar_path(photo: &Path) -> Option<PathBuf> {
    find_sidecar(photo).or_else(|| sidecar_candidates(photo).into_iter().next())
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Parses an XMP packet or sidecar text.
pub fn parse_decision(xmp: &str) -> Result<Decision, String> {
    Ok(Doc::parse(xmp)?.decision())
}

/// Dublin Core, whose `dc:subject` bag holds a photo's keywords (Lightroom, darktable, digiKam).
const NS_DC: &str = "http://purl.org/dc/elements/1.1/";

/// The keywords of an XMP packet: the items of its `dc:subject` bag(s), trimmed, in order, without
/// duplicates. Namespaces are resolved, so any prefix bound to Dublin Core works.
pub fn parse_keywords(xmp: &str) -> Result<Vec<String>, String> {
    let mut reader = Reader::from_str(xmp);
    let mut ns: Vec<(String, String)> = Vec::new();
    // Length of `ns` before each open element.
    let mut lens: Vec<usize> = Vec::new();
    let mut subject_depth: Option<usize> = None;
    let mut li_start: Option<usize> = None;
    let mut out: Vec<String> = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event().map_err(|e| format!("at byte {before}: {e}"))? {
            Event::Start(e) => {
                lens.push(ns.len());
                for a in e.attributes().with_checks(false).flatten() {
                    let key: &str = a.key.as_ref();
                    if let Some(p) = key.strip_prefix("xmlns:") {
                        ns.push((p.to_string(), a.value.to_string()));
                    }
                }
                let name = e.name().as_ref().to_string();
                let (prefix, local) = split_qname(&name);
                if subject_depth.is_none() && local == "subject" && resolve(&ns, prefix) == Some(NS_DC) {
                    subject_depth = Some(lens.len());
                } else if subject_depth.is_some() && local == "li" {
                    li_start = Some(reader.buffer_position() as usize);
                }
            }
            Event::End(e) => {
                let name = e.name().as_ref().to_string();
                if let (Some(start), "li") = (li_start, split_qname(&name).1) {
                    let k = text_value(&xmp[start..before])?.trim().to_string();
                    if !k.is_empty() && !out.contains(&k) {
                        out.push(k);
                    }
                    li_start = None;
                }
                if subject_depth == Some(lens.len()) {
                    subject_depth = None;
                }
                ns.truncate(lens.pop().unwrap_or(0));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The keywords of `photo`: from its sidecar when one exists, else from XMP embedded in the JPEG,
/// else none.
pub fn read_keywords(photo: &Path) -> Result<Vec<String>, XmpError> {
    let (text, path) = match find_sidecar(photo) {
        Some(sidecar) => (Some(read_text(&sidecar)?), sidecar),
        None if fs::metadata(photo).is_ok_and(|m| m.is_file()) => (read_embedded_xmp(photo)?, photo.to_owned()),
        None => (None, photo.to_owned()),
    };
    match text {
        None => Ok(Vec::new()),
        Some(t) => parse_keywords(&t).map_err(|reason| XmpError::Malformed { path, reason: format!("keywords: {reason}") }),
    }
}

/// Larger "sidecars" are not XMP written by a photo tool (darktable's biggest are well under 1 MiB).
pub const MAX_SIDECAR_BYTES: u64 = 64 << 20;

fn read_text(path: &Path) -> Result<String, XmpError> {
    let read_err = |source| XmpError::Read { path: path.to_owned(), source };
    let len = fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_SIDECAR_BYTES {
        return Err(XmpError::Malformed { path: path.to_owned(), reason: format!("{len} bytes is too large for a sidecar") });
    }
    let bytes = fs::read(path).map_err(read_err)?;
    text_of(bytes, path)
}

fn text_of(bytes: Vec<u8>, path: &Path) -> Result<String, XmpError> {
    let malformed = |reason: &str| XmpError::Malformed { path: path.to_owned(), reason: reason.to_owned() };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(malformed("the file is empty"));
    }
    String::from_utf8(bytes).map_err(|e| malformed(&format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// Reads the decision in the sidecar at `path`.
pub fn read_sidecar(path: &Path) -> Result<Decision, XmpError> {
    let text = read_text(path)?;
    parse_decision(&text).map_err(|reason| XmpError::Malformed { path: path.to_owned(), reason })
}

/// The XMP packet embedded in a JPEG (first APP1 segment with the XMP header), or `None` when `photo` is
/// not a JPEG or has none. Reads only the header segments; opens the file read-only.
pub fn read_embedded_xmp(photo: &Path) -> Result<Option<String>, XmpError> {
    let file = File::open(photo).map_err(|source| XmpError::Read { path: photo.to_owned(), source })?;
    let mut r = io::BufReader::new(file);
    match jpeg_xmp_segment(&mut r) {
        Ok(Some(bytes)) => {
            let mut bytes = bytes;
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            text_of(bytes, photo).map(Some)
        }
        Ok(None) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            Err(XmpError::Malformed { path: photo.to_owned(), reason: format!("embedded XMP: {e}") })
        }
        Err(source) => Err(XmpError::Read { path: photo.to_owned(), source }),
    }
}

/// The decision in the XMP embedded in `photo` (a JPEG), if any.
pub fn read_embedded_decision(photo: &Path) -> Result<Option<Decision>, XmpError> {
    match read_embedded_xmp(photo)? {
        None => Ok(None),
        Some(text) => parse_decision(&text)
            .map(Some)
            .map_err(|reason| XmpError::Malformed { path: photo.to_owned(), reason: format!("embedded XMP: {reason}") }),
    }
}

/// The decision for `photo`: from its sidecar when one exists, else from XMP embedded in the JPEG, else the
/// default (nothing known). A photo that cannot be opened simply has no embedded XMP.
pub fn read_decision(photo: &Path) -> Result<(Decision, DecisionSource), XmpError> {
    if let Some(sidecar) = find_sidecar(photo) {
        return Ok((read_sidecar(&sidecar)?, DecisionSource::Sidecar(sidecar)));
    }
    if fs::metadata(photo).is_ok_and(|m| m.is_file())
        && let Some(d) = read_embedded_decision(photo)?
    {
        return Ok((d, DecisionSource::Embedded));
    }
    Ok((Decision::default(), DecisionSource::None))
}

/// Finds the XMP APP1 segment. `Ok(None)`: not a JPEG, or no XMP before the image data.
fn jpeg_xmp_segment<R: Read + Seek>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    fn byte<R: Read>(r: &mut R) -> io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        match r.read_exact(&mut b) {
            Ok(()) => Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
    let mut soi = [0u8; 2];
    match r.read_exact(&mut soi) {
        Ok(()) if soi == [0xFF, 0xD8] => {}
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    loop {
        // A marker: 0xFF, optional 0xFF fill bytes, the marker code.
        match byte(r)? {
            Some(0xFF) => {}
            _ => return Ok(None), // end of file or not a marker: no XMP to be found
        }
        let mut code = 0xFF;
        while code == 0xFF {
            match byte(r)? {
                Some(c) => code = c,
                None => return Ok(None),
            }
        }
        match code {
            0x01 | 0xD0..=0xD8 => continue, // standalone markers
            0xD9 | 0xDA => return Ok(None), // end of image, start of scan: metadata comes before
            _ => {}
        }
        let (Some(hi), Some(lo)) = (byte(r)?, byte(r)?) else { return Ok(None) };
        let len = u16::from_be_bytes([hi, lo]) as usize;
        if len < 2 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("JPEG segment 0xFF{code:02X} has length {len}")));
        }
        let payload = len - 2;
        if code == 0xE1 && payload >= JPEG_XMP_HEADER.len() {
            let mut head = vec![0u8; JPEG_XMP_HEADER.len()];
            if r.read_exact(&mut head).is_err() {
                return Ok(None);
            }
            if head == JPEG_XMP_HEADER {
                let mut packet = vec![0u8; payload - JPEG_XMP_HEADER.len()];
                r.read_exact(&mut packet).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the XMP segment is truncated"))?;
                return Ok(Some(packet));
            }
            r.seek(SeekFrom::Current((payload - JPEG_XMP_HEADER.len()) as i64))?;
        } else {
            r.seek(SeekFrom::Current(payload as i64))?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Where [`update_decision_stopping_at`] stops, as if the process were killed right after that step.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    /// The temporary file exists, empty.
    TempCreated,
    /// Half the new bytes are in the temporary file.
    TempHalfWritten,
    /// The temporary file is complete and synced, not yet renamed.
    TempSynced,
    /// Renamed over the sidecar, folder not yet synced.
    Renamed,
}

static WRITE_LOCK: Mutex<()> = Mutex::new(());
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Changes the decision of `photo` with `change` and writes it to its sidecar (merging into an existing
/// one, see the module docs). `change` sees the current decision: the sidecar's, else the embedded XMP's,
/// else the default. Nothing is written when the change does not alter what the file says.
pub fn update_decision(photo: &Path, change: impl FnOnce(&mut Decision)) -> Result<WriteOutcome, XmpError> {
    update_impl(photo, change, None)
}

/// Makes the sidecar of `photo` say exactly `decision`.
pub fn write_decision(photo: &Path, decision: &Decision) -> Result<WriteOutcome, XmpError> {
    update_impl(photo, |d| *d = *decision, None)
}

/// [`update_decision`] that stops after `step`, leaving the files as a crash at that point would; for tests.
#[doc(hidden)]
pub fn update_decision_stopping_at(photo: &Path, change: impl FnOnce(&mut Decision), step: WriteStep) -> Result<WriteOutcome, XmpError> {
    update_impl(photo, change, Some(step))
}

fn update_impl(photo: &Path, change: impl FnOnce(&mut Decision), stop: Option<WriteStep>) -> Result<WriteOutcome, XmpError> {
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let existing = find_sidecar(photo);
    let target = match &existing {
        Some(p) => p.clone(),
        None => sidecar_candidates(photo).into_iter().next().ok_or_else(|| XmpError::Write {
            path: photo.to_owned(),
            step: "find a sidecar name".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the photo path has no file name"),
        })?,
    };
    let (text, doc, seed) = match &existing {
        Some(p) => {
            let text = read_text(p)?;
            let doc = Doc::parse(&text).map_err(|reason| XmpError::Malformed { path: p.clone(), reason })?;
            let seed = doc.decision();
            (text, doc, seed)
        }
        None => {
            // A new sidecar holds the whole decision, starting from the embedded XMP if any (a broken
            // embedded packet is ignored here: the user's new decision still gets saved).
            let seed = if fs::metadata(photo).is_ok_and(|m| m.is_file()) {
                read_embedded_decision(photo).ok().flatten().unwrap_or_default()
            } else {
                Decision::default()
            };
            let text = new_sidecar_text();
            let doc = Doc::parse(&text).map_err(|reason| XmpError::Malformed { path: target.clone(), reason })?;
            (text, doc, seed)
        }
    };
    // What the file says now (nothing, for a new one) against what it should say.
    let base = doc.decision();
    let mut wanted = seed;
    change(&mut wanted);
    let merged = merge(&text, &doc, base.xmp_values(), wanted.xmp_values()).map_err(|e| XmpError::Write {
        path: target.clone(),
        step: "merge".into(),
        source: io::Error::other(e),
    })?;
    let Some(merged) = merged else {
        return Ok(WriteOutcome { path: target, decision: base, changed: false });
    };
    // Check the merged text before it replaces anything.
    let check = parse_decision(&merged).map_err(|e| XmpError::Write {
        path: target.clone(),
        step: "check the merged sidecar".into(),
        source: io::Error::other(e),
    })?;
    if check.xmp_values() != wanted.xmp_values() {
        return Err(XmpError::Write {
            path: target,
            step: "check the merged sidecar".into(),
            source: io::Error::other(format!("merged sidecar reads back as {check:?}, wanted {wanted:?}")),
        });
    }
    write_atomically(&target, merged.as_bytes(), stop)?;
    Ok(WriteOutcome { path: target, decision: check, changed: true })
}

fn new_sidecar_text() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"Keepers {}\">\n \
         <rdf:RDF xmlns:rdf=\"{NS_RDF}\">\n  \
         <rdf:Description rdf:about=\"\"\n    \
         xmlns:xmp=\"{NS_XMP}\"\n    \
         xmlns:digiKam=\"{NS_DIGIKAM}\"/>\n \
         </rdf:RDF>\n\
         </x:xmpmeta>\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn write_atomically(target: &Path, bytes: &[u8], stop: Option<WriteStep>) -> Result<(), XmpError> {
    let werr = |step: &str, source: io::Error| XmpError::Write { path: target.to_owned(), step: step.to_owned(), source };
    // Write through a symlinked sidecar to the file it points at.
    let real = match fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(target).map_err(|e| werr("follow the symlink", e))?,
        _ => target.to_owned(),
    };
    let old_perms = match fs::metadata(&real) {
        Ok(m) => {
            if m.permissions().readonly() {
                return Err(werr("the sidecar is read-only", io::Error::from(io::ErrorKind::PermissionDenied)));
            }
            Some(m.permissions())
        }
        Err(_) => None,
    };
    let dir = parent_dir(&real);
    // The folder's time before this write adds, removes or renames anything in it.
    let before = fs::metadata(&dir).and_then(|m| m.modified()).ok();
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.keepers-");
    remove_stray_temps(&dir, &prefix);
    let temp = dir.join(format!("{prefix}{}-{}.tmp", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let mut file = OpenOptions::new().write(true).create_new(true).open(&temp).map_err(|e| werr("create a temporary file", e))?;
    let fail = |step: &str, e: io::Error| {
        let _ = fs::remove_file(&temp);
        werr(step, e)
    };
    if stop == Some(WriteStep::TempCreated) {
        return Ok(());
    }
    if stop == Some(WriteStep::TempHalfWritten) {
        file.write_all(&bytes[..bytes.len() / 2]).map_err(|e| fail("write the temporary file", e))?;
        return Ok(());
    }
    file.write_all(bytes).map_err(|e| fail("write the temporary file", e))?;
    if let Some(p) = old_perms {
        file.set_permissions(p).map_err(|e| fail("copy the permissions", e))?;
    }
    file.sync_all().map_err(|e| fail("sync the temporary file", e))?;
    drop(file);
    if stop == Some(WriteStep::TempSynced) {
        return Ok(());
    }
    fs::rename(&temp, &real).map_err(|e| fail("rename the temporary file over the sidecar", e))?;
    listing_survives_own_write(&dir, before);
    if stop == Some(WriteStep::Renamed) {
        return Ok(());
    }
    sync_dir(&dir).map_err(|e| werr("sync the folder", e))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported) => Ok(()),
        r => r,
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Removes temporary files left by an interrupted write of this sidecar (best effort).
fn remove_stray_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(".tmp") && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tokenised document

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prop {
    Rating,
    Label,
    PickLabel,
}

/// One attribute of a start tag, with byte offsets into the document.
#[derive(Debug, Clone)]
struct Attr {
    /// Start of the whitespace before the name.
    ws_start: usize,
    start: usize,
    /// Just after the closing quote.
    end: usize,
    name: String,
    /// Inside the quotes.
    value: Range<usize>,
}

#[derive(Debug)]
struct Tag {
    name: String,
    name_end: usize,
    attrs: Vec<Attr>,
}

/// Scans the start tag `text[range]` (`<name attr="v" ...>` or `.../>`) for exact attribute spans.
fn scan_tag(text: &str, range: Range<usize>) -> Result<Tag, String> {
    let b = text.as_bytes();
    let end = range.end;
    let mut i = range.start + 1;
    let is_ws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let name_start = i;
    while i < end && !is_ws(b[i]) && b[i] != b'/' && b[i] != b'>' {
        i += 1;
    }
    let name = text[name_start..i].to_owned();
    let name_end = i;
    let mut attrs: Vec<Attr> = Vec::new();
    let bad = |what: &str, at: usize| format!("bad start tag <{name}> at byte {at}: {what}");
    loop {
        let ws_start = i;
        while i < end && is_ws(b[i]) {
            i += 1;
        }
        if i >= end || b[i] == b'>' || b[i] == b'/' {
            break;
        }
        if ws_start == i {
            return Err(bad("no space before an attribute", i));
        }
        let start = i;
        while i < end && !is_ws(b[i]) && b[i] != b'=' && b[i] != b'>' && b[i] != b'/' {
            i += 1;
        }
        let aname = text[start..i].to_owned();
        while i < end && is_ws(b[i]) {
            i += 1;
        }
        if i >= end || b[i] != b'=' {
            return Err(bad(&format!("attribute {aname} has no value"), start));
        }
        i += 1;
        while i < end && is_ws(b[i]) {
            i += 1;
        }
        if i >= end || (b[i] != b'"' && b[i] != b'\'') {
            return Err(bad(&format!("attribute {aname} is not quoted"), start));
        }
        let quote = b[i];
        let vstart = i + 1;
        let Some(len) = b[vstart..end].iter().position(|&c| c == quote) else {
            return Err(bad(&format!("attribute {aname} is not closed"), start));
        };
        i = vstart + len + 1;
        if attrs.iter().any(|a| a.name == aname) {
            return Err(bad(&format!("attribute {aname} appears twice"), start));
        }
        attrs.push(Attr { ws_start, start, end: i, name: aname, value: vstart..vstart + len });
    }
    Ok(Tag { name, name_end, attrs })
}

#[derive(Debug, Clone)]
struct Desc {
    name_end: usize,
    attrs: Vec<Attr>,
    /// Namespace bindings in scope at this element, its own included (later ones shadow earlier ones).
    scope: Vec<(String, String)>,
    declared: Vec<String>,
}

#[derive(Debug, Clone)]
enum Loc {
    Attr { remove: Range<usize>, value: Range<usize> },
    Elem { remove: Range<usize>, whole: Range<usize>, inner: Option<Range<usize>>, qname: String },
}

#[derive(Debug, Clone)]
struct Occ {
    prop: Prop,
    desc: usize,
    loc: Loc,
    value: String,
}

/// A `darktable:colorlabels` sequence.
#[derive(Debug, Clone, Default)]
struct DtLabels {
    /// The `rdf:Seq` element, start tag to end tag.
    whole: Range<usize>,
    qname: String,
    /// Between the Seq's tags; `None` for `<rdf:Seq/>`.
    inner: Option<Range<usize>>,
    li_qname: Option<String>,
    /// Whitespace before the first item and before the end tag.
    li_ws: Option<String>,
    close_ws: String,
    /// Whitespace before the Seq's start tag.
    ws_before: String,
    values: Vec<i64>,
}

#[derive(Debug, Clone)]
struct RdfInfo {
    qname: String,
    start_tag: Range<usize>,
    self_closing: bool,
}

#[derive(Debug)]
struct Doc {
    rdf: RdfInfo,
    descs: Vec<Desc>,
    occs: Vec<Occ>,
    dt: Vec<DtLabels>,
}

#[derive(Debug)]
enum Role {
    Other,
    Rdf,
    Desc(usize),
    Prop {
        prop: Prop,
        desc: usize,
        lt: usize,
        content_start: usize,
        complex: bool,
        qname: String,
    },
    /// Inside a top-level description's other property, or deeper: nothing tracked.
    Opaque,
    DtProp,
    DtSeq {
        lt: usize,
        content_start: usize,
        qname: String,
    },
    DtLi {
        content_start: usize,
    },
}

struct Frame {
    role: Role,
    ns_len: usize,
    name: String,
}

fn resolve<'a>(scope: &'a [(String, String)], prefix: &str) -> Option<&'a str> {
    if prefix == "xml" {
        return Some(NS_XML);
    }
    scope.iter().rev().find(|(p, _)| p == prefix).map(|(_, u)| u.as_str())
}

fn split_qname(q: &str) -> (&str, &str) {
    match q.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", q),
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    quick_xml::escape::unescape(raw).map(|c| c.into_owned()).map_err(|e| format!("bad character reference: {e}"))
}

/// The text value of element content without child elements (entities, CDATA, comments handled).
fn text_value(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('<') {
        out.push_str(&unescape(&rest[..i])?);
        rest = &rest[i..];
        let (open, close) = if rest.starts_with("<![CDATA[") {
            ("<![CDATA[", "]]>")
        } else if rest.starts_with("<!--") {
            ("<!--", "-->")
        } else if rest.starts_with("<?") {
            ("<?", "?>")
        } else {
            return Err("unexpected markup in a text value".into());
        };
        let end = rest.find(close).ok_or("unclosed markup in a text value")?;
        if open == "<![CDATA[" {
            out.push_str(&rest[open.len()..end]);
        }
        rest = &rest[end + close.len()..];
    }
    out.push_str(&unescape(rest)?);
    Ok(out)
}

fn is_ws_byte(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Start of the whitespace run that ends at `pos` (not before `floor`).
fn ws_start_before(text: &str, pos: usize, floor: usize) -> usize {
    let b = text.as_bytes();
    let mut i = pos;
    while i > floor && is_ws_byte(b[i - 1]) {
        i -= 1;
    }
    i
}

impl Doc {
    fn parse(text: &str) -> Result<Doc, String> {
        let mut reader = Reader::from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut ns: Vec<(String, String)> = Vec::new();
        let mut rdf: Option<RdfInfo> = None;
        let mut rdf_open = false;
        let mut descs: Vec<Desc> = Vec::new();
        let mut occs: Vec<Occ> = Vec::new();
        let mut dt: Vec<DtLabels> = Vec::new();
        let mut cur_dt: Option<DtLabels> = None;
        let mut roots = 0usize;
        loop {
            let before = reader.buffer_position() as usize;
            let ev = reader.read_event().map_err(|e| format!("not well-formed XML at byte {}: {e}", reader.error_position()))?;
            let after = reader.buffer_position() as usize;
            let (lt, empty) = match &ev {
                Event::Eof => break,
                Event::Start(_) => (before + text[before..after].find('<').unwrap_or(0), false),
                Event::Empty(_) => (before + text[before..after].find('<').unwrap_or(0), true),
                Event::End(_) => {
                    let lt = before + text[before..after].find('<').unwrap_or(0);
                    let frame = stack.pop().ok_or_else(|| format!("unexpected end tag at byte {lt}"))?;
                    Self::close(text, frame, lt, after, false, &mut ns, &mut occs, &mut dt, &mut cur_dt, &mut rdf_open)?;
                    continue;
                }
                Event::Text(t) => {
                    if stack.is_empty() && !t.trim_matches('\u{feff}').trim().is_empty() {
                        return Err(format!("text outside the root element at byte {before}"));
                    }
                    continue;
                }
                Event::CData(_) | Event::GeneralRef(_) => {
                    if stack.is_empty() {
                        return Err(format!("text outside the root element at byte {before}"));
                    }
                    continue;
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => continue,
            };
            if stack.is_empty() {
                roots += 1;
                if roots > 1 {
                    return Err(format!("a second root element at byte {lt}"));
                }
            }
            let tag = scan_tag(text, lt..after)?;
            let ns_len = ns.len();
            let mut declared = Vec::new();
            for a in &tag.attrs {
                let prefix = if a.name == "xmlns" {
                    ""
                } else if let Some(p) = a.name.strip_prefix("xmlns:") {
                    p
                } else {
                    continue;
                };
                let uri = unescape(&text[a.value.clone()])?;
                declared.push(uri.clone());
                ns.push((prefix.to_owned(), uri));
            }
            let (prefix, local) = split_qname(&tag.name);
            let uri = resolve(&ns, prefix).ok_or_else(|| format!("<{}> uses an undeclared namespace prefix at byte {lt}", tag.name))?;
            let is = |u: &str, l: &str| uri == u && local == l;
            let parent = stack.last_mut().map(|f| &mut f.role);
            let role = match parent {
                None | Some(Role::Other) if !rdf_open && rdf.is_none() && is(NS_RDF, "RDF") => {
                    rdf = Some(RdfInfo { qname: tag.name.clone(), start_tag: lt..after, self_closing: empty });
                    rdf_open = true;
                    Role::Rdf
                }
                None | Some(Role::Other) => Role::Other,
                Some(Role::Rdf) if is(NS_RDF, "Description") => {
                    let idx = descs.len();
                    for a in &tag.attrs {
                        if a.name == "xmlns" || a.name.starts_with("xmlns:") {
                            continue;
                        }
                        let (ap, al) = split_qname(&a.name);
                        let auri = if ap.is_empty() {
                            None
                        } else {
                            Some(resolve(&ns, ap).ok_or_else(|| format!("attribute {} uses an undeclared namespace prefix", a.name))?)
                        };
                        let prop = match (auri, al) {
                            (Some(NS_XMP), "Rating") => Prop::Rating,
                            (Some(NS_XMP), "Label") => Prop::Label,
                            (Some(NS_DIGIKAM), "PickLabel") => Prop::PickLabel,
                            _ => continue,
                        };
                        let value = unescape(&text[a.value.clone()])?;
                        occs.push(Occ { prop, desc: idx, loc: Loc::Attr { remove: a.ws_start..a.end, value: a.value.clone() }, value });
                    }
                    descs.push(Desc { name_end: tag.name_end, attrs: tag.attrs.clone(), scope: ns.clone(), declared: declared.clone() });
                    Role::Desc(idx)
                }
                Some(Role::Rdf) => Role::Opaque,
                Some(Role::Desc(d)) => {
                    let d = *d;
                    let prop = if is(NS_XMP, "Rating") {
                        Some(Prop::Rating)
                    } else if is(NS_XMP, "Label") {
                        Some(Prop::Label)
                    } else if is(NS_DIGIKAM, "PickLabel") {
                        Some(Prop::PickLabel)
                    } else {
                        None
                    };
                    match prop {
                        Some(prop) => Role::Prop { prop, desc: d, lt, content_start: after, complex: false, qname: tag.name.clone() },
                        None if is(NS_DARKTABLE, "colorlabels") => Role::DtProp,
                        None => Role::Opaque,
                    }
                }
                Some(Role::Prop { complex, .. }) => {
                    *complex = true;
                    Role::Opaque
                }
                Some(Role::DtProp) if cur_dt.is_none() && (is(NS_RDF, "Seq") || is(NS_RDF, "Bag") || is(NS_RDF, "Alt")) => {
                    let ws = ws_start_before(text, lt, 0);
                    cur_dt = Some(DtLabels { qname: tag.name.clone(), ws_before: text[ws..lt].to_owned(), ..Default::default() });
                    Role::DtSeq { lt, content_start: after, qname: tag.name.clone() }
                }
                Some(Role::DtSeq { content_start, .. }) if is(NS_RDF, "li") => {
                    let cs = *content_start;
                    if let Some(c) = cur_dt.as_mut()
                        && c.li_qname.is_none()
                    {
                        c.li_qname = Some(tag.name.clone());
                        c.li_ws = Some(text[ws_start_before(text, lt, cs)..lt].to_owned());
                    }
                    Role::DtLi { content_start: after }
                }
                Some(_) => Role::Opaque,
            };
            let frame = Frame { role, ns_len, name: tag.name };
            if empty {
                Self::close(text, frame, lt, after, true, &mut ns, &mut occs, &mut dt, &mut cur_dt, &mut rdf_open)?;
            } else {
                stack.push(frame);
            }
        }
        if let Some(f) = stack.last() {
            return Err(format!("truncated: <{}> is not closed", f.name));
        }
        if roots == 0 {
            return Err("no XML element".into());
        }
        let rdf = rdf.ok_or("no rdf:RDF element")?;
        Ok(Doc { rdf, descs, occs, dt })
    }

    /// Handles the end of an element: `end_lt..end_gt` is its end tag, or its empty-element tag.
    #[allow(clippy::too_many_arguments)]
    fn close(
        text: &str,
        frame: Frame,
        end_lt: usize,
        end_gt: usize,
        empty: bool,
        ns: &mut Vec<(String, String)>,
        occs: &mut Vec<Occ>,
        dt: &mut Vec<DtLabels>,
        cur_dt: &mut Option<DtLabels>,
        rdf_open: &mut bool,
    ) -> Result<(), String> {
        ns.truncate(frame.ns_len);
        match frame.role {
            Role::Rdf => *rdf_open = false,
            Role::Prop { prop, desc, lt, content_start, complex, qname } => {
                let inner = (!empty).then_some(content_start..end_lt);
                let value = match (&inner, complex) {
                    (Some(r), false) => text_value(&text[r.clone()])?,
                    _ => String::new(),
                };
                let remove = ws_start_before(text, lt, 0)..end_gt;
                let inner = if complex { None } else { inner };
                occs.push(Occ { prop, desc, loc: Loc::Elem { remove, whole: lt..end_gt, inner, qname }, value });
            }
            Role::DtSeq { lt, content_start, qname } => {
                if let Some(mut c) = cur_dt.take() {
                    c.whole = lt..end_gt;
                    c.qname = qname;
                    if !empty {
                        c.inner = Some(content_start..end_lt);
                        c.close_ws = text[ws_start_before(text, end_lt, content_start)..end_lt].to_owned();
                    }
                    dt.push(c);
                }
            }
            Role::DtLi { content_start } => {
                if !empty
                    && let Some(c) = cur_dt.as_mut()
                    && let Ok(v) = text_value(&text[content_start..end_lt])?.trim().parse::<i64>()
                {
                    c.values.push(v);
                }
            }
            Role::Other | Role::Desc(_) | Role::Opaque | Role::DtProp => {}
        }
        Ok(())
    }

    fn first(&self, prop: Prop) -> Option<&Occ> {
        self.occs.iter().find(|o| o.prop == prop)
    }

    fn decision(&self) -> Decision {
        let rating = self.first(Prop::Rating).and_then(|o| {
            let r: f64 = o.value.trim().parse().ok()?;
            (r.is_finite() && (-1.0..=5.0).contains(&r.round())).then(|| r.round() as i8)
        });
        let label = match self.first(Prop::Label) {
            Some(o) => ColorLabel::from_xmp_name(&o.value),
            None => self.dt.iter().flat_map(|d| d.values.iter()).find_map(|&i| ColorLabel::from_darktable_index(i)),
        };
        let pick = self.first(Prop::PickLabel).and_then(|o| match o.value.trim().parse::<u8>().ok()? {
            PICK_NONE | PICK_PENDING => Some(Pick::Unflagged),
            PICK_REJECTED => Some(Pick::Rejected),
            PICK_ACCEPTED => Some(Pick::Picked),
            _ => None,
        });
        Decision { rating, label, pick }
    }

    /// The top-level description new `xmp:` properties go to.
    fn xmp_target(&self) -> Option<usize> {
        self.occs
            .iter()
            .find(|o| matches!(o.prop, Prop::Rating | Prop::Label))
            .map(|o| o.desc)
            .or_else(|| self.descs.iter().position(|d| d.declared.iter().any(|u| u == NS_XMP)))
            .or_else(|| self.descs.iter().position(|d| d.scope.iter().any(|(_, u)| u == NS_XMP)))
            .or(if self.descs.is_empty() { None } else { Some(0) })
    }

    /// The top-level description a new `digiKam:PickLabel` goes to.
    fn pick_target(&self) -> Option<usize> {
        self.first(Prop::PickLabel)
            .map(|o| o.desc)
            .or_else(|| self.descs.iter().position(|d| d.declared.iter().any(|u| u == NS_DIGIKAM)))
            .or_else(|| self.xmp_target())
    }
}

// ---------------------------------------------------------------------------------------------
// Merging

struct Edit {
    range: Range<usize>,
    text: String,
}

struct NewProp {
    desc: Option<usize>,
    uri: &'static str,
    prefix: &'static str,
    local: &'static str,
    value: String,
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A prefix bound to `uri` at an element with `scope` (and not shadowed).
fn prefix_for<'a>(scope: &'a [(String, String)], uri: &str) -> Option<&'a str> {
    scope.iter().rev().map(|(p, _)| p.as_str()).find(|p| !p.is_empty() && resolve(scope, p) == Some(uri))
}

/// The separator to put before a new attribute after `a`: its own leading whitespace if that is a line
/// break and indentation, else one space.
fn sep_like(text: &str, a: Option<&Attr>) -> String {
    match a {
        Some(a) if text[a.ws_start..a.start].contains('\n') => text[a.ws_start..a.start].to_owned(),
        _ => " ".to_owned(),
    }
}

/// The edited text, or `None` when `old` and `new` mean the same in XMP.
fn merge(text: &str, doc: &Doc, old: XmpValues, new: XmpValues) -> Result<Option<String>, String> {
    let mut edits: Vec<Edit> = Vec::new();
    let mut inserts: Vec<NewProp> = Vec::new();
    let xmp_target = doc.xmp_target();

    let set = |prop: Prop, value: Option<String>, edits: &mut Vec<Edit>, inserts: &mut Vec<NewProp>, may_insert: bool| {
        let occs: Vec<&Occ> = doc.occs.iter().filter(|o| o.prop == prop).collect();
        match value {
            None => {
                for o in occs {
                    let remove = match &o.loc {
                        Loc::Attr { remove, .. } | Loc::Elem { remove, .. } => remove.clone(),
                    };
                    edits.push(Edit { range: remove, text: String::new() });
                }
            }
            Some(v) if occs.is_empty() => {
                if may_insert {
                    let (desc, uri, prefix, local) = match prop {
                        Prop::Rating => (xmp_target, NS_XMP, "xmp", "Rating"),
                        Prop::Label => (xmp_target, NS_XMP, "xmp", "Label"),
                        Prop::PickLabel => (doc.pick_target(), NS_DIGIKAM, "digiKam", "PickLabel"),
                    };
                    inserts.push(NewProp { desc, uri, prefix, local, value: v });
                }
            }
            Some(v) => {
                for o in occs {
                    match &o.loc {
                        Loc::Attr { value, .. } => edits.push(Edit { range: value.clone(), text: escape(&v) }),
                        Loc::Elem { inner: Some(inner), .. } => edits.push(Edit { range: inner.clone(), text: escape(&v) }),
                        Loc::Elem { inner: None, whole, qname, .. } => {
                            edits.push(Edit { range: whole.clone(), text: format!("<{qname}>{}</{qname}>", escape(&v)) })
                        }
                    }
                }
            }
        }
    };

    if old.rating != new.rating {
        set(Prop::Rating, new.rating.map(|r| r.to_string()), &mut edits, &mut inserts, true);
    }
    if old.label != new.label {
        // darktable's own labels: rewrite them; add xmp:Label only where darktable's labels are absent.
        let has_dt = !doc.dt.is_empty();
        set(Prop::Label, new.label.map(|l| l.xmp_name().to_owned()), &mut edits, &mut inserts, !has_dt);
        for d in &doc.dt {
            let wanted: Vec<i64> = new.label.map(|l| l.darktable_index() as i64).into_iter().collect();
            if d.values == wanted {
                continue;
            }
            let li = d.li_qname.clone().unwrap_or_else(|| {
                let (p, _) = split_qname(&d.qname);
                if p.is_empty() { "li".to_owned() } else { format!("{p}:li") }
            });
            let (li_ws, close_ws) = match (&d.li_ws, d.inner.is_some()) {
                (Some(ws), true) => (ws.clone(), d.close_ws.clone()),
                _ if d.ws_before.contains('\n') => (format!("{} ", d.ws_before), d.ws_before.clone()),
                _ => (String::new(), String::new()),
            };
            let q = &d.qname;
            let body: String = wanted.iter().map(|i| format!("{li_ws}<{li}>{i}</{li}>")).collect();
            match (&d.inner, wanted.is_empty()) {
                (_, true) => edits.push(Edit { range: d.whole.clone(), text: format!("<{q}/>") }),
                (Some(inner), false) => edits.push(Edit { range: inner.clone(), text: format!("{body}{close_ws}") }),
                (None, false) => edits.push(Edit { range: d.whole.clone(), text: format!("<{q}>{body}{close_ws}</{q}>") }),
            }
        }
    }
    if old.pick_label != new.pick_label {
        set(Prop::PickLabel, new.pick_label.map(|p| p.to_string()), &mut edits, &mut inserts, true);
    }

    // New attributes, grouped per description.
    let mut targets: Vec<Option<usize>> = inserts.iter().map(|p| p.desc).collect();
    targets.dedup();
    targets.sort();
    targets.dedup();
    for target in targets {
        let props: Vec<&NewProp> = inserts.iter().filter(|p| p.desc == target).collect();
        let empty_scope = Vec::new();
        let scope = target.map_or(&empty_scope, |d| &doc.descs[d].scope);
        let mut decls: Vec<(String, &str)> = Vec::new();
        let mut attrs: Vec<String> = Vec::new();
        for p in &props {
            let prefix = match prefix_for(scope, p.uri)
                .map(str::to_owned)
                .or_else(|| decls.iter().find(|(_, u)| *u == p.uri).map(|(q, _)| q.clone()))
            {
                Some(q) => q,
                None => {
                    let taken = |q: &str| resolve(scope, q).is_some() || decls.iter().any(|(d, _)| d == q);
                    let mut q = p.prefix.to_owned();
                    let mut n = 1;
                    while taken(&q) {
                        n += 1;
                        q = format!("{}{n}", p.prefix);
                    }
                    decls.push((q.clone(), p.uri));
                    q
                }
            };
            attrs.push(format!("{prefix}:{}=\"{}\"", p.local, escape(&p.value)));
        }
        match target {
            Some(d) => {
                let desc = &doc.descs[d];
                let last = desc.attrs.last();
                let last_ns = desc.attrs.iter().rev().find(|a| a.name == "xmlns" || a.name.starts_with("xmlns:"));
                let attr_at = last.map_or(desc.name_end, |a| a.end);
                let attr_sep = sep_like(text, last);
                let (ns_at, ns_sep) = match last_ns {
                    Some(a) => (a.end, sep_like(text, Some(a))),
                    None => (attr_at, attr_sep.clone()),
                };
                if !decls.is_empty() {
                    let t: String = decls.iter().map(|(q, u)| format!("{ns_sep}xmlns:{q}=\"{u}\"")).collect();
                    edits.push(Edit { range: ns_at..ns_at, text: t });
                }
                let t: String = attrs.iter().map(|a| format!("{attr_sep}{a}")).collect();
                edits.push(Edit { range: attr_at..attr_at, text: t });
            }
            None => {
                // No top-level description at all: add one to rdf:RDF.
                let (rp, _) = split_qname(&doc.rdf.qname);
                let r = if rp.is_empty() { String::new() } else { format!("{rp}:") };
                let decl: String = decls.iter().map(|(q, u)| format!(" xmlns:{q}=\"{u}\"")).collect();
                let body: String = attrs.iter().map(|a| format!(" {a}")).collect();
                let new_desc = format!("\n  <{r}Description {r}about=\"\"{decl}{body}/>\n");
                let st = doc.rdf.start_tag.clone();
                if doc.rdf.self_closing {
                    let open = text[st.clone()].trim_end_matches('>').trim_end_matches('/').trim_end();
                    edits.push(Edit { range: st, text: format!("{open}>{new_desc}</{}>", doc.rdf.qname) });
                } else {
                    edits.push(Edit { range: st.end..st.end, text: new_desc });
                }
            }
        }
    }

    if edits.is_empty() {
        return Ok(None);
    }
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut cursor = 0;
    for e in &edits {
        if e.range.start < cursor {
            return Err(format!("overlapping edits at byte {}", e.range.start));
        }
        out.push_str(&text[cursor..e.range.start]);
        out.push_str(&e.text);
        cursor = e.range.end;
    }
    out.push_str(&text[cursor..]);
    Ok(Some(out))
}
