//! `requests.csv`: one row per arrival, whatever its outcome (completed, rejected, failed).

use super::format::{csv_field, f3, ms, ms_f, opt, secs};
use super::outcome::DropReason;
use super::record::RequestRecord;
use super::summary::Slo;

pub const REQUESTS_HEADER: &str =
    "request_id,class,outcome,prompt_tokens,output_tokens,token_count,prefill_worker,decode_worker,\
enqueue_s,prefill_start_s,prefill_end_s,first_token_s,kv_transfer_start_s,kv_transfer_end_s,decode_start_s,end_s,\
queue_ms,ttft_ms,tpot_ms,e2e_ms,kv_transfer_ms,kv_bytes,decode_tokens_per_s,ttft_slo_met,tpot_slo_met,slo_met,retries,reason,detail";

/// The row of a completed request.
pub fn request_row(r: &RequestRecord, class: &str, slo: &Slo) -> String {
    let (a, b) = (slo.ttft_met(r), slo.tpot_met(r));
    [
        r.spec.id.to_string(),
        csv_field(class),
        "completed".to_owned(),
        r.spec.prompt_tokens.to_string(),
        r.spec.output_tokens.to_string(),
        r.token_count.to_string(),
        r.prefill_worker.to_string(),
        opt(r.decode_worker, |w| w.to_string()),
        secs(r.enqueue_ns()),
        secs(r.prefill_start_ns),
        secs(r.prefill_end_ns),
        secs(r.first_token_ns()),
        opt(r.kv_transfer_start_ns, secs),
        opt(r.kv_transfer_end_ns, secs),
        opt(r.decode_start_ns, secs),
        secs(r.end_ns),
        ms(r.queue_ns()),
        ms(r.ttft_ns()),
        opt(r.tpot_ns(), ms_f),
        ms(r.e2e_ns()),
        opt(r.kv_transfer_ns(), ms),
        r.kv_bytes.to_string(),
        opt(r.decode_tokens_per_s(), f3),
        a.to_string(),
        b.to_string(),
        (a && b).to_string(),
        r.retries.to_string(),
        String::new(),
        String::new(),
    ]
    .join(",")
}

/// The row of a request that was rejected or failed: what it asked for, when it arrived, why
/// it ended; the latency columns stay empty (it has none), its SLO columns say `false`.
pub fn dropped_row(r: &RequestRecord, class: &str, reason: DropReason, detail: &str) -> String {
    let mut f = vec![
        r.spec.id.to_string(),
        csv_field(class),
        reason.outcome().to_owned(),
        r.spec.prompt_tokens.to_string(),
        r.spec.output_tokens.to_string(),
        "0".to_owned(),
        String::new(),
        String::new(),
        secs(r.enqueue_ns()),
    ];
    // From prefill_start_s to decode_tokens_per_s: nothing happened that counts.
    f.extend(std::iter::repeat_n(String::new(), 14));
    f.extend(["false", "false", "false"].map(String::from));
    f.extend([r.retries.to_string(), reason.code().to_owned(), csv_field(detail)]);
    f.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::RequestSpec;

    #[test]
    fn row_has_one_field_per_column() {
        let spec = RequestSpec { id: 3, arrival_ns: 0, class: 0, prompt_tokens: 4, output_tokens: 2, prompt: None };
        let mut r = RequestRecord::new(spec);
        r.prefill_end_ns = 10;
        r.end_ns = 20;
        r.token_count = 2;
        let slo = Slo { ttft_ms: 1.0, tpot_ms: 1.0, attainment: 0.9 };
        let row = request_row(&r, "a,b", &slo);
        // The quoted class holds a comma; count fields outside quotes.
        let fields =
            csv::ReaderBuilder::new().has_headers(false).from_reader(row.as_bytes()).records().next().unwrap().unwrap();
        assert_eq!(fields.len(), REQUESTS_HEADER.split(',').count());
        assert_eq!(&fields[1], "a,b");
        let dropped = dropped_row(&r, "c", DropReason::QueueFull, "queue of prefill-0 full, 8 waiting");
        let fields = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(dropped.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(fields.len(), REQUESTS_HEADER.split(',').count());
        assert_eq!((&fields[2], &fields[27]), ("rejected", "queue_full"));
    }
}
