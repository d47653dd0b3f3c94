//! Named cost-model presets with fitted coefficients.
//!
//! `distserve-a100-*` and `vllm-a100-*`: DistServe's latency model fitted on A100-80GB SXM for
//! its own engine and for vLLM (LLMServe/DistServe, simdistserve, commit 82831f1,
//! `profiler-a100-80g.{distserve,vllm}.json`). The presets fold in what DistServe's simulator
//! adds around the fit, so they reproduce its step times exactly: +1 ms per prefill (one
//! pipeline stage), +2 ms and +0.0001 ms per context token per iteration (its Ray overhead),
//! and its decode context term b·Σ(ctx+1) (an extra b per sequence). Decode batches of 95 or
//! more use the large-batch fit.

use super::linear::{DecodeCoeffs, LinearCost, PrefillCoeffs};

/// A fitted preset: name, model shape, tensor-parallel degree, and raw DistServe coefficients
/// (a in ms, b, c) for prefill, small-batch decode and large-batch decode.
struct Fit {
    name: &'static str,
    model: &'static str,
    tp: u32,
    prefill: [f64; 3],
    decode_small: [f64; 3],
    decode_large: [f64; 3],
}

const LARGE_BATCH_THRESHOLD: u64 = 95;

#[rustfmt::skip]
const FITS: &[Fit] = &[
    Fit { name: "distserve-a100-opt-13b", model: "opt-13b", tp: 1, prefill: [18.10254647486372, 0.1019122572698738, 7.122264314252114e-06], decode_small: [19.934702624895458, 0.0006269356524350583, 0.03850697740828398], decode_large: [7.1661889468253595, 0.0005798000403396046, 0.15831096191764046] },
    Fit { name: "distserve-a100-opt-13b", model: "opt-13b", tp: 2, prefill: [14.742973695171262, 0.06857720739764, 2.4495727400243586e-06], decode_small: [13.294796350285385, 0.00034109219700723494, 0.06296393225243659], decode_large: [10.638741913126715, 0.00031183369638295723, 0.08562913604102729] },
    Fit { name: "distserve-a100-opt-13b", model: "opt-13b", tp: 4, prefill: [12.062297033449054, 0.03808140082550695, 5.226249731787869e-07], decode_small: [10.256231678259395, 0.00018786702316166354, 0.03269273629225551], decode_large: [10.483514938375274, 0.00017120888562939117, 0.04566648525887034] },
    Fit { name: "distserve-a100-opt-66b", model: "opt-66b", tp: 2, prefill: [43.05881348288936, 0.2742292870458432, 2.2478042467169447e-05], decode_small: [48.288015489286245, 0.0009424343535737985, 0.12755020094383188], decode_large: [28.727693993711597, 0.00047448475459061987, 0.29617792360743994] },
    Fit { name: "distserve-a100-opt-66b", model: "opt-66b", tp: 3, prefill: [32.998230028437035, 0.19568256864690514, 1.2205248980953765e-05], decode_small: [35.8015439512012, 0.0005845004786127403, 0.0952669764890301], decode_large: [22.653861586978355, 0.0005358489190129727, 0.208514444037787] },
    Fit { name: "distserve-a100-opt-66b", model: "opt-66b", tp: 4, prefill: [29.441636037717455, 0.151352180625198, 8.317450765979451e-06], decode_small: [30.760284619429587, 0.000451947603788462, 0.063284195750671], decode_large: [27.47082137429487, 0.0004046845541646486, 0.12480667738300383] },
    Fit { name: "distserve-a100-opt-66b", model: "opt-66b", tp: 8, prefill: [25.490662375045222, 0.10659177664763161, 3.3910502518615973e-06], decode_small: [23.15511135047022, 0.00022691488497826264, 0.04800638397272423], decode_large: [21.71772781576609, 0.0003758089655762475, 0.08978614175851013] },
    Fit { name: "vllm-a100-opt-13b", model: "opt-13b", tp: 1, prefill: [22.052204789310185, 0.14050923870128956, 8.076584822611088e-06], decode_small: [23.475041008414784, 0.000592934466077393, 0.060726861260369455], decode_large: [20.206356173691958, 0.0004907727036234946, 0.1200031385587413] },
    Fit { name: "vllm-a100-opt-13b", model: "opt-13b", tp: 2, prefill: [27.440806247810684, 0.0905453268062731, 8.452054313246025e-06], decode_small: [24.54058424191086, 0.00022440145424035404, 0.08715787269447899], decode_large: [17.947769467112806, 0.0004570851465217072, 0.11179075830699213] },
    Fit { name: "vllm-a100-opt-13b", model: "opt-13b", tp: 4, prefill: [30.536322590049405, 0.05150644936810146, 4.232473132942393e-07], decode_small: [25.90114444283343, 7.753634454230709e-05, 0.05528087160867803], decode_large: [23.88388468859458, 0.00028400164093310935, 0.06276523831046728] },
];

/// Preset names (with the tensor-parallel degrees each offers).
pub fn catalogue() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in FITS {
        match out.iter_mut().find(|s| s.starts_with(&format!("{} ", f.name))) {
            Some(s) => s.push_str(&format!(",{}", f.tp)),
            None => out.push(format!("{} (tp {}", f.name, f.tp)),
        }
    }
    out.into_iter().map(|s| s + ")").collect()
}

/// Looks up a fitted preset; returns its coefficients and model-shape name.
pub fn lookup(name: &str, tp: u32) -> Result<(LinearCost, &'static str), String> {
    let fits: Vec<&Fit> = FITS.iter().filter(|f| f.name == name).collect();
    if fits.is_empty() {
        return Err(format!("unknown cost-model preset `{name}`; known presets: {}", catalogue().join(", ")));
    }
    let fit = fits.iter().find(|f| f.tp == tp).ok_or_else(|| {
        let tps: Vec<String> = fits.iter().map(|f| f.tp.to_string()).collect();
        format!("preset `{name}` has no fit for tp = {tp}; it has tp = {}", tps.join(", "))
    })?;
    let [pa, pb, pc] = fit.prefill;
    let decode = |[a, b, c]: [f64; 3]| DecodeCoeffs { base_ms: a + 2.0, per_ctx_token_ms: b + 1e-4, per_seq_ms: c + b };
    let cost = LinearCost {
        prefill: PrefillCoeffs { base_ms: pa + 1.0 + 2.0, per_token_ms: pb + 1e-4, per_token_sq_ms: pc },
        decode: decode(fit.decode_small),
        large_batch_decode: Some((LARGE_BATCH_THRESHOLD, decode(fit.decode_large))),
        decode_by_batch: None,
        wake: None,
        co_run: None,
        noise: None,
    };
    Ok((cost, fit.model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::step::StepShape;

    /// DistServe's own worked values (get_prefill/get_decode time plus its Ray overhead), from
    /// the same snapshot as the coefficients.
    #[test]
    fn reproduces_distserve_worked_values() {
        let (c, _) = lookup("distserve-a100-opt-13b", 1).unwrap();
        let prefill =
            |l: u64| StepShape { prefill_seqs: 1, prefill_tokens: l, prefill_tokens_sq: l * l, ..Default::default() };
        let decode = |b: u64, ctx: u64| StepShape { decode_seqs: b, decode_context: b * ctx, ..Default::default() };
        for (shape, want) in [
            (prefill(128), 34.277),
            (prefill(512), 75.2),
            (prefill(2048), 259.897),
            (decode(1, 512), 22.346),
            (decode(8, 1024), 28.203),
        ] {
            let got = c.step_ms(&shape);
            assert!((got - want).abs() < 0.002, "{shape:?}: {got} vs {want}");
        }
    }

    #[test]
    fn unknown_names_and_tp_are_errors() {
        assert!(lookup("distserve-h100-opt-13b", 1).unwrap_err().contains("known presets"));
        assert!(lookup("distserve-a100-opt-66b", 1).unwrap_err().contains("tp = 2, 3, 4, 8"));
    }
}
