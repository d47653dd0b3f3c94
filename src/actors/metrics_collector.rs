//! MetricsCollector: receives lifecycle events, streams CSV rows, builds the summary, and says
//! when the run is over.

use std::path::PathBuf;

use actix::prelude::*;
use indicatif::ProgressBar;
use tokio::sync::oneshot;

use super::messages::{ArrivalsEnded, IterationCompleted, RequestDropped, RequestFinished, RunAborted, WorkerEvent};
use crate::metrics::format::{csv_field, secs};
use crate::metrics::iteration::ITERATIONS_HEADER;
use crate::metrics::record::RequestRecord;
use crate::metrics::requests_csv::{dropped_row, request_row, REQUESTS_HEADER};
use crate::metrics::sink::CsvFile;
use crate::metrics::summary::{Accumulator, Slo, Summary, TopologyInfo};

/// How a run ended, as the collector reports it.
pub type RunResult = Result<Summary, String>;

/// (arrival, id, prompt, output, class) of a request, for `trace.csv`.
type TraceRow = (u64, u64, u64, u64, u16);

pub struct MetricsCollector {
    dir: PathBuf,
    requests: Option<CsvFile>,
    iterations: Option<CsvFile>,
    /// `outputs.jsonl`, opened at the first generated text (execute mode).
    outputs: Option<CsvFile>,
    /// `events.csv`, opened at the first worker failure.
    events: Option<CsvFile>,
    /// What ran, as a replayable trace (execute mode): arrival, prompt and actual output
    /// lengths, class; written sorted by arrival as `trace.csv` at the end.
    /// (arrival, id, prompt, output, class): ties in arrival keep the id order, so a replay
    /// numbers the requests as the run did.
    trace: Option<Vec<TraceRow>>,
    acc: Option<Accumulator>,
    class_names: Vec<String>,
    slo: Slo,
    info: TopologyInfo,
    total: Option<u64>,
    done: Option<oneshot::Sender<RunResult>>,
    progress: ProgressBar,
    error: Option<String>,
}

/// Where a run's results go.
pub struct Results {
    /// The topology's folder (which must exist).
    pub dir: PathBuf,
    pub progress: ProgressBar,
    /// Whether to write `requests.csv` and `iterations.csv`: a sweep's or a search's runs need
    /// only the summary, and formatting the rows took a fifth of a placement search's time.
    pub rows: bool,
}

impl MetricsCollector {
    /// Opens `requests.csv` and `iterations.csv` in the results' folder, if it writes rows.
    pub fn new(
        out: Results,
        info: TopologyInfo,
        class_names: Vec<String>,
        slo: Slo,
        done: oneshot::Sender<RunResult>,
        record_trace: bool,
    ) -> std::io::Result<MetricsCollector> {
        let Results { dir, progress, rows } = out;
        let open = |name: &str, header: &str| rows.then(|| CsvFile::create(&dir.join(name), header)).transpose();
        Ok(MetricsCollector {
            requests: open("requests.csv", REQUESTS_HEADER)?,
            iterations: open("iterations.csv", ITERATIONS_HEADER)?,
            outputs: None,
            events: None,
            trace: record_trace.then(Vec::new),
            dir,
            acc: Some(Accumulator::new(slo)),
            class_names,
            slo,
            info,
            total: None,
            done: Some(done),
            progress,
            error: None,
        })
    }

    fn note_io(&mut self, r: std::io::Result<()>) {
        if let (Err(e), None) = (r, &self.error) {
            self.error = Some(format!("cannot write results in {}: {e}", self.dir.display()));
        }
    }

    fn class_name(&self, r: &RequestRecord) -> String {
        self.class_names.get(r.spec.class as usize).cloned().unwrap_or_default()
    }

    fn write_request_row(&mut self, row: &str) {
        if let Some(f) = self.requests.as_mut() {
            let res = f.line(row);
            self.note_io(res);
        }
    }

    fn write_output(&mut self, line: &str) -> std::io::Result<()> {
        if self.outputs.is_none() {
            self.outputs = Some(CsvFile::create_headerless(&self.dir.join("outputs.jsonl"))?);
        }
        self.outputs.as_mut().expect("opened above").line(line)
    }

    fn finish_if_done(&mut self, ctx: &mut Context<Self>) {
        let settled = self.acc.as_ref().map_or(0, Accumulator::settled);
        if self.total.is_some_and(|t| settled >= t) {
            let result = self.finish();
            self.report(result, ctx);
        }
    }

    fn finish(&mut self) -> RunResult {
        self.progress.finish_and_clear();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let io = |e: std::io::Error| e.to_string();
        for f in [self.requests.take(), self.iterations.take(), self.outputs.take(), self.events.take()]
            .into_iter()
            .flatten()
        {
            f.finish().map_err(io)?;
        }
        if let Some(mut rows) = self.trace.take() {
            rows.sort_unstable();
            let mut f = CsvFile::create(&self.dir.join("trace.csv"), "arrival_s,prompt_tokens,output_tokens,class")
                .map_err(io)?;
            for (arrival, _, prompt, output, class) in rows {
                let class = csv_field(self.class_names.get(class as usize).map_or("", String::as_str));
                f.line(&format!("{},{prompt},{output},{class}", secs(arrival))).map_err(io)?;
            }
            f.finish().map_err(io)?;
        }
        let summary = self.acc.take().expect("finished once").finish(self.info.clone());
        let mut f = CsvFile::create(&self.dir.join("summary.csv"), &Summary::csv_header()).map_err(io)?;
        f.line(&summary.csv_row()).map_err(io)?;
        f.finish().map_err(io)?;
        Ok(summary)
    }

    fn report(&mut self, result: RunResult, ctx: &mut Context<Self>) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(result);
        }
        ctx.stop();
    }
}

impl Actor for MetricsCollector {
    type Context = Context<Self>;
}

impl Handler<RequestFinished> for MetricsCollector {
    type Result = ();

    fn handle(&mut self, msg: RequestFinished, ctx: &mut Context<Self>) {
        let r = &msg.record;
        let class = self.class_name(r);
        if self.requests.is_some() {
            self.write_request_row(&request_row(r, &class, &self.slo));
        }
        if let Some(t) = self.trace.as_mut() {
            // The length it actually had: fewer tokens than asked when it stopped at EOS.
            t.push((r.spec.arrival_ns, r.spec.id, r.spec.prompt_tokens, r.token_count.max(1), r.spec.class));
        }
        if let Some(acc) = self.acc.as_mut() {
            acc.add(r);
        }
        if let Some(text) = &msg.text {
            let line = serde_json::json!({ "request_id": r.spec.id, "class": class, "text": text }).to_string();
            let res = self.write_output(&line);
            self.note_io(res);
        }
        self.progress.inc(1);
        self.finish_if_done(ctx);
    }
}

impl Handler<RequestDropped> for MetricsCollector {
    type Result = ();

    fn handle(&mut self, msg: RequestDropped, ctx: &mut Context<Self>) {
        let r = &msg.record;
        let class = self.class_name(r);
        if self.requests.is_some() {
            self.write_request_row(&dropped_row(r, &class, msg.reason, &msg.detail));
        }
        if let Some(t) = self.trace.as_mut() {
            t.push((r.spec.arrival_ns, r.spec.id, r.spec.prompt_tokens, r.spec.output_tokens, r.spec.class));
        }
        if let Some(acc) = self.acc.as_mut() {
            acc.add_dropped(r, msg.reason, msg.at_ns);
        }
        self.progress.inc(1);
        self.finish_if_done(ctx);
    }
}

impl Handler<WorkerEvent> for MetricsCollector {
    type Result = ();

    fn handle(&mut self, msg: WorkerEvent, _: &mut Context<Self>) {
        if msg.event != "restarted" {
            if let Some(acc) = self.acc.as_mut() {
                acc.add_worker_failure();
            }
        }
        let row = [secs(msg.at_ns), csv_field(&msg.worker), msg.event.to_owned(), csv_field(&msg.detail)].join(",");
        if self.events.is_none() {
            match CsvFile::create(&self.dir.join("events.csv"), "time_s,worker,event,detail") {
                Ok(f) => self.events = Some(f),
                Err(e) => return self.note_io(Err(e)),
            }
        }
        let res = self.events.as_mut().expect("opened above").line(&row);
        self.note_io(res);
    }
}

impl Handler<IterationCompleted> for MetricsCollector {
    type Result = ();

    fn handle(&mut self, msg: IterationCompleted, _: &mut Context<Self>) {
        if let Some(f) = self.iterations.as_mut() {
            let res = f.line(&msg.row.csv_row());
            self.note_io(res);
        }
    }
}

impl Handler<ArrivalsEnded> for MetricsCollector {
    type Result = ();

    fn handle(&mut self, msg: ArrivalsEnded, ctx: &mut Context<Self>) {
        self.total = Some(msg.total);
        self.progress.set_length(msg.total);
        self.finish_if_done(ctx);
    }
}

impl Handler<RunAborted> for MetricsCollector {
    type Result = ();

    fn handle(&mut self, msg: RunAborted, ctx: &mut Context<Self>) {
        self.progress.abandon();
        self.report(Err(msg.reason), ctx);
    }
}
