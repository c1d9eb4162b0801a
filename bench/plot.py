"""A dependency-free SVG scatter plot (log axes) for the benchmark figures."""
import math
from html import escape

COLORS = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
          "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
          "#17becf", "#9edae5"]


def log_ticks(low: float, high: float) -> list:
    """Powers of ten spanning [low, high]."""
    return [10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]


def scatter_panel(points: list, x_label: str, y_label: str, left: float, width: float = 420,
                  height: float = 300, top: float = 30) -> list:
    """SVG elements of one log-log panel; points are (label, x, y, color)."""
    xs = [p[1] for p in points if p[1] > 0]
    ys = [p[2] for p in points if p[2] > 0]
    x_ticks, y_ticks = log_ticks(min(xs), max(xs)), log_ticks(min(ys), max(ys))
    lx, hx = math.log10(x_ticks[0]), math.log10(x_ticks[-1])
    ly, hy = math.log10(y_ticks[0]), math.log10(y_ticks[-1])

    def px(x):
        return left + 50 + (math.log10(x) - lx) / max(hx - lx, 1e-9) * (width - 60)

    def py(y):
        return top + (height - 40) - (math.log10(y) - ly) / max(hy - ly, 1e-9) * (height - 50)

    out = [f'<rect x="{left + 50}" y="{top}" width="{width - 60}" height="{height - 40}" fill="none" stroke="#999"/>']
    for t in x_ticks:
        out.append(f'<text x="{px(t):.1f}" y="{top + height - 25}" font-size="10" text-anchor="middle">{t:g}</text>')
    for t in y_ticks:
        out.append(f'<text x="{left + 45}" y="{py(t) + 3:.1f}" font-size="10" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{left + 50 + (width - 60) / 2}" y="{top + height - 8}" font-size="11" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="{left + 12}" y="{top + (height - 40) / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 {left + 12} {top + (height - 40) / 2})">{escape(y_label)}</text>')
    for label, x, y, color in points:
        if x > 0 and y > 0:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{color}"><title>{escape(label)}'
                       f'</title></circle>')
    return out


def error_plot_svg(rows: list, title: str) -> str:
    """Two panels, round-trip error vs wall time and vs evaluations per step, with a legend."""
    points_time = [(r["label"], r["wall"], r["error"], COLORS[i % len(COLORS)]) for i, r in enumerate(rows)]
    points_eval = [(r["label"], r["evaluations"], r["error"], COLORS[i % len(COLORS)]) for i, r in enumerate(rows)]
    legend_top = 350
    height = legend_top + 16 * ((len(rows) + 1) // 2) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="880" height="{height}" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="440" y="18" font-size="13" text-anchor="middle">{escape(title)}</text>']
    parts += scatter_panel(points_time, "wall time (s)", "round-trip error", left=0)
    parts += scatter_panel(points_eval, "model evaluations per step", "round-trip error", left=440)
    for i, row in enumerate(rows):
        x, y = 60 + 420 * (i % 2), legend_top + 16 * (i // 2)
        parts.append(f'<circle cx="{x}" cy="{y - 4}" r="4" fill="{COLORS[i % len(COLORS)]}"/>')
        parts.append(f'<text x="{x + 10}" y="{y}" font-size="11">{escape(row["label"])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
