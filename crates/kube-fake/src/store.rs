//! The store behind the fake API server: objects by collection, resource versions, watchers,
//! injected faults, and how each request changes them.

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Value, json};

use crate::Logged;

pub(crate) struct Fault {
    pub(crate) method: Method,
    pub(crate) path_contains: String,
    pub(crate) code: u16,
    pub(crate) reason: String,
}

#[derive(Default)]
pub(crate) struct State {
    /// collection path (`api/v1/namespaces/x/secrets`) → name → object
    pub(crate) objects: BTreeMap<String, BTreeMap<String, Value>>,
    pub(crate) log: Vec<Logged>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) resource_version: u64,
    /// Reads a terminating namespace survives before it is gone.
    pub(crate) terminating_reads: u32,
    pub(crate) namespace_reads: BTreeMap<String, u32>,
    pub(crate) watchers: Vec<Watcher>,
}

/// An open watch: events of objects in `scope` matching `selector`, as JSON lines.
pub(crate) struct Watcher {
    pub(crate) scope: String,
    pub(crate) selector: String,
    pub(crate) tx: tokio::sync::mpsc::UnboundedSender<String>,
}

/// Whether objects of `collection` belong to a list or watch of `scope` (equal, or `scope` is
/// the cluster-wide form of a namespaced collection).
pub(crate) fn in_scope(scope: &str, collection: &str) -> bool {
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
/// `(collection, name, subresource)` of a request path.
pub(crate) fn locate(path: &str) -> (String, Option<String>, Option<String>) {
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

pub(crate) fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "code": code, "reason": reason, "message": message }),
    )
}

pub(crate) fn merge(target: &mut Value, patch: &Value) {
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

pub(crate) fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

pub(crate) fn query_param(query: &str, key: &str) -> Option<String> {
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
    pub(crate) fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    pub(crate) fn stamp_new(&mut self, object: &mut Value) {
        let rv = self.next_version();
        let meta = &mut object["metadata"];
        meta["uid"] = json!(format!("uid-{rv}"));
        meta["resourceVersion"] = json!(rv);
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!("2026-11-22T10:00:00Z");
    }

    pub(crate) fn remove(&mut self, collection: &str, name: &str) {
        if let Some(c) = self.objects.get_mut(collection) {
            c.remove(name);
        }
        if collection == "api/v1/namespaces" {
            let inside = format!("/namespaces/{name}/");
            self.objects.retain(|k, _| !k.contains(&inside));
        }
    }

    /// Sends a watch event to every open watch the object is in.
    pub(crate) fn notify(&mut self, collection: &str, kind: &str, object: &Value) {
        let line = format!("{}\n", json!({ "type": kind, "object": object }));
        self.watchers.retain(|w| {
            if !in_scope(&w.scope, collection) || !matches_selector(object, &w.selector) {
                return true;
            }
            w.tx.send(line.clone()).is_ok()
        });
    }

    pub(crate) fn stored(&self, collection: &str, name: &str) -> Option<Value> {
        self.objects
            .get(collection)
            .and_then(|c| c.get(name))
            .cloned()
    }

    pub(crate) fn handle(
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

    pub(crate) fn handle_request(
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
                    // Now, as the API server stamps it (controllers measure waits from it).
                    let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
                    object["metadata"]["deletionTimestamp"] = json!(now.to_string());
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

    pub(crate) fn patch(
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
