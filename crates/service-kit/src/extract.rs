//! Extractors whose rejections are `ApiError`s with stable codes (axum's own render plain text).
//!
//! - [`ApiJson`]: wrong content type → 415, too large → 413, malformed JSON, unknown fields,
//!   missing fields or wrong types → 400 `invalid_json` with the JSON path in `details`.
//! - [`ApiPath`] / [`ApiQuery`]: unparsable parameters → 400 `invalid_parameter`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::json;
use wire_types::ErrorCode;

use crate::ApiError;

/// JSON request body / response with the project's error mapping.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
            } else {
                ApiError::new(ErrorCode::InvalidJson, "could not read the request body")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`, mapping every failure to 400 `invalid_json` with the failing path.
/// Request bodies are JSON objects: an array is rejected even where serde could read a struct
/// from one, because the OpenAPI document promises an object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        let mut details = json!({ "line": inner.line(), "column": inner.column() });
        if path != "." {
            details["path"] = json!(path);
        }
        ApiError::new(ErrorCode::InvalidJson, message).with_details(details)
    })?;
    // Trailing garbage after the value is malformed JSON too.
    de.end()
        .map_err(|err| ApiError::new(ErrorCode::InvalidJson, err.to_string()))?;
    Ok(value)
}

fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Answers only wire types (`wire_types::Wire`): nothing else is serialised to clients.
impl<T: wire_types::Wire> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; unparsable ones (e.g. a malformed UUID) → 400 `invalid_parameter`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rejection| ApiError::new(ErrorCode::InvalidParameter, rejection.body_text()))
    }
}

/// Query parameters; unparsable or unknown ones → 400 `invalid_parameter`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| ApiError::new(ErrorCode::InvalidParameter, rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Vec<String>,
    }

    #[test]
    fn unknown_field_is_invalid_json_with_its_path() {
        let err = parse_json::<Body>(br#"{"name":"a","tags":[],"x":1}"#).expect_err("accepted");
        assert_eq!(err.code, ErrorCode::InvalidJson);
        assert!(err.message.contains("unknown field `x`"), "{}", err.message);
    }

    #[test]
    fn wrong_type_names_the_nested_path() {
        let err = parse_json::<Body>(br#"{"name":"a","tags":[1]}"#).expect_err("accepted");
        assert_eq!(err.details["path"], "tags[0]");
    }

    #[test]
    fn arrays_are_not_objects() {
        let err = parse_json::<Body>(br#"["a", []]"#).expect_err("accepted");
        assert_eq!(err.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let err = parse_json::<Body>(br#"{"name":"a","tags":[]} x"#).expect_err("accepted");
        assert_eq!(err.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn json_content_types() {
        let mut h = http::HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("valid"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().expect("valid"));
        assert!(!is_json(&h));
    }
}
