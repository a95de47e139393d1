//! The scale section as a PNG: one panel per measurement, a line per path, drawn with plotters
//! (its bitmap backend; text through ab_glyph with the system's DejaVu Sans, so no font
//! library is needed).

use std::path::Path;

use plotters::prelude::*;

/// One path's measured points, x ascending.
pub struct Curve {
    pub name: &'static str,
    pub points: Vec<(f64, f64)>,
}

pub struct Panel {
    pub title: String,
    pub x: &'static str,
    pub y: &'static str,
    /// Sessions span two decades: a log axis keeps 100 and 1,000 apart.
    pub log_x: bool,
    pub curves: Vec<Curve>,
}

/// Debian's fonts-dejavu-core.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn colour(name: &str) -> RGBColor {
    match name {
        "direct" => RGBColor(110, 110, 110),
        "haproxy" => RGBColor(31, 119, 180),
        _ => RGBColor(214, 39, 40),
    }
}

/// Draws `panels` side by side under `caption` into a PNG at `out`.
pub fn draw(out: &Path, caption: &str, panels: &[Panel]) -> Result<(), String> {
    let bytes = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (fonts-dejavu-core)"))?;
    // plotters keeps fonts for the process's life.
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak())
        .map_err(|_| format!("{FONT}: not a font plotters can read"))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let width = 560 * panels.len().max(1) as u32;
    let root = BitMapBackend::new(out, (width, 500)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| format!("plot {}: {e}", out.display());
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(caption, ("sans-serif", 20)).map_err(e)?;
    for (area, panel) in root
        .split_evenly((1, panels.len().max(1)))
        .iter()
        .zip(panels)
    {
        draw_panel(area, panel).map_err(e)?;
    }
    root.present().map_err(e)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_panel(
    area: &Area<'_>,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>> {
    let xs = || {
        panel
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
    };
    let x_min = xs().fold(f64::INFINITY, f64::min);
    let x_max = xs().fold(0.0, f64::max);
    let y_max = panel
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    // An empty panel (every point failed) still draws its axes.
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min, x_max)
    } else {
        (1.0, 10.0)
    };
    let y_range = 0.0..(y_max * 1.15).max(1.0);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    if panel.log_x {
        let mut chart =
            builder.build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), y_range)?;
        chart
            .configure_mesh()
            .x_desc(panel.x)
            .y_desc(panel.y)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&y_label)
            .draw()?;
        series(&mut chart, panel)?;
    } else {
        let pad = (x_max - x_min) * 0.08;
        let mut chart = builder.build_cartesian_2d(x_min - pad..x_max + pad, y_range)?;
        chart
            .configure_mesh()
            .x_desc(panel.x)
            .y_desc(panel.y)
            // Worker counts: a label at each whole number only.
            .x_labels(16)
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-9 {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&y_label)
            .draw()?;
        series(&mut chart, panel)?;
    }
    Ok(())
}

/// Rates as whole numbers, KiB to a tenth.
fn y_label(v: &f64) -> String {
    if *v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn series<'a, X>(
    chart: &mut ChartContext<
        'a,
        BitMapBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>>
where
    X: Ranged<ValueType = f64>,
{
    for c in &panel.curves {
        let style = colour(c.name).stroke_width(2);
        chart
            .draw_series(LineSeries::new(c.points.iter().copied(), style))?
            .label(c.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        chart.draw_series(
            c.points
                .iter()
                .map(|p| Circle::new(*p, 4, colour(c.name).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}
