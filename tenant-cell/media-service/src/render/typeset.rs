//! Typst as a library — used only by the `media-render` binary, which media-service runs per
//! document (so the service itself never maps Typst, its fonts or its caches): a template
//! (compiled in) plus one JSON data file in, a PDF with embedded fonts or PNG pages out.
//!
//! Fonts are parsed on the first document (tens of ms), not at start-up: an idle service keeps
//! their pages out of memory. The world is closed: the only files are `/main.typ` and `/data.json`, the only fonts those
//! embedded from `typst-assets` (Libertinus Serif, New Computer Modern, DejaVu Sans Mono), no
//! packages, no network, no system fonts — the same output on every machine.

use std::sync::LazyLock;

use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;

struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

static FONTS: LazyLock<Fonts> = LazyLock::new(|| {
    let fonts: Vec<Font> = typst_assets::fonts()
        .flat_map(|data| Font::iter(Bytes::new(data)))
        .collect();
    Fonts {
        book: LazyHash::new(FontBook::from_fonts(&fonts)),
        fonts,
    }
});

static LIBRARY: LazyLock<LazyHash<Library>> =
    LazyLock::new(|| LazyHash::new(Library::builder().build()));

fn file_id(path: &str) -> FileId {
    RootedPath::new(
        VirtualRoot::Project,
        VirtualPath::new(path).expect("a valid virtual path"),
    )
    .intern()
}

/// One compilation's files.
struct Job {
    main: Source,
    data_id: FileId,
    data: Bytes,
    today: Datetime,
}

impl World for Job {
    fn library(&self) -> &LazyHash<Library> {
        &LIBRARY
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &FONTS.book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.data_id {
            Ok(self.data.clone())
        } else if id == self.main.id() {
            Ok(Bytes::from_string(self.main.clone()))
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        FONTS.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        Some(self.today)
    }
}

/// Lays out `template` with `data` readable as `json("/data.json")`.
pub fn layout(template: &str, data: &serde_json::Value) -> anyhow::Result<PagedDocument> {
    let now = time::OffsetDateTime::now_utc();
    let job = Job {
        main: Source::new(file_id("/main.typ"), template.to_owned()),
        data_id: file_id("/data.json"),
        data: Bytes::new(serde_json::to_vec(data)?),
        today: Datetime::from_ymd(now.year(), now.month() as u8, now.day())
            .expect("today is a valid date"),
    };
    let result = typst::compile::<PagedDocument>(&job).output;
    // Compilation memoizes; without eviction the cache would grow with every distinct report.
    // Reports rarely repeat, so nothing is kept (every render costs what a new one costs).
    comemo::evict(0);
    result.map_err(|errors| anyhow::anyhow!("typesetting failed: {}", describe(&errors)))
}

fn describe(errors: &[SourceDiagnostic]) -> String {
    errors
        .iter()
        .map(|e| e.message.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The document as a PDF (fonts embedded and subset).
pub fn pdf(document: &PagedDocument) -> anyhow::Result<Vec<u8>> {
    typst_pdf::pdf(document, &typst_pdf::PdfOptions::default())
        .map_err(|errors| anyhow::anyhow!("PDF export failed: {}", describe(&errors)))
}

/// The documents media renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    /// `templates/report.typ`: the PDF report.
    Report,
    /// `templates/cards.typ`: the video's cards, one 640×360 pt page each.
    Cards,
}

impl Template {
    fn source(self) -> &'static str {
        match self {
            Template::Report => include_str!("../../templates/report.typ"),
            Template::Cards => include_str!("../../templates/cards.typ"),
        }
    }
}

/// `template` with `data` as a PDF.
pub fn render_pdf(template: Template, data: &serde_json::Value) -> anyhow::Result<Vec<u8>> {
    pdf(&layout(template.source(), data)?)
}

/// `template` with `data` as PNG pages at `pixel_per_pt`, written to `dir` as
/// `card-00000.png`, … (two threads); returns how many.
pub fn render_pngs(
    template: Template,
    data: &serde_json::Value,
    pixel_per_pt: f64,
    dir: &std::path::Path,
) -> anyhow::Result<usize> {
    let document = layout(template.source(), data)?;
    let pages = document.pages();
    let write = |offset: usize, pages: &[typst_layout::Page]| -> anyhow::Result<()> {
        for (i, page) in pages.iter().enumerate() {
            let png = typst_render::render(
                page,
                &typst_render::RenderOptions {
                    pixel_per_pt: typst::utils::Scalar::new(pixel_per_pt),
                    render_bleed: false,
                },
            )
            .encode_png()
            .map_err(|e| anyhow::anyhow!("PNG encoding failed: {e}"))?;
            std::fs::write(dir.join(format!("card-{:05}.png", offset + i)), png)?;
        }
        Ok(())
    };
    // Rasterising dominates; split the pages over two threads.
    let half = pages.len().div_ceil(2);
    let (a, b) = pages.split_at(half);
    std::thread::scope(|s| {
        let first = s.spawn(|| write(0, a));
        write(half, b)?;
        first
            .join()
            .map_err(|_| anyhow::anyhow!("a page renderer panicked"))?
    })?;
    Ok(pages.len())
}
