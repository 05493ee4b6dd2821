//! PoC API DTOs (poc-service `/v1/pocs`, `/v1/admin/search`, `/internal/v1/pocs`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{FieldError, PocId, UserId};

/// Longest tag, in characters.
pub use crate::rules::MAX_TAG_CHARS;

/// Tags are lower-case kebab-case: `Machine Learning` → `machine-learning`.
pub fn normalise_tag(field: &str, raw: &str) -> Result<String, FieldError> {
    // Limits apply to what was sent (as the OpenAPI document states), then to the result.
    if raw.chars().count() > MAX_TAG_CHARS {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("tags must have at most {MAX_TAG_CHARS} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            "tags may contain letters, digits and - + # .",
        ));
    }
    let words: Vec<String> = raw
        .split_whitespace()
        .map(crate::rules::lowercase)
        .collect();
    let value = words.join("-");
    if value.is_empty() {
        return Err(FieldError::new(field, "required", "tags must not be empty"));
    }
    if value.chars().count() > MAX_TAG_CHARS {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("tags must have at most {MAX_TAG_CHARS} characters"),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_alphanumeric() || "-+#.".contains(c))
    {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            "tags may contain letters, digits and - + # .",
        ));
    }
    Ok(value)
}

/// Most tags a PoC or a tag filter holds.
pub const MAX_TAGS: usize = 20;

/// A list of tags (a JSON array): each normalised ([`normalise_tag`]; a bad one's error names
/// `field[i]`), duplicates dropped. More than [`MAX_TAGS`] is one `too_many` error on `field`,
/// and nothing is kept. The one tag-list parser of every service.
pub fn tag_array(field: &str, items: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if items.len() > MAX_TAGS {
        errors.push(FieldError::new(
            field,
            "too_many",
            format!("at most {MAX_TAGS} {field} are allowed"),
        ));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match normalise_tag(&format!("{field}[{i}]"), item) {
            Ok(tag) if !out.contains(&tag) => out.push(tag),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    out
}

/// A query parameter's comma-separated tags (`tags=rust,Machine Learning`), as
/// [`tag_array`] reads a list, except that errors name the parameter itself.
pub fn tag_query(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Vec<String> {
    let items: Vec<String> = raw
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let mut found = Vec::new();
    let tags = tag_array(field, &items, &mut found);
    errors.extend(found.into_iter().map(|mut e| {
        e.field = field.to_owned();
        e
    }));
    tags
}

/// Who may see a PoC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Only the owner (and admins).
    Private,
    /// Everyone in the tenant.
    #[default]
    Tenant,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Tenant => "tenant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "private" => Some(Visibility::Private),
            "tenant" => Some(Visibility::Tenant),
            _ => None,
        }
    }
}

/// `POST /v1/pocs` and `PUT /v1/pocs/{id}` (a full replacement: omitted optional fields are reset).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct PocInput {
    /// 1–120 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 120,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub name: String,
    /// Up to 5,000 characters.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 5000,
            pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
        )
    )]
    pub description: String,
    /// `https://github.com/<owner>/<repo>`; normalised (no `.git`, no trailing slash).
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^https://(www\.)?github\.com/[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?/([A-Za-z0-9_-][A-Za-z0-9._-]{0,99}|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,98}|\.\.[A-Za-z0-9._-]{1,98})/?$",
            max_length = 300
        )
    )]
    pub repository_url: String,
    /// Main language, e.g. `rust`, `typescript`, `c++` (stored lower-case, 1–32 characters).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[^\S\x00-\x1F\x7F-\x9F]*[\p{Alpha}\p{N}+#.-]([\p{Alpha}\p{N}+#. -]*[\p{Alpha}\p{N}+#.-])?[^\S\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub language: String,
    /// Up to 20 tags, each 1–32 characters; normalised to lower-case kebab-case and de-duplicated.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<crate::rules::Tag>))]
    pub tags: Vec<String>,
    /// Up to 20 frameworks, each 1–40 characters; de-duplicated case-insensitively.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<crate::rules::Framework>))]
    pub frameworks: Vec<String>,
    #[serde(default)]
    pub visibility: Visibility,
}

/// `PATCH /v1/pocs/{id}`: only the fields present change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct PocPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 120,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 5000,
            pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
        )
    )]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^https://(www\.)?github\.com/[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?/([A-Za-z0-9_-][A-Za-z0-9._-]{0,99}|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,98}|\.\.[A-Za-z0-9._-]{1,98})/?$",
            max_length = 300
        )
    )]
    pub repository_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[^\S\x00-\x1F\x7F-\x9F]*[\p{Alpha}\p{N}+#.-]([\p{Alpha}\p{N}+#. -]*[\p{Alpha}\p{N}+#.-])?[^\S\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Option<Vec<crate::rules::Tag>>))]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Option<Vec<crate::rules::Framework>>))]
    pub frameworks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
}

/// A PoC as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Poc {
    pub id: PocId,
    pub owner_id: UserId,
    pub name: String,
    pub description: String,
    pub repository_url: String,
    pub language: String,
    pub tags: Vec<String>,
    pub frameworks: Vec<String>,
    pub visibility: Visibility,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: OffsetDateTime,
}

/// A facet value and how many matching PoCs (visible to the caller) carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// Facet counts over all matches of a search (not just the page).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Facets {
    pub language: Vec<FacetCount>,
    pub tags: Vec<FacetCount>,
}

/// `GET /v1/pocs`: one page of results, the total and facet counts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct PocPage {
    pub items: Vec<Poc>,
    pub page: u32,
    pub per_page: u32,
    /// Matches visible to the caller.
    pub total: u64,
    pub facets: Facets,
}

/// `GET /v1/admin/search`: the state of the cell's search index.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchStatus {
    /// `embedded` (tantivy) or `meilisearch`.
    pub engine: String,
    /// Writes not yet applied to the index.
    pub pending: u64,
    /// Outbox position the index has applied up to.
    pub indexed_seq: i64,
    /// A rebuild from Postgres is in progress.
    pub reindexing: bool,
}

/// `GET /internal/v1/pocs`: a page of PoCs visible to a user, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InternalPocPage {
    pub items: Vec<Poc>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A group and its count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
}

/// `GET /internal/v1/pocs/aggregates`: dashboard figures over PoCs visible to a user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PocAggregates {
    pub total: u64,
    pub by_language: Vec<KeyCount>,
    pub by_tag: Vec<KeyCount>,
    /// `YYYY-MM` of creation.
    pub by_month: Vec<KeyCount>,
    /// Owner user ids.
    pub by_owner: Vec<KeyCount>,
}

crate::wire!(Poc, PocPage, SearchStatus, PocAggregates, InternalPocPage);

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn tag_lists_are_normalised_deduplicated_and_bounded() {
        let mut errors = Vec::new();
        let items = ["Machine Learning", "machine-learning", "rust"].map(String::from);
        assert_eq!(
            tag_array("tags", &items, &mut errors),
            ["machine-learning", "rust"]
        );
        assert!(errors.is_empty());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(tag_array("tags", &many, &mut errors).is_empty());
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code.as_str()),
            ("tags", "too_many")
        );
        let mut errors = Vec::new();
        tag_array(
            "tags",
            &["ok".into(), "x".repeat(MAX_TAG_CHARS + 1)],
            &mut errors,
        );
        assert_eq!(errors[0].field, "tags[1]");
    }

    #[test]
    fn a_tag_the_pattern_accepts_is_accepted_after_lower_casing() {
        // `İ` lower-cases to two characters in Unicode; the tag stays 32 characters of letters.
        let raw = "İ".repeat(MAX_TAG_CHARS);
        assert_eq!(
            normalise_tag("tags[0]", &raw),
            Ok("i".repeat(MAX_TAG_CHARS))
        );
    }

    #[test]
    fn query_tags_split_on_commas_and_errors_name_the_parameter() {
        let mut errors = Vec::new();
        assert_eq!(
            tag_query("exclude_tags", Some(" Rust , ,Go,rust"), &mut errors),
            ["rust", "go"]
        );
        assert!(tag_query("tags", None, &mut errors).is_empty());
        assert!(errors.is_empty());
        tag_query(
            "exclude_tags",
            Some(&"x".repeat(MAX_TAG_CHARS + 1)),
            &mut errors,
        );
        assert_eq!(errors[0].field, "exclude_tags");
    }
}
