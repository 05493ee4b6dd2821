//! Validated account values, parsed once at the edge. No I/O, no axum, no sqlx.
//!
//! Each `parse` returns every problem it finds as [`FieldError`]s, so a client gets all of a
//! request's field errors in one 422.

mod password;
pub mod poc;
pub mod search;

pub use password::{Password, PasswordPolicy};
pub use poc::ValidPoc;
use wire_types::FieldError;

/// A normalised (trimmed, lower-case) email address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() > 254 {
            return Err(FieldError::new(
                field,
                "too_long",
                "email is longer than 254 characters",
            ));
        }
        let email = raw.trim().to_lowercase();
        let invalid = |msg: &str| FieldError::new(field, "invalid_email", msg);
        if email.is_empty() {
            return Err(FieldError::new(field, "required", "email is required"));
        }
        if email.len() > 254 {
            return Err(FieldError::new(
                field,
                "too_long",
                "email is longer than 254 characters",
            ));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(invalid("email must contain `@`"));
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(invalid(
                "the part before `@` must be 1–64 characters without `@`",
            ));
        }
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !domain.contains('.') || !labels_ok {
            return Err(invalid(
                "the domain must be a valid host name such as example.com",
            ));
        }
        if local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"(),:;<>[\\]".contains(c))
        {
            return Err(invalid(
                "the part before `@` contains characters that are not allowed",
            ));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(self.0.as_str(), |(l, _)| l)
    }
}

/// A display name: 1–100 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("display name is longer than {} characters", Self::MAX_CHARS),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "invalid_characters",
                "display name contains control characters",
            ));
        }
        let name = raw.trim();
        if name.is_empty() {
            return Err(FieldError::new(
                field,
                "required",
                "display name must not be empty",
            ));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("display name is longer than {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The default display name: the email's local part.
    pub fn from_email(email: &Email) -> Self {
        Self(email.local_part().chars().take(Self::MAX_CHARS).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Collects results of field parsers; `finish` yields all errors at once.
#[derive(Default, Debug)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    pub fn check<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    pub fn check_all<T>(&mut self, r: Result<T, Vec<FieldError>>) -> Option<T> {
        r.map_err(|e| self.0.extend(e)).ok()
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("email", "  Ada@Example.COM ")
                .expect("valid")
                .as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn bad_emails_are_rejected_with_a_code() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "a b@example.com",
            "ada@exa mple.com",
            "ada@-x.com",
        ] {
            let err = Email::parse("email", bad).expect_err(bad);
            assert_eq!(err.field, "email");
        }
        assert_eq!(
            Email::parse("email", &format!("{}@example.com", "a".repeat(250)))
                .expect_err("long")
                .code,
            "too_long"
        );
    }

    #[test]
    fn display_names() {
        assert!(DisplayName::parse("n", "  ").is_err());
        assert!(DisplayName::parse("n", &"x".repeat(101)).is_err());
        assert!(DisplayName::parse("n", "a\u{7}b").is_err());
        assert_eq!(
            DisplayName::parse("n", " Ada ").expect("valid").as_str(),
            "Ada"
        );
    }
}
