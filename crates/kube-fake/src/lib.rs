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

mod store;
use store::{Fault, State, Watcher, locate, query_param};

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

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
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
