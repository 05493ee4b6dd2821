//! Text rules the services enforce, written as the JSON Schema patterns the OpenAPI documents
//! publish, so a client (or a schema-driven fuzzer) knows exactly what will be accepted.
//!
//! `utoipa` takes patterns only as string literals, so the field attributes repeat these
//! constants verbatim; `tests::field_patterns_are_the_rules` keeps them identical.
//!
//! Control characters are `\x00-\x1F` and `\x7F-\x9F` (Unicode `Cc`, Rust's `char::is_control`);
//! blanks are Unicode `White_Space` (`\s`, Rust's `char::is_whitespace`).

/// One line of text with at least one visible character, no control characters anywhere
/// (names, titles, display names, frameworks). Surrounding blanks are trimmed when stored.
pub const LINE: &str = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

/// One line of text that may be empty (filters): no control characters.
pub const LINE_FILTER: &str = r"^[^\x00-\x1F\x7F-\x9F]*$";

/// Free text that may be empty and span lines: newlines and tabs, no other control characters.
pub const TEXT: &str = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$";

/// A programming language name: letters, digits, `+ # . -` and inner spaces (`c++`, `c#`,
/// `objective-c`, `visual basic`); surrounding blanks are trimmed, stored lower-case.
pub const LANGUAGE: &str = r"^[^\S\x00-\x1F\x7F-\x9F]*[\p{Alpha}\p{N}+#.-]([\p{Alpha}\p{N}+#. -]*[\p{Alpha}\p{N}+#.-])?[^\S\x00-\x1F\x7F-\x9F]*$";

/// A language filter: a [`LANGUAGE`], or blank for any language.
pub const LANGUAGE_FILTER: &str = r"^[^\S\x00-\x1F\x7F-\x9F]*([\p{Alpha}\p{N}+#.-]([\p{Alpha}\p{N}+#. -]*[\p{Alpha}\p{N}+#.-])?)?[^\S\x00-\x1F\x7F-\x9F]*$";

/// An owner filter: `me` or a user id (lower-case, hyphenated), or blank for anyone.
pub const OWNER_FILTER: &str =
    r"^ *(me|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})? *$";

/// A GitHub repository URL: `https://github.com/<owner>/<repo>` (or `www.github.com`, an
/// optional trailing `/`): owner 1–39 letters, digits and inner `-`; repository 1–100 letters,
/// digits and `. _ -`, not `.` or `..`; a `.git` suffix is dropped when stored.
pub const REPOSITORY_URL: &str = r"^https://(www\.)?github\.com/[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?/([A-Za-z0-9_-][A-Za-z0-9._-]{0,99}|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,98}|\.\.[A-Za-z0-9._-]{1,98})/?$";

/// A page cursor: `<unix nanos>_<id>`, as the lists' `next_cursor` gives it.
pub const CURSOR: &str =
    r"^[0-9]{1,19}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// A tag as sent: words of letters, digits and `- + # .`, separated by blanks; stored
/// lower-case with the blanks turned into `-` (`Machine Learning` → `machine-learning`).
pub const TAG: &str = r"^[^\S\x00-\x1F\x7F-\x9F]*[\p{Alpha}\p{N}+#.-]+([^\S\x00-\x1F\x7F-\x9F]+[\p{Alpha}\p{N}+#.-]+)*[^\S\x00-\x1F\x7F-\x9F]*$";

/// A calendar day `YYYY-MM-DD` of the years 2000–2100 (report and dashboard ranges; also
/// `format: date`, which rules out days like `2024-02-30`).
pub const DAY: &str = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";

/// An email confirmation code: six digits.
pub const CONFIRMATION_CODE: &str = r"^[0-9]{6}$";

/// Longest tag, in characters, as sent and as stored.
pub const MAX_TAG_CHARS: usize = 32;

/// Lower case, one character for one, so a value the patterns above accept still passes them
/// (and its length limit) once lower-cased: `İ` (U+0130, the one letter whose lower case is two
/// characters, `i` + a combining dot) becomes `i`.
pub fn lowercase(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}
/// Longest framework name, in characters.
pub const MAX_FRAMEWORK_CHARS: usize = 40;

#[cfg(feature = "openapi")]
mod schemas {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    fn line(pattern: &str, min: usize, max: usize, description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(Some(pattern))
            .description(Some(description))
            .into()
    }

    /// One tag (items of `tags` lists): see [`super::TAG`].
    pub struct Tag;

    impl utoipa::PartialSchema for Tag {
        fn schema() -> RefOr<Schema> {
            line(
                super::TAG,
                1,
                super::MAX_TAG_CHARS,
                "Words of letters, digits and `- + # .`; stored lower-case, blanks become `-`.",
            )
        }
    }

    impl utoipa::ToSchema for Tag {}

    /// One framework name: see [`super::LINE`].
    pub struct Framework;

    impl utoipa::PartialSchema for Framework {
        fn schema() -> RefOr<Schema> {
            line(
                super::LINE,
                1,
                super::MAX_FRAMEWORK_CHARS,
                "One line of text; surrounding blanks are trimmed.",
            )
        }
    }

    impl utoipa::ToSchema for Framework {}
}

#[cfg(feature = "openapi")]
pub use schemas::{Framework, Tag};

#[cfg(all(test, feature = "openapi"))]
mod tests {
    use std::path::{Path, PathBuf};

    const RULES: [&str; 11] = [
        super::LINE,
        super::TEXT,
        super::LANGUAGE,
        super::TAG,
        super::DAY,
        super::LANGUAGE_FILTER,
        super::OWNER_FILTER,
        super::CURSOR,
        super::REPOSITORY_URL,
        super::CONFIRMATION_CODE,
        super::LINE_FILTER,
    ];

    /// Every raw-string `pattern` attribute in the wire types and cell services is one of the rules.
    #[test]
    fn field_patterns_are_the_rules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut dirs: Vec<PathBuf> =
            vec![root.join("crates/wire-types/src"), root.join("tenant-cell")];
        let mut seen = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    seen += patterns_in(&path);
                }
            }
        }
        assert!(seen >= 20, "only {seen} patterns found");
    }

    fn patterns_in(path: &Path) -> usize {
        const START: &str = "pattern = r\"";
        let source = std::fs::read_to_string(path).expect("source");
        let mut seen = 0;
        for (i, _) in source.match_indices(START) {
            let rest = &source[i + START.len()..];
            let pattern = &rest[..rest.find('"').expect("closing quote")];
            assert!(
                RULES.contains(&pattern),
                "{}: unknown pattern {pattern}",
                path.display()
            );
            seen += 1;
        }
        seen
    }
}

#[cfg(test)]
mod lower_case_tests {
    #[test]
    fn lower_case_keeps_one_character_for_one() {
        assert_eq!(super::lowercase("İSTANBUL Çay"), "istanbul çay");
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let one = super::lowercase(&c.to_string());
            assert_eq!(one.chars().count(), 1, "{c:?}");
            if c.is_alphanumeric() {
                assert!(one.chars().all(char::is_alphanumeric), "{c:?} → {one:?}");
            }
        }
    }
}
