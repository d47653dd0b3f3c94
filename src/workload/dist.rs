//! Token-length distributions for prompt and output lengths.
//!
//! In a scenario a length is either a bare integer (`prompt_tokens = 128`, a fixed length) or a
//! table tagged by `kind`: `fixed`, `uniform`, `normal` (clamped), `lognormal`, `empirical`.
//! Every sample is an integer of at least 1 token.

use rand::Rng;
use rand_distr::Distribution;

use super::sample;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A distribution of token counts, as written in the scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum LengthDist {
    Fixed {
        value: u64,
    },
    /// Inclusive on both ends.
    Uniform {
        min: u64,
        max: u64,
    },
    /// Normal with mean and standard deviation, rounded and clamped to `[min, max]`.
    Normal {
        mean: f64,
        std: f64,
        min: u64,
        max: Option<u64>,
    },
    /// Log-normal given by the mean and standard deviation of the lengths themselves
    /// (not of their logarithm), rounded and clamped to `[min, max]`.
    LogNormal {
        mean: f64,
        std: f64,
        min: u64,
        max: Option<u64>,
    },
    /// One of the listed values, with optional weights (uniform when absent).
    Empirical {
        values: Vec<u64>,
        weights: Option<Vec<f64>>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum TaggedDist {
    Fixed { value: u64 },
    Uniform { min: u64, max: u64 },
    Normal { mean: f64, std: f64, min: Option<u64>, max: Option<u64> },
    Lognormal { mean: f64, std: f64, min: Option<u64>, max: Option<u64> },
    Empirical { values: Vec<u64>, weights: Option<Vec<f64>> },
}

impl From<TaggedDist> for LengthDist {
    fn from(t: TaggedDist) -> Self {
        match t {
            TaggedDist::Fixed { value } => LengthDist::Fixed { value },
            TaggedDist::Uniform { min, max } => LengthDist::Uniform { min, max },
            TaggedDist::Normal { mean, std, min, max } => LengthDist::Normal { mean, std, min: min.unwrap_or(1), max },
            TaggedDist::Lognormal { mean, std, min, max } => {
                LengthDist::LogNormal { mean, std, min: min.unwrap_or(1), max }
            }
            TaggedDist::Empirical { values, weights } => LengthDist::Empirical { values, weights },
        }
    }
}

impl<'de> Deserialize<'de> for LengthDist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LengthDist;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a token count (integer) or a table with kind = \"fixed\" | \"uniform\" | \
                     \"normal\" | \"lognormal\" | \"empirical\"",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LengthDist, E> {
                u64::try_from(v)
                    .map(|value| LengthDist::Fixed { value })
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<LengthDist, E> {
                Ok(LengthDist::Fixed { value })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LengthDist, A::Error> {
                TaggedDist::deserialize(de::value::MapAccessDeserializer::new(map)).map(Into::into)
            }
        }
        d.deserialize_any(V)
    }
}

impl LengthDist {
    /// Checks the parameters; the message says what is wrong, the caller adds where.
    pub fn check(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("`{name}` must be a positive number, got {v}"))
            }
        };
        match self {
            LengthDist::Fixed { value } if *value == 0 => Err("a length must be at least 1 token".into()),
            LengthDist::Fixed { .. } => Ok(()),
            LengthDist::Uniform { min, max } => {
                if *min == 0 {
                    Err("`min` must be at least 1 token".into())
                } else if min > max {
                    Err(format!("`min` ({min}) is greater than `max` ({max})"))
                } else {
                    Ok(())
                }
            }
            LengthDist::Normal { mean, std, min, max } | LengthDist::LogNormal { mean, std, min, max } => {
                positive("mean", *mean)?;
                if !(std.is_finite() && *std >= 0.0) {
                    return Err(format!("`std` must be zero or positive, got {std}"));
                }
                if *min == 0 {
                    return Err("`min` must be at least 1 token".into());
                }
                match max {
                    Some(max) if max < min => Err(format!("`min` ({min}) is greater than `max` ({max})")),
                    _ => Ok(()),
                }
            }
            LengthDist::Empirical { values, weights } => {
                if values.is_empty() {
                    return Err("`values` is empty".into());
                }
                if values.contains(&0) {
                    return Err("`values` holds a 0: every length must be at least 1 token".into());
                }
                if let Some(w) = weights {
                    if w.len() != values.len() {
                        return Err(format!("`weights` has {} entries but `values` has {}", w.len(), values.len()));
                    }
                    if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                        return Err("`weights` must be non-negative with a positive sum".into());
                    }
                }
                Ok(())
            }
        }
    }

    /// The largest length this distribution can produce, when it is bounded.
    pub fn max_tokens(&self) -> Option<u64> {
        match self {
            LengthDist::Fixed { value } => Some(*value),
            LengthDist::Uniform { max, .. } => Some(*max),
            LengthDist::Normal { max, .. } | LengthDist::LogNormal { max, .. } => *max,
            LengthDist::Empirical { values, .. } => values.iter().copied().max(),
        }
    }

    /// Builds the sampler. Call [`LengthDist::check`] first.
    pub fn sampler(&self) -> LengthSampler {
        let inner = match self {
            LengthDist::Fixed { value } => Sampler::Fixed(*value),
            LengthDist::Uniform { min, max } => Sampler::Uniform(*min, *max),
            LengthDist::Normal { mean, std, min, max } => {
                Sampler::Normal { mu: *mean, sigma: *std, lo: *min, hi: max.unwrap_or(u64::MAX) }
            }
            LengthDist::LogNormal { mean, std, min, max } => {
                // Moments of the lengths -> parameters of the underlying normal.
                let sigma2 = libm::log(1.0 + (std / mean).powi(2));
                let mu = libm::log(*mean) - sigma2 / 2.0;
                Sampler::LogNormal { mu, sigma: sigma2.sqrt(), lo: *min, hi: max.unwrap_or(u64::MAX) }
            }
            LengthDist::Empirical { values, weights } => {
                let w = weights.clone().unwrap_or_else(|| vec![1.0; values.len()]);
                Sampler::Empirical(
                    values.clone(),
                    rand_distr::WeightedIndex::new(w).expect("checked: positive weight sum"),
                )
            }
        };
        LengthSampler(inner)
    }
}

/// A ready-to-draw length distribution.
#[derive(Debug, Clone)]
pub struct LengthSampler(Sampler);

#[derive(Debug, Clone)]
enum Sampler {
    Fixed(u64),
    Uniform(u64, u64),
    /// Rounded and clamped to [lo, hi].
    Normal {
        mu: f64,
        sigma: f64,
        lo: u64,
        hi: u64,
    },
    /// exp of a normal(mu, sigma), rounded and clamped to [lo, hi].
    LogNormal {
        mu: f64,
        sigma: f64,
        lo: u64,
        hi: u64,
    },
    Empirical(Vec<u64>, rand_distr::WeightedIndex<f64>),
}

impl LengthSampler {
    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        let clamp = |x: f64, lo: u64, hi: u64| {
            let r = x.round();
            if r <= lo as f64 {
                lo
            } else if r >= hi as f64 {
                hi
            } else {
                r as u64
            }
        };
        match &self.0 {
            Sampler::Fixed(v) => *v,
            Sampler::Uniform(lo, hi) => rng.gen_range(*lo..=*hi),
            Sampler::Normal { mu, sigma, lo, hi } => clamp(mu + sigma * sample::std_normal(rng), *lo, *hi),
            Sampler::LogNormal { mu, sigma, lo, hi } => {
                clamp(libm::exp(mu + sigma * sample::std_normal(rng)), *lo, *hi)
            }
            Sampler::Empirical(values, idx) => values[idx.sample(rng)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn parse(s: &str) -> Result<LengthDist, toml::de::Error> {
        #[derive(Deserialize)]
        struct W {
            x: LengthDist,
        }
        toml::from_str::<W>(s).map(|w| w.x)
    }

    #[test]
    fn bare_integer_is_fixed() {
        assert_eq!(parse("x = 128").unwrap(), LengthDist::Fixed { value: 128 });
    }

    #[test]
    fn tagged_tables_parse() {
        assert_eq!(
            parse("x = { kind = \"uniform\", min = 2, max = 9 }").unwrap(),
            LengthDist::Uniform { min: 2, max: 9 }
        );
        assert_eq!(
            parse("x = { kind = \"normal\", mean = 100, std = 10 }").unwrap(),
            LengthDist::Normal { mean: 100.0, std: 10.0, min: 1, max: None }
        );
    }

    #[test]
    fn unknown_kind_and_negative_are_errors() {
        assert!(parse("x = { kind = \"zipf\", s = 1 }").is_err());
        assert!(parse("x = -4").is_err());
        assert!(parse("x = { kind = \"uniform\", min = 2, max = 9, mean = 3 }").is_err());
    }

    #[test]
    fn samples_stay_in_bounds_and_match_moments() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let d = LengthDist::LogNormal { mean: 500.0, std: 200.0, min: 10, max: Some(2000) };
        d.check().unwrap();
        let s = d.sampler();
        let n = 20_000;
        let xs: Vec<u64> = (0..n).map(|_| s.sample(&mut rng)).collect();
        assert!(xs.iter().all(|&x| (10..=2000).contains(&x)));
        let mean = xs.iter().sum::<u64>() as f64 / n as f64;
        assert!((mean - 500.0).abs() < 10.0, "mean {mean}");

        let u = LengthDist::Uniform { min: 3, max: 5 }.sampler();
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[(u.sample(&mut rng) - 3) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn checks_catch_bad_parameters() {
        assert!(LengthDist::Fixed { value: 0 }.check().is_err());
        assert!(LengthDist::Uniform { min: 5, max: 4 }.check().is_err());
        assert!(LengthDist::Normal { mean: -1.0, std: 1.0, min: 1, max: None }.check().is_err());
        assert!(LengthDist::Empirical { values: vec![], weights: None }.check().is_err());
        assert!(LengthDist::Empirical { values: vec![1, 2], weights: Some(vec![1.0]) }.check().is_err());
    }
}
