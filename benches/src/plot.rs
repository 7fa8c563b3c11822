//! Percentile plots: latency against percentile on a "nines" axis (0%, 90%, 99%, 99.9%, …),
//! the way HdrHistogram's plotter draws them, so tails are as readable as medians.
//!
//! Text needs a font, which `plotters`' `ab_glyph` backend takes from the caller. DejaVu Sans is
//! loaded from the usual Debian path (package `fonts-dejavu-core`); without it the plot is still
//! drawn, only without any text, and the caller is told so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::report::human_ns;
use crate::BenchError;

/// Where to look for a sans-serif TrueType font, in order.
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];
const FONT_FAMILY: &str = "sans-serif";
/// The x axis never goes past 99.9999%: six nines.
const NINES_MAX: u32 = 6;

/// The font registered for this process, if any: registered once, kept for the process's life.
fn font() -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        FONT_PATHS.iter().map(Path::new).find_map(|path| {
            let bytes = std::fs::read(path).ok()?;
            // `ab_glyph` borrows the font bytes for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes).ok()?;
            Some(path.to_path_buf())
        })
    })
    .as_deref()
}

/// What was drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlotOutcome {
    pub path: PathBuf,
    /// False when no font was found and the plot has no text.
    pub has_text: bool,
}

/// "Nines" of a quantile: 0.9 → 1, 0.99 → 2, and so on.
fn nines(quantile: f64) -> f64 {
    -(1.0 - quantile).log10()
}

fn nines_label(nines: f64) -> String {
    if (nines - nines.round()).abs() > 1e-6 || nines < 0.0 {
        // Between whole nines (only if the axis picks such ticks): the plain percentile.
        return format!("{:.2}%", 100.0 * (1.0 - 10f64.powf(-nines)));
    }
    // Whole nines, checked just above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = nines.round() as usize;
    match whole {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        count => format!("99.{}%", "9".repeat(count - 2)).replace(".%", "%"),
    }
}

/// The curve of one histogram: (nines, latency ns) for each percentile step, ending at the
/// maximum, placed at the percentile of the last sample (1 − 1/count).
fn curve(latency_ns: &Histogram<u64>, nines_max: f64) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for step in latency_ns.iter_quantiles(5) {
        let quantile = step.quantile_iterated_to();
        if quantile >= 1.0 {
            break;
        }
        let x = nines(quantile);
        if x > nines_max {
            break;
        }
        // Plot coordinates only.
        #[allow(clippy::cast_precision_loss)]
        points.push((x, step.value_iterated_to().max(1) as f64));
    }
    // The maximum, as the upper end of its bucket like every other point, so the curve does
    // not dip at its end.
    #[allow(clippy::cast_precision_loss)]
    let last = (
        (latency_ns.len().max(2) as f64).log10().min(nines_max),
        latency_ns.highest_equivalent(latency_ns.max()) as f64,
    );
    points.push(last);
    // A quantile function never decreases; keep rounding between buckets from suggesting it.
    let mut running_max = 0.0f64;
    for point in &mut points {
        running_max = running_max.max(point.1);
        point.1 = running_max;
    }
    points
}

/// Draws one line per `(label, histogram)` into a PNG at `path`.
pub fn percentile_plot(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> Result<PlotOutcome, BenchError> {
    let has_text = font().is_some();
    draw(path, title, series, has_text).map_err(|error| BenchError::Plot {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    Ok(PlotOutcome { path: path.to_path_buf(), has_text })
}

fn draw(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
    has_text: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let samples_max = series.iter().map(|(_, h)| h.len()).max().unwrap_or(10).max(10);
    // Enough nines to show the last sample, at most six.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let nines_max = ((samples_max as f64).log10().ceil() as u32).clamp(1, NINES_MAX);
    let x_max = f64::from(nines_max);
    let curves: Vec<Vec<(f64, f64)>> = series.iter().map(|(_, h)| curve(h, x_max)).collect();
    let y_min = curves.iter().flatten().map(|&(_, y)| y).fold(f64::MAX, f64::min).max(1.0);
    let y_max = curves.iter().flatten().map(|&(_, y)| y).fold(1.0, f64::max);
    let root = BitMapBackend::new(path, (1200, 750)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20).margin_right(50).x_label_area_size(50).y_label_area_size(100);
    if has_text {
        builder.caption(title, (FONT_FAMILY, 24));
    }
    // Plotters places ticks on round values; with one label per whole nine they fall on 0, 1,
    // 2, … nines, which the formatter turns into 0%, 90%, 99%, ….
    let x_range = 0.0..x_max;
    let y_range = (y_min * 0.8..y_max * 1.25).log_scale();
    let mut chart = builder.build_cartesian_2d(x_range, y_range)?;
    if has_text {
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.06))
            .bold_line_style(BLACK.mix(0.2))
            .x_labels(nines_max as usize + 1)
            .x_desc("percentile")
            .y_desc("latency (completion − intended start)")
            .x_label_formatter(&|x| nines_label(*x))
            .y_label_formatter(&|y| {
                // Axis labels only.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let value_ns = y.round() as u64;
                // Ticks fall on powers of ten; "100 µs" reads better than "100.00 µs".
                human_ns(value_ns).replace(".00 ", " ")
            })
            .label_style((FONT_FAMILY, 16))
            .axis_desc_style((FONT_FAMILY, 18))
            .draw()?;
    } else {
        // Plotters' mesh needs a font even without labels, so draw the grid by hand: a
        // vertical line at each whole nine, a horizontal one at each power of ten nanoseconds.
        let (y_low, y_high) = (y_min * 0.8, y_max * 1.25);
        let grid = BLACK.mix(0.2);
        for nine in 0..=nines_max {
            let x = f64::from(nine);
            chart.draw_series(LineSeries::new([(x, y_low), (x, y_high)], grid))?;
        }
        let mut decade = 1.0f64;
        while decade <= y_high {
            if decade >= y_low {
                chart.draw_series(LineSeries::new([(0.0, decade), (x_max, decade)], grid))?;
            }
            decade *= 10.0;
        }
    }
    for (index, ((label, _), points)) in series.iter().zip(curves).enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let line = chart.draw_series(LineSeries::new(points, color.stroke_width(3)))?;
        if has_text {
            line.label(label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        }
    }
    if has_text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT_FAMILY, 16))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_labels_read_as_percentiles() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(4.0), "99.99%");
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
    }
}
