//! Validating onboarding requests. No I/O: uniqueness and capacity are the catalog's job.

use cell_model::{
    CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier, is_valid_slug,
};
use wire_types::FieldError;
use wire_types::admin::CreateTenant;

/// Public webmail providers: their domains never identify one company.
const WEBMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "ymail.com",
    "outlook.com",
    "hotmail.com",
    "hotmail.co.uk",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "zoho.com",
    "fastmail.com",
    "hey.com",
    "tutanota.com",
    "qq.com",
    "163.com",
    "126.com",
];

/// A validated onboarding request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTenant {
    pub slug: String,
    pub display_name: String,
    pub admin_email: String,
    pub email_domains: Vec<String>,
    pub tier: Tier,
    /// Where the cell goes: the named placement, or (with `region`) one chosen at admission.
    pub placement: String,
    /// The region asked for instead of a placement.
    pub region: Option<String>,
}

impl NewTenant {
    /// Checks every field and reports all failures at once.
    pub fn parse(req: CreateTenant, default_placement: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !is_valid_slug(&req.slug) {
            errors.push(FieldError::new(
                "slug",
                "invalid_format",
                "a DNS label: 3–40 of a-z, 0-9 and '-', starting and ending with a letter or digit",
            ));
        }
        let display_name = req.display_name.trim().to_owned();
        if display_name.is_empty() || display_name.chars().count() > 100 {
            errors.push(FieldError::new(
                "display_name",
                "invalid_length",
                "1–100 characters",
            ));
        }
        let admin_email = req.admin_email.trim().to_ascii_lowercase();
        if !is_valid_email(&admin_email) {
            errors.push(FieldError::new(
                "admin_email",
                "invalid_format",
                "an email address like admin@acme.com",
            ));
        }
        if req.email_domains.len() > 20 {
            errors.push(FieldError::new(
                "email_domains",
                "too_many",
                "at most 20 domains",
            ));
        }
        let mut email_domains: Vec<String> = Vec::new();
        for (i, raw) in req.email_domains.iter().enumerate() {
            let domain = raw.trim().trim_end_matches('.').to_ascii_lowercase();
            let field = format!("email_domains[{i}]");
            if !is_valid_domain(&domain) {
                errors.push(FieldError::new(
                    field,
                    "invalid_format",
                    "a domain name like acme.com",
                ));
            } else if WEBMAIL.contains(&domain.as_str()) {
                errors.push(FieldError::new(
                    field,
                    "webmail_domain",
                    format!("{domain} is a public webmail domain and cannot identify a tenant"),
                ));
            } else if email_domains.contains(&domain) {
                errors.push(FieldError::new(field, "duplicate", "listed twice"));
            } else {
                email_domains.push(domain);
            }
        }
        let tier = match req.tier.as_deref() {
            None => Some(Tier::Small),
            Some(name) => Tier::parse(name),
        };
        if tier.is_none() {
            errors.push(FieldError::new(
                "tier",
                "unknown_tier",
                "one of small, standard, large",
            ));
        }
        if req.placement.is_some() && req.region.is_some() {
            errors.push(FieldError::new(
                "region",
                "conflicting",
                "name a placement or a region, not both",
            ));
        }
        if let Some(region) = &req.region
            && !is_valid_region(region)
        {
            errors.push(FieldError::new(
                "region",
                "invalid_format",
                "a region label: 1–32 of a-z, 0-9 and '-', like sa-east-1",
            ));
        }
        let placement = match (&req.placement, &req.region) {
            (Some(placement), _) => placement.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => default_placement.to_owned(),
        };
        match (errors.is_empty(), tier) {
            (true, Some(tier)) => Ok(Self {
                slug: req.slug,
                display_name,
                admin_email,
                email_domains,
                tier,
                placement,
                region: req.region,
            }),
            _ => Err(errors),
        }
    }

    /// The desired state of this tenant's new cell.
    pub fn cell_spec(
        &self,
        cell_id: &str,
        (engine, search): (DatabaseEngine, SearchEngine),
        version: &str,
    ) -> CellSpec {
        let template = self.tier.template();
        CellSpec {
            cell_id: cell_id.to_owned(),
            tenant: self.slug.clone(),
            tier: self.tier,
            version: version.to_owned(),
            replicas: ServiceReplicas::default(),
            database: DatabaseSpec {
                engine,
                class: None,
                storage_gib: template.db_storage_gib,
                multi_az: engine == DatabaseEngine::Rds && template.multi_az,
            },
            search,
            placement: self.placement.clone(),
            suspended: false,
            email_domains: self.email_domains.clone(),
            bootstrap: None,
            migration: None,
            restore: None,
        }
    }
}

fn is_valid_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && s.len() <= 254
                && !local.chars().any(|c| c.is_whitespace() || c == '@')
                && is_valid_domain(domain)
        }
        None => false,
    }
}

/// A region label: 1–32 of a-z, 0-9 and '-', not starting or ending with '-'.
pub fn is_valid_region(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A validated `POST /v1/placements`.
pub fn parse_placement(
    req: wire_types::admin::CreatePlacement,
) -> Result<wire_types::admin::CreatePlacement, Vec<FieldError>> {
    let mut errors = Vec::new();
    if !is_valid_slug(&req.name) {
        errors.push(FieldError::new(
            "name",
            "invalid_format",
            "a DNS label: 3–40 of a-z, 0-9 and '-'",
        ));
    }
    if !is_valid_region(&req.region) {
        errors.push(FieldError::new(
            "region",
            "invalid_format",
            "a region label: 1–32 of a-z, 0-9 and '-', like sa-east-1",
        ));
    }
    if req.capacity > 10_000 {
        errors.push(FieldError::new("capacity", "out_of_range", "0–10000 units"));
    }
    if errors.is_empty() {
        Ok(req)
    } else {
        Err(errors)
    }
}

/// A hostname with at least two labels, each a DNS label.
fn is_valid_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(slug: &str, domains: &[&str]) -> CreateTenant {
        CreateTenant {
            slug: slug.into(),
            display_name: "Acme Corp".into(),
            admin_email: "Admin@Acme.com".into(),
            email_domains: domains.iter().map(|d| d.to_string()).collect(),
            tier: None,
            placement: None,
            region: None,
        }
    }

    #[test]
    fn a_region_or_a_placement_not_both() {
        let mut r = req("acme", &[]);
        r.region = Some("sa-east-1".into());
        let t = NewTenant::parse(r.clone(), "local").expect("valid");
        assert_eq!(
            (t.region.as_deref(), t.placement.as_str()),
            (Some("sa-east-1"), "")
        );
        r.placement = Some("local".into());
        let errors = NewTenant::parse(r.clone(), "local").expect_err("both");
        assert_eq!(errors[0].code, "conflicting");
        r.placement = None;
        r.region = Some("Sa East".into());
        let errors = NewTenant::parse(r, "local").expect_err("bad region");
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code.as_str()),
            ("region", "invalid_format")
        );
    }

    #[test]
    fn a_valid_request_is_normalised() {
        let t = NewTenant::parse(req("acme", &["Acme.COM.", "acme.io"]), "local").expect("valid");
        assert_eq!(t.admin_email, "admin@acme.com");
        assert_eq!(t.email_domains, vec!["acme.com", "acme.io"]);
        assert_eq!((t.tier, t.placement.as_str()), (Tier::Small, "local"));
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut r = req(
            "-bad",
            &["gmail.com", "not a domain", "acme.com", "acme.com"],
        );
        r.display_name = " ".into();
        r.admin_email = "nobody".into();
        r.tier = Some("huge".into());
        let errors = NewTenant::parse(r, "local").expect_err("invalid");
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("slug", "invalid_format"),
                ("display_name", "invalid_length"),
                ("admin_email", "invalid_format"),
                ("email_domains[0]", "webmail_domain"),
                ("email_domains[1]", "invalid_format"),
                ("email_domains[3]", "duplicate"),
                ("tier", "unknown_tier"),
            ]
        );
    }

    #[test]
    fn the_spec_takes_the_tier_defaults() {
        let mut r = req("acme", &[]);
        r.tier = Some("standard".into());
        let spec = NewTenant::parse(r, "local").expect("valid").cell_spec(
            "c-acme-1234",
            (DatabaseEngine::Local, SearchEngine::Embedded),
            "0.1.0",
        );
        assert_eq!(spec.database.storage_gib, 100);
        assert_eq!(spec.tier, Tier::Standard);
        assert!(!spec.suspended);
    }
}
