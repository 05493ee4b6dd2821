//! A whole local platform for one test: its own `MRBILL_HOME`, driven through the real `mrbill`
//! CLI, `mrbill-control-plane`, `mrbill-router`, cell supervisors and `poc-service`.
//!
//! `Drop` runs `mrbill down` and removes the home; a detached watcher does the same if the test
//! process dies without unwinding, so no Postgres or service outlives a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::ApiClient;

use crate::{PASSWORD, bin};

pub struct Platform {
    pub home: PathBuf,
    /// The router's base URL.
    pub router: String,
    /// A size-limited filesystem under the home (unmounted once the platform is down).
    disk: Option<crate::disk::Bounded>,
}

/// What a `mrbill` run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "mrbill failed: {}\n{}",
            self.stderr, self.stdout
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Asserts a failure with this exit code and error code, on one line of stderr.
    pub fn assert_failure(&self, exit: i32, code: &str) {
        assert_eq!(
            self.code, exit,
            "expected exit {exit} ({code}); stderr: {}",
            self.stderr
        );
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with("error["))
            .unwrap_or_else(|| panic!("no error line in: {}", self.stderr));
        assert!(
            line.starts_with(&format!("error[{code}]")),
            "expected {code}: {line}"
        );
        assert!(line.contains("hint:"), "no hint: {line}");
    }
}

impl Platform {
    /// `mrbill up` in a fresh home.
    pub fn up() -> Self {
        Self::up_with(&[])
    }

    /// `mrbill up` with extra environment for the control plane (e.g. `MRBILL_PLACEMENTS`).
    pub fn up_with(env: &[(&str, &str)]) -> Self {
        Self::up_with_flags(&[], env)
    }

    /// `mrbill up <flags>` (e.g. `--with-traces`) with extra environment.
    pub fn up_with_flags(flags: &[&str], env: &[(&str, &str)]) -> Self {
        let home = tempfile::Builder::new()
            .prefix("mrbill-e2e-")
            .tempdir_in("/tmp")
            .expect("home dir")
            .keep();
        // Postgres runs as an unprivileged user and must traverse into the home.
        set_mode(&home, 0o755);
        spawn_watcher(&home);
        let mut platform = Self {
            home,
            router: String::new(),
            disk: None,
        };
        let mut args = vec!["up", "--router-addr", "127.0.0.1:0", "-o", "json"];
        args.extend_from_slice(flags);
        let up = platform.mrbill_env(&args, env);
        platform.router = up.json()["router"].as_str().expect("router url").to_owned();
        platform
    }

    /// Runs `mrbill` with this platform's home.
    pub fn mrbill(&self, args: &[&str]) -> Run {
        self.mrbill_env(args, &[])
    }

    /// [`Platform::mrbill`] with extra environment.
    pub fn mrbill_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(bin("mrbill"));
        cmd.args(args)
            .env("MRBILL_HOME", &self.home)
            .env("MRBILL_BIN_DIR", test_support::bin_dir())
            .env("MRBILL_HEALTH_INTERVAL_MS", "200")
            .env_remove("MRBILL_CONTROL_PLANE_URL")
            .env_remove("MRBILL_OPERATOR_TOKEN_FILE")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out: Output = cmd.output().expect("run mrbill");
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains("error[internal]") {
            // What the hint points at, so a failure in CI explains itself.
            stderr.push_str(&self.log_tail("control-plane", 40));
        }
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    }

    /// The last `lines` lines of `MRBILL_HOME/logs/<name>.log`, headed by the file's name.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let path = self.home.join("logs").join(format!("{name}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        let body: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "\n--- {} (last {lines} lines)\n{}\n",
            path.display(),
            body.join("\n")
        )
    }

    /// Onboards `slug` (email domain `<slug>.example`) and waits until its cell is ready.
    pub fn create_tenant(&self, slug: &str) -> Value {
        let domain = format!("{slug}.example");
        let tenant = self
            .mrbill(&[
                "tenant",
                "create",
                slug,
                "--name",
                &format!("{slug} Inc."),
                "--admin-email",
                &format!("admin@{domain}"),
                "--email-domain",
                &domain,
                "-o",
                "json",
            ])
            .json();
        assert_eq!(tenant["cell"]["status"]["phase"], "Ready", "{tenant:#}");
        tenant
    }

    pub fn tenant(&self, slug: &str) -> Value {
        self.mrbill(&["tenant", "show", slug, "-o", "json"]).json()
    }

    /// The router's base URL.
    pub fn router_url(&self) -> &str {
        &self.router
    }

    /// The tenant's endpoint through the router.
    pub fn api(&self, slug: &str) -> ApiClient {
        ApiClient::new(format!("{}/t/{slug}", self.router))
    }

    /// Registers the tenant's bootstrap admin with its invite and returns an access token.
    pub async fn admin_token(&self, tenant: &Value) -> String {
        let slug = tenant["slug"].as_str().expect("slug");
        let invite = &tenant["admin_invite"];
        let email = invite["email"].as_str().expect("invite email");
        let api = self.api(slug);
        api.post(
            "/v1/auth/register",
            &json!({ "email": email, "password": PASSWORD, "invite_token": invite["invite_token"] }),
        )
        .await
        .assert_status(201);
        let login = api
            .post(
                "/v1/auth/login",
                &json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        login.assert_status(200)["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Invites a member into `slug` with the admin's token and registers them as `email`:
    /// the registration's answer (its `access_token` among the rest).
    pub async fn invite_member(&self, slug: &str, admin: &str, email: &str) -> Value {
        let api = self.api(slug);
        let invite = api
            .with_token(admin)
            .post("/v1/invites", &json!({ "role": "member" }))
            .await;
        let token = invite.assert_status(201)["token"]
            .as_str()
            .expect("invite token")
            .to_owned();
        api.post(
            "/v1/auth/register",
            &json!({ "email": email, "password": PASSWORD, "invite_token": token }),
        )
        .await
        .assert_status(201)
        .clone()
    }

    /// Puts the cells of `placement` made from now on a filesystem of `bytes` (the full-disk
    /// fault fills it); kept until the platform is down.
    pub fn bound_cells(&mut self, placement: &str, bytes: u64) -> &crate::disk::Bounded {
        let cells = self.home.join("placements").join(placement).join("cells");
        self.disk.insert(crate::disk::Bounded::mount(&cells, bytes))
    }

    /// The filesystem [`Platform::bound_cells`] mounted.
    pub fn disk(&self) -> Option<&crate::disk::Bounded> {
        self.disk.as_ref()
    }

    /// The directory of a cell on the default placement (`local`).
    pub fn cell_dir(&self, cell_id: &str) -> PathBuf {
        self.cell_dir_on("local", cell_id)
    }

    pub fn cell_dir_on(&self, placement: &str, cell_id: &str) -> PathBuf {
        self.home
            .join("placements")
            .join(placement)
            .join("cells")
            .join(cell_id)
    }

    /// Pid of a running control plane, router (by ready file).
    pub fn pid(&self, ready: &str) -> Option<u32> {
        let v: Value = serde_json::from_slice(&std::fs::read(self.home.join(ready)).ok()?).ok()?;
        let pid = v["pid"].as_u64()? as u32;
        pid_alive(pid).then_some(pid)
    }

    pub fn control_plane_pid(&self) -> Option<u32> {
        self.pid("control-plane/ready.json")
    }

    pub fn router_pid(&self) -> Option<u32> {
        self.pid("router/ready.json")
    }

    /// Pid of the keeper that restarts the control plane and the router.
    pub fn keeper_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.home.join("keeper.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        pid_alive(pid).then_some(pid)
    }

    /// Starts the control plane by hand (e.g. with `--crash-after-step`), waits until it listens.
    pub fn start_control_plane(&self, args: &[&str]) -> std::process::Child {
        let _ = std::fs::remove_file(self.home.join("control-plane/ready.json"));
        let log = std::fs::File::create(self.home.join("logs/control-plane-manual.log"))
            .expect("log file");
        let child = Command::new(bin("mrbill-control-plane"))
            .args(args)
            .env("MRBILL_HOME", &self.home)
            .env("MRBILL_BIN_DIR", test_support::bin_dir())
            .env("MRBILL_PUBLIC_URL", &self.router)
            .env("MRBILL_HEALTH_INTERVAL_MS", "200")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the control plane");
        wait_until(
            Duration::from_secs(60),
            "the control plane to listen",
            || self.control_plane_pid().is_some(),
        );
        child
    }

    /// Stops the running control plane and starts one that exits (86) right after `op_step`.
    pub fn restart_control_plane_crashing_after(&self, op_step: &str) -> std::process::Child {
        let cp = self.control_plane_pid().expect("control plane runs");
        kill(cp, "TERM");
        wait_until(Duration::from_secs(30), "the control plane to stop", || {
            !pid_alive(cp)
        });
        self.start_control_plane(&["serve", "--crash-after-step", op_step])
    }

    /// Stops the running control plane and starts one that waits after `op_step` until another
    /// operation replaces the current one.
    pub fn restart_control_plane_pausing_after(&self, op_step: &str) -> std::process::Child {
        let cp = self.control_plane_pid().expect("control plane runs");
        kill(cp, "TERM");
        wait_until(Duration::from_secs(30), "the control plane to stop", || {
            !pid_alive(cp)
        });
        self.start_control_plane(&["serve", "--pause-after-step", op_step])
    }

    /// Starts the router by hand, exactly as `mrbill up` does (detached; `mrbill down` stops it).
    #[allow(clippy::zombie_processes)]
    pub fn start_router(&self) {
        let log = std::fs::File::create(self.home.join("logs/router-manual.log")).expect("log");
        let _ = std::fs::remove_file(self.home.join("router/ready.json"));
        Command::new(cell_model::local::router_binary(&test_support::bin_dir()))
            .env(
                "MRBILL_ROUTER_ADDR",
                self.router.trim_start_matches("http://"),
            )
            .env("MRBILL_PUBLIC_URL", &self.router)
            .env(
                "MRBILL_ROUTER_SNAPSHOT",
                self.home.join("router/routes.json"),
            )
            .env("MRBILL_CONTROL_PLANE_URL", "http://127.0.0.1:9")
            .env(
                "MRBILL_ROUTER_TOKEN_FILE",
                self.home.join("control-plane/router-token"),
            )
            .env("MRBILL_READY_FILE", self.home.join("router/ready.json"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the router");
        wait_until(Duration::from_secs(30), "the router to listen", || {
            self.router_pid().is_some()
        });
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed test shows how the platform's own processes ended (a crash, a restart on
            // another port), not only what its client saw.
            let mut names: Vec<String> = std::fs::read_dir(self.home.join("logs"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".log").map(str::to_owned))
                .collect();
            names.sort();
            for name in names {
                eprint!("{}", self.log_tail(&name, 30));
            }
        }
        let down = self.mrbill(&["down"]);
        if down.code != 0 {
            eprintln!("mrbill down failed: {}", down.stderr);
        }
        drop(self.disk.take());
        if std::env::var_os("MRBILL_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.home);
        } else {
            eprintln!("kept {}", self.home.display());
        }
    }
}

use std::os::unix::process::CommandExt;

/// When this test process is gone, stop whatever it left running in `home`. Detached on purpose.
#[allow(clippy::zombie_processes)]
fn spawn_watcher(home: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; MRBILL_HOME='{home}' '{mrbill}' down >/dev/null 2>&1; [ -n \"$MRBILL_E2E_KEEP\" ] || rm -rf '{home}'",
        pid = std::process::id(),
        home = home.display(),
        mrbill = bin("mrbill").display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn the watcher");
}

pub use cell_model::local::pid_alive;

pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Live processes whose command line contains every one of `needles`.
pub fn processes_with(needles: &[&str]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            pid_alive(*pid) && needles.iter().all(|n| cmdline.contains(n))
        })
        .collect()
}

/// Live processes started for cell `cell_id` (their environment says so).
pub fn cell_services(cell_id: &str) -> Vec<u32> {
    let needle = format!("MRBILL_CELL_ID={cell_id}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            pid_alive(*pid)
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `chmod`: e.g. a directory a cell's own user must enter.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
