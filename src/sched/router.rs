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

    /// Chooses a worker. `load(i)` is worker i's current load (only read by `LeastLoaded`).
    pub fn pick(&mut self, load: impl Fn(usize) -> u64) -> usize {
        let chosen = match self.kind {
            RouterKind::RoundRobin => self.next,
            RouterKind::LeastLoaded => (0..self.workers)
                .map(|k| (self.next + k) % self.workers)
                .min_by_key(|&i| load(i))
                .expect("at least one worker"),
        };
        self.next = (chosen + 1) % self.workers;
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles() {
        let mut r = Router::new(RouterKind::RoundRobin, 3);
        let picks: Vec<_> = (0..5).map(|_| r.pick(|_| 0)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn least_loaded_prefers_low_load_and_rotates_ties() {
        let mut r = Router::new(RouterKind::LeastLoaded, 3);
        let loads = [5u64, 1, 1];
        assert_eq!(r.pick(|i| loads[i]), 1);
        assert_eq!(r.pick(|i| loads[i]), 2);
        assert_eq!(r.pick(|i| loads[i]), 1);
        let idle = [0u64; 3];
        let picks: Vec<_> = (0..3).map(|_| r.pick(|i| idle[i])).collect();
        assert_eq!(picks, vec![2, 0, 1]);
    }
}
