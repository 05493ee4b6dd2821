//! `cargo xtask <task>` (usually through `./x`): the project's one entry point for dev tasks.
//!
//! - `test`: fmt check, clippy, build every binary, start one Postgres cluster for the run, run
//!   the whole suite with nextest against it, stop the cluster.
//! - `dev`: `mrbill up` and the demo tenant (onboarded, admin registered, sample PoCs); prints
//!   where to look. `down`: `mrbill down`.

mod dev;
mod test;

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&args[1..]),
        Some("dev") => dev::run(&args[1..]),
        Some("down") => dev::down(),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|dev> [args]\n  test [nextest filters]   run lints and the whole test suite\n  dev                      run the platform locally\n  down                     stop it"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("x: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (xtask lives one level below it). Read at run time: with a target dir
/// shared between clones, the path baked in at compile time may be another clone's.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    manifest_dir
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// The cargo target dir in use (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo` with the same toolchain that runs us.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd`, failing with its name when it fails.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "`{}` failed ({status})", describe(cmd));
    Ok(())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Random hex secret from the OS.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
