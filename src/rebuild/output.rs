//! What `chatprefs rebuild` and `rebuild --verify` print.

use super::{RebuildReport, VerifyReport};

pub fn print_rebuild(report: &RebuildReport) {
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "rebuilt the read model from {} events in {seconds:.2} s ({:.0} events/s): \
         {} streams, {} muted rooms, {} paused users; {} catch-up round(s), writers held for {} ms; \
         read model reflects the log as of transaction {}",
        report.events,
        report.events as f64 / seconds.max(1e-3),
        report.streams,
        report.muted_rooms,
        report.paused_users,
        report.catch_up_rounds,
        report.locked.as_millis(),
        report.checkpoint.xmax,
    );
}

/// Every difference, one per line, then the verdict.
pub fn print_verify(report: &VerifyReport) {
    for difference in &report.differences {
        println!("{difference}");
    }
    println!(
        "verified the read model against {} events: {} difference(s)",
        report.events,
        report.differences.len()
    );
}
