//! A library instrumented with the `metrics` facade and nothing else, as any
//! dependency of an app would be: it knows nothing of wix-cluster, yet its metrics
//! reach the master's `/metrics` (tests/metrics.rs).

/// The jobs this library has processed, by kind.
pub const JOBS: &str = "support_jobs_processed_total";
/// How long each job took, in seconds.
pub const JOB_DURATION: &str = "support_job_duration_seconds";
/// Jobs being processed in this process.
pub const JOBS_ACTIVE: &str = "support_jobs_active";

/// "Processes" a job of `kind` that took `seconds`: counts it, observes its duration.
pub fn process_job(kind: &str, seconds: f64) {
    metrics::describe_counter!(JOBS, "Jobs the support library processed, by kind.");
    let active = metrics::gauge!(JOBS_ACTIVE);
    active.increment(1.0);
    metrics::counter!(JOBS, "kind" => kind.to_owned()).increment(1);
    metrics::histogram!(JOB_DURATION, "kind" => kind.to_owned()).record(seconds);
    active.decrement(1.0);
}
