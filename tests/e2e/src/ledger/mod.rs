//! Writers that log every acknowledged write (the ledger), for tests that change the platform
//! under load (a migration, faults) and then check that nothing acknowledged was lost and
//! nothing unacknowledged appeared.

mod live;

pub use live::LiveLedger;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

/// What the writers were told was done.
#[derive(Debug, Default)]
pub struct Ledger {
    /// PoCs created (id, name).
    pub pocs: Vec<(String, String)>,
    /// The last acknowledged description of each edited PoC.
    pub edits: std::collections::BTreeMap<String, String>,
    pub dojos: Vec<String>,
    pub reports: Vec<String>,
    /// Requests that failed (not acknowledged), by status (0: no answer).
    pub refused: std::collections::BTreeMap<u16, u32>,
    /// Writes whose outcome the writer never learned (no answer, or a 5xx): each may or may
    /// not have happened. PoC names, edit descriptions, dojo names.
    pub in_doubt: std::collections::BTreeSet<String>,
    /// The live writer's dojo edits and chat.
    pub live: LiveLedger,
}

/// The load the tests run: five writers through the router (two creating PoCs, one editing a
/// PoC, one creating dojos and queueing reports, one editing a dojo's code and chatting in it
/// over its live socket), each logging what it was told, until [`Load::finish`].
pub struct Load {
    pub ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the writers against the tenant at `base` (`<router>/t/<slug>`) as `token`,
    /// editing PoC `edited`.
    pub fn start(base: &str, token: &str, edited: &str) -> Self {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = || Writer {
            base: base.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            ledger: ledger.clone(),
            stop: stop.clone(),
        };
        let writers = vec![
            tokio::spawn(writer().create_pocs(1)),
            tokio::spawn(writer().create_pocs(2)),
            tokio::spawn(writer().edit(edited.to_owned())),
            tokio::spawn(writer().create_dojos_and_reports()),
            tokio::spawn(writer().live_dojo()),
        ];
        Self {
            ledger,
            stop,
            writers,
        }
    }

    /// How many PoCs were acknowledged so far.
    pub async fn acknowledged(&self) -> usize {
        self.ledger.lock().await.pocs.len()
    }

    /// Waits until `more` PoCs beyond `since` are acknowledged (at most `within`).
    pub async fn until_acknowledged(&self, since: usize, more: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acknowledged().await < since + more {
            assert!(Instant::now() < deadline, "the writers stalled at {since}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writers and waits for them; the ledger.
    pub async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.writers {
            w.await.expect("writer");
        }
        std::mem::take(&mut *self.ledger.lock().await)
    }
}

pub struct Writer {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub ledger: Arc<Mutex<Ledger>>,
    pub stop: Arc<AtomicBool>,
}

impl Writer {
    /// One request; the body if it was acknowledged (2xx), else the refusal is counted, and
    /// `what` is in doubt when no answer or a 5xx came back.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Option<Value> {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await;
        // Paced below the tenant's rate limit (a 429 would only count as a refusal).
        tokio::time::sleep(Duration::from_millis(30)).await;
        let status = res.as_ref().map_or(0, |r| r.status().as_u16());
        // An acknowledged write whose answer was cut is in doubt too: it happened, its id is
        // unknown.
        if let Ok(res) = res
            && res.status().is_success()
            && let Ok(body) = res.json().await
        {
            return Some(body);
        }
        let mut ledger = self.ledger.lock().await;
        *ledger.refused.entry(status).or_default() += 1;
        if status == 0 || status >= 500 || (200..300).contains(&status) {
            ledger.in_doubt.insert(what.to_owned());
        }
        drop(ledger);
        tokio::time::sleep(Duration::from_millis(20)).await;
        None
    }

    pub async fn create_pocs(self, who: usize) {
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let name = format!("w{who} poc {n}");
            let body = json!({ "name": name, "description": "ledger", "language": "rust",
                "tags": ["ledger"], "repository_url": format!("https://github.com/acme/w{who}-{n}") });
            if let Some(created) = self
                .send(reqwest::Method::POST, "/v1/pocs", &body, &name)
                .await
            {
                let id = created["id"].as_str().expect("id").to_owned();
                self.ledger.lock().await.pocs.push((id, name));
            }
        }
    }

    pub async fn edit(self, poc: String) {
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let description = format!("edit {n}");
            let path = format!("/v1/pocs/{poc}");
            let body = json!({ "description": description });
            if self
                .send(reqwest::Method::PATCH, &path, &body, &description)
                .await
                .is_some()
            {
                self.ledger
                    .lock()
                    .await
                    .edits
                    .insert(poc.clone(), description);
            }
        }
    }

    pub async fn create_dojos_and_reports(self) {
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let name = format!("dojo {n}");
            let body = json!({ "name": name, "language": "rust", "initial_code": "" });
            if let Some(dojo) = self
                .send(reqwest::Method::POST, "/v1/dojos", &body, &name)
                .await
            {
                let id = dojo["id"].as_str().expect("id").to_owned();
                self.ledger.lock().await.dojos.push(id);
            }
            if n % 5 == 0 {
                let body = json!({ "format": "csv" });
                let what = format!("report {n}");
                if let Some(job) = self
                    .send(reqwest::Method::POST, "/v1/reports", &body, &what)
                    .await
                {
                    let id = job["id"].as_str().expect("id").to_owned();
                    self.ledger.lock().await.reports.push(id);
                }
            }
        }
    }
}

/// Polls a report job until it completed; returns its download link.
pub async fn completed_report(api: &test_support::ApiClient, job: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let res = api.get(&format!("/v1/reports/{job}")).await;
        if res.body["state"] == "completed" {
            return res.body["download"]["url"]
                .as_str()
                .expect("url")
                .to_owned();
        }
        assert!(Instant::now() < deadline, "report {job}: {}", res.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
