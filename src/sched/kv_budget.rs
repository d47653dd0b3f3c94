//! KV-cache capacity of one worker, in tokens.

/// Reservations against a fixed number of KV tokens. A request reserves before it is admitted
/// and releases when its KV leaves the worker, so capacity can never be overrun.
#[derive(Debug, Clone)]
pub struct KvBudget {
    capacity: u64,
    used: u64,
}

impl KvBudget {
    pub fn new(capacity_tokens: u64) -> KvBudget {
        KvBudget { capacity: capacity_tokens, used: 0 }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn fits(&self, tokens: u64) -> bool {
        self.used + tokens <= self.capacity
    }

    /// Reserves `tokens` if they fit; returns whether it did.
    pub fn try_reserve(&mut self, tokens: u64) -> bool {
        let ok = self.fits(tokens);
        if ok {
            self.used += tokens;
        }
        ok
    }

    pub fn release(&mut self, tokens: u64) {
        debug_assert!(tokens <= self.used, "releasing {tokens} of {} reserved KV tokens", self.used);
        self.used -= tokens.min(self.used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_until_full_then_release() {
        let mut kv = KvBudget::new(10);
        assert!(kv.try_reserve(6));
        assert!(!kv.try_reserve(5));
        assert_eq!(kv.used(), 6);
        assert!(kv.try_reserve(4));
        kv.release(6);
        assert!(kv.fits(6));
        assert!(!kv.fits(7));
    }
}
