//! `--plot FILE.svg`: two charts from one run, drawn with `plotters`'s SVG
//! backend (text is left to the SVG viewer's fonts; nothing is rasterised):
//!
//! * top: each node's cluster-wide total minus the truth, sampled every
//!   progress tick while the load ran: how far, and for how long, a node
//!   is behind;
//! * bottom: the histogram of the probe's propagation times, from a change
//!   on one node to its visibility on another.

use super::report::Report;
use plotters::prelude::*;
use std::path::Path;
use std::time::Duration;

/// The image size, in SVG pixels.
const SIZE: (u32, u32) = (1000, 820);

/// Histogram buckets aimed for (the width is rounded to 1, 2 or 5 × 10^k ms).
const BUCKETS: f64 = 40.0;

/// Writes the charts of `report` to `path`.
pub(crate) fn write(path: &Path, report: &Report) -> Result<(), String> {
    draw(path, report).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(path: &Path, report: &Report) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2);
    distance_chart(&top, report)?;
    histogram(&bottom, &report.trace.lags, report.nodes.len())?;
    root.present()?;
    Ok(())
}

fn distance_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let samples = &report.trace.samples;
    let t_max = samples.last().map_or(0.0, |s| s.at.as_secs_f64()).max(1.0);
    let offs = samples.iter().flat_map(|s| s.off.iter().flatten().copied());
    let (lo, hi) = offs.fold((-1i64, 1i64), |(lo, hi), o| (lo.min(o), hi.max(o)));
    let pad = ((hi - lo) as f64 * 0.05).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption("each node's total minus the truth, while the load runs", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max, (lo as f64 - pad)..(hi as f64 + pad))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("pairs off the truth")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, (name, _)) in report.nodes.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points =
            samples.iter().filter_map(|s| s.off.get(i).copied().flatten().map(|o| (s.at.as_secs_f64(), o as f64)));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    Ok(())
}

fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    lags: &[Duration],
    nodes: usize,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let ms: Vec<f64> = lags.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let max = ms.iter().copied().fold(0.0, f64::max);
    let width = bucket_width(max);
    let buckets = (max / width).floor() as u32 + 1;
    let mut counts = vec![0u32; buckets as usize];
    let last = counts.len() - 1;
    for m in &ms {
        counts[((m / width).floor() as usize).min(last)] += 1;
    }
    let caption = if nodes < 2 {
        "propagation: n/a (one node: nothing to propagate to)".to_owned()
    } else {
        format!("propagation: probe change to visible on another node ({} observations)", ms.len())
    };
    let top = counts.iter().max().copied().unwrap_or(0) + 1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..f64::from(buckets) * width, 0u32..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(format!("milliseconds ({} ms buckets)", fmt_ms(width)))
        .y_desc("observations")
        .x_label_formatter(&|v| fmt_ms((v * 100.0).round() / 100.0))
        .draw()?;
    let bar = RGBColor(60, 110, 180).filled();
    chart.draw_series(counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(b, &c)| {
        let x0 = b as f64 * width;
        Rectangle::new([(x0, 0), (x0 + width, c)], bar)
    }))?;
    Ok(())
}

/// A round bucket width (1, 2 or 5 × 10^k ms) giving about [`BUCKETS`] buckets.
fn bucket_width(max_ms: f64) -> f64 {
    let raw = (max_ms / BUCKETS).max(0.01);
    let base = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * base).find(|w| *w >= raw).unwrap_or(10.0 * base)
}

fn fmt_ms(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_round() {
        assert_eq!(bucket_width(134.0), 5.0);
        assert_eq!(bucket_width(40.0), 1.0);
        assert_eq!(bucket_width(41.0), 2.0);
        assert_eq!(bucket_width(0.0), 0.01);
        assert_eq!(bucket_width(3000.0), 100.0);
        assert_eq!(fmt_ms(0.5), "0.5");
        assert_eq!(fmt_ms(15.0), "15");
    }
}
