//! An in-memory Kubernetes API server for tests (no cluster can run on the test machines):
//! either the `tower::Service` a `kube::Client` is built on in-process (the pattern of kube-rs's
//! mocked-client tests, but answering from a store instead of a fixed script, so a scenario can
//! run several reconciles), or served over HTTP with a kubeconfig for the real binaries (with
//! watches: each change after the watch opened is streamed as one JSON event line).
//!
//! It models what the controller relies on: get/list (equality label selectors)/create/
//! delete, merge patches with `resourceVersion` preconditions, server-side apply (the applied
//! object replaces the stored one, keeping identity, status and finalizers — the operator is
//! the only manager here), the `/status` subresource, finalizers holding a deletion, and a
//! namespace that stays `Terminating` for a configurable number of reads before it and
//! everything in it disappear, cluster-wide lists and watches of namespaced kinds. Every
//! request is logged; faults can be injected. Not modelled: field selectors, pagination,
//! bookmarks, events for objects removed with their namespace.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// One request as the API server saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Logged {
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

struct Fault {
    method: Method,
    path_contains: String,
    code: u16,
    reason: String,
}

#[derive(Default)]
struct State {
    /// collection path (`api/v1/namespaces/x/secrets`) → name → object
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    log: Vec<Logged>,
    faults: Vec<Fault>,
    resource_version: u64,
    /// Reads a terminating namespace survives before it is gone.
    terminating_reads: u32,
    namespace_reads: BTreeMap<String, u32>,
    watchers: Vec<Watcher>,
}

/// An open watch: events of objects in `scope` matching `selector`, as JSON lines.
struct Watcher {
    scope: String,
    selector: String,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
}

/// Whether objects of `collection` belong to a list or watch of `scope` (equal, or `scope` is
/// the cluster-wide form of a namespaced collection).
fn in_scope(scope: &str, collection: &str) -> bool {
    if scope == collection {
        return true;
    }
    let Some((prefix, plural)) = scope.rsplit_once('/') else {
        return false;
    };
    collection
        .strip_prefix(&format!("{prefix}/namespaces/"))
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, p)| p == plural)
}

/// The fake API server; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

/// `(collection, name, subresource)` of a request path.
fn locate(path: &str) -> (String, Option<String>, Option<String>) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let prefix_len = if segments.first() == Some(&"api") {
        2
    } else {
        3
    };
    let (prefix, rest) = segments.split_at(prefix_len.min(segments.len()));
    let prefix = prefix.join("/");
    let owned = |i: usize| rest.get(i).map(|s| (*s).to_owned());
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (
            format!("{prefix}/namespaces/{}/{}", rest[1], rest[2]),
            owned(3),
            owned(4),
        )
    } else {
        (
            format!("{prefix}/{}", rest.first().copied().unwrap_or_default()),
            owned(1),
            owned(2),
        )
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "code": code, "reason": reason, "message": message }),
    )
}

fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

impl State {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn stamp_new(&mut self, object: &mut Value) {
        let rv = self.next_version();
        let meta = &mut object["metadata"];
        meta["uid"] = json!(format!("uid-{rv}"));
        meta["resourceVersion"] = json!(rv);
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!("2026-11-22T10:00:00Z");
    }

    fn remove(&mut self, collection: &str, name: &str) {
        if let Some(c) = self.objects.get_mut(collection) {
            c.remove(name);
        }
        if collection == "api/v1/namespaces" {
            let inside = format!("/namespaces/{name}/");
            self.objects.retain(|k, _| !k.contains(&inside));
        }
    }

    /// Sends a watch event to every open watch the object is in.
    fn notify(&mut self, collection: &str, kind: &str, object: &Value) {
        let line = format!("{}\n", json!({ "type": kind, "object": object }));
        self.watchers.retain(|w| {
            if !in_scope(&w.scope, collection) || !matches_selector(object, &w.selector) {
                return true;
            }
            w.tx.send(line.clone()).is_ok()
        });
    }

    fn stored(&self, collection: &str, name: &str) -> Option<Value> {
        self.objects
            .get(collection)
            .and_then(|c| c.get(name))
            .cloned()
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        ctype: &str,
        body: Value,
    ) -> (u16, Value) {
        let (code, out) = self.handle_request(method, path, query, ctype, body);
        if method != Method::GET && code < 300 {
            let (collection, name, _) = locate(path);
            let name = name.or_else(|| out["metadata"]["name"].as_str().map(str::to_owned));
            if let Some(name) = name {
                match self.stored(&collection, &name) {
                    Some(object) => {
                        let kind = if code == 201 { "ADDED" } else { "MODIFIED" };
                        self.notify(&collection, kind, &object);
                    }
                    None => self.notify(&collection, "DELETED", &out),
                }
            }
        }
        (code, out)
    }

    fn handle_request(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        ctype: &str,
        body: Value,
    ) -> (u16, Value) {
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.method == method && path.contains(&f.path_contains))
        {
            let f = &self.faults[i];
            return status(f.code, &f.reason, &format!("injected: {} {path}", f.method));
        }
        let (collection, name, sub) = locate(path);
        match (method.clone(), name) {
            (Method::GET, None) => {
                let selector = query_param(query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(c, _)| in_scope(&collection, c))
                    .flat_map(|(_, objects)| objects.values())
                    .filter(|o| matches_selector(o, &selector))
                    .cloned()
                    .collect();
                let rv = self.resource_version.to_string();
                (
                    200,
                    json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": rv }, "items": items }),
                )
            }
            (Method::GET, Some(name)) => {
                let found = self
                    .objects
                    .get(&collection)
                    .and_then(|c| c.get(&name))
                    .cloned();
                match found {
                    None => status(404, "NotFound", &format!("{collection}/{name} not found")),
                    Some(object) => {
                        if collection == "api/v1/namespaces"
                            && !object["metadata"]["deletionTimestamp"].is_null()
                        {
                            let reads = self.namespace_reads.entry(name.clone()).or_default();
                            *reads += 1;
                            if *reads > self.terminating_reads {
                                self.remove(&collection, &name);
                                return status(404, "NotFound", "namespace gone");
                            }
                        }
                        (200, object)
                    }
                }
            }
            (Method::POST, None) => {
                let mut object = body;
                let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
                    return status(422, "Invalid", "metadata.name is required");
                };
                if self
                    .objects
                    .get(&collection)
                    .is_some_and(|c| c.contains_key(&name))
                {
                    return status(409, "AlreadyExists", &format!("{name} already exists"));
                }
                self.stamp_new(&mut object);
                self.objects
                    .entry(collection)
                    .or_default()
                    .insert(name, object.clone());
                (201, object)
            }
            (Method::PATCH, Some(name)) => {
                self.patch(&collection, &name, sub.as_deref(), ctype, body)
            }
            (Method::DELETE, Some(name)) => {
                let Some(object) = self
                    .objects
                    .get_mut(&collection)
                    .and_then(|c| c.get_mut(&name))
                else {
                    return status(404, "NotFound", &format!("{name} not found"));
                };
                let held = object["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if held || collection == "api/v1/namespaces" {
                    object["metadata"]["deletionTimestamp"] = json!("2026-11-22T11:00:00Z");
                    if collection == "api/v1/namespaces" {
                        object["status"] = json!({ "phase": "Terminating" });
                    }
                    let object = object.clone();
                    return (200, object);
                }
                let object = object.clone();
                self.remove(&collection, &name);
                (200, object)
            }
            _ => status(405, "MethodNotAllowed", "not modelled"),
        }
    }

    fn patch(
        &mut self,
        collection: &str,
        name: &str,
        sub: Option<&str>,
        ctype: &str,
        body: Value,
    ) -> (u16, Value) {
        let exists = self
            .objects
            .get(collection)
            .is_some_and(|c| c.contains_key(name));
        let apply = ctype.starts_with("application/apply-patch");
        if !exists {
            if !apply || sub.is_some() {
                return status(404, "NotFound", &format!("{collection}/{name} not found"));
            }
            let mut object = body;
            self.stamp_new(&mut object);
            self.objects
                .entry(collection.to_owned())
                .or_default()
                .insert(name.to_owned(), object.clone());
            return (201, object);
        }
        let rv = self.next_version();
        let stored = self
            .objects
            .get_mut(collection)
            .and_then(|c| c.get_mut(name))
            .expect("checked above");
        if apply {
            if sub == Some("status") {
                stored["status"] = body["status"].clone();
            } else {
                let mut next = body;
                let meta = stored["metadata"].clone();
                for key in [
                    "uid",
                    "creationTimestamp",
                    "finalizers",
                    "deletionTimestamp",
                    "generation",
                ] {
                    if !meta[key].is_null() {
                        next["metadata"][key] = meta[key].clone();
                    }
                }
                if !stored["status"].is_null() {
                    next["status"] = stored["status"].clone();
                }
                if next["spec"] != stored["spec"] {
                    next["metadata"]["generation"] =
                        json!(meta["generation"].as_i64().unwrap_or(0) + 1);
                }
                *stored = next;
            }
        } else {
            if let Some(wanted) = body["metadata"]["resourceVersion"].as_str()
                && stored["metadata"]["resourceVersion"].as_str() != Some(wanted)
            {
                return status(409, "Conflict", "the object has been modified");
            }
            let mut body = body;
            if let Some(meta) = body["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            merge(stored, &body);
        }
        stored["metadata"]["resourceVersion"] = json!(rv);
        let object = stored.clone();
        let released = !object["metadata"]["deletionTimestamp"].is_null()
            && object["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        if released {
            self.remove(collection, name);
        }
        (200, object)
    }
}

fn content_type(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A [`FakeApi`] served over HTTP; stops when dropped.
pub struct Served {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// A kubeconfig (YAML) whose current context is this server, without credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    pub fn new() -> Self {
        let api = Self::default();
        api.state().terminating_reads = 1;
        api
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake API state")
    }

    /// Answers one request: `(status code, JSON body)`.
    fn respond(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        ctype: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut state = self.state();
        state.log.push(Logged {
            method: method.clone(),
            path: path.to_owned(),
            query: query.to_owned(),
            content_type: ctype.to_owned(),
            body: body.clone(),
        });
        state.handle(method, path, query, ctype, body)
    }

    fn response(code: u16, out: &Value) -> Response<Full<Bytes>> {
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(out.to_string())))
            .expect("a valid response")
    }

    /// A client talking to this server in-process.
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let ctype = content_type(&parts.headers);
                let (code, out) = api.respond(
                    &parts.method,
                    parts.uri.path(),
                    parts.uri.query().unwrap_or_default(),
                    &ctype,
                    &bytes,
                );
                Ok::<_, Infallible>(Self::response(code, &out))
            }
        });
        kube::Client::new(service, "default")
    }

    /// Serves the API over plain HTTP on a free loopback port, for the real binaries; returns
    /// a kubeconfig pointing at it. The server stops when the returned handle is dropped.
    pub async fn serve(&self) -> Served {
        let api = self.clone();
        let app = axum::Router::new().fallback(move |req: Request<axum::body::Body>| {
            let api = api.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let ctype = content_type(&parts.headers);
                let query = parts.uri.query().unwrap_or_default();
                if query
                    .split('&')
                    .any(|kv| kv == "watch=true" || kv == "watch=1")
                {
                    // Changes from now on, one JSON event per line, until the client goes.
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                    let (scope, _, _) = locate(parts.uri.path());
                    api.state().watchers.push(Watcher {
                        scope,
                        selector: query_param(query, "labelSelector").unwrap_or_default(),
                        tx,
                    });
                    let events = futures_util::stream::unfold(rx, |mut rx| async move {
                        let line = rx.recv().await?;
                        Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
                    });
                    return Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(axum::body::Body::from_stream(events))
                        .expect("a valid response");
                }
                let (code, out) =
                    api.respond(&parts.method, parts.uri.path(), query, &ctype, &bytes);
                Self::response(code, &out).map(axum::body::Body::new)
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Served {
            url: format!("http://{addr}"),
            task,
        }
    }

    /// Stores `object` as if created by someone else (uid, resourceVersion assigned).
    pub fn insert(&self, collection: &str, mut object: Value) -> Value {
        let mut state = self.state();
        state.stamp_new(&mut object);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        state
            .objects
            .entry(collection.to_owned())
            .or_default()
            .insert(name, object.clone());
        state.notify(collection, "ADDED", &object);
        object
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state()
            .objects
            .get(collection)
            .and_then(|c| c.get(name))
            .cloned()
    }

    /// Changes a stored object in place (e.g. a Deployment becoming ready).
    pub fn update(&self, collection: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.state();
        let rv = state.next_version();
        let object = state
            .objects
            .get_mut(collection)
            .and_then(|c| c.get_mut(name))
            .unwrap_or_else(|| panic!("{collection}/{name} exists"));
        change(object);
        object["metadata"]["resourceVersion"] = json!(rv);
        let object = object.clone();
        state.notify(collection, "MODIFIED", &object);
    }

    /// Deletes as a client would (finalizers hold it).
    pub fn delete(&self, collection: &str, name: &str) {
        let path = format!("/{collection}/{name}");
        self.state()
            .handle(&Method::DELETE, &path, "", "", Value::Null);
    }

    /// Every stored object, keyed `collection/name`.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        self.state()
            .objects
            .iter()
            .flat_map(|(c, objects)| {
                objects
                    .iter()
                    .map(move |(n, o)| (format!("{c}/{n}"), o.clone()))
            })
            .collect()
    }

    pub fn objects(&self, collection: &str) -> Vec<Value> {
        self.state()
            .objects
            .get(collection)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// Every `method` request whose path contains `path_contains` fails with `code`/`reason`
    /// until [`FakeApi::clear_faults`].
    pub fn fail(&self, method: Method, path_contains: &str, code: u16, reason: &str) {
        self.state().faults.push(Fault {
            method,
            path_contains: path_contains.to_owned(),
            code,
            reason: reason.to_owned(),
        });
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }
}
