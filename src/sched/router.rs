//! Picking a worker for a request: round-robin, or the least-loaded one.

/// How requests are spread over a pool of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    RoundRobin,
    /// The worker with the smallest load; ties go round-robin so idle workers share evenly.
    LeastLoaded,
}

impl RouterKind {
    pub fn name(self) -> &'static str {
        match self {
            RouterKind::RoundRobin => "round_robin",
            RouterKind::LeastLoaded => "least_loaded",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Router {
    kind: RouterKind,
    workers: usize,
    next: usize,
}

impl Router {
    pub fn new(kind: RouterKind, workers: usize) -> Router {
        assert!(workers > 0, "a router needs at least one worker");
        Router { kind, workers, next: 0 }
    }

    /// A router whose first round-robin pick is `first` (mod `workers`).
    pub fn starting_at(kind: RouterKind, workers: usize, first: usize) -> Router {
        let mut r = Router::new(kind, workers);
        r.next = first % workers;
        r
    }

    /// Chooses a worker. `load(i)` is worker i's current load, or `None` while it is down; a
    /// down worker is skipped. `None` when every worker is down.
    pub fn pick(&mut self, load: impl Fn(usize) -> Option<u64>) -> Option<usize> {
        let mut order = (0..self.workers).map(|k| (self.next + k) % self.workers);
        let chosen = match self.kind {
            RouterKind::RoundRobin => order.find(|&i| load(i).is_some()),
            RouterKind::LeastLoaded => order.filter_map(|i| Some((load(i)?, i))).min_by_key(|&(l, _)| l).map(|x| x.1),
        }?;
        self.next = (chosen + 1) % self.workers;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles() {
        let mut r = Router::new(RouterKind::RoundRobin, 3);
        let picks: Vec<_> = (0..5).map(|_| r.pick(|_| Some(0)).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn least_loaded_prefers_low_load_and_rotates_ties() {
        let mut r = Router::new(RouterKind::LeastLoaded, 3);
        let loads = [5u64, 1, 1];
        assert_eq!(r.pick(|i| Some(loads[i])), Some(1));
        assert_eq!(r.pick(|i| Some(loads[i])), Some(2));
        assert_eq!(r.pick(|i| Some(loads[i])), Some(1));
        let idle = [0u64; 3];
        let picks: Vec<_> = (0..3).map(|_| r.pick(|i| Some(idle[i])).unwrap()).collect();
        assert_eq!(picks, vec![2, 0, 1]);
    }

    #[test]
    fn down_workers_are_skipped() {
        for kind in [RouterKind::RoundRobin, RouterKind::LeastLoaded] {
            let mut r = Router::new(kind, 3);
            let load = [Some(0u64), None, Some(0)];
            let picks: Vec<_> = (0..4).map(|_| r.pick(|i| load[i]).unwrap()).collect();
            assert_eq!(picks, vec![0, 2, 0, 2], "{kind:?}");
            assert_eq!(r.pick(|_| None), None);
        }
    }
}
