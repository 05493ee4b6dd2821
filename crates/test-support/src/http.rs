//! A thin HTTP client for tests: every call returns status, headers and the JSON body.

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;

/// A response with its body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl ApiResponse {
    /// The error body's `code`, or "" when there is none.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Asserts status and error code together (the message says which was off).
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "unexpected response: {}",
            self.text
        );
    }

    /// `[field, code]` of each entry of a `validation_failed` body's `details.fields`.
    pub fn field_errors(&self) -> Vec<[String; 2]> {
        self.body["details"]["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| {
                        ["field", "code"].map(|k| f[k].as_str().unwrap_or_default().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected response: {}",
            self.text
        );
        &self.body
    }
}

/// A client bound to a base URL, optionally with a bearer token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: reqwest::Client::new(),
            token: None,
            headers: Vec::new(),
        }
    }

    /// A copy that sends `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// A copy that sends an extra header on every request.
    pub fn with_header(&self, name: &str, value: &str) -> Self {
        let mut c = self.clone();
        c.headers.push((name.to_owned(), value.to_owned()));
        c
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in &self.headers {
            rb = rb.header(k, v);
        }
        rb
    }

    pub async fn send(rb: reqwest::RequestBuilder) -> ApiResponse {
        let res = rb.send().await.expect("request reaches the server");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("response body is readable");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        ApiResponse {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    /// GET that must answer 200; returns the JSON body.
    #[track_caller]
    pub fn get_ok<'a>(&'a self, path: &'a str) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let res = self.get(path).await;
            assert_eq!(
                res.status.as_u16(),
                200,
                "GET {path} (called at {caller}): {}",
                res.text
            );
            res.body
        }
    }

    pub async fn delete(&self, path: &str) -> ApiResponse {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> ApiResponse {
        Self::send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    pub async fn put<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> ApiResponse {
        Self::send(self.request(reqwest::Method::PUT, path).json(body)).await
    }

    pub async fn patch<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> ApiResponse {
        Self::send(self.request(reqwest::Method::PATCH, path).json(body)).await
    }

    /// Sends raw bytes with the given content type (for malformed-input tests).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> ApiResponse {
        Self::send(
            self.request(method, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }
}
