//! Metrics: request records and their derived metrics, the iteration log, CSV rows,
//! percentiles and the per-topology summary.

pub mod format;
pub mod iteration;
pub mod outcome;
pub mod percentile;
pub mod record;
pub mod requests_csv;
pub mod sink;
pub mod steady;
pub mod summary;
