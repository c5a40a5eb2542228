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

/// One named series of a plot.
pub struct Curve {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// One PNG figure of the report.
pub struct Plot {
    /// File name under the report's folder.
    pub file: &'static str,
    /// Caption.
    pub title: String,
    /// Axis descriptions.
    pub x_label: String,
    /// Axis descriptions.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// The series; the same-run baseline is one of them.
    pub curves: Vec<Curve>,
}

/// The cumulative distribution of `samples` in milliseconds: `(ms, percentile)` points.
pub fn cdf_ms(samples: &[std::time::Duration]) -> Vec<(f64, f64)> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len().max(1) as f64;
    let step = (ms.len() / 400).max(1);
    let mut points: Vec<(f64, f64)> = ms
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == ms.len())
        .map(|(i, v)| (*v, (i + 1) as f64 / n * 100.0))
        .collect();
    points.dedup_by(|a, b| a.0 == b.0);
    points
}

/// All rows of one run.
pub struct Report {
    rows: Vec<Row>,
    plots: Vec<Plot>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self {
            rows: Vec::new(),
            plots: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn add_plot(&mut self, plot: Plot) {
        self.plots.push(plot);
    }

    /// Writes `dir/report.md` (machine, date, the table, the figures) and one PNG per plot.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        register_font()?;
        let mut md = String::new();
        md.push_str(
            "# Plantline benchmark report

",
        );
        md.push_str(&format!(
            "Measured {} on {} ({} cores, {} GiB), release build, `make bench`. Every figure is compared with a baseline measured in the same run on the same machine.

",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            machine_model(),
            cores(),
            memory_gib()
        ));
        md.push_str(
            "| figure | plantline | baseline (same run) | ratio | note |\n|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                row.figure,
                row.value,
                row.baseline,
                row.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
                row.note
            ));
        }
        for plot in &self.plots {
            draw(plot, &dir.join(plot.file))?;
            md.push_str(&format!(
                "\n## {}\n\n![{}]({})\n",
                plot.title, plot.title, plot.file
            ));
        }
        std::fs::write(dir.join("report.md"), md).map_err(|e| e.to_string())
    }

    /// Adds a row.
    pub fn add(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Adds `service`'s peak RSS (VmHWM of the local stack's process) against the 64 MiB budget.
    pub fn add_peak_rss(&mut self, service: &str) {
        self.add_peak_rss_within(service, 64);
    }

    /// Adds `service`'s peak RSS against a budget of `budget_mib`.
    pub fn add_peak_rss_within(&mut self, service: &str, budget_mib: u32) {
        let Some(kib) = peak_rss_kib(service) else {
            return;
        };
        self.add(Row {
            figure: format!("{service} peak RSS"),
            value: format!("{:.1} MiB", kib as f64 / 1024.0),
            baseline: format!("{budget_mib} MiB budget"),
            ratio: Some(kib as f64 / 1024.0 / f64::from(budget_mib)),
            note: "VmHWM since the service started".to_owned(),
        });
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        let (machine, cores) = (machine_model(), cores());
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
    process_status_kib(service, "VmHWM:")
}

/// `service`'s resident memory now (VmRSS of the local stack's process), in KiB.
pub fn current_rss_kib(service: &str) -> Option<u64> {
    process_status_kib(service, "VmRSS:")
}

fn process_status_kib(service: &str, field: &str) -> Option<u64> {
    let pid = std::fs::read_to_string(format!(".plantline/run/{service}.pid")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
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

fn machine_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn memory_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| (kib + 512 * 1024) / 1024 / 1024)
        .unwrap_or_default()
}

/// plotters draws text with a font it is given: DejaVu Sans, which Debian's Chromium (and
/// `fonts-dejavu-core`) install.
fn register_font() -> Result<(), String> {
    const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let bytes = std::fs::read(FONT)
        .map_err(|e| format!("{FONT}: {e} (apt-get install fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        plotters::style::FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| format!("{FONT} is not a usable font"))
}

fn draw(plot: &Plot, path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let points = plot.curves.iter().flat_map(|c| c.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0.0_f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        return Ok(());
    }
    if x_min == x_max {
        x_max = x_min + 1.0;
    }
    let root = BitMapBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&plot.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    let y_range = 0.0..y_max * 1.1;
    macro_rules! finish {
        ($chart:ident) => {{
            $chart
                .configure_mesh()
                .x_desc(&plot.x_label)
                .y_desc(&plot.y_label)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| fail(&e))?;
            for (i, curve) in plot.curves.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                $chart
                    .draw_series(LineSeries::new(
                        curve.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| fail(&e))?
                    .label(&curve.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if curve.points.len() <= 12 {
                    $chart
                        .draw_series(
                            curve
                                .points
                                .iter()
                                .map(|&p| Circle::new(p, 4, color.filled())),
                        )
                        .map_err(|e| fail(&e))?;
                }
            }
            $chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| fail(&e))?;
        }};
    }
    if plot.log_x {
        let mut chart = builder
            .build_cartesian_2d((x_min..x_max).log_scale(), y_range)
            .map_err(|e| fail(&e))?;
        finish!(chart);
    } else {
        let mut chart = builder
            .build_cartesian_2d(x_min..x_max, y_range)
            .map_err(|e| fail(&e))?;
        finish!(chart);
    }
    root.present().map_err(|e| fail(&e))
}
