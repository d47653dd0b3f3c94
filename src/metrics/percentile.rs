//! Nearest-rank percentiles: the p-th percentile of n sorted values is the value at rank
//! ⌈p/100 · n⌉ (1-based), always one of the observed values.

/// Percentile `p` (0 < p ≤ 100) of `sorted`, which must be in ascending order.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p90, p99 and the mean of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Spread {
    /// Sorts `values` in place and summarises them; `None` when empty.
    pub fn of(values: &mut [f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(Spread {
            p50: nearest_rank(values, 50.0)?,
            p90: nearest_rank(values, 90.0)?,
            p99: nearest_rank(values, 99.0)?,
            mean: values.iter().sum::<f64>() / values.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_definition() {
        let v: Vec<u32> = (1..=10).collect();
        assert_eq!(nearest_rank(&v, 50.0), Some(5));
        assert_eq!(nearest_rank(&v, 90.0), Some(9));
        assert_eq!(nearest_rank(&v, 99.0), Some(10));
        assert_eq!(nearest_rank(&[7], 50.0), Some(7));
        assert_eq!(nearest_rank::<u32>(&[], 50.0), None);
        let mut f = vec![3.0, 1.0, 2.0, 4.0];
        let s = Spread::of(&mut f).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.mean), (2.0, 4.0, 4.0, 2.5));
    }
}
