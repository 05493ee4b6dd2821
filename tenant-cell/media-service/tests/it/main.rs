//! media-service integration tests: the real media-service and poc-service (PoC data, tokens,
//! revocation) on port 0, real Postgres, real ffmpeg/ffprobe and poppler (`pdftotext`,
//! `pdftoppm`, `pdffonts`) checking the files.

mod fuzz;
mod harness;
mod jobs;
mod reports;
mod trust;
mod videos;
