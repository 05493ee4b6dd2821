//! How much a room may store: the document's size and the bytes written per second, per user
//! and per room, so no member can fill the cell's Postgres or a replica's memory.
//!
//! **Invariant:** a write over a budget is refused *before* it is applied, stored or sent, and
//! its socket is closed with a clear code; what was acknowledged before stays.

use std::collections::HashMap;
use std::time::Instant;

use uuid::Uuid;

use crate::config::LiveLimits;

/// A byte bucket: `rate` per second, `burst` at most.
#[derive(Debug)]
struct Bucket {
    bytes: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            bytes: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        self.bytes = (self.bytes + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
    }
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// The writer's or the room's bytes per second.
    Volume,
    /// The document's size.
    Document,
}

/// One room's write budgets.
#[derive(Debug)]
pub struct WriteBudget {
    room: Bucket,
    users: HashMap<Uuid, Bucket>,
}

impl WriteBudget {
    pub fn new(limits: &LiveLimits) -> Self {
        Self {
            room: Bucket::full(limits.room_write_burst, Instant::now()),
            users: HashMap::new(),
        }
    }

    /// Takes `bytes` from `user`'s and the room's budgets, both or neither.
    pub fn take(
        &mut self,
        user: Uuid,
        bytes: usize,
        limits: &LiveLimits,
        now: Instant,
    ) -> Result<(), Over> {
        let bytes = bytes as f64;
        let (user_rate, user_burst) = (limits.user_write_bytes_per_sec, limits.user_write_burst);
        // Users whose budget has refilled carry no information: forget them.
        if self.users.len() > 1024 {
            self.users.retain(|_, b| {
                b.bytes + now.duration_since(b.at).as_secs_f64() * user_rate < user_burst
            });
        }
        let mine = self
            .users
            .entry(user)
            .or_insert_with(|| Bucket::full(user_burst, now));
        mine.refill(user_rate, user_burst, now);
        self.room.refill(
            limits.room_write_bytes_per_sec,
            limits.room_write_burst,
            now,
        );
        if mine.bytes < bytes || self.room.bytes < bytes {
            return Err(Over::Volume);
        }
        mine.bytes -= bytes;
        self.room.bytes -= bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_spends_its_own_budget_and_the_room_caps_everyone() {
        let limits = LiveLimits {
            user_write_bytes_per_sec: 10.0,
            user_write_burst: 100.0,
            room_write_bytes_per_sec: 10.0,
            room_write_burst: 250.0,
            ..LiveLimits::default()
        };
        let mut budget = WriteBudget::new(&limits);
        let now = Instant::now();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(budget.take(a, 60, &limits, now).is_ok());
        assert_eq!(budget.take(a, 60, &limits, now), Err(Over::Volume));
        assert!(budget.take(b, 100, &limits, now).is_ok());
        assert!(budget.take(c, 80, &limits, now).is_ok());
        assert_eq!(
            budget.take(c, 20, &limits, now),
            Err(Over::Volume),
            "the room's budget is spent"
        );
        let later = now + std::time::Duration::from_secs(3);
        assert!(budget.take(a, 30, &limits, later).is_ok(), "refilled");
    }
}
