//! The workload: which requests arrive, when, and with what prompt and output lengths.
//!
//! A [`Workload`] is resolved from the scenario and yields [`RequestSpec`]s in arrival order,
//! lazily (a million-request run never holds a million specs). The same seed gives the same
//! stream for every topology, so topologies are compared on identical requests.

pub mod arrival;
pub mod dist;
pub mod sample;
pub mod trace;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use arrival::{ArrivalGaps, ArrivalPattern};
use dist::{LengthDist, LengthSampler};
use trace::TraceRow;

/// One request as the workload defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSpec {
    /// Per-run id, 0-based in arrival order.
    pub id: u64,
    pub arrival_ns: u64,
    /// Index into [`Workload::class_names`].
    pub class: u16,
    pub prompt_tokens: u64,
    /// Output tokens to produce, the first one (from prefill) included.
    pub output_tokens: u64,
    /// Index into the class's text prompts, when it has them (execute mode).
    pub prompt: Option<u32>,
}

/// A length class: a weighted share of the requests with its own length distributions.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSpec {
    pub name: String,
    pub weight: f64,
    pub prompt: PromptSpec,
    pub output_tokens: LengthDist,
}

/// A class's prompts: lengths drawn from a distribution (synthetic token ids in execute mode),
/// or real texts, whose lengths are known once tokenized ([`Workload::set_prompt_lengths`]).
#[derive(Debug, Clone, PartialEq)]
pub enum PromptSpec {
    Lengths(LengthDist),
    Texts { texts: Vec<String>, token_lengths: Vec<u64> },
}

impl PromptSpec {
    /// The longest prompt, when bounded and known.
    pub fn max_tokens(&self) -> Option<u64> {
        match self {
            PromptSpec::Lengths(d) => d.max_tokens(),
            PromptSpec::Texts { token_lengths, .. } => token_lengths.iter().copied().max(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    Synthetic { classes: Vec<ClassSpec>, arrival: ArrivalPattern },
    Trace { rows: Arc<Vec<TraceRow>> },
}

/// When the stream of arrivals ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopAfter {
    Requests(u64),
    /// No arrivals at or after this time.
    DurationNs(u64),
    /// Trace replay without a limit: the whole trace.
    EndOfTrace,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub source: Source,
    pub stop: StopAfter,
    pub seed: u64,
    pub class_names: Vec<String>,
}

impl Workload {
    pub fn new(source: Source, stop: StopAfter, seed: u64) -> Workload {
        let class_names = match &source {
            Source::Synthetic { classes, .. } => classes.iter().map(|c| c.name.clone()).collect(),
            Source::Trace { rows } => {
                let mut names: Vec<String> = Vec::new();
                for r in rows.iter() {
                    let n = r.class.as_deref().unwrap_or("trace");
                    if !names.iter().any(|x| x == n) {
                        names.push(n.to_owned());
                    }
                }
                names
            }
        };
        Workload { source, stop, seed, class_names }
    }

    /// Records the token lengths of class `class`'s text prompts (from the model's tokenizer).
    pub fn set_prompt_lengths(&mut self, class: usize, lengths: Vec<u64>) {
        if let Source::Synthetic { classes, .. } = &mut self.source {
            if let PromptSpec::Texts { token_lengths, .. } = &mut classes[class].prompt {
                *token_lengths = lengths;
            }
        }
    }

    /// The first synthetic class whose longest request (prompt + output, both bounded) is more
    /// than `limit` tokens: (name, prompt, output).
    pub fn class_longer_than(&self, limit: u64) -> Option<(&str, u64, u64)> {
        let Source::Synthetic { classes, .. } = &self.source else {
            return None;
        };
        classes.iter().find_map(|c| match (c.prompt.max_tokens(), c.output_tokens.max_tokens()) {
            (Some(p), Some(o)) if p + o > limit => Some((c.name.as_str(), p, o)),
            _ => None,
        })
    }

    /// Whether any class has text prompts.
    pub fn has_text_prompts(&self) -> bool {
        matches!(&self.source, Source::Synthetic { classes, .. } if classes.iter().any(|c| matches!(c.prompt, PromptSpec::Texts { .. })))
    }

    /// The number of requests the stream will yield, when known before running.
    pub fn expected_requests(&self) -> Option<u64> {
        match (&self.stop, &self.source) {
            (StopAfter::Requests(n), Source::Trace { rows }) => Some((*n).min(rows.len() as u64)),
            (StopAfter::Requests(n), _) => Some(*n),
            (StopAfter::EndOfTrace, Source::Trace { rows }) => Some(rows.len() as u64),
            (StopAfter::DurationNs(d), Source::Trace { rows }) => {
                Some(rows.iter().take_while(|r| r.arrival_ns < *d).count() as u64)
            }
            _ => None,
        }
    }

    pub fn stream(&self) -> RequestStream {
        let inner = match &self.source {
            Source::Synthetic { classes, arrival } => {
                let weights: Vec<f64> = classes.iter().map(|c| c.weight).collect();
                StreamKind::Synthetic {
                    gaps: arrival.gaps(),
                    class_pick: rand_distr::WeightedIndex::new(weights).expect("validated: positive weights"),
                    samplers: classes
                        .iter()
                        .map(|c| (PromptSampler::new(&c.prompt), c.output_tokens.sampler()))
                        .collect(),
                    // Separate streams: changing a length distribution leaves arrival times alone.
                    arrival_rng: rng(self.seed, 0),
                    length_rng: rng(self.seed, 1),
                    now_ns: 0,
                }
            }
            Source::Trace { rows } => StreamKind::Trace { rows: rows.clone(), class_names: self.class_names.clone() },
        };
        RequestStream { inner, stop: self.stop, next_id: 0 }
    }
}

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Iterator over the requests of a run, in arrival order.
pub struct RequestStream {
    inner: StreamKind,
    stop: StopAfter,
    next_id: u64,
}

// One stream per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum StreamKind {
    Synthetic {
        gaps: ArrivalGaps,
        class_pick: rand_distr::WeightedIndex<f64>,
        samplers: Vec<(PromptSampler, LengthSampler)>,
        arrival_rng: ChaCha8Rng,
        length_rng: ChaCha8Rng,
        now_ns: u64,
    },
    Trace {
        rows: Arc<Vec<TraceRow>>,
        class_names: Vec<String>,
    },
}

impl Iterator for RequestStream {
    type Item = RequestSpec;

    fn next(&mut self) -> Option<RequestSpec> {
        let id = self.next_id;
        if let StopAfter::Requests(n) = self.stop {
            if id >= n {
                return None;
            }
        }
        let spec = match &mut self.inner {
            StreamKind::Synthetic { gaps, class_pick, samplers, arrival_rng, length_rng, now_ns } => {
                *now_ns = now_ns.saturating_add(gaps.next_gap_ns(arrival_rng));
                let class = length_rng.sample(&*class_pick);
                let (p, o) = &mut samplers[class];
                let (prompt_tokens, prompt) = p.sample(length_rng);
                RequestSpec {
                    id,
                    arrival_ns: *now_ns,
                    class: class as u16,
                    prompt_tokens,
                    output_tokens: o.sample(length_rng),
                    prompt,
                }
            }
            StreamKind::Trace { rows, class_names } => {
                let r = rows.get(id as usize)?;
                let name = r.class.as_deref().unwrap_or("trace");
                RequestSpec {
                    id,
                    arrival_ns: r.arrival_ns,
                    class: class_names.iter().position(|n| n == name).expect("names built from rows") as u16,
                    prompt_tokens: r.prompt_tokens,
                    output_tokens: r.output_tokens,
                    prompt: None,
                }
            }
        };
        if let StopAfter::DurationNs(d) = self.stop {
            if spec.arrival_ns >= d {
                return None;
            }
        }
        self.next_id += 1;
        Some(spec)
    }
}

/// Draws a prompt: a length, or the class's next text (in order, cycling) with its length.
enum PromptSampler {
    Lengths(LengthSampler),
    Texts { lengths: Vec<u64>, next: usize },
}

impl PromptSampler {
    fn new(p: &PromptSpec) -> PromptSampler {
        match p {
            PromptSpec::Lengths(d) => PromptSampler::Lengths(d.sampler()),
            PromptSpec::Texts { token_lengths, texts } => {
                assert_eq!(token_lengths.len(), texts.len(), "text prompts are tokenized before the run");
                PromptSampler::Texts { lengths: token_lengths.clone(), next: 0 }
            }
        }
    }

    fn sample(&mut self, rng: &mut ChaCha8Rng) -> (u64, Option<u32>) {
        match self {
            PromptSampler::Lengths(s) => (s.sample(rng), None),
            PromptSampler::Texts { lengths, next } => {
                let i = *next;
                *next = (i + 1) % lengths.len();
                (lengths[i], Some(i as u32))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_classes() -> Source {
        Source::Synthetic {
            classes: vec![
                ClassSpec {
                    name: "a".into(),
                    weight: 3.0,
                    prompt: PromptSpec::Lengths(LengthDist::Fixed { value: 10 }),
                    output_tokens: LengthDist::Fixed { value: 2 },
                },
                ClassSpec {
                    name: "b".into(),
                    weight: 1.0,
                    prompt: PromptSpec::Lengths(LengthDist::Uniform { min: 100, max: 200 }),
                    output_tokens: LengthDist::Fixed { value: 5 },
                },
            ],
            arrival: ArrivalPattern::Poisson { rate_per_s: 100.0 },
        }
    }

    #[test]
    fn same_seed_same_stream_and_weights_respected() {
        let w = Workload::new(two_classes(), StopAfter::Requests(4000), 9);
        let a: Vec<_> = w.stream().collect();
        let b: Vec<_> = w.stream().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 4000);
        let share_a = a.iter().filter(|r| r.class == 0).count() as f64 / 4000.0;
        assert!((share_a - 0.75).abs() < 0.03, "{share_a}");
        assert!(a.windows(2).all(|w| w[0].arrival_ns <= w[1].arrival_ns));
        let other = Workload::new(two_classes(), StopAfter::Requests(4000), 10).stream().collect::<Vec<_>>();
        assert_ne!(a, other);
    }

    #[test]
    fn duration_stops_the_stream() {
        let w = Workload::new(two_classes(), StopAfter::DurationNs(1_000_000_000), 1);
        let v: Vec<_> = w.stream().collect();
        assert!(v.iter().all(|r| r.arrival_ns < 1_000_000_000));
        assert!((50..150).contains(&v.len()), "{}", v.len());
    }

    #[test]
    fn trace_replay_keeps_rows_and_classes() {
        let rows = vec![
            TraceRow { arrival_ns: 0, prompt_tokens: 3, output_tokens: 1, class: Some("x".into()) },
            TraceRow { arrival_ns: 7, prompt_tokens: 4, output_tokens: 2, class: None },
        ];
        let w = Workload::new(Source::Trace { rows: Arc::new(rows) }, StopAfter::EndOfTrace, 0);
        assert_eq!(w.class_names, vec!["x", "trace"]);
        let v: Vec<_> = w.stream().collect();
        assert_eq!(v.len(), 2);
        assert_eq!((v[1].arrival_ns, v[1].class, v[1].prompt_tokens), (7, 1, 4));
        assert_eq!(w.expected_requests(), Some(2));
    }
}
