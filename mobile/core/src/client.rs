//! [`MrBill`]: one per app, for one router. Finds the company, keeps the session fresh, and
//! calls the tenant's services through the router.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use wire_types::PocId;
use wire_types::auth::{TokenResponse, User};
use wire_types::media::Dashboard;
use wire_types::pocs::{Poc, PocInput, PocPage, PocPatch};
use wire_types::routing::{Resolved, TenantStatus};

use crate::error::CoreError;
use crate::session::{StoredSession, TokenStore, now_ms};

/// An access token this close to its expiry is refreshed before use.
const REFRESH_AHEAD_MS: i64 = 30_000;

/// The company the app talks to: its slug and its endpoint through the router.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Company {
    pub tenant: String,
    pub endpoint: String,
    /// The company's account is suspended: signing in will be refused.
    pub suspended: bool,
}

/// A PoC search: free text (typos tolerated), filters and the page.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct PocQuery {
    pub text: Option<String>,
    pub language: Option<String>,
    /// Every tag must be present.
    pub tags: Vec<String>,
    /// Only the user's own PoCs.
    pub mine: bool,
    /// From 1.
    pub page: u32,
    /// 1–100.
    pub per_page: u32,
}

/// The client of one router. Thread-safe; share one per app.
#[derive(uniffi::Object)]
pub struct MrBill {
    http: reqwest::Client,
    router: String,
    store: Arc<dyn TokenStore>,
    company: Mutex<Option<Company>>,
    /// Held while a refresh runs: concurrent callers wait for it and use its tokens.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MrBill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MrBill")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl MrBill {
    /// A client of the router at `router_url` (`https://…`), keeping its session in `store`.
    /// A session the store already holds is picked up (the app was restarted).
    #[uniffi::constructor]
    pub fn new(router_url: String, store: Arc<dyn TokenStore>) -> Result<Arc<Self>, CoreError> {
        let router = router_url.trim_end_matches('/').to_owned();
        if !(router.starts_with("https://") || router.starts_with("http://")) {
            return Err(CoreError::Refused {
                code: "invalid_router_url".into(),
                detail: "the router URL must start with https://".into(),
            });
        }
        // With two rustls providers compiled in (a workspace build), neither is the default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CoreError::network(&e))?;
        let company = store.load().map(|s| Company {
            tenant: s.tenant,
            endpoint: s.endpoint,
            suspended: false,
        });
        Ok(Arc::new(Self {
            http,
            router,
            store,
            company: Mutex::new(company),
            refreshing: tokio::sync::Mutex::new(()),
        }))
    }

    /// Finds the company by its slug (`acme`) or a work email (`ada@acme.com`) and remembers
    /// its endpoint for every later call.
    pub async fn resolve(&self, company: String) -> Result<Company, CoreError> {
        let company = company.trim();
        let key = if company.contains('@') {
            "email"
        } else {
            "tenant"
        };
        let url = format!("{}/v1/resolve", self.router);
        let res = self
            .http
            .get(&url)
            .query(&[(key, company)])
            .send()
            .await
            .map_err(|e| CoreError::network(&e))?;
        let resolved: Resolved = Answer::read(res).await?.decode()?;
        let found = Company {
            tenant: resolved.tenant,
            endpoint: resolved.endpoint,
            suspended: resolved.status == TenantStatus::Suspended,
        };
        let previous = self.lock_company().replace(found.clone());
        if previous.is_some_and(|p| p.tenant != found.tenant) {
            // Another company: the old session is not for it.
            self.store.clear();
        }
        Ok(found)
    }

    /// The company chosen last, if any.
    pub fn company(&self) -> Option<Company> {
        self.lock_company().clone()
    }

    /// Whether a session is kept (it may still turn out revoked on the next call).
    pub fn signed_in(&self) -> bool {
        self.store.load().is_some()
    }

    /// Signs in to the chosen company.
    pub async fn login(&self, email: String, password: String) -> Result<User, CoreError> {
        let body = json!({ "email": email, "password": password });
        let tokens: TokenResponse = self
            .call(Method::POST, "/v1/auth/login", Some(body), None)
            .await?;
        Ok(self.keep(tokens))
    }

    /// Creates the account an invite was sent for, and signs in.
    pub async fn register(
        &self,
        email: String,
        password: String,
        invite: String,
    ) -> Result<User, CoreError> {
        let body = json!({ "email": email, "password": password, "invite_token": invite });
        let tokens: TokenResponse = self
            .call(Method::POST, "/v1/auth/register", Some(body), None)
            .await?;
        Ok(self.keep(tokens))
    }

    /// Ends the session here and on the server (its refresh token is revoked).
    pub async fn logout(&self) -> Result<(), CoreError> {
        let Some(session) = self.store.load() else {
            return Ok(());
        };
        self.store.clear();
        let body = json!({ "refresh_token": session.refresh_token });
        match self
            .call::<serde_json::Value>(Method::POST, "/v1/auth/logout", Some(body), None)
            .await
        {
            // Signed out here either way; the server forgets the token when it expires.
            Ok(_) | Err(CoreError::SignedOut) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The signed-in user.
    pub async fn me(&self) -> Result<User, CoreError> {
        self.authed(Method::GET, "/v1/users/me", None).await
    }

    /// One page of the PoCs the user may see, with facet counts over all matches.
    pub async fn search_pocs(&self, query: PocQuery) -> Result<PocPage, CoreError> {
        let mut params: Vec<(&str, String)> = vec![
            ("page", query.page.max(1).to_string()),
            ("per_page", query.per_page.clamp(1, 100).to_string()),
        ];
        if let Some(text) = query.text.filter(|t| !t.trim().is_empty()) {
            params.push(("q", text));
        }
        if let Some(language) = query.language.filter(|l| !l.trim().is_empty()) {
            params.push(("language", language));
        }
        if !query.tags.is_empty() {
            params.push(("tags", query.tags.join(",")));
        }
        if query.mine {
            params.push(("owner", "me".into()));
        }
        let path = format!("/v1/pocs?{}", encode_query(&params));
        self.authed(Method::GET, &path, None).await
    }

    pub async fn poc(&self, id: PocId) -> Result<Poc, CoreError> {
        self.authed(Method::GET, &format!("/v1/pocs/{id}"), None)
            .await
    }

    /// Records a new PoC; refused input comes back as [`CoreError::Validation`].
    pub async fn create_poc(&self, input: PocInput) -> Result<Poc, CoreError> {
        self.authed(Method::POST, "/v1/pocs", Some(to_json(&input)?))
            .await
    }

    /// Changes the fields `patch` carries.
    pub async fn update_poc(&self, id: PocId, patch: PocPatch) -> Result<Poc, CoreError> {
        self.authed(
            Method::PATCH,
            &format!("/v1/pocs/{id}"),
            Some(to_json(&patch)?),
        )
        .await
    }

    pub async fn delete_poc(&self, id: PocId) -> Result<(), CoreError> {
        self.authed::<serde_json::Value>(Method::DELETE, &format!("/v1/pocs/{id}"), None)
            .await
            .map(drop)
    }

    /// The company's figures: PoCs by language, tag, month and person.
    pub async fn dashboard(&self) -> Result<Dashboard, CoreError> {
        self.authed(Method::GET, "/v1/reports/dashboard", None)
            .await
    }
}

impl MrBill {
    /// Drops the kept session (the server ended it).
    pub(crate) fn forget_session(&self) {
        self.store.clear();
    }

    /// `scheme://host[:port]` of the router.
    pub(crate) fn router_origin(&self) -> &str {
        let after_scheme = self.router.find("://").map_or(0, |i| i + 3);
        match self.router[after_scheme..].find('/') {
            Some(slash) => &self.router[..after_scheme + slash],
            None => &self.router,
        }
    }

    fn lock_company(&self) -> std::sync::MutexGuard<'_, Option<Company>> {
        self.company.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps fresh tokens in the app's store; the user they are for.
    pub(crate) fn keep(&self, tokens: TokenResponse) -> User {
        if let Some(company) = self.company() {
            let ttl = i64::try_from(tokens.expires_in).unwrap_or(0);
            self.store.save(StoredSession {
                tenant: company.tenant,
                endpoint: company.endpoint,
                access_token: tokens.access_token,
                access_expires_at_ms: now_ms() + ttl * 1000,
                refresh_token: tokens.refresh_token,
            });
        }
        tokens.user
    }

    /// A call with the session's access token: refreshed first when it is about to expire,
    /// and once more if the cell says it has expired after all.
    pub(crate) async fn authed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, CoreError> {
        let token = self.access_token(None).await?;
        match self
            .call(method.clone(), path, body.clone(), Some(&token))
            .await
        {
            Err(CoreError::SignedOut) => {
                let token = self.access_token(Some(&token)).await?;
                self.call(method, path, body, Some(&token)).await
            }
            other => other,
        }
    }

    /// A usable access token: the kept one, or a refreshed one when it expires soon or is
    /// `stale` (the cell refused it). One refresh at a time: a caller that waited for another's
    /// refresh uses its result.
    async fn access_token(&self, stale: Option<&str>) -> Result<String, CoreError> {
        let usable = |s: &StoredSession| {
            s.access_expires_at_ms - now_ms() > REFRESH_AHEAD_MS
                && stale.is_none_or(|t| t != s.access_token)
        };
        let session = self.store.load().ok_or(CoreError::SignedOut)?;
        if usable(&session) {
            return Ok(session.access_token);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        let session = self.store.load().ok_or(CoreError::SignedOut)?;
        if usable(&session) {
            return Ok(session.access_token);
        }
        let body = json!({ "refresh_token": session.refresh_token });
        match self
            .call::<TokenResponse>(Method::POST, "/v1/auth/refresh", Some(body), None)
            .await
        {
            Ok(tokens) => {
                let token = tokens.access_token.clone();
                self.keep(tokens);
                Ok(token)
            }
            Err(CoreError::SignedOut) => {
                // Reused, revoked or expired: this session is over.
                self.store.clear();
                Err(CoreError::SignedOut)
            }
            Err(e) => Err(e),
        }
    }

    /// One exchange with the company's endpoint. When the router no longer knows the tenant
    /// there, or a cell says the request was meant for another cell (the company moved), the
    /// company is resolved again once and the request sent again.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> Result<T, CoreError> {
        let company = self.company().ok_or(CoreError::NoCompany)?;
        let answer = self
            .send(&company.endpoint, method.clone(), path, &body, token)
            .await?;
        let moved = answer.status == StatusCode::MISDIRECTED_REQUEST
            || (answer.status == StatusCode::NOT_FOUND
                && answer.code() == Some("tenant_not_found"));
        if !moved {
            return answer.decode();
        }
        let again = self.resolve(company.tenant).await?;
        self.send(&again.endpoint, method, path, &body, token)
            .await?
            .decode()
    }

    async fn send(
        &self,
        endpoint: &str,
        method: Method,
        path: &str,
        body: &Option<serde_json::Value>,
        token: Option<&str>,
    ) -> Result<Answer, CoreError> {
        let mut req = self.http.request(method, format!("{endpoint}{path}"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.map_err(|e| CoreError::network(&e))?;
        Answer::read(res).await
    }
}

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: bytes::Bytes,
}

impl Answer {
    async fn read(res: reqwest::Response) -> Result<Self, CoreError> {
        let status = res.status();
        let retry_after = res
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = res.bytes().await.map_err(|e| CoreError::network(&e))?;
        Ok(Self {
            status,
            retry_after,
            body,
        })
    }

    /// The error code of an error answer.
    fn code(&self) -> Option<&str> {
        #[derive(serde::Deserialize)]
        struct Code<'a> {
            code: &'a str,
        }
        serde_json::from_slice::<Code<'_>>(&self.body)
            .ok()
            .map(|c| c.code)
    }

    /// The body as `T`, or the error it carries.
    fn decode<T: DeserializeOwned>(self) -> Result<T, CoreError> {
        if !self.status.is_success() {
            return Err(CoreError::from_answer(
                self.status.as_u16(),
                self.retry_after,
                &self.body,
            ));
        }
        let body = if self.body.is_empty() {
            &b"null"[..]
        } else {
            &self.body[..]
        };
        serde_json::from_slice(body).map_err(|e| CoreError::Server {
            status: self.status.as_u16(),
            code: "unexpected_answer".into(),
            detail: e.to_string(),
        })
    }
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<serde_json::Value, CoreError> {
    serde_json::to_value(value).map_err(|e| CoreError::Server {
        status: 0,
        code: "unencodable_request".into(),
        detail: e.to_string(),
    })
}

/// `k=v&…`, percent-encoded.
fn encode_query(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
