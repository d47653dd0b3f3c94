//! The KV link into a decode worker: transfers share its bandwidth one after another (FIFO),
//! and each also pays the link's latency.

/// A link's speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub bandwidth_bytes_per_s: f64,
    pub latency_ns: u64,
}

/// When each transfer over one link starts and lands.
#[derive(Debug, Clone)]
pub struct LinkQueue {
    link: Option<Link>,
    free_at_ns: u64,
}

impl LinkQueue {
    /// `None`: no link model, transfers are instantaneous.
    pub fn new(link: Option<Link>) -> LinkQueue {
        LinkQueue { link, free_at_ns: 0 }
    }

    /// Books a transfer of `bytes` asked for at `now_ns`; returns (start, end) in ns. The
    /// link is busy for the serialization time; latency overlaps with the next transfer.
    pub fn book(&mut self, now_ns: u64, bytes: u64) -> (u64, u64) {
        let Some(link) = self.link else {
            return (now_ns, now_ns);
        };
        let start = now_ns.max(self.free_at_ns);
        let busy = (bytes as f64 / link.bandwidth_bytes_per_s * 1e9).round() as u64;
        // Saturating: validation bounds the link, but the clock must never wrap.
        self.free_at_ns = start.saturating_add(busy);
        (start, self.free_at_ns.saturating_add(link.latency_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_queue_behind_each_other() {
        // 1 GB/s, 5 µs latency: 1 MB takes 1 ms on the wire.
        let mut q = LinkQueue::new(Some(Link { bandwidth_bytes_per_s: 1e9, latency_ns: 5_000 }));
        assert_eq!(q.book(0, 1_000_000), (0, 1_005_000));
        assert_eq!(q.book(500_000, 1_000_000), (1_000_000, 2_005_000));
        assert_eq!(q.book(3_000_000, 0), (3_000_000, 3_005_000));
    }

    #[test]
    fn no_link_is_instant() {
        assert_eq!(LinkQueue::new(None).book(7, 1 << 30), (7, 7));
    }
}
