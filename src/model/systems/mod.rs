//! The seed systems, selectable by id (issue 3, item 3; `../shared/PRODUCT.md` lists them).
//!
//! Every system is a column ([`column`]: Arch-1 from scratch or the ImageNet Lite0) with one
//! of the heads ([`crate::model::heads`]), wired as its paper describes:
//!
//! | id | wiring | input per photo (training / test) |
//! |---|---|---|
//! | SCNN | column -> head | 1 view (`I_l^r`, `I_g^w`, `I_g^c` or `I_g^p`, 256 then 224 crop) / 50 views, averaged |
//! | DCNN | global column (warp) ⊕ local column (random crop) -> head | 1 pair / 50 pairs |
//! | RDCNN-style, RDCNN-semantic | DCNN ⊕ a frozen column (a trained Style-SCNN's Arch-1 column, or the ImageNet Lite0) on the global view | as DCNN |
//! | DMA-stat | shared column on M patches -> statistics layer {min,max,median,mean} -> FC 256 -> head | bag of M=5 / 50 bags of 5 |
//! | DMA-fc | as DMA-stat with the sorting layer | as DMA-stat |
//! | DMA-ImgFu | average of DMA-fc and an ImageNet (Lite0) network on the warped photo | both inputs |
//! | MP-avg, MP-min, MP-ada | shared column -> head on each patch; image = mean of patch probabilities | P=5 aspect-preserving 224 crops (shorter side 256, flips) / 50 crops |
//! | THEME-EMD | padded full-resolution batch -> column layers before its first downsampling-by-tau -> ROI pooling or ROI align of the image region -> rest of the column -> adaptive (global) pooling; theme one-hot -> FC 256 -> ReLU, concatenated -> head | the photo (one of paper 003's mirror/corner crops in training) |
//! | ARP-MPEMD | as MP (per-patch K-bin distributions, averaged) | P=5 / 50 aspect-preserving crops |
//!
//! MP-avg/min/ada share one network and differ in their loss (paper 001); so do
//! ARP-MPEMD-avg/ada (paper 004). The trainer picks the loss; [`SystemId::loss_family`] says
//! which family applies.
//!
//! Choices where the papers leave room (and why):
//! - The Lite0 column's feature is its pooled 1280-d vector, not fc256: the pre-trained
//!   network has no fc256 and adding one would discard its training.
//! - DMA's "fully-connected layer" after the statistics/sorting layer (eq. 3, 6) produces a
//!   V = 256 feature (ReLU, dropout 0.5 in training) that the head reads; DMA also keeps a
//!   per-patch head on the column feature: stage 1 of its two-stage training trains it, and
//!   its outputs are the per-patch explanation.
//! - Test-time averaging happens in probability space (softmax / sigmoid), returned as
//!   logits again (`log p`, or `logit p` for sigmoid heads) so every head's `predict` reads
//!   the averaged prediction; quality heads average the score.
//! - An unknown theme is the all-zero one-hot (the theme FC contributes its bias only).
//!
//! Explanations (issue 3, item 6): multi-patch systems return every patch's own prediction
//! with its rectangle in the photo; full-image systems on a Lite0 column return a spatial
//! score map: the head applied to each position of the final feature map plus the
//! (position-independent) rest of the linear head, so the map's mean is exactly the
//! prediction (`SystemOutput::map`, [`System::explain`]).

pub mod column;
mod theme;

use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use image::RgbImage;

pub use column::{Column, ColumnKind, ColumnOut, load_lite0_into, patches_tensor};

use crate::model::aggregation::{Statistic, sorting_layer, statistics_layer};
use crate::model::heads::{Head, HeadKind, Prediction};
use crate::model::init::{Dropout, seeded_init};
use crate::model::views::{self, GlobalView, Patch, Rect};
use crate::rng::SeededRng;

/// The seed systems by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemId {
    Scnn,
    Dcnn,
    RdcnnStyle,
    RdcnnSemantic,
    DmaStat,
    DmaFc,
    DmaImgFu,
    MpAvg,
    MpMin,
    MpAda,
    ThemeEmd,
    ArpMpemd,
}

/// Which loss family a system trains with (the trainer chooses within it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossFamily {
    /// One prediction per image: cross-entropy / EMD / BCE / MSE by head.
    Image,
    /// Paper 001's MP_avg / MP_min / MP_ada on per-patch predictions.
    MultiPatch,
    /// Paper 004's MPEMD_avg / MPEMD_ada on per-patch distributions.
    MultiPatchEmd,
}

impl SystemId {
    pub const ALL: [SystemId; 12] = [
        SystemId::Scnn,
        SystemId::Dcnn,
        SystemId::RdcnnStyle,
        SystemId::RdcnnSemantic,
        SystemId::DmaStat,
        SystemId::DmaFc,
        SystemId::DmaImgFu,
        SystemId::MpAvg,
        SystemId::MpMin,
        SystemId::MpAda,
        SystemId::ThemeEmd,
        SystemId::ArpMpemd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Scnn => "SCNN",
            Self::Dcnn => "DCNN",
            Self::RdcnnStyle => "RDCNN-style",
            Self::RdcnnSemantic => "RDCNN-semantic",
            Self::DmaStat => "DMA-stat",
            Self::DmaFc => "DMA-fc",
            Self::DmaImgFu => "DMA-ImgFu",
            Self::MpAvg => "MP-avg",
            Self::MpMin => "MP-min",
            Self::MpAda => "MP-ada",
            Self::ThemeEmd => "THEME-EMD",
            Self::ArpMpemd => "ARP-MPEMD",
        }
    }

    /// Case-insensitive; `_` and `-` are interchangeable.
    pub fn parse(s: &str) -> Option<Self> {
        let norm = |x: &str| x.to_ascii_lowercase().replace('_', "-");
        let s = norm(s);
        Self::ALL.into_iter().find(|id| norm(id.name()) == s)
    }

    pub fn loss_family(self) -> LossFamily {
        match self {
            Self::MpAvg | Self::MpMin | Self::MpAda => LossFamily::MultiPatch,
            Self::ArpMpemd => LossFamily::MultiPatchEmd,
            _ => LossFamily::Image,
        }
    }

    /// The paper file in `../shared/seeds/`.
    pub fn paper(self) -> &'static str {
        match self {
            Self::Scnn | Self::Dcnn | Self::RdcnnStyle | Self::RdcnnSemantic => "002",
            Self::DmaStat | Self::DmaFc | Self::DmaImgFu => "000",
            Self::MpAvg | Self::MpMin | Self::MpAda => "001",
            Self::ThemeEmd => "003",
            Self::ArpMpemd => "004",
        }
    }
}

impl std::fmt::Display for SystemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// THEME-EMD's region pooling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoiKind {
    /// ROI max pooling (paper 003 eq. 1-3).
    Pool,
    /// ROI align with `samples x samples` bilinear samples per bin.
    Align { samples: usize },
}

/// A system as data: id, column, head and the sizes its paper gives.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemConfig {
    pub id: SystemId,
    pub column: ColumnKind,
    pub head: HeadKind,
    /// SCNN's normalized input (paper 002); DCNN-family columns use warp + local crop.
    pub view: GlobalView,
    /// Patches per photo in training: DMA's M, MP's and ARP-MPEMD's P.
    pub patches: usize,
    /// Test-time views (SCNN, DCNN) or bags (DMA): 50 in papers 002 and 000.
    pub test_groups: usize,
    /// Test-time patches per photo for MP / ARP-MPEMD (50 in paper 001).
    pub test_patches: usize,
    /// DMA's aggregation FC width V.
    pub aggregation_dim: usize,
    /// Number of themes for THEME-EMD's one-hot (AVA: 1397 challenges).
    pub themes: usize,
    pub roi: RoiKind,
    /// THEME-EMD: ROI output side; `None`: the column's default (Lite0: twice its standard
    /// map side there, as paper 003 doubles Inception's; Arch-1: its pool1 side, keeping fc1).
    pub roi_out: Option<usize>,
    /// THEME-EMD: photos whose longer side exceeds this are downscaled first (AVA's are <= 800).
    pub max_side: u32,
    pub dropout: f32,
}

impl SystemConfig {
    /// The paper's settings for `id` on `column` with `head`.
    pub fn new(id: SystemId, column: ColumnKind, head: HeadKind) -> Self {
        let patches = match id {
            SystemId::Scnn => 1,
            SystemId::Dcnn | SystemId::RdcnnStyle | SystemId::RdcnnSemantic => 2,
            _ => 5,
        };
        Self {
            id,
            column,
            head,
            view: GlobalView::Warp,
            patches,
            test_groups: 50,
            test_patches: 50,
            aggregation_dim: 256,
            themes: 1397,
            roi: RoiKind::Pool,
            roi_out: None,
            max_side: 800,
            dropout: 0.5,
        }
    }

    /// Side of the patches the column reads.
    pub fn patch_size(&self) -> u32 {
        self.column.input_size()
    }

    /// Side of the normalized input the 224 crops come from (256 for 224, paper 002).
    fn view_size(&self) -> u32 {
        self.patch_size() * 8 / 7
    }
}

/// Training (augmented, one group) or testing (the paper's test-time views).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Test,
}

/// One photo made ready for a system: its patches (grouped), or its THEME canvas.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub groups: usize,
    pub patches_per_group: usize,
    /// `groups * patches_per_group` patches, group-major.
    pub patches: Vec<Patch>,
    /// THEME-EMD: the photo (possibly downscaled and cropped to a multiple of tau) and its
    /// rectangle in the photo.
    pub full: Option<Patch>,
    /// THEME-EMD: theme index (`None`: unknown theme).
    pub theme: Option<usize>,
    /// The original photo's size.
    pub size: (u32, u32),
    /// DMA-ImgFu: the ImageNet network's input.
    pub extra: Option<Box<Prepared>>,
}

/// A batch of prepared photos as tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: usize,
    pub groups: usize,
    pub patches_per_group: usize,
    /// `(images * groups * patches_per_group, 3, S, S)`, image-major then group then patch.
    pub pixels: Option<Tensor>,
    /// Rectangle (in the photo) and flip of every patch, same order as `pixels`.
    pub rects: Vec<(Rect, bool)>,
    /// THEME-EMD: zero-padded canvas `(images, 3, Hc, Wc)`, each photo in its top-left corner.
    pub canvas: Option<Tensor>,
    /// THEME-EMD: each photo's region in canvas pixels and its rectangle in the photo.
    pub regions: Vec<crate::model::pooling::ImageRegion>,
    pub region_rects: Vec<Rect>,
    /// THEME-EMD: `(images, themes)` one-hot (all zero for an unknown theme).
    pub themes: Option<Tensor>,
    pub sizes: Vec<(u32, u32)>,
    pub extra: Option<Box<Batch>>,
}

/// What a system computes for a batch. `out` is the head's output count.
#[derive(Debug, Clone)]
pub struct SystemOutput {
    /// Image-level raw outputs `(images, out)` (logits, or the score for a quality head),
    /// after test-time averaging over groups. `Head::predict` reads them.
    pub raw: Tensor,
    /// Per-group raw outputs `(images * groups, out)` (what image-level losses take).
    pub group_raw: Tensor,
    /// Per-patch raw outputs `(images * groups, patches, out)`: MP-* and ARP-MPEMD losses take
    /// them; DMA's come from its per-patch head.
    pub patch_raw: Option<Tensor>,
    /// Spatial raw map `(images * groups, h, w, out)` whose spatial mean is `group_raw`;
    /// cell `(y, x)` covers its share of the view's rectangle.
    pub map: Option<Tensor>,
}

/// Where a share of the prediction came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionScore {
    /// In the photo's pixels (may extend past the photo for padded views).
    pub rect: Rect,
    pub prediction: Prediction,
    /// True for a feature-map cell, false for a patch.
    pub cell: bool,
}

#[derive(Debug, Clone)]
enum Network {
    /// SCNN (1 column), DCNN (2), RDCNN (2 + frozen).
    Global {
        columns: Vec<Column>,
        frozen: Option<Column>,
        head: Head,
    },
    Dma {
        column: Column,
        stats: bool,
        aggregate: Linear,
        dropout: Dropout,
        head: Head,
        patch_head: Head,
    },
    PerPatch {
        column: Column,
        head: Head,
    },
    Theme(theme::ThemeNet),
    Fused {
        dma: Box<System>,
        imagenet: Box<System>,
    },
}

/// A seed system: configuration and network.
#[derive(Debug, Clone)]
pub struct System {
    cfg: SystemConfig,
    net: Network,
}

impl System {
    /// Builds the network under `vb` (names: `global`, `local`, `frozen`, `column`,
    /// `aggregate`, `head`, `patch_head`, `theme_fc`, `dma.*`, `imagenet.*`).
    pub fn new(cfg: &SystemConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.column.feature_dim();
        let head = |vb: VarBuilder, dim: usize| Head::new(cfg.head.clone(), dim, vb.pp("head"));
        let net = match cfg.id {
            SystemId::Scnn => {
                Network::Global { columns: vec![Column::new(&cfg.column, vb.pp("global"))?], frozen: None, head: head(vb, d)? }
            }
            SystemId::Dcnn | SystemId::RdcnnStyle | SystemId::RdcnnSemantic => {
                let columns = vec![Column::new(&cfg.column, vb.pp("global"))?, Column::new(&cfg.column, vb.pp("local"))?];
                let frozen_kind = match cfg.id {
                    SystemId::RdcnnStyle => Some(style_column_for(&cfg.column)),
                    SystemId::RdcnnSemantic => Some(ColumnKind::Lite0),
                    _ => None,
                };
                let frozen = frozen_kind.as_ref().map(|k| Column::new(k, vb.pp("frozen"))).transpose()?;
                let dim = 2 * d + frozen_kind.as_ref().map_or(0, |k| k.feature_dim());
                Network::Global { columns, frozen, head: head(vb, dim)? }
            }
            SystemId::DmaStat | SystemId::DmaFc => {
                let stats = cfg.id == SystemId::DmaStat;
                let agg_in = if stats { Statistic::DMA.len() * d } else { cfg.patches * d };
                Network::Dma {
                    column: Column::new(&cfg.column, vb.pp("column"))?,
                    stats,
                    aggregate: candle_nn::linear(agg_in, cfg.aggregation_dim, vb.pp("aggregate"))?,
                    dropout: Dropout::for_path(cfg.dropout, &vb.pp("aggregate").prefix()),
                    head: head(vb.clone(), cfg.aggregation_dim)?,
                    patch_head: Head::new(cfg.head.clone(), d, vb.pp("patch_head"))?,
                }
            }
            SystemId::DmaImgFu => {
                let dma_cfg = SystemConfig { id: SystemId::DmaFc, ..cfg.clone() };
                let img_cfg = SystemConfig {
                    id: SystemId::Scnn,
                    column: ColumnKind::Lite0,
                    view: GlobalView::Warp,
                    patches: 1,
                    test_groups: cfg.test_groups.min(10),
                    ..cfg.clone()
                };
                Network::Fused {
                    dma: Box::new(System::new(&dma_cfg, vb.pp("dma"))?),
                    imagenet: Box::new(System::new(&img_cfg, vb.pp("imagenet"))?),
                }
            }
            SystemId::MpAvg | SystemId::MpMin | SystemId::MpAda | SystemId::ArpMpemd => {
                if cfg.id == SystemId::ArpMpemd && !matches!(cfg.head, HeadKind::Distribution { .. }) {
                    candle_core::bail!("ARP-MPEMD predicts score distributions: it needs a distribution head, not {:?}", cfg.head);
                }
                Network::PerPatch { column: Column::new(&cfg.column, vb.pp("column"))?, head: head(vb, d)? }
            }
            SystemId::ThemeEmd => Network::Theme(theme::ThemeNet::new(cfg, vb)?),
        };
        Ok(Self { cfg: cfg.clone(), net })
    }

    /// Builds the system with fresh variables in `varmap`, initialised from `seed`
    /// ([`crate::model::init::seeded_init`]), and copies the ImageNet weights (`lite0`,
    /// sha256-verified) into every pre-trained column.
    pub fn build(
        cfg: &SystemConfig,
        varmap: &VarMap,
        dtype: DType,
        device: &Device,
        lite0: &std::path::Path,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let sys = Self::new(cfg, VarBuilder::from_varmap(varmap, dtype, device))?;
        let pretrained = sys.pretrained_prefixes();
        seeded_init(varmap, &pretrained, seed)?;
        for prefix in &pretrained {
            load_lite0_into(varmap, prefix, lite0)?;
        }
        Ok(sys)
    }

    pub fn config(&self) -> &SystemConfig {
        &self.cfg
    }

    /// Restarts every dropout stream of the network from `seed` (each layer keyed by its
    /// place): a trainer calls this before each step with a value derived from the run's seed
    /// and the step, so a run resumed from a checkpoint draws the masks the uninterrupted run
    /// drew.
    pub fn reseed_dropout(&self, seed: u64) {
        let mix = |i: u64| seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match &self.net {
            Network::Global { columns, frozen, .. } => {
                for (i, c) in columns.iter().chain(frozen.iter()).enumerate() {
                    c.reseed_dropout(mix(i as u64 + 1));
                }
            }
            Network::Dma { column, dropout, .. } => {
                column.reseed_dropout(mix(1));
                dropout.reseed(mix(2));
            }
            Network::PerPatch { column, .. } => column.reseed_dropout(mix(1)),
            Network::Theme(net) => net.reseed_dropout(mix(1)),
            Network::Fused { dma, imagenet } => {
                dma.reseed_dropout(mix(3));
                imagenet.reseed_dropout(mix(4));
            }
        }
    }

    pub fn head_kind(&self) -> &HeadKind {
        &self.cfg.head
    }

    /// Variable-name prefixes of the columns that start from ImageNet weights.
    pub fn pretrained_prefixes(&self) -> Vec<String> {
        let lite = matches!(self.cfg.column, ColumnKind::Lite0);
        match &self.net {
            Network::Global { columns, frozen, .. } => {
                let mut v = Vec::new();
                if lite {
                    v.push("global".to_string());
                    if columns.len() > 1 {
                        v.push("local".to_string());
                    }
                }
                if matches!(frozen, Some(Column::Lite0(_))) {
                    v.push("frozen".to_string());
                }
                v
            }
            Network::Dma { .. } | Network::PerPatch { .. } | Network::Theme(_) => {
                if lite {
                    vec!["column".to_string()]
                } else {
                    vec![]
                }
            }
            Network::Fused { dma, imagenet } => {
                let mut v: Vec<String> = dma.pretrained_prefixes().into_iter().map(|p| format!("dma.{p}")).collect();
                v.extend(imagenet.pretrained_prefixes().into_iter().map(|p| format!("imagenet.{p}")));
                v
            }
        }
    }

    /// Prefixes of variables that never train (RDCNN's frozen column): the trainer leaves
    /// them out, and the forward pass detaches their output.
    pub fn frozen_prefixes(&self) -> Vec<String> {
        match &self.net {
            Network::Global { frozen: Some(_), .. } => vec!["frozen".to_string()],
            _ => vec![],
        }
    }

    /// Makes one photo ready: the views or patches its paper uses, seeded by `rng`.
    pub fn prepare(&self, img: &RgbImage, mode: Mode, rng: &mut SeededRng) -> Prepared {
        let cfg = &self.cfg;
        let (s, vs) = (cfg.patch_size(), cfg.view_size());
        let train = mode == Mode::Train;
        let groups = if train { 1 } else { cfg.test_groups.max(1) };
        let mut out =
            Prepared { groups, patches_per_group: 1, patches: Vec::new(), full: None, theme: None, size: img.dimensions(), extra: None };
        match &self.net {
            Network::Global { columns, .. } => {
                out.patches_per_group = columns.len();
                let kinds: Vec<GlobalView> =
                    if columns.len() == 1 { vec![cfg.view] } else { vec![GlobalView::Warp, GlobalView::LocalRandomCrop] };
                for _ in 0..groups {
                    for &k in &kinds {
                        out.patches.push(views::random_crop(&views::normalized_input(img, k, vs, rng), s, false, rng));
                    }
                }
            }
            Network::Dma { .. } => {
                out.patches_per_group = cfg.patches;
                for _ in 0..groups {
                    out.patches.extend(views::random_patches(img, s, cfg.patches, rng));
                }
            }
            Network::PerPatch { .. } => {
                out.groups = 1;
                out.patches_per_group = if train { cfg.patches } else { cfg.test_patches.max(1) };
                out.patches = views::arp_crops(img, vs, s, out.patches_per_group, train, rng);
            }
            Network::Theme(net) => {
                out.groups = 1;
                out.patches_per_group = 0;
                out.full = Some(net.prepare(img, train, rng));
            }
            Network::Fused { dma, imagenet } => {
                out = dma.prepare(img, mode, rng);
                out.extra = Some(Box::new(imagenet.prepare(img, mode, rng)));
            }
        }
        out
    }

    /// Stacks prepared photos (all from this system, same mode) into a batch on `device`.
    pub fn collate(&self, items: &[Prepared], device: &Device) -> Result<Batch> {
        let Some(first) = items.first() else { candle_core::bail!("empty batch") };
        let (groups, ppg) = (first.groups, first.patches_per_group);
        if items.iter().any(|p| p.groups != groups || p.patches_per_group != ppg) {
            candle_core::bail!("photos prepared in different modes cannot share a batch");
        }
        let mut batch = Batch {
            images: items.len(),
            groups,
            patches_per_group: ppg,
            pixels: None,
            rects: Vec::new(),
            canvas: None,
            regions: Vec::new(),
            region_rects: Vec::new(),
            themes: None,
            sizes: items.iter().map(|p| p.size).collect(),
            extra: None,
        };
        if ppg > 0 {
            let imgs: Vec<&RgbImage> = items.iter().flat_map(|p| p.patches.iter().map(|q| &q.image)).collect();
            batch.pixels = Some(patches_tensor(&imgs, DType::F32, device)?);
            batch.rects = items.iter().flat_map(|p| p.patches.iter().map(|q| (q.rect, q.flipped))).collect();
        }
        if let Network::Theme(net) = &self.net {
            net.collate(items, &mut batch, device)?;
        }
        if let Network::Fused { imagenet, .. } = &self.net {
            let extra: Vec<Prepared> =
                items.iter().map(|p| p.extra.as_deref().cloned()).collect::<Option<_>>().ok_or_else(|| {
                    candle_core::Error::Msg("DMA-ImgFu needs the ImageNet network's input (prepare with this system)".into())
                })?;
            batch.extra = Some(Box::new(imagenet.collate(&extra, device)?));
        }
        Ok(batch)
    }

    /// Runs the network. `train` switches dropout and BatchNorm's batch statistics.
    pub fn forward_t(&self, batch: &Batch, train: bool) -> Result<SystemOutput> {
        let kind = &self.cfg.head;
        let pixels = || batch.pixels.as_ref().ok_or_else(|| candle_core::Error::Msg("this system needs patches in the batch".into()));
        let (images, groups, ppg) = (batch.images, batch.groups, batch.patches_per_group);
        let rows = images * groups;
        match &self.net {
            Network::Global { columns, frozen, head } => {
                let x = pixels()?;
                let (_, c, h, w) = x.dims4()?;
                let x = x.reshape((rows, columns.len(), c, h, w))?;
                let mut feats = Vec::new();
                let mut first_map = None;
                for (i, col) in columns.iter().enumerate() {
                    let o = col.forward_t(&x.narrow(1, i, 1)?.squeeze(1)?, train)?;
                    if i == 0 {
                        first_map = o.map;
                    }
                    feats.push(o.pooled);
                }
                // Frozen: evaluation mode and no gradient into it.
                let extra = frozen
                    .as_ref()
                    .map(|f| Ok::<_, candle_core::Error>(f.forward_t(&x.narrow(1, 0, 1)?.squeeze(1)?, false)?.pooled.detach()))
                    .transpose()?;
                let mut out = self.after_columns(&Tensor::stack(&feats, 1)?, extra.as_ref(), images, groups, train)?;
                if let Some(m) = first_map {
                    out.map = Some(linear_map(head, &m, &feats[0], &out.group_raw)?);
                }
                Ok(out)
            }
            Network::Dma { column, .. } | Network::PerPatch { column, .. } => {
                let f = column.forward_t(pixels()?, train)?.pooled;
                let d = f.dim(1)?;
                self.after_columns(&f.reshape((rows, ppg, d))?, None, images, groups, train)
            }
            Network::Theme(net) => {
                let (group_raw, map) = net.forward_t(batch, train)?;
                Ok(SystemOutput { raw: group_raw.clone(), group_raw, patch_raw: None, map })
            }
            Network::Fused { dma, imagenet } => {
                let extra =
                    batch.extra.as_deref().ok_or_else(|| candle_core::Error::Msg("DMA-ImgFu batch lacks its ImageNet input".into()))?;
                let a = dma.forward_t(batch, train)?;
                let b = imagenet.forward_t(extra, train)?;
                let raw = average_raw(kind, &Tensor::stack(&[&a.raw, &b.raw], 1)?)?;
                Ok(SystemOutput { group_raw: raw.clone(), raw, patch_raw: a.patch_raw, map: b.map })
            }
        }
    }

    /// Whether [`Self::forward_features`] applies: systems whose trainable part after a
    /// frozen column sees only the column's pooled features (SCNN, DCNN, DMA-stat/fc,
    /// MP-*, ARP-MPEMD). RDCNN, THEME-EMD and DMA-ImgFu need their full forward pass.
    pub fn supports_cached_features(&self) -> bool {
        matches!(&self.net, Network::Global { frozen: None, .. } | Network::Dma { .. } | Network::PerPatch { .. })
    }

    /// Everything after the column(s), on column features `(images * groups, P, D)` computed
    /// once with the column frozen: the small-data variant of every system that allows it
    /// (features from a cache, only the aggregation and head train). For SCNN P = 1, for
    /// DCNN P = 2 (global, local), for DMA and the multi-patch systems P = the patches.
    pub fn forward_features(&self, feats: &Tensor, images: usize, groups: usize, train: bool) -> Result<SystemOutput> {
        if !self.supports_cached_features() {
            candle_core::bail!("{} cannot train on cached column features", self.cfg.id);
        }
        self.after_columns(feats, None, images, groups, train)
    }

    fn after_columns(&self, feats: &Tensor, extra: Option<&Tensor>, images: usize, groups: usize, train: bool) -> Result<SystemOutput> {
        let kind = &self.cfg.head;
        let (rows, p, d) = feats.dims3()?;
        if rows != images * groups {
            candle_core::bail!("{rows} feature rows for {images} photos x {groups} groups");
        }
        match &self.net {
            Network::Global { columns, head, .. } => {
                if p != columns.len() {
                    candle_core::bail!("{} takes {} column features per view, got {p}", self.cfg.id, columns.len());
                }
                let mut parts = vec![feats.reshape((rows, p * d))?];
                parts.extend(extra.cloned());
                let group_raw = head.forward(&Tensor::cat(&parts, 1)?)?;
                Ok(SystemOutput { raw: average_groups(kind, &group_raw, images, groups)?, group_raw, patch_raw: None, map: None })
            }
            Network::Dma { stats, aggregate, dropout, head, patch_head, .. } => {
                if !stats && p != self.cfg.patches {
                    candle_core::bail!("DMA-fc was built for bags of {} patches, got {p}", self.cfg.patches);
                }
                let agg = if *stats { statistics_layer(feats, &Statistic::DMA)? } else { sorting_layer(feats)? };
                let v = dropout.forward_t(&aggregate.forward(&agg)?.relu()?, train)?;
                let group_raw = head.forward(&v)?;
                let patch_raw = patch_head.forward(feats)?;
                Ok(SystemOutput {
                    raw: average_groups(kind, &group_raw, images, groups)?,
                    group_raw,
                    patch_raw: Some(patch_raw),
                    map: None,
                })
            }
            Network::PerPatch { head, .. } => {
                let patch_raw = head.forward(feats)?;
                let group_raw = average_raw(kind, &patch_raw)?;
                Ok(SystemOutput {
                    raw: average_groups(kind, &group_raw, images, groups)?,
                    group_raw,
                    patch_raw: Some(patch_raw),
                    map: None,
                })
            }
            _ => candle_core::bail!("{} has no column-feature stage", self.cfg.id),
        }
    }

    /// The per-patch predictions and map cells of photo `image` in `batch`, with their
    /// rectangles in the photo: what the app's heatmap draws.
    pub fn explain(&self, batch: &Batch, out: &SystemOutput, image: usize) -> Result<Vec<RegionScore>> {
        let head = self.pred_head();
        let mut v = Vec::new();
        let (g, p) = (batch.groups, batch.patches_per_group);
        let rects = &batch.rects;
        if let Some(pr) = &out.patch_raw {
            let od = pr.dim(2)?;
            for gi in 0..g {
                let row = image * g + gi;
                let preds = head.predict(&pr.get(row)?.reshape((p, od))?)?;
                for (pi, prediction) in preds.into_iter().enumerate() {
                    v.push(RegionScore { rect: rects[row * p + pi].0, prediction, cell: false });
                }
            }
        }
        if let Some(map) = &out.map {
            let (view_rects, groups): (Vec<(Rect, bool)>, usize) = match &self.net {
                Network::Theme(_) => (vec![(batch.region_rects[image], false)], 1),
                Network::Fused { .. } => {
                    let e = batch.extra.as_deref().ok_or_else(|| candle_core::Error::Msg("missing ImageNet input".into()))?;
                    let per = e.groups * e.patches_per_group;
                    ((0..e.groups).map(|gi| e.rects[image * per + gi * e.patches_per_group]).collect(), e.groups)
                }
                _ => ((0..g).map(|gi| rects[(image * g + gi) * p]).collect(), g),
            };
            let (_, h, w, od) = map.dims4()?;
            for (gi, (rect, flipped)) in view_rects.into_iter().enumerate() {
                let cells = map.get(image * groups + gi)?.reshape((h * w, od))?;
                let preds = head.predict(&cells)?;
                for (i, prediction) in preds.into_iter().enumerate() {
                    let (y, mut x) = (i / w, i % w);
                    if flipped {
                        x = w - 1 - x;
                    }
                    let (cw, ch) = (rect.w / w as f64, rect.h / h as f64);
                    let r = Rect { x: rect.x + x as f64 * cw, y: rect.y + y as f64 * ch, w: cw, h: ch };
                    v.push(RegionScore { rect: r, prediction, cell: true });
                }
            }
        }
        Ok(v)
    }

    /// Predictions of the image-level outputs, one per photo.
    pub fn predict(&self, out: &SystemOutput) -> Result<Vec<Prediction>> {
        self.pred_head().predict(&out.raw)
    }

    fn pred_head(&self) -> &Head {
        match &self.net {
            Network::Global { head, .. } | Network::Dma { head, .. } | Network::PerPatch { head, .. } => head,
            Network::Theme(n) => n.head(),
            Network::Fused { imagenet, .. } => imagenet.pred_head(),
        }
    }
}

/// RDCNN-style's frozen column for aesthetic columns of kind `column`: the Style-SCNN's Arch-1
/// style column (32 filters in conv2/conv3, paper 000 sec. 5.1) at the columns' input size;
/// for the reduced `arch1-small` columns, an `arch1-small` column (already 32 filters).
pub fn style_column_for(column: &ColumnKind) -> ColumnKind {
    use crate::model::column::Arch1Config;
    match column {
        ColumnKind::Arch1(c) if *c == Arch1Config::small() => ColumnKind::Arch1(Arch1Config::small()),
        _ => ColumnKind::Arch1(Arch1Config::style_quality()),
    }
}

/// Exact spatial decomposition of a linear head on `[pooled, rest...]`: the head's part for
/// `pooled` applied at each position of `map` plus everything else (bias, other features).
/// Its spatial mean is `raw`.
pub(crate) fn linear_map(head: &Head, map: &Tensor, pooled: &Tensor, raw: &Tensor) -> Result<Tensor> {
    let d = pooled.dim(1)?;
    let w = head.weight().narrow(1, 0, d)?; // (out, d)
    let (n, h, wd, _) = map.dims4()?;
    let out = w.dim(0)?;
    let wt = w.t()?;
    let cells = map.reshape((n * h * wd, d))?.matmul(&wt)?.reshape((n, h, wd, out))?;
    let rest = (raw - pooled.matmul(&wt)?)?; // (n, out)
    cells.broadcast_add(&rest.reshape((n, 1, 1, out))?)
}

/// Averages raw outputs `(N, G, out)` over `G` in the head's probability space and returns
/// raw outputs again `(N, out)`: `log(mean softmax)` for softmax heads, `logit(mean sigmoid)`
/// for multi-label heads, the mean for a quality score.
pub fn average_raw(kind: &HeadKind, x: &Tensor) -> Result<Tensor> {
    if x.dim(1)? == 1 {
        return x.squeeze(1);
    }
    match kind {
        HeadKind::Binary | HeadKind::Distribution { .. } => {
            let p = candle_nn::ops::softmax(x, D::Minus1)?.mean(1)?;
            p.clamp(1e-12f32, 1f32)?.log()
        }
        HeadKind::Styles { .. } => {
            let p = candle_nn::ops::sigmoid(x)?.mean(1)?.clamp(1e-6f32, 1.0 - 1e-6f32)?;
            p.log()? - (1.0 - &p)?.log()?
        }
        HeadKind::Quality => x.mean(1),
    }
}

fn average_groups(kind: &HeadKind, group_raw: &Tensor, images: usize, groups: usize) -> Result<Tensor> {
    let out = group_raw.dim(1)?;
    average_raw(kind, &group_raw.reshape((images, groups, out))?)
}
