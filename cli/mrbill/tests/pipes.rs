//! `mrbill` as a command in a shell pipeline: a reader that stops early (`mrbill status |
//! head -1`) ends the command quietly, never with a panic and a backtrace.

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let home = std::env::temp_dir().join(format!("mrbill-pipes-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    for args in [&["status"][..], &["completions", "bash"][..]] {
        // The reader is gone before anything is written: every write meets a broken pipe.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_mrbill"))
            .arg("--home")
            .arg(&home)
            .args(args)
            .env_remove("MRBILL_HOME")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("mrbill runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
    }
    let _ = std::fs::remove_dir_all(&home);
}
