//! Tiers: named templates that give a cell its defaults and the bounds `scale` must stay within.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Size template of a cell. Tenants pick a tier, not per-tenant tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Small,
    Standard,
    Large,
}

/// Inclusive replica bounds and the default inside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaBounds {
    pub min: u32,
    pub default: u32,
    pub max: u32,
}

impl ReplicaBounds {
    /// Whether an override is allowed by this tier.
    pub fn allows(&self, replicas: u32) -> bool {
        (self.min..=self.max).contains(&replicas)
    }
}

/// Defaults and bounds a tier supplies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierTemplate {
    pub tier: Tier,
    pub poc: ReplicaBounds,
    /// A room lives in one process: routers pin each dojo's sockets to one replica, and a
    /// replica that loads a room takes it over from any other (dojo-service's `room::owner`).
    pub dojo: ReplicaBounds,
    pub media: ReplicaBounds,
    /// Default database instance class.
    pub db_class: &'static str,
    /// Database instance classes `scale` may choose.
    pub db_classes: &'static [&'static str],
    pub db_storage_gib: u32,
    pub db_storage_max_gib: u32,
    pub multi_az: bool,
    /// How often the cell is backed up on schedule.
    pub backup_every_hours: u32,
    /// How long a scheduled backup is kept (the newest few are kept whatever their age).
    pub backup_retention_days: u32,
}

impl TierTemplate {
    /// The replica bounds of `service` in this tier.
    pub fn bounds(&self, service: crate::contract::Service) -> ReplicaBounds {
        match service {
            crate::contract::Service::Poc => self.poc,
            crate::contract::Service::Dojo => self.dojo,
            crate::contract::Service::Media => self.media,
        }
    }
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Small, Tier::Standard, Tier::Large];

    /// Lower-case name, as in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Small => "small",
            Tier::Standard => "standard",
            Tier::Large => "large",
        }
    }

    /// Parses the lower-case name.
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Capacity units a cell of this tier takes from its placement (admission control).
    pub fn units(self) -> u32 {
        match self {
            Tier::Small => 1,
            Tier::Standard => 2,
            Tier::Large => 4,
        }
    }

    /// The template for this tier.
    pub fn template(self) -> TierTemplate {
        let b = |min, default, max| ReplicaBounds { min, default, max };
        match self {
            Tier::Small => TierTemplate {
                tier: self,
                poc: b(1, 1, 2),
                dojo: b(1, 1, 2),
                media: b(1, 1, 2),
                db_class: "db.t4g.small",
                db_classes: &["db.t4g.small", "db.t4g.medium"],
                db_storage_gib: 20,
                db_storage_max_gib: 100,
                multi_az: false,
                backup_every_hours: 24,
                backup_retention_days: 7,
            },
            Tier::Standard => TierTemplate {
                tier: self,
                poc: b(2, 2, 6),
                dojo: b(1, 2, 4),
                media: b(1, 2, 4),
                db_class: "db.m7g.large",
                db_classes: &["db.m7g.large", "db.m7g.xlarge", "db.m7g.2xlarge"],
                db_storage_gib: 100,
                db_storage_max_gib: 1000,
                multi_az: true,
                backup_every_hours: 6,
                backup_retention_days: 14,
            },
            Tier::Large => TierTemplate {
                tier: self,
                poc: b(3, 3, 20),
                dojo: b(2, 3, 8),
                media: b(2, 3, 10),
                db_class: "db.r7g.xlarge",
                db_classes: &["db.r7g.xlarge", "db.r7g.2xlarge", "db.r7g.4xlarge"],
                db_storage_gib: 500,
                db_storage_max_gib: 16384,
                multi_az: true,
                backup_every_hours: 1,
                backup_retention_days: 35,
            },
        }
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tier `{s}` (expected small, standard or large)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tier_default_lies_within_its_bounds() {
        for tier in Tier::ALL {
            let t = tier.template();
            for r in crate::contract::Service::ALL.map(|s| t.bounds(s)) {
                assert!(r.allows(r.default), "{tier:?}");
                assert!(!r.allows(r.max + 1) && !r.allows(r.min - 1), "{tier:?}");
            }
            assert!(t.db_classes.contains(&t.db_class));
            assert!(t.db_storage_gib <= t.db_storage_max_gib);
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
        }
    }
}
