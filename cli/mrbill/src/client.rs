//! Talking to the control plane: where it is, the operator token, and errors as exit codes.

use std::time::Duration;

use cell_model::local::Home;
use serde::de::DeserializeOwned;
use wire_types::ErrorBody;

/// A failure to report: one line, a hint, an exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
    pub exit: i32,
}

/// Exit codes (also listed in `mrbill --help`).
pub mod exit {
    pub const ERROR: i32 = 1;
    pub const NOT_FOUND: i32 = 3;
    pub const CONFLICT: i32 = 4;
    pub const INVALID: i32 = 5;
    pub const UNREACHABLE: i32 = 6;
    pub const TIMEOUT: i32 = 7;
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>, exit: i32) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            hint: None,
            exit,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new("error", format!("{e:#}"), exit::ERROR)
    }
}

pub type CliResult<T> = Result<T, Failure>;

/// The admin API of a running control plane.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    /// `MRBILL_CONTROL_PLANE_URL` + `MRBILL_OPERATOR_TOKEN_FILE`, else what `mrbill up` wrote
    /// under `MRBILL_HOME`.
    pub fn connect(home: &Home) -> CliResult<Self> {
        let base = match std::env::var("MRBILL_CONTROL_PLANE_URL") {
            Ok(url) => url,
            Err(_) => read_ready(&home.control_plane_ready())
                .filter(|r| cell_model::local::pid_alive(r.pid))
                .map(|r| r.url)
                .ok_or_else(|| {
                    Failure::new(
                        "control_plane_down",
                        format!("no control plane is running for {}", home.root().display()),
                        exit::UNREACHABLE,
                    )
                    .hint("start the platform with `mrbill up` (or set MRBILL_HOME)")
                })?,
        };
        let token_file = std::env::var_os("MRBILL_OPERATOR_TOKEN_FILE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| home.operator_token());
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| {
                Failure::new(
                    "no_operator_token",
                    format!("cannot read {}: {e}", token_file.display()),
                    exit::UNREACHABLE,
                )
                .hint("the control plane creates it on first start; run `mrbill up`")
            })?
            .trim()
            .to_owned();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(anyhow::Error::from)?;
        Ok(Self { base, token, http })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.send(self.http.get(self.url(path)))
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> CliResult<T> {
        self.send(self.http.post(self.url(path)).json(body))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.send(self.http.delete(self.url(path)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    fn send<T: DeserializeOwned>(&self, req: reqwest::blocking::RequestBuilder) -> CliResult<T> {
        let res = req.bearer_auth(&self.token).send().map_err(|e| {
            Failure::new(
                "control_plane_unreachable",
                format!("cannot reach the control plane at {}: {e}", self.base),
                exit::UNREACHABLE,
            )
            .hint("is it running? `mrbill status`")
        })?;
        let status = res.status();
        let bytes = res.bytes().map_err(anyhow::Error::from)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("unexpected answer from the control plane: {e}").into()
            });
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => api_failure(status.as_u16(), body),
            Err(_) => Failure::new(
                "http_error",
                format!("the control plane answered {status}"),
                exit::ERROR,
            ),
        })
    }
}

/// Maps an API error body to a line, a hint and an exit code.
fn api_failure(status: u16, body: ErrorBody) -> Failure {
    let code = body.code.as_str();
    let mut message = body.message.clone();
    if let Some(fields) = body.details.get("fields").and_then(|f| f.as_array()) {
        let parts: Vec<String> = fields
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f["field"].as_str().unwrap_or("?"),
                    f["message"].as_str().unwrap_or("invalid")
                )
            })
            .collect();
        if !parts.is_empty() {
            message = parts.join("; ");
        }
    }
    let (exit_code, hint) = match code {
        "tenant_not_found" | "not_found" => {
            (exit::NOT_FOUND, "list tenants with `mrbill tenant list`")
        }
        "slug_taken" => (
            exit::CONFLICT,
            "choose another slug; `mrbill tenant show <slug>` shows the existing one",
        ),
        "email_domain_taken" => (
            exit::CONFLICT,
            "each email domain belongs to one tenant; leave it out or remove it from the other tenant",
        ),
        "capacity_exhausted" => (
            exit::CONFLICT,
            "pick a smaller tier or another placement; `mrbill placement list` shows capacity",
        ),
        "placement_cordoned" => (
            exit::CONFLICT,
            "pick another placement, or `mrbill placement uncordon <name>`",
        ),
        "placement_in_use" => (
            exit::CONFLICT,
            "a placement with cells cannot be removed; cordon it instead",
        ),
        "operation_in_progress" => (
            exit::CONFLICT,
            "wait for it (`mrbill cell show <slug>`), or abort a migration with `mrbill cell migrate <slug> --abort`",
        ),
        "tenant_not_active" => (
            exit::CONFLICT,
            "only an active tenant moves; `mrbill tenant resume <slug>` first",
        ),
        "conflict" => (
            exit::CONFLICT,
            "see the tenant's state with `mrbill tenant show <slug>`",
        ),
        "validation_failed" | "invalid_json" | "invalid_parameter" => (
            exit::INVALID,
            "the command's `--help` says what each field takes",
        ),
        "unauthenticated" | "forbidden" => (
            exit::ERROR,
            "the operator token is MRBILL_HOME/control-plane/operator-token",
        ),
        _ if status >= 500 => (exit::ERROR, "see MRBILL_HOME/logs/control-plane.log"),
        _ => (exit::ERROR, ""),
    };
    let failure = Failure::new(code, message, exit_code);
    if hint.is_empty() {
        failure
    } else {
        failure.hint(hint)
    }
}

/// `{"url", "pid"}` written by the control plane and the router once they listen.
#[derive(Debug, serde::Deserialize)]
pub struct Ready {
    pub url: String,
    pub pid: u32,
}

pub fn read_ready(path: &std::path::Path) -> Option<Ready> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
