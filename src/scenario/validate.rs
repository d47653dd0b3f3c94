//! Raw scenario → resolved [`Scenario`]: defaults, ranges, cross-field rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::blame;
use super::error::{invalid, key_on_line, line_col, locate_key, Invalid, Located, ScenarioError};
use super::raw::*;
use super::{
    Batching, Build, Devices, FaultKind, FaultSpec, Mode, ModelSource, ModelSpec, PhaseTp, Scenario, Threads, Topology,
    TopologyKind,
};
use super::{
    DEFAULT_EXECUTE_KV_CAPACITY_TOKENS, DEFAULT_MAX_DECODE_BATCH, DEFAULT_MAX_RETRIES, DEFAULT_PREFILL_TOKEN_BUDGET,
    DEFAULT_SLO_ATTAINMENT, MAX_RATE_PER_S,
};
use crate::engine::candle::device::{DeviceSpec, CUDA_BUILT, NO_CUDA};
use crate::engine::candle::device_model::parse_dtype;
use crate::engine::candle::engine::GenerationConfig;
use crate::engine::candle::model::WeightFormat;
use crate::engine::candle::sampler::Sampling;
use crate::engine::candle::synthetic::{self, SyntheticSpec};
use crate::engine::shape::ModelShape;
use crate::engine::sim::hardware::Hardware;
use crate::engine::sim::linear::{DecodeCoeffs, LinearCost, PrefillCoeffs};
use crate::engine::sim::roofline::{self, Roofline};
use crate::engine::sim::{presets, CostModel};
use crate::metrics::summary::Slo;
use crate::sched::fused::FusedPolicy;
use crate::sched::link::Link;
use crate::sched::router::RouterKind;
use crate::workload::arrival::ArrivalPattern;
use crate::workload::trace::{read_trace, TraceFormat};
use crate::workload::{ClassSpec, PromptSpec, Source, StopAfter, Workload};

type V<T> = Result<T, Invalid>;

/// Strict TOML → [`RawScenario`], with the failing key's location.
pub fn deserialize(path: &Path, text: &str) -> Result<RawScenario, ScenarioError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, RawScenario>(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." || key == "?" { String::new() } else { key };
        let inner = e.into_inner();
        let message = inner.message().trim().to_owned();
        // Inside tagged tables serde names, and toml points at, the table; find the key itself.
        let deeper = blame::deeper_key(text, &key, &message, error_of);
        let unknown = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next());
        let (key, offset) = match (deeper, unknown, inner.span()) {
            (Some(deeper), _, _) => {
                let offset = locate_key(text, &deeper);
                (deeper, offset)
            }
            (None, Some(field), _) => {
                let offset = locate_key(text, &format!("{key}.{field}"));
                (key, offset)
            }
            // toml reports some bad values (an integer past i64) without the key.
            (None, None, Some(span)) if key.is_empty() => (key_on_line(text, span.start), span.start),
            (None, None, Some(span)) => (key, span.start),
            (None, None, None) => {
                let offset = locate_key(text, &key);
                (key, offset)
            }
        };
        let (line, column) = line_col(text, offset);
        // toml says nothing for some bad characters (e.g. a control character in a comment).
        let message = if message.is_empty() {
            match text.get(offset..).and_then(|t| t.chars().next()) {
                Some(c) => format!("unexpected character {c:?} (U+{:04X}) here", c as u32),
                None => "unexpected end of file".to_owned(),
            }
        } else {
            plain_types(&message)
        };
        ScenarioError::Invalid(Located { path: path.to_owned(), line, column, key, message })
    })
}

/// serde's message with Rust's type names in words: `expected u64` reads `expected a whole
/// number (0 or more)`.
fn plain_types(message: &str) -> String {
    const WORDS: [(&str, &str); 6] = [
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
    ];
    let mut m = message.to_owned();
    for (rust, words) in WORDS {
        // Whole words only: `expected u64` but not `expected u640`.
        if let Some(i) = m.find(rust) {
            let end = i + rust.len();
            if !m[end..].starts_with(|c: char| c.is_alphanumeric()) {
                m.replace_range(i..end, words);
            }
        }
    }
    m
}

/// The key path and message of what is wrong with scenario `text`, if anything.
fn error_of(text: &str) -> Option<(String, String)> {
    let e = serde_path_to_error::deserialize::<_, RawScenario>(toml::Deserializer::new(text)).err()?;
    Some((e.path().to_string(), e.into_inner().message().trim().to_owned()))
}

pub fn resolve(raw: RawScenario, path: &Path, build: Build) -> V<Scenario> {
    let name = match raw.name {
        Some(n) => safe_name("name", n)?,
        None => path.file_stem().and_then(|s| s.to_str()).unwrap_or("scenario").to_owned(),
    };
    let mode = match raw.mode.unwrap_or(RawMode::Simulate) {
        RawMode::Simulate => Mode::Simulate,
        RawMode::Execute => Mode::Execute,
    };
    let seed = raw.seed.unwrap_or(0);
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let workload = resolve_workload(raw.workload, raw.requests, raw.duration_s, seed, base_dir)?;
    if mode == Mode::Simulate && workload.has_text_prompts() {
        return Err(invalid(
            "workload.classes",
            "text `prompts` need mode = \"execute\" (the model's tokenizer gives their lengths); use prompt_tokens in simulate mode",
        ));
    }
    // Both may be present (to compare the modes on one scenario); the mode needs its own.
    let cost = match (raw.cost_model, mode) {
        (Some(c), _) => Some(resolve_cost(c, base_dir)?),
        (None, Mode::Simulate) => {
            return Err(missing(
                "cost_model",
                "a [cost_model] table (kind = \"roofline\" | \"preset\" | \"coefficients\" | \"profile\")",
            ))
        }
        (None, Mode::Execute) => None,
    };
    let mut notes = Vec::new();
    if let Some(m) = &raw.model {
        if m.top_p.is_some() && m.temperature.unwrap_or(0.0) == 0.0 {
            notes.push("model.top_p is not used: without a temperature above 0 decoding is greedy".to_owned());
        }
    }
    let model = resolve_model(raw.model, seed, base_dir)?;
    let slo = resolve_slo(raw.slo)?;
    if raw.topology.is_empty() {
        return Err(missing("topology", "at least one [[topology]] table (kind = \"fused\" or \"split\")"));
    }
    let global = raw.batching.unwrap_or_default();
    let mut topologies: Vec<Topology> = Vec::new();
    for (i, t) in raw.topology.into_iter().enumerate() {
        let topo = resolve_topology(i, t, &global, mode, cost.as_ref(), build)?;
        check_fits(&workload, &topo, i)?;
        if topologies.iter().any(|o| o.name == topo.name) {
            return Err(invalid(
                format!("topology[{i}]"),
                format!("two topologies are named `{}`; give each a distinct `name`", topo.name),
            ));
        }
        topologies.push(topo);
    }
    check_dtype(&model, &topologies)?;
    notes.extend(unused(mode, cost.as_ref(), &model, &topologies));
    if model.is_synthetic() && workload.has_text_prompts() {
        return Err(invalid(
            "workload.classes",
            "text `prompts` need a tokenizer, and a synthetic model has none; use prompt_tokens",
        ));
    }
    Ok(Scenario {
        name,
        path: path.to_owned(),
        mode,
        seed,
        workload,
        cost: cost.map(Arc::new),
        model,
        slo,
        output_dir: PathBuf::from(raw.output_dir.unwrap_or_else(|| "output".into())),
        max_retries: raw.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        topologies,
        notes,
    })
}

fn resolve_model(raw: Option<RawModel>, seed: u64, base: &Path) -> V<ModelSpec> {
    let m = raw.unwrap_or(RawModel {
        path: None,
        synthetic: None,
        layers: None,
        dtype: None,
        weights: None,
        ignore_eos: None,
        temperature: None,
        top_p: None,
    });
    let weights = match m.weights.as_deref() {
        None => WeightFormat::Mixed,
        Some(w) => WeightFormat::parse(w).ok_or_else(|| {
            invalid("model.weights", format!("unknown weight format `{w}`; expected {}", WeightFormat::expected()))
        })?,
    };
    let dtype = match m.dtype.as_deref() {
        None => None,
        Some(d) => Some(parse_dtype(d).ok_or_else(|| {
            invalid("model.dtype", format!("unknown dtype `{d}`; expected \"bf16\", \"f16\" or \"f32\""))
        })?),
    };
    let temperature = non_negative("model.temperature", m.temperature.unwrap_or(0.0))?;
    let top_p = m.top_p.unwrap_or(0.9);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(invalid("model.top_p", format!("must be in (0, 1], got {top_p}")));
    }
    let sampling = if temperature > 0.0 {
        Sampling::TopP { temperature: temperature as f32, top_p: top_p as f32, seed }
    } else {
        Sampling::Greedy
    };
    let source = match (m.path, m.synthetic) {
        (Some(_), Some(_)) => return Err(invalid("model.synthetic", "set `path` or `synthetic`, not both")),
        (_, Some(name)) => {
            if m.weights.is_some() {
                return Err(invalid(
                    "model.weights",
                    "is the CPU kernels' form of a GGUF file; a synthetic model takes `dtype`",
                ));
            }
            let shape = SyntheticSpec::new(&name, None, seed).ok_or_else(|| {
                invalid(
                    "model.synthetic",
                    format!(
                        "unknown shape `{name}`; known llama-family shapes: {}",
                        synthetic::shape_names().join(", ")
                    ),
                )
            })?;
            ModelSource::Synthetic(shape.with_layers(m.layers).map_err(|e| invalid("model.layers", e))?)
        }
        (path, None) => {
            if m.layers.is_some() {
                return Err(invalid("model.layers", "only for synthetic models"));
            }
            match path {
                Some(p) => {
                    let full = base.join(&p);
                    if !full.exists() {
                        return Err(invalid("model.path", format!("no model file at {}", full.display())));
                    }
                    ModelSource::File(Some(full))
                }
                None => ModelSource::File(None),
            }
        }
    };
    Ok(ModelSpec {
        source,
        weights,
        dtype,
        generation: GenerationConfig { sampling, ignore_eos: m.ignore_eos.unwrap_or(true) },
    })
}

fn missing(key: &str, what: &str) -> Invalid {
    invalid(key, format!("missing: expected {what}"))
}

fn safe_name(key: &str, n: String) -> V<String> {
    let ok = !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !n.starts_with('.');
    if ok {
        Ok(n)
    } else {
        Err(invalid(key, format!("`{n}` is not usable as a folder name: use letters, digits, `-`, `_` and `.`")))
    }
}

fn positive(key: &str, v: f64) -> V<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(key, format!("must be a positive number, got {v}")))
    }
}

fn non_negative(key: &str, v: f64) -> V<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(invalid(key, format!("must be zero or a positive number, got {v}")))
    }
}

fn at_least_one<T: PartialOrd + From<u8> + std::fmt::Display>(key: &str, v: T) -> V<T> {
    if v >= T::from(1) {
        Ok(v)
    } else {
        Err(invalid(key, format!("must be at least 1, got {v}")))
    }
}

fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6).round() as u64
}

fn resolve_workload(
    raw: Option<RawWorkload>,
    requests: Option<u64>,
    duration_s: Option<f64>,
    seed: u64,
    base: &Path,
) -> V<Workload> {
    let w =
        raw.ok_or_else(|| missing("workload", "a [workload] table with [[workload.classes]] and [workload.arrival]"))?;
    let arrival = w.arrival.ok_or_else(|| {
        missing(
            "workload.arrival",
            "an arrival pattern (kind = \"poisson\" | \"gamma\" | \"constant\" | \"bursts\" | \"trace\")",
        )
    })?;
    let stop = match (requests, duration_s) {
        (Some(_), Some(_)) => return Err(invalid("duration_s", "set `requests` or `duration_s`, not both")),
        (Some(n), None) => StopAfter::Requests(at_least_one("requests", n)?),
        (None, Some(d)) => {
            StopAfter::DurationNs((within("duration_s", positive("duration_s", d)?, 0.0, 1e9)? * 1e9).round() as u64)
        }
        (None, None) => StopAfter::EndOfTrace,
    };
    let source = if let RawArrival::Trace { path, format, speedup } = arrival {
        if !w.classes.is_empty() {
            return Err(invalid(
                "workload.classes",
                "a trace gives every request's lengths: remove [[workload.classes]] or use another arrival kind",
            ));
        }
        let file = base.join(&path);
        let format = match format {
            Some(RawTraceFormat::Csv) => TraceFormat::Csv,
            Some(RawTraceFormat::Mooncake) => TraceFormat::Mooncake,
            None => TraceFormat::from_extension(&file).ok_or_else(|| {
                invalid(
                    "workload.arrival.path",
                    format!(
                        "cannot tell the format of `{path}` from its extension: add format = \"csv\" or \"mooncake\""
                    ),
                )
            })?,
        };
        let speedup = positive("workload.arrival.speedup", speedup.unwrap_or(1.0))?;
        let rows = read_trace(&file, format, speedup).map_err(|e| invalid("workload.arrival.path", e.to_string()))?;
        Source::Trace { rows: Arc::new(rows) }
    } else {
        if stop == StopAfter::EndOfTrace {
            return Err(missing(
                "requests",
                "`requests = N` or `duration_s = T` at the top level (how long to generate arrivals)",
            ));
        }
        if w.classes.is_empty() {
            return Err(missing(
                "workload.classes",
                "at least one [[workload.classes]] table (name, weight, prompt_tokens, output_tokens)",
            ));
        }
        let mut classes: Vec<ClassSpec> = Vec::new();
        for (i, c) in w.classes.into_iter().enumerate() {
            let key = format!("workload.classes[{i}]");
            let weight = positive(&format!("{key}.weight"), c.weight.unwrap_or(1.0))?;
            let prompt = match (c.prompt_tokens, c.prompts) {
                (Some(d), None) => {
                    d.check().map_err(|m| invalid(format!("{key}.prompt_tokens"), m))?;
                    PromptSpec::Lengths(d)
                }
                (None, Some(texts)) if texts.is_empty() || texts.iter().any(|t| t.is_empty()) => {
                    return Err(invalid(format!("{key}.prompts"), "give at least one prompt, none of them empty"))
                }
                (None, Some(texts)) => PromptSpec::Texts { texts, token_lengths: Vec::new() },
                (Some(_), Some(_)) => {
                    return Err(invalid(format!("{key}.prompts"), "set `prompt_tokens` or `prompts`, not both"))
                }
                (None, None) => {
                    return Err(missing(&key, "`prompt_tokens = <length distribution>` or `prompts = [\"text\", ...]`"))
                }
            };
            c.output_tokens.check().map_err(|m| invalid(format!("{key}.output_tokens"), m))?;
            if classes.iter().any(|o| o.name == c.name) {
                return Err(invalid(format!("{key}.name"), format!("two classes are named `{}`", c.name)));
            }
            classes.push(ClassSpec { name: c.name, weight, prompt, output_tokens: c.output_tokens });
        }
        let arrival = resolve_arrival(arrival)?;
        Source::Synthetic { classes, arrival }
    };
    Ok(Workload::new(source, stop, seed))
}

/// A number within [lo, hi]: far outside any study, values would overflow the nanosecond
/// clock or stall the samplers.
fn within(key: &str, v: f64, lo: f64, hi: f64) -> V<f64> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        let show = |x: f64| if x == 0.0 || (1e-3..1e6).contains(&x.abs()) { format!("{x}") } else { format!("{x:e}") };
        Err(invalid(key, format!("must be a number from {} to {}, got {}", show(lo), show(hi), show(v))))
    }
}

/// Longest interval an arrival pattern may name, in ms (about 31 years).
const MAX_INTERVAL_MS: f64 = 1e12;

fn resolve_arrival(a: RawArrival) -> V<ArrivalPattern> {
    const K: &str = "workload.arrival";
    let rate = |r: f64| within(&format!("{K}.rate_per_s"), r, 1e-6, MAX_RATE_PER_S);
    let interval = |key: &str, ms: f64| {
        within(&format!("{K}.{key}"), positive(&format!("{K}.{key}"), ms)?, 0.0, MAX_INTERVAL_MS).map(ms_to_ns)
    };
    Ok(match a {
        RawArrival::Poisson { rate_per_s } => ArrivalPattern::Poisson { rate_per_s: rate(rate_per_s)? },
        RawArrival::Gamma { rate_per_s, cv } => {
            ArrivalPattern::Gamma { rate_per_s: rate(rate_per_s)?, cv: within(&format!("{K}.cv"), cv, 1e-3, 1e3)? }
        }
        RawArrival::Constant { interval_ms } => {
            ArrivalPattern::Constant { interval_ns: interval("interval_ms", interval_ms)?.max(1) }
        }
        RawArrival::Bursts { size, every_ms } => ArrivalPattern::Bursts {
            size: at_least_one(&format!("{K}.size"), size)?,
            every_ns: interval("every_ms", every_ms)?.max(1),
        },
        RawArrival::Trace { .. } => unreachable!("trace handled by the caller"),
    })
}

fn resolve_cost(raw: RawCostModel, base: &Path) -> V<CostModel> {
    const K: &str = "cost_model";
    let model_shape = |key: &str, name: &str| {
        ModelShape::by_name(name).ok_or_else(|| {
            invalid(key, format!("unknown model `{name}`; known models: {}", ModelShape::names().join(", ")))
        })
    };
    match raw {
        RawCostModel::Profile { path, noise } => {
            let profile =
                crate::calibrate::profile::load(&base.join(path)).map_err(|e| invalid(format!("{K}.path"), e))?;
            Ok(if noise == Some(false) { profile.with_noise(None) } else { profile })
        }
        RawCostModel::Roofline { hardware, model, tp, compute_efficiency, memory_efficiency, step_overhead_ms } => {
            let hw = Hardware::by_name(&hardware).ok_or_else(|| {
                invalid(
                    format!("{K}.hardware"),
                    format!("unknown hardware `{hardware}`; known: {}", Hardware::names().join(", ")),
                )
            })?;
            let model = model_shape(&format!("{K}.model"), &model)?;
            let eff = |key: &str, v: Option<f64>, default: f64| {
                let v = v.unwrap_or(default);
                if v > 0.0 && v <= 1.0 {
                    Ok(v)
                } else {
                    Err(invalid(format!("{K}.{key}"), format!("must be in (0, 1], got {v}")))
                }
            };
            let r = Roofline {
                hardware: hw,
                model,
                tp: at_least_one(&format!("{K}.tp"), tp.unwrap_or(1))?,
                compute_efficiency: eff(
                    "compute_efficiency",
                    compute_efficiency,
                    roofline::DEFAULT_COMPUTE_EFFICIENCY,
                )?,
                memory_efficiency: eff("memory_efficiency", memory_efficiency, roofline::DEFAULT_MEMORY_EFFICIENCY)?,
                step_overhead_ms: non_negative(
                    &format!("{K}.step_overhead_ms"),
                    step_overhead_ms.unwrap_or(roofline::DEFAULT_STEP_OVERHEAD_MS),
                )?,
            };
            r.check_split().map_err(|e| invalid(format!("{K}.tp"), e))?;
            if r.kv_capacity_tokens().is_none() {
                return Err(invalid(
                    format!("{K}.tp"),
                    format!("{} weights do not fit on {} × {} with room for KV; raise tp", model.name, r.tp, hw.name),
                ));
            }
            Ok(CostModel::Roofline(r))
        }
        RawCostModel::Preset { name, tp } => {
            let tp = at_least_one(&format!("{K}.tp"), tp.unwrap_or(1))?;
            let (cost, model) = presets::lookup(&name, tp).map_err(|m| invalid(format!("{K}.name"), m))?;
            let shape = ModelShape::by_name(model).expect("presets name known shapes");
            Ok(CostModel::Linear {
                cost,
                kv_bytes_per_token: shape.kv_bytes_per_token(),
                source: format!("preset {name} tp={tp} (DistServe fit, A100-80GB)"),
            })
        }
        RawCostModel::Coefficients { model, kv_bytes_per_token, prefill, decode } => {
            let kv = match (model, kv_bytes_per_token) {
                (Some(m), None) => model_shape(&format!("{K}.model"), &m)?.kv_bytes_per_token(),
                (None, Some(b)) => at_least_one(&format!("{K}.kv_bytes_per_token"), b)?,
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        format!("{K}.kv_bytes_per_token"),
                        "set `model` or `kv_bytes_per_token`, not both",
                    ))
                }
                (None, None) => {
                    return Err(missing(K, "`model = \"<name>\"` or `kv_bytes_per_token = N` (to size KV transfers)"))
                }
            };
            let coeff = |table: &str, key: &str, v: Option<f64>| -> V<f64> {
                let full = format!("{K}.{table}.{key}");
                let v = v.ok_or_else(|| {
                    invalid(&full, "missing coefficient: every coefficient must be given (write 0 to neglect a term)")
                })?;
                if v.is_finite() {
                    Ok(v)
                } else {
                    Err(invalid(&full, format!("must be a finite number, got {v}")))
                }
            };
            let cost = LinearCost {
                prefill: PrefillCoeffs {
                    base_ms: non_negative(
                        &format!("{K}.prefill.base_ms"),
                        coeff("prefill", "base_ms", prefill.base_ms)?,
                    )?,
                    per_token_ms: coeff("prefill", "per_token_ms", prefill.per_token_ms)?,
                    per_token_sq_ms: coeff("prefill", "per_token_sq_ms", prefill.per_token_sq_ms)?,
                },
                decode: DecodeCoeffs {
                    base_ms: non_negative(&format!("{K}.decode.base_ms"), coeff("decode", "base_ms", decode.base_ms)?)?,
                    per_ctx_token_ms: coeff("decode", "per_ctx_token_ms", decode.per_ctx_token_ms)?,
                    per_seq_ms: coeff("decode", "per_seq_ms", decode.per_seq_ms)?,
                },
                large_batch_decode: None,
                decode_by_batch: None,
                wake: None,
                co_run: None,
                noise: None,
            };
            Ok(CostModel::Linear { cost, kv_bytes_per_token: kv, source: "explicit coefficients".into() })
        }
    }
}

fn resolve_slo(raw: Option<RawSlo>) -> V<Slo> {
    let s = raw.ok_or_else(|| missing("slo", "an [slo] table with ttft_ms and tpot_ms"))?;
    let attainment = s.attainment.unwrap_or(DEFAULT_SLO_ATTAINMENT);
    if !(attainment > 0.0 && attainment <= 1.0) {
        return Err(invalid("slo.attainment", format!("must be a share in (0, 1], e.g. 0.9; got {attainment}")));
    }
    Ok(Slo { ttft_ms: positive("slo.ttft_ms", s.ttft_ms)?, tpot_ms: positive("slo.tpot_ms", s.tpot_ms)?, attainment })
}

fn resolve_batching(
    key: &str,
    global: &RawBatching,
    own: Option<RawBatching>,
    mode: Mode,
    cost: Option<&CostModel>,
) -> V<Batching> {
    let own = own.unwrap_or_default();
    let (own_key, global_key) = (format!("{key}.batching"), "batching".to_owned());
    let pick = |o: Option<u64>, g: Option<u64>, name: &str| match (o, g) {
        (Some(v), _) => Some((v, format!("{own_key}.{name}"))),
        (None, Some(v)) => Some((v, format!("{global_key}.{name}"))),
        (None, None) => None,
    };
    let budget = match pick(own.prefill_token_budget, global.prefill_token_budget, "prefill_token_budget") {
        Some((v, k)) => at_least_one(&k, v)?,
        None => DEFAULT_PREFILL_TOKEN_BUDGET,
    };
    let max_batch =
        match pick(own.max_decode_batch.map(u64::from), global.max_decode_batch.map(u64::from), "max_decode_batch") {
            Some((v, k)) => at_least_one(&k, v)? as u32,
            None => DEFAULT_MAX_DECODE_BATCH,
        };
    let kv_capacity_explicit = own.kv_capacity_tokens.or(global.kv_capacity_tokens).is_some();
    let kv = match pick(own.kv_capacity_tokens, global.kv_capacity_tokens, "kv_capacity_tokens") {
        Some((v, k)) => at_least_one(&k, v)?,
        None => match mode {
            Mode::Execute => DEFAULT_EXECUTE_KV_CAPACITY_TOKENS,
            Mode::Simulate => cost.and_then(CostModel::default_kv_capacity_tokens).ok_or_else(|| {
                missing(
                    "batching.kv_capacity_tokens",
                    "the KV capacity per worker in tokens: this cost model does not know the device memory",
                )
            })?,
        },
    };
    let max_queued = match pick(own.max_queued_requests, global.max_queued_requests, "max_queued_requests") {
        Some((v, k)) => Some(at_least_one(&k, v)?),
        None => None,
    };
    Ok(Batching {
        prefill_token_budget: budget,
        max_decode_batch: max_batch,
        kv_capacity_tokens: kv,
        max_queued_requests: max_queued,
        kv_capacity_explicit,
    })
}

/// `[[topology.faults]]`: each names a worker of this topology, a time, and what happens.
fn resolve_faults(key: &str, raw: Vec<RawFault>, workers: &[String]) -> V<Vec<FaultSpec>> {
    raw.into_iter()
        .enumerate()
        .map(|(j, f)| {
            let k = format!("{key}.faults[{j}]");
            if !workers.contains(&f.worker) {
                return Err(invalid(
                    format!("{k}.worker"),
                    format!("no worker `{}` in this topology; it has {}", f.worker, workers.join(", ")),
                ));
            }
            let at_ns = (within(&format!("{k}.at_s"), f.at_s, 0.0, 1e9)? * 1e9).round() as u64;
            let kind = match (f.kind, f.down_s) {
                (RawFaultKind::Crash, d) => FaultKind::Crash {
                    down_ns: d
                        .map(|d| {
                            let key = format!("{k}.down_s");
                            within(&key, positive(&key, d)?, 0.0, 1e9).map(|d| (d * 1e9).round() as u64)
                        })
                        .transpose()?,
                },
                (_, Some(_)) => return Err(invalid(format!("{k}.down_s"), "only used with kind = \"crash\"")),
                (RawFaultKind::StepError, None) => FaultKind::StepError,
                (RawFaultKind::Panic, None) => FaultKind::Panic,
            };
            Ok(FaultSpec { worker: f.worker, at_ns, kind })
        })
        .collect()
}

fn resolve_topology(
    i: usize,
    raw: RawTopology,
    global: &RawBatching,
    mode: Mode,
    cost: Option<&CostModel>,
    build: Build,
) -> V<Topology> {
    let key = format!("topology[{i}]");
    let router = |r: Option<RawRouter>| match r.unwrap_or(RawRouter::RoundRobin) {
        RawRouter::RoundRobin => RouterKind::RoundRobin,
        RawRouter::LeastLoaded => RouterKind::LeastLoaded,
    };
    match raw {
        RawTopology::Fused {
            name,
            workers,
            policy,
            chunk_tokens,
            router: r,
            batching,
            threads,
            device,
            tp,
            faults,
        } => {
            let threads = at_least_one(&format!("{key}.threads"), threads.unwrap_or(1))?;
            let device = resolve_device(&format!("{key}.device"), device, mode, build)?;
            let workers = at_least_one(&format!("{key}.workers"), workers)?;
            let policy = match (policy.unwrap_or(RawFusedPolicy::PrefillFirst), chunk_tokens) {
                (RawFusedPolicy::Chunked, Some(c)) => {
                    FusedPolicy::Chunked { chunk_tokens: at_least_one(&format!("{key}.chunk_tokens"), c)? }
                }
                (RawFusedPolicy::Chunked, None) => {
                    return Err(missing(
                        &format!("{key}.chunk_tokens"),
                        "`chunk_tokens = N` (tokens per step) with policy = \"chunked\"",
                    ))
                }
                (_, Some(_)) => {
                    return Err(invalid(format!("{key}.chunk_tokens"), "only used with policy = \"chunked\""))
                }
                (RawFusedPolicy::PrefillFirst, None) => FusedPolicy::PrefillFirst,
                (RawFusedPolicy::DecodeFirst, None) => FusedPolicy::DecodeFirst,
            };
            let mut t = Topology {
                name: safe_name(&format!("{key}.name"), name.unwrap_or_else(|| "fused".into()))?,
                kind: TopologyKind::Fused { workers, policy, router: router(r) },
                threads: Threads { prefill: threads, decode: threads },
                devices: Devices { prefill: device, decode: device },
                batching: resolve_batching(&key, global, batching, mode, cost)?,
                faults: Vec::new(),
                tp: PhaseTp { prefill: tp, decode: tp },
            };
            check_tp(&key, "tp", tp, cost)?;
            check_threads(&key, "threads", threads, mode, cost)?;
            t.faults = resolve_faults(&key, faults, &t.worker_names())?;
            Ok(t)
        }
        RawTopology::Split {
            name,
            prefill_workers,
            decode_workers,
            router: r,
            link,
            batching,
            prefill_threads,
            decode_threads,
            device,
            prefill_device,
            decode_device,
            prefill_tp,
            decode_tp,
            faults,
        } => {
            let devices = match (device, prefill_device, decode_device) {
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                    return Err(invalid(
                        format!("{key}.device"),
                        "set `device` (both pools) or `prefill_device`/`decode_device`, not both",
                    ))
                }
                (Some(d), None, None) => {
                    let d = resolve_device(&format!("{key}.device"), Some(d), mode, build)?;
                    Devices { prefill: d, decode: d }
                }
                (None, p, d) => Devices {
                    prefill: resolve_device(&format!("{key}.prefill_device"), p, mode, build)?,
                    decode: resolve_device(&format!("{key}.decode_device"), d, mode, build)?,
                },
            };
            let threads = Threads {
                prefill: at_least_one(&format!("{key}.prefill_threads"), prefill_threads.unwrap_or(1))?,
                decode: at_least_one(&format!("{key}.decode_threads"), decode_threads.unwrap_or(1))?,
            };
            let p = at_least_one(&format!("{key}.prefill_workers"), prefill_workers)?;
            let d = at_least_one(&format!("{key}.decode_workers"), decode_workers)?;
            let link = match link {
                // From a modem to far beyond any interconnect; latency up to about 17 minutes.
                Some(l) => Some(Link {
                    bandwidth_bytes_per_s: within(&format!("{key}.link.bandwidth_gbps"), l.bandwidth_gbps, 1e-6, 1e6)?
                        * 1e9
                        / 8.0,
                    latency_ns: (within(&format!("{key}.link.latency_us"), l.latency_us.unwrap_or(0.0), 0.0, 1e9)?
                        * 1e3)
                        .round() as u64,
                }),
                None => None,
            };
            let mut t = Topology {
                name: safe_name(&format!("{key}.name"), name.unwrap_or_else(|| format!("split-{p}p{d}d")))?,
                kind: TopologyKind::Split { prefill_workers: p, decode_workers: d, router: router(r), link },
                threads,
                devices,
                batching: resolve_batching(&key, global, batching, mode, cost)?,
                faults: Vec::new(),
                tp: PhaseTp { prefill: prefill_tp, decode: decode_tp },
            };
            check_tp(&key, "prefill_tp", prefill_tp, cost)?;
            check_tp(&key, "decode_tp", decode_tp, cost)?;
            check_threads(&key, "prefill_threads", t.threads.prefill, mode, cost)?;
            check_threads(&key, "decode_threads", t.threads.decode, mode, cost)?;
            t.faults = resolve_faults(&key, faults, &t.worker_names())?;
            Ok(t)
        }
    }
}

/// A worker device: `cpu` (default) or `cuda:N`, in execute mode, and CUDA only in a CUDA build
/// (or for any build).
fn resolve_device(key: &str, raw: Option<String>, mode: Mode, build: Build) -> V<DeviceSpec> {
    let Some(raw) = raw else { return Ok(DeviceSpec::Cpu) };
    if mode == Mode::Simulate {
        return Err(invalid(
            key,
            "devices are for mode = \"execute\" (simulate mode models hardware with its cost model)",
        ));
    }
    let d = DeviceSpec::parse(&raw).map_err(|m| invalid(key, m))?;
    if d.is_cuda() && !CUDA_BUILT && build == Build::This {
        return Err(invalid(key, NO_CUDA));
    }
    Ok(d)
}

/// The tensor path's compute type must run where it is asked to: candle has no bf16 matrix
/// multiply on the CPU.
fn check_dtype(model: &ModelSpec, topologies: &[Topology]) -> V<()> {
    if model.dtype != Some(candle_core::DType::BF16) {
        return Ok(());
    }
    let device_path = |t: &Topology| model.is_synthetic() || t.devices.any_cuda();
    match topologies.iter().find(|t| device_path(t) && (!t.devices.prefill.is_cuda() || !t.devices.decode.is_cuda())) {
        Some(t) => Err(invalid(
            "model.dtype",
            format!(
                "bf16 needs a GPU, and topology `{}` has workers on the CPU (candle has no bf16 matrix multiply there); use \"f32\" or \"f16\", or put its workers on cuda",
                t.name
            ),
        )),
        None => Ok(()),
    }
}

/// Settings of the resolved scenario that this mode and cost model do not use.
fn unused(mode: Mode, cost: Option<&CostModel>, model: &ModelSpec, topologies: &[Topology]) -> Vec<String> {
    let mut notes = Vec::new();
    let profile = matches!(cost, Some(CostModel::Profile { .. }));
    if mode == Mode::Simulate && !profile {
        for t in topologies.iter().filter(|t| t.threads.prefill != 1 || t.threads.decode != 1) {
            notes.push(format!(
                "topology `{}`: CPU threads are not used in simulate mode with this cost model (only execute mode and a \
                 calibration profile use them)",
                t.name
            ));
        }
    }
    let device_path = |t: &Topology| model.is_synthetic() || t.devices.any_cuda();
    if mode == Mode::Execute && model.dtype.is_some() && !topologies.iter().any(device_path) {
        notes.push(
            "model.dtype is not used: it sets the tensor path's type (CUDA devices, synthetic models); on the CPU a GGUF \
             model runs as `weights` says"
                .to_owned(),
        );
    }
    notes
}

/// In simulate mode with a calibration profile, a worker's thread count picks its fit, which
/// must exist.
fn check_threads(key: &str, name: &str, threads: usize, mode: Mode, cost: Option<&CostModel>) -> V<()> {
    match (mode, cost) {
        (Mode::Simulate, Some(c)) => {
            c.for_threads(threads).map(|_| ()).map_err(|e| invalid(format!("{key}.{name}"), e))
        }
        _ => Ok(()),
    }
}

/// A phase's own tensor-parallel degree needs a cost model that scales with it (the roofline),
/// and the model's weights must fit on that many GPUs.
fn check_tp(key: &str, name: &str, tp: Option<u32>, cost: Option<&CostModel>) -> V<()> {
    let Some(tp) = tp else {
        return Ok(());
    };
    let key = format!("{key}.{name}");
    let cost =
        cost.ok_or_else(|| invalid(&key, "a phase's tensor-parallel degree needs simulate mode and a cost model"))?;
    cost.with_tp(at_least_one(&key, tp)?).map(|_| ()).map_err(|e| invalid(&key, e))
}

/// Bounded length distributions must fit the KV capacity, or requests would wait forever.
fn check_fits(w: &Workload, t: &Topology, i: usize) -> V<()> {
    let cap = t.batching.kv_capacity_tokens;
    match w.class_longer_than(cap) {
        Some((name, p, o)) => Err(invalid(
            format!("topology[{i}]"),
            format!(
                "class `{name}` can reach {p} prompt + {o} output tokens, more than the KV capacity of {cap} tokens per worker; \
                 raise batching.kv_capacity_tokens or shorten the class's prompts or outputs"
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "requests = 10\n[cost_model]\nkind = \"roofline\"\nhardware = \"a100-80gb\"\nmodel = \"llama-2-7b\"\n\
        [[workload.classes]]\nname = \"a\"\nprompt_tokens = 100\noutput_tokens = 10\n\
        [workload.arrival]\nkind = \"poisson\"\nrate_per_s = 2.0\n\
        [[topology]]\nkind = \"fused\"\nworkers = 1\n\
        [[topology]]\nkind = \"split\"\nprefill_workers = 1\ndecode_workers = 1\n";

    /// The located error of `text`: (line, key, message).
    fn error(text: &str) -> (usize, String, String) {
        match deserialize(Path::new("s.toml"), text) {
            Err(ScenarioError::Invalid(l)) => (l.line, l.key, l.message),
            other => panic!("not a located error: {other:?}"),
        }
    }

    #[test]
    fn an_error_inside_a_tagged_table_names_the_key_and_its_line() {
        assert!(deserialize(Path::new("s.toml"), BASE).is_ok());
        let text = BASE.replace("prefill_workers = 1", "prefill_workers = \"one\"");
        let (line, key, message) = error(&text);
        assert_eq!((line, key.as_str()), (18, "topology[1].prefill_workers"), "{message}");
        assert!(message.contains("expected a whole number (0 or more)"), "{message}");
    }

    #[test]
    fn type_errors_name_the_kind_of_value_in_words() {
        assert_eq!(plain_types("integer `-1`, expected u32"), "integer `-1`, expected a whole number (0 or more)");
        assert_eq!(
            plain_types("invalid type: string \"x\", expected f64"),
            "invalid type: string \"x\", expected a number"
        );
        assert_eq!(plain_types("expected u640 things"), "expected u640 things");
    }
}
