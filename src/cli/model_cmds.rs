//! `pdsim tokenize`, `pdsim generate`, `pdsim fetch-model`: quick checks of the real model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::engine::candle::fetch;
use crate::engine::candle::generate::generate as run_generation;
use crate::engine::candle::model::WeightFormat;
use crate::engine::candle::sampler::Sampling;
use crate::engine::candle::{resolve_model, Model};

#[derive(clap::Args)]
pub struct ModelArgs {
    /// GGUF model file (default: the SmolLM2-135M-Instruct Q4_1 model in models/, downloaded on
    /// first use).
    #[arg(long, value_name = "PATH")]
    pub(super) model: Option<PathBuf>,
    /// Weights in memory: `mixed` (8-bit for decode; for prompts 8-bit on a CPU with AVX-512
    /// VNNI, else bf16), `q8_0`, `q8_0+bf16` (bf16 prompts on any CPU), `bf16`, `f32`
    /// (reference precision), `native` (as stored).
    #[arg(long, default_value = "mixed")]
    pub(super) weights: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// The text to tokenize.
    text: String,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The prompt (with --chat, the user's turn).
    prompt: String,
    /// The most tokens to generate (fewer when the model ends its answer first).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    max_tokens: u64,
    /// Sampling temperature; 0 (the default) is greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Nucleus sampling: draw from the smallest set of tokens holding this share of the
    /// probability, in (0, 1] (with a temperature above 0).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    top_p: f32,
    /// Seed of the sampler (with a temperature above 0): the same seed, the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep generating past the end-of-sequence token (fixed-length runs).
    #[arg(long)]
    ignore_eos: bool,
    /// Wrap the prompt in the model's ChatML template as a user turn.
    #[arg(long)]
    chat: bool,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Compute threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,
    /// Timed repeats per measurement (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    reps: u64,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn bench(args: BenchArgs) -> ExitCode {
    let model = match load(&args.model) {
        Ok(m) => std::sync::Arc::new(m),
        Err(e) => return e.exit(),
    };
    let json = args.model.json;
    eprintln!(
        "pdsim bench: {} threads, {}, median of {} after a warm-up",
        args.threads,
        model.llama.format.label(),
        args.reps
    );
    let report = crate::bench::run(model, args.threads as usize, args.reps as usize, |line| eprintln!("  {line}"));
    match report {
        Ok(r) if json => {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!(
                "KV bytes per token: {} measured, {} by the formula; peak RSS {:.0} MiB ({:.0} MiB on huge pages)",
                r.kv_bytes_per_token.measured, r.kv_bytes_per_token.formula, r.peak_rss_mb, r.huge_pages_mb
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Why the model could not be had: the user's input (a bad `--weights`, a `--model` file that
/// is missing or no model), or the machine's (the default model could not be downloaded).
pub(super) enum LoadFail {
    BadInput(String),
    Failed(String),
}

impl LoadFail {
    pub(super) fn exit(self) -> ExitCode {
        match self {
            LoadFail::BadInput(e) => super::bad_input(e),
            LoadFail::Failed(e) => fail(e),
        }
    }
}

pub(super) fn load(args: &ModelArgs) -> Result<Model, LoadFail> {
    let format = WeightFormat::parse(&args.weights).ok_or_else(|| {
        LoadFail::BadInput(format!("--weights {}: expected {}", args.weights, WeightFormat::expected()))
    })?;
    if let Some(p) = &args.model {
        if !p.is_file() {
            return Err(LoadFail::BadInput(format!("--model {}: no such file", p.display())));
        }
    }
    let path = resolve_model(args.model.as_deref()).map_err(|e| LoadFail::Failed(e.to_string()))?;
    Model::load(&path, format).map_err(|e| match args.model {
        Some(_) => LoadFail::BadInput(format!("--model {}: {e}", path.display())),
        None => LoadFail::Failed(e.to_string()),
    })
}

fn fail(e: String) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

pub fn tokenize(args: TokenizeArgs) -> ExitCode {
    let model = match load(&args.model) {
        Ok(m) => m,
        Err(e) => return e.exit(),
    };
    let ids = match model.encode(&args.text) {
        Ok(ids) => ids,
        Err(e) => return fail(e.to_string()),
    };
    if args.model.json {
        let tokens: Vec<String> = ids.iter().map(|&i| model.tokenizer.id_to_token(i).unwrap_or_default()).collect();
        println!("{}", serde_json::json!({ "text": args.text, "ids": ids, "tokens": tokens }));
    } else {
        println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    }
    ExitCode::SUCCESS
}

pub fn generate(args: GenerateArgs) -> ExitCode {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return super::bad_input(format!("--temperature {}: must be 0 (greedy) or more", args.temperature));
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return super::bad_input(format!("--top-p {}: must be in (0, 1]", args.top_p));
    }
    let model = match load(&args.model) {
        Ok(m) => m,
        Err(e) => return e.exit(),
    };
    let text = if args.chat {
        format!("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", args.prompt)
    } else {
        args.prompt.clone()
    };
    let prompt = match model.encode(&text) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return super::bad_input("the prompt has no tokens".into()),
        Err(e) => return fail(e.to_string()),
    };
    let context = model.llama.config.context;
    if prompt.len() as u64 + args.max_tokens > context as u64 {
        return super::bad_input(format!(
            "{} prompt tokens + --max-tokens {} is more than the model's context of {context} tokens",
            prompt.len(),
            args.max_tokens
        ));
    }
    let sampling = if args.temperature > 0.0 {
        Sampling::TopP { temperature: args.temperature, top_p: args.top_p, seed: args.seed }
    } else {
        Sampling::Greedy
    };
    let g = match run_generation(&model, &prompt, args.max_tokens as usize, sampling, args.ignore_eos, false) {
        Ok(g) => g,
        Err(e) => return fail(e.to_string()),
    };
    // The end-of-sequence token ends the answer; it is not part of its text (`ids` keeps it).
    let answer = match g.ids.split_last() {
        Some((&last, rest)) if !args.ignore_eos && model.llama.config.eos == Some(last) => rest,
        _ => &g.ids[..],
    };
    let text = model.decode(answer).unwrap_or_default();
    let prefill_tps = prompt.len() as f64 / g.prefill.as_secs_f64();
    let decode_tps = (g.ids.len().saturating_sub(1)) as f64 / g.decode.as_secs_f64().max(1e-9);
    if args.model.json {
        let doc = serde_json::json!({
            "prompt": args.prompt, "prompt_ids": prompt, "ids": g.ids, "text": text,
            "weights": model.llama.format.name(),
            "prefill_ms": g.prefill.as_secs_f64() * 1e3, "decode_ms": g.decode.as_secs_f64() * 1e3,
            "prefill_tokens_per_s": prefill_tps, "decode_tokens_per_s": decode_tps,
        });
        println!("{doc}");
    } else {
        println!("{text}");
        eprintln!(
            "[{} prompt tokens at {prefill_tps:.0} tok/s, {} generated at {decode_tps:.1} tok/s, weights {}]",
            prompt.len(),
            g.ids.len(),
            model.llama.format.name()
        );
    }
    ExitCode::SUCCESS
}

pub fn fetch(models_dir: &Path) -> ExitCode {
    match fetch::default_model(models_dir) {
        Ok(p) => {
            println!("{}", p.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}
