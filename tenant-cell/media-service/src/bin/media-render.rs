//! `media-render`: typesets one media document with Typst, run by media-service as a child
//! process per job (the service never loads Typst itself). The document's data is JSON on
//! stdin; errors go to stderr with a non-zero exit.
//!
//! ```text
//! media-render pdf < report.json > report.pdf
//! media-render cards --out DIR [--pixel-per-pt 2] < cards.json   # DIR/card-00000.png, …
//! ```

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use media_service::render::typeset::{Template, render_pdf, render_pngs};

#[derive(Parser)]
#[command(
    name = "media-render",
    version,
    about = "Typesets a media-service document"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The PDF report (templates/report.typ) to stdout.
    Pdf,
    /// The video's cards (templates/cards.typ) as PNGs in `--out`.
    Cards {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2.0)]
        pixel_per_pt: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let data: serde_json::Value = serde_json::from_slice(&input)?;
    match cli.command {
        Command::Pdf => {
            let pdf = render_pdf(Template::Report, &data)?;
            std::io::stdout().lock().write_all(&pdf)?;
        }
        Command::Cards { out, pixel_per_pt } => {
            let n = render_pngs(Template::Cards, &data, pixel_per_pt, &out)?;
            println!("{n}");
        }
    }
    Ok(())
}
