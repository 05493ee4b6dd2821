//! Reading a request: which tenant it is for (`/t/<slug>/…` or `<slug>.<domain>`) and which of
//! the tenant's services serves its path (the cell contract's prefixes). Borrows, never
//! allocates (unless a host needs lowercasing): the router calls these on every request.

use std::borrow::Cow;

use cell_model::contract::Service;

/// Which service serves `path`, and the path to send it: API prefixes keep their path;
/// `/<service>/openapi.json` becomes that service's `/openapi.json`. Borrows, never allocates:
/// the router calls it on every request.
pub fn service_for(path: &str) -> Option<(Service, &str)> {
    for service in Service::ALL {
        for prefix in service.path_prefixes() {
            if let Some(rest) = path.strip_prefix(prefix)
                && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
            {
                return Some((service, path));
            }
        }
    }
    let name = path.strip_prefix('/')?.strip_suffix("/openapi.json")?;
    Service::parse(name).map(|service| (service, "/openapi.json"))
}

/// The tenant a request is for and the path within the tenant: `/t/<slug>/rest` (path form),
/// or `Host: <slug>.<domain>` (host form). `None` when neither names a tenant. Borrows unless
/// the host needs lowercasing.
pub fn tenant_of<'a>(
    host: Option<&'a str>,
    path: &'a str,
    domain: &str,
) -> Option<(Cow<'a, str>, &'a str)> {
    if let Some(rest) = path.strip_prefix("/t/") {
        let (slug, tail) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        return cell_model::is_valid_slug(slug).then_some((Cow::Borrowed(slug), tail));
    }
    let host = host?.split(':').next()?;
    let cut = host.len().checked_sub(domain.len() + 1)?;
    let (slug, dot_domain) = (host.get(..cut)?, host.get(cut..)?);
    if !dot_domain
        .strip_prefix('.')
        .is_some_and(|d| d.eq_ignore_ascii_case(domain))
    {
        return None;
    }
    let slug = if slug.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(slug.to_ascii_lowercase())
    } else {
        Cow::Borrowed(slug)
    };
    cell_model::is_valid_slug(&slug).then_some((slug, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_services_by_prefix() {
        assert_eq!(
            service_for("/v1/pocs?q=x"),
            Some((Service::Poc, "/v1/pocs?q=x"))
        );
        assert_eq!(
            service_for("/v1/dojos/1/live"),
            Some((Service::Dojo, "/v1/dojos/1/live"))
        );
        assert_eq!(
            service_for("/v1/videos"),
            Some((Service::Media, "/v1/videos"))
        );
        assert_eq!(
            service_for("/media/openapi.json"),
            Some((Service::Media, "/openapi.json"))
        );
        assert_eq!(
            service_for("/v1/pocsx"),
            None,
            "a prefix matches whole segments only"
        );
        assert_eq!(
            service_for("/internal/v1/users/1/token-version"),
            None,
            "internal APIs are never routed"
        );
    }

    #[test]
    fn tenants_come_from_the_path_or_the_host() {
        assert_eq!(
            tenant_of(None, "/t/acme/v1/pocs", "mrbill.dev"),
            Some(("acme".into(), "/v1/pocs"))
        );
        assert_eq!(
            tenant_of(Some("acme.mrbill.dev:443"), "/v1/pocs", "mrbill.dev"),
            Some(("acme".into(), "/v1/pocs"))
        );
        assert_eq!(
            tenant_of(Some("mrbill.dev"), "/v1/pocs", "mrbill.dev"),
            None
        );
        assert_eq!(
            tenant_of(Some("ACME.Mrbill.dev"), "/v1/pocs", "mrbill.dev"),
            Some(("acme".into(), "/v1/pocs"))
        );
        assert_eq!(
            tenant_of(None, "/t/acme", "mrbill.dev"),
            Some(("acme".into(), "/"))
        );
        assert_eq!(tenant_of(Some("xmrbill.dev"), "/", "mrbill.dev"), None);
        assert_eq!(tenant_of(None, "/t/Bad_Slug/v1/pocs", "mrbill.dev"), None);
        assert_eq!(tenant_of(Some("evil.com"), "/v1/pocs", "mrbill.dev"), None);
    }
}
