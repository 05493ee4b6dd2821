//! PoC fields: validation and normalisation rules.

use wire_types::FieldError;
use wire_types::pocs::{PocInput, Visibility};

pub const MAX_NAME_CHARS: usize = 120;
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
pub const MAX_LANGUAGE_CHARS: usize = 32;
pub use wire_types::pocs::{MAX_TAG_CHARS, MAX_TAGS, normalise_tag, tag_array};
pub const MAX_FRAMEWORKS: usize = 20;
pub const MAX_FRAMEWORK_CHARS: usize = 40;

/// A PoC whose every field passed the rules, in normalised form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidPoc {
    pub name: String,
    pub description: String,
    pub repository_url: String,
    pub language: String,
    pub tags: Vec<String>,
    pub frameworks: Vec<String>,
    pub visibility: Visibility,
}

impl ValidPoc {
    /// Validates every field, returning all problems at once.
    pub fn parse(input: &PocInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut ok =
            |r: Result<String, FieldError>| r.map_err(|e| errors.push(e)).unwrap_or_default();
        let name = ok(text("name", &input.name, 1, MAX_NAME_CHARS, false));
        let description = ok(text(
            "description",
            &input.description,
            0,
            MAX_DESCRIPTION_CHARS,
            true,
        ));
        let repository_url = ok(github_url("repository_url", &input.repository_url));
        let language = ok(normalise_language("language", &input.language));
        let tags = tag_array("tags", &input.tags, &mut errors);
        let frameworks = list(
            "frameworks",
            &input.frameworks,
            MAX_FRAMEWORKS,
            &mut errors,
            |f, t| text(f, t, 1, MAX_FRAMEWORK_CHARS, false),
        );
        if errors.is_empty() {
            Ok(Self {
                name,
                description,
                repository_url,
                language,
                tags,
                frameworks,
                visibility: input.visibility,
            })
        } else {
            Err(errors)
        }
    }
}

/// Trimmed text of `min..=max` characters without control characters (newlines and tabs are
/// allowed where `multiline`).
fn text(
    field: &str,
    raw: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, FieldError> {
    // Limits apply to what was sent (as the OpenAPI document states), then to the trimmed value.
    if raw.chars().count() > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("{field} must have at most {max} characters"),
        ));
    }
    // Control characters are refused anywhere in what was sent, even where trimming would drop
    // them, so the published pattern and the server agree.
    if raw
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            format!("{field} contains control characters"),
        ));
    }
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min {
        return Err(FieldError::new(
            field,
            "required",
            format!("{field} must not be empty"),
        ));
    }
    if chars > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("{field} must have at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Lower-case language name: letters, digits and `+ # . -` (e.g. `c++`, `c#`, `objective-c`).
pub fn normalise_language(field: &str, raw: &str) -> Result<String, FieldError> {
    let value = wire_types::rules::lowercase(&text(field, raw, 1, MAX_LANGUAGE_CHARS, false)?);
    if !value
        .chars()
        .all(|c| c.is_alphanumeric() || "+#.- ".contains(c))
    {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            "language may contain letters, digits, spaces and + # . -",
        ));
    }
    Ok(value)
}

/// Validates each item, drops case-insensitive duplicates (first wins), bounds the count.
fn list(
    field: &str,
    items: &[String],
    max: usize,
    errors: &mut Vec<FieldError>,
    each: impl Fn(&str, &str) -> Result<String, FieldError>,
) -> Vec<String> {
    if items.len() > max {
        errors.push(FieldError::new(
            field,
            "too_many",
            format!("at most {max} {field} are allowed"),
        ));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match each(&format!("{field}[{i}]"), item) {
            Ok(v) if !out.iter().any(|o| o.eq_ignore_ascii_case(&v)) => out.push(v),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    out
}

/// A GitHub repository URL, normalised to `https://github.com/<owner>/<repo>`.
pub fn github_url(field: &str, raw: &str) -> Result<String, FieldError> {
    let invalid = || {
        FieldError::new(
            field,
            "invalid_repository_url",
            "must be a GitHub repository URL: https://github.com/<owner>/<repo>",
        )
    };
    // Exactly the documented shape: no surrounding blanks, lower-case scheme and host.
    if raw.len() > 300
        || raw.trim() != raw
        || !(raw.starts_with("https://github.com/") || raw.starts_with("https://www.github.com/"))
    {
        return Err(invalid());
    }
    let url = url::Url::parse(raw).map_err(|_| invalid())?;
    let host = url.host_str().unwrap_or_default();
    if url.scheme() != "https" || !(host == "github.com" || host == "www.github.com") {
        return Err(invalid());
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.port().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid());
    }
    let segments: Vec<&str> = url
        .path()
        .trim_end_matches('/')
        .trim_start_matches('/')
        .split('/')
        .collect();
    let [owner, repo] = segments.as_slice() else {
        return Err(invalid());
    };
    // `.git` is dropped unless nothing usable would be left (`.git` itself is a valid name).
    let repo = repo
        .strip_suffix(".git")
        .filter(|r| !matches!(*r, "" | "." | ".."))
        .unwrap_or(repo);
    let owner_ok = (1..=39).contains(&owner.len())
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let repo_ok = (1..=100).contains(&repo.len())
        && repo != "."
        && repo != ".."
        && repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !owner_ok || !repo_ok {
        return Err(invalid());
    }
    Ok(format!("https://github.com/{owner}/{repo}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PocInput {
        PocInput {
            name: "  Search spike ".into(),
            description: "line one\nline two".into(),
            repository_url: "https://www.github.com/acme/search-spike.git/".into(),
            language: "Rust".into(),
            tags: vec![
                "Machine Learning".into(),
                "machine-learning".into(),
                "CLI".into(),
            ],
            frameworks: vec!["Axum".into(), "axum".into()],
            visibility: Visibility::Private,
        }
    }

    #[test]
    fn fields_are_normalised() {
        let poc = ValidPoc::parse(&input()).expect("valid");
        assert_eq!(poc.name, "Search spike");
        assert_eq!(poc.repository_url, "https://github.com/acme/search-spike");
        assert_eq!(poc.language, "rust");
        assert_eq!(poc.tags, ["machine-learning", "cli"]);
        assert_eq!(poc.frameworks, ["Axum"]);
    }

    #[test]
    fn github_urls() {
        for ok in [
            "https://github.com/a/b",
            "https://github.com/a-b/c.d_e",
            "https://github.com/a/b/",
        ] {
            assert!(github_url("u", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://github.com/a/b",
            "https://gitlab.com/a/b",
            "https://github.com/a",
            "https://github.com/a/b/tree/main",
            "https://github.com/a/b?x=1",
            "https://user@github.com/a/b",
            "https://github.com:8443/a/b",
            "https://github.com/-a/b",
            "https://github.com/a/..",
            "github.com/a/b",
            "javascript:alert(1)",
            "HTTPS://GITHUB.COM/a/b",
            " https://github.com/a/b",
        ] {
            assert!(github_url("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let mut bad = input();
        bad.name = " ".into();
        bad.repository_url = "https://example.com/x".into();
        bad.tags = (0..21).map(|i| format!("t{i}")).collect();
        bad.frameworks = vec!["x".repeat(41)];
        let errors = ValidPoc::parse(&bad).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "repository_url", "tags", "frameworks[0]"]);
    }

    /// Found by schemathesis: `İ` lower-cases to `i` + a combining dot, which the character
    /// check refused although the document's pattern accepts `İ`.
    #[test]
    fn a_language_the_pattern_accepts_is_accepted_after_lower_casing() {
        assert_eq!(
            normalise_language("language", "   İzmir"),
            Ok("izmir".to_owned())
        );
    }

    #[test]
    fn bad_tags_name_their_index() {
        let mut bad = input();
        bad.tags = vec!["ok".into(), "no/slash".into(), "x".repeat(33)];
        let errors = ValidPoc::parse(&bad).expect_err("invalid");
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [("tags[1]", "invalid_characters"), ("tags[2]", "too_long")]
        );
    }
}
