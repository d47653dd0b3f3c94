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
    text: String,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    prompt: String,
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Sampling temperature; 0 (the default) is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
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
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed repeats per measurement (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn bench(args: BenchArgs) -> ExitCode {
    let model = match load(&args.model) {
        Ok(m) => std::sync::Arc::new(m),
        Err(e) => return fail(e),
    };
    let json = args.model.json;
    eprintln!(
        "pdsim bench: {} threads, {}, median of {} after a warm-up",
        args.threads,
        model.llama.format.label(),
        args.reps
    );
    let report = crate::bench::run(model, args.threads.max(1), args.reps.max(1), |line| eprintln!("  {line}"));
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

pub(super) fn load(args: &ModelArgs) -> Result<Model, String> {
    let format = WeightFormat::parse(&args.weights)
        .ok_or_else(|| format!("--weights {}: expected {}", args.weights, WeightFormat::expected()))?;
    let path = resolve_model(args.model.as_deref()).map_err(|e| e.to_string())?;
    Model::load(&path, format).map_err(|e| e.to_string())
}

fn fail(e: String) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

pub fn tokenize(args: TokenizeArgs) -> ExitCode {
    let model = match load(&args.model) {
        Ok(m) => m,
        Err(e) => return fail(e),
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
    let model = match load(&args.model) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let text = if args.chat {
        format!("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", args.prompt)
    } else {
        args.prompt.clone()
    };
    let prompt = match model.encode(&text) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return fail("the prompt has no tokens".into()),
        Err(e) => return fail(e.to_string()),
    };
    let sampling = if args.temperature > 0.0 {
        Sampling::TopP { temperature: args.temperature, top_p: args.top_p, seed: args.seed }
    } else {
        Sampling::Greedy
    };
    let g = match run_generation(&model, &prompt, args.max_tokens, sampling, args.ignore_eos, false) {
        Ok(g) => g,
        Err(e) => return fail(e.to_string()),
    };
    let text = model.decode(&g.ids).unwrap_or_default();
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
