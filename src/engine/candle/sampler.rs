//! Choosing the next token from logits: greedy, or temperature with nucleus (top-p) sampling
//! from a seeded generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Softmax at `temperature`, keep the smallest set of tokens whose probability reaches
    /// `top_p`, draw one.
    TopP {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// `stream` separates requests: the same seed and stream give the same draws.
    pub fn new(sampling: Sampling, stream: u64) -> Sampler {
        let seed = match sampling {
            Sampling::TopP { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Sampler { sampling, rng }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self.sampling {
            Sampling::Greedy => argmax(logits),
            Sampling::TopP { temperature, top_p, .. } => {
                if temperature <= 0.0 {
                    return argmax(logits);
                }
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<(u32, f32)> =
                    logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l - max) / temperature).exp())).collect();
                let total: f32 = probs.iter().map(|p| p.1).sum();
                probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let mut kept = 0.0;
                let mut cut = probs.len();
                for (i, p) in probs.iter().enumerate() {
                    kept += p.1 / total;
                    if kept >= top_p {
                        cut = i + 1;
                        break;
                    }
                }
                let probs = &probs[..cut];
                let mass: f32 = probs.iter().map(|p| p.1).sum();
                let mut x = self.rng.gen::<f32>() * mass;
                for p in probs {
                    x -= p.1;
                    if x <= 0.0 {
                        return p.0;
                    }
                }
                probs[probs.len() - 1].0
            }
        }
    }
}

/// Index of the largest logit (the lowest index on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_seeded_top_p() {
        let logits = [0.0, 3.0, 1.0, 3.0];
        assert_eq!(Sampler::new(Sampling::Greedy, 0).sample(&logits), 1);
        let s = Sampling::TopP { temperature: 1.0, top_p: 0.9, seed: 5 };
        let draws = |stream| {
            let mut smp = Sampler::new(s, stream);
            (0..50).map(|_| smp.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        let d = draws(1);
        assert!(d.contains(&1) && d.contains(&3));
        assert!(!d.contains(&0), "token 0 is outside the 0.9 nucleus");
        let tiny = Sampling::TopP { temperature: 1.0, top_p: 0.01, seed: 5 };
        assert_eq!(Sampler::new(tiny, 0).sample(&logits), 1);
    }
}
