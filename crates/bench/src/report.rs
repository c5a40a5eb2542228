//! The printed table: each figure, its baseline from the same run, and the ratio.

/// One line of the report.
pub struct Row {
    /// What was measured.
    pub figure: String,
    /// Plantline's value, formatted.
    pub value: String,
    /// The baseline it is compared with.
    pub baseline: String,
    /// value / baseline (or the ratio that matters for this figure).
    pub ratio: Option<f64>,
    /// How to read the ratio.
    pub note: String,
}

/// All rows of one run.
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self { rows: Vec::new() }
    }

    /// Adds a row.
    pub fn add(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Adds `service`'s peak RSS (VmHWM of the local stack's process) against the 64 MiB budget.
    pub fn add_peak_rss(&mut self, service: &str) {
        let Some(kib) = peak_rss_kib(service) else {
            return;
        };
        self.add(Row {
            figure: format!("{service} peak RSS"),
            value: format!("{:.1} MiB", kib as f64 / 1024.0),
            baseline: "64 MiB budget".to_owned(),
            ratio: Some(kib as f64 / 1024.0 / 64.0),
            note: "VmHWM since the service started".to_owned(),
        });
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        let machine = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        println!("\nPlantline benchmark — {machine}, {cores} cores\n");
        let widths = [48, 20, 28, 9];
        println!(
            "{:<w0$} {:>w1$} {:>w2$} {:>w3$}  note",
            "figure",
            "plantline",
            "baseline (same run)",
            "ratio",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        println!("{}", "-".repeat(widths.iter().sum::<usize>() + 10));
        for row in &self.rows {
            println!(
                "{:<w0$} {:>w1$} {:>w2$} {:>w3$}  {}",
                row.figure,
                row.value,
                row.baseline,
                row.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
                row.note,
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            );
        }
    }
}

fn peak_rss_kib(service: &str) -> Option<u64> {
    let pid = std::fs::read_to_string(format!(".plantline/run/{service}.pid")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A progress bar in the bench's style.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}
