//! Mail as a test receives it: a real SMTP server (PyPI `aiosmtpd`, which `./x test` installs
//! and points `MRBILL_AIOSMTPD` at) storing into a Maildir, and the code a message carries.

use std::path::Path;
use std::time::{Duration, Instant};

/// An SMTP server on a free loopback port, stopped when dropped.
pub struct SmtpReceiver {
    child: std::process::Child,
    maildir: std::path::PathBuf,
    pub port: u16,
}

impl SmtpReceiver {
    pub fn start() -> Self {
        let program = std::env::var("MRBILL_AIOSMTPD").unwrap_or_else(|_| "aiosmtpd".into());
        let maildir = std::env::temp_dir().join(format!("mrbill-maildir-{}", uuid::Uuid::new_v4()));
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("Maildir");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = std::process::Command::new(&program)
            .args(["-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: ./x test installs aiosmtpd ({e})"));
        let receiver = Self {
            child,
            maildir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        receiver
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The first message received that names `to`, waiting up to 10 s.
    pub async fn mail_to(&self, to: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(mail) = messages(&self.maildir.join("new"))
                .into_iter()
                .find(|m| m.contains(to))
            {
                return mail;
            }
            assert!(Instant::now() < deadline, "no mail to {to} arrived");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// Every message in a Maildir folder.
fn messages(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The code a reset or confirmation mail carries: its one indented line (quoted-printable soft
/// breaks undone).
pub fn code_in(mail: &str) -> String {
    let body = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("\r\n", "\n");
    body.lines()
        .find(|l| l.starts_with("    ") && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no code in {mail}"))
        .trim()
        .to_owned()
}
