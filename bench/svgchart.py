"""Plain-text SVG bar charts for bench/run: horizontal bars in panels, a whisker for each
bar's min-max, value labels, an x axis with ticks per panel, a legend. No dependencies;
the same input gives the same bytes (fixed rounding, no timestamps of its own).

    svg = chart("Requests/s", "subtitle", [Panel("keep-alive", [Bar("wix-cluster", 101_000, 98_000, 104_000)])])
"""
import math
from dataclasses import dataclass, field

# One colour per server, the same in every chart.
COLOURS = {
    "wix-cluster": "#2563eb",
    "wix-cluster, metrics off": "#93c5fd",
    "bare hyper": "#6b7280",
    "nginx": "#16a34a",
    "Node cluster": "#ea580c",
    "PM2": "#dc2626",
    # The autoscale section's three configurations.
    "autoscaled": "#2563eb",
    "fixed min": "#9ca3af",
    "fixed max": "#4b5563",
}
OTHER = "#a855f7"

WIDTH = 860
LABEL_W = 200  # the bar labels' column
PLOT_X = LABEL_W + 10
PLOT_W = 460
ROW = 22
BAR = 14
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\""


@dataclass
class Bar:
    """One bar: `series` names its colour (a server), `label` is written left of it
    (the series when empty); `value` the bar's length, `lo`/`hi` its whisker (none when
    both are None); `text` the value label (else `fmt` of value)."""
    series: str
    value: float
    lo: float = None
    hi: float = None
    label: str = ""
    text: str = ""


@dataclass
class Panel:
    """A titled group of bars on an axis of their own (or the chart's, when shared)."""
    title: str
    bars: list = field(default_factory=list)
    note: str = ""


def wrap(text, width=126):
    """`text`'s lines, each cut at spaces into lines of at most about `width` characters
    (about what fits the chart at 11-12 px)."""
    out = []
    for line in text.split("\n"):
        words, cur = line.split(" "), ""
        for word in words:
            if cur and len(cur) + 1 + len(word) > width:
                out.append(cur)
                cur = word
            else:
                cur = f"{cur} {word}" if cur else word
        out.append(cur)
    return out


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def num(x):
    """A coordinate, rounded so that the output is stable."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def nice_ticks(top):
    """Tick values from 0 to at least `top`: 4 to 8 steps of 1, 2, 2.5 or 5 x 10^n."""
    if top <= 0 or not math.isfinite(top):
        return [0, 1]
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def tick_text(v, unit):
    if v >= 1_000_000:
        s = f"{v / 1_000_000:g}M"
    elif v >= 1000:
        s = f"{v / 1000:g}k"
    else:
        s = f"{v:g}"
    return s + (f" {unit}" if unit and v == 0 else "")


def fmt_value(v, unit):
    if unit == "ms":
        return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms"
    if unit == "MB":
        return f"{v:.1f} MB"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.2f}"


def chart(title, subtitle, panels, unit="", shared_scale=False, footer=""):
    """The SVG text of a chart of `panels` (each with its own x axis unless
    `shared_scale`); `unit` labels the axes and values (`ms`, `MB`, or '' for counts)."""
    panels = [p for p in panels if p.bars]
    series = []
    for p in panels:
        for b in p.bars:
            if b.series not in series:
                series.append(b.series)

    def top_of(bars):
        # The longest bar, or its whisker if that is not more than twice as long: an outlier
        # run does not squash the medians (its whisker is cut at the axis, its max written).
        values = max([b.value for b in bars] + [0])
        whiskers = max([b.hi for b in bars if b.hi is not None] + [0])
        return max(values, min(whiskers, 2 * values))

    shared_top = max([top_of(p.bars) for p in panels] + [0])
    out = []
    y = 28
    out.append(f'<text x="12" y="{y}" font-size="17" font-weight="600" fill="#111827">{esc(title)}</text>')
    y += 20
    for line in wrap(subtitle):
        if line:
            out.append(f'<text x="12" y="{y}" font-size="12" fill="#4b5563">{esc(line)}</text>')
            y += 16
    # The legend: one swatch per series, wrapped.
    y += 6
    x = 12
    for name in series:
        w = 18 + 7 * len(name) + 18
        if x + w > WIDTH - 12:
            x, y = 12, y + 18
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" rx="2" fill="{COLOURS.get(name, OTHER)}"/>')
        out.append(f'<text x="{x + 17}" y="{y}" font-size="12" fill="#111827">{esc(name)}</text>')
        x += w
    y += 14
    for p in panels:
        y += 20
        out.append(f'<text x="12" y="{y}" font-size="13" font-weight="600" fill="#111827">{esc(p.title)}</text>')
        if p.note:
            y += 15
            out.append(f'<text x="12" y="{y}" font-size="11" fill="#6b7280">{esc(p.note)}</text>')
        y += 8
        ticks = nice_ticks(shared_top if shared_scale else top_of(p.bars))
        scale = PLOT_W / ticks[-1] if ticks[-1] else 0
        height = ROW * len(p.bars)
        for t in ticks:
            tx = PLOT_X + t * scale
            out.append(f'<line x1="{num(tx)}" y1="{y}" x2="{num(tx)}" y2="{y + height}" stroke="#e5e7eb"/>')
        for i, b in enumerate(p.bars):
            by = y + i * ROW + (ROW - BAR) / 2
            colour = COLOURS.get(b.series, OTHER)
            out.append(f'<text x="{LABEL_W}" y="{num(by + BAR - 3)}" font-size="12" text-anchor="end" '
                       f'fill="#111827">{esc(b.label or b.series)}</text>')
            w = max(b.value * scale, 0)
            out.append(f'<rect x="{PLOT_X}" y="{num(by)}" width="{num(w)}" height="{BAR}" fill="{colour}"/>')
            end = PLOT_X + w
            text = b.text or fmt_value(b.value, unit)
            if b.lo is not None and b.hi is not None and b.hi > b.lo:
                cut = b.hi > ticks[-1]
                x1, cy = PLOT_X + b.lo * scale, by + BAR / 2
                x2 = PLOT_X + min(b.hi, ticks[-1]) * scale
                out.append(f'<line x1="{num(x1)}" y1="{num(cy)}" x2="{num(x2)}" y2="{num(cy)}" stroke="#111827"/>')
                for wx in (x1, x2) if not cut else (x1,):
                    out.append(f'<line x1="{num(wx)}" y1="{num(cy - 4)}" x2="{num(wx)}" y2="{num(cy + 4)}" '
                               f'stroke="#111827"/>')
                if cut:  # an arrowhead: the whisker goes on past the axis
                    out.append(f'<path d="M{num(x2 - 5)},{num(cy - 4)} L{num(x2)},{num(cy)} L{num(x2 - 5)},'
                               f'{num(cy + 4)}" fill="none" stroke="#111827"/>')
                    if not b.text:
                        text += f" (max {fmt_value(b.hi, unit)})"
                end = max(end, x2)
            out.append(f'<text x="{num(end + 6)}" y="{num(by + BAR - 3)}" font-size="12" fill="#111827">'
                       f'{esc(text)}</text>')
        y += height
        out.append(f'<line x1="{PLOT_X}" y1="{y}" x2="{PLOT_X + PLOT_W}" y2="{y}" stroke="#9ca3af"/>')
        for t in ticks:
            tx = PLOT_X + t * scale
            out.append(f'<line x1="{num(tx)}" y1="{y}" x2="{num(tx)}" y2="{y + 4}" stroke="#9ca3af"/>')
            out.append(f'<text x="{num(tx)}" y="{y + 16}" font-size="11" text-anchor="middle" fill="#4b5563">'
                       f'{esc(tick_text(t, unit))}</text>')
        y += 18
    if footer:
        y += 20
        for line in wrap(footer, 128):
            out.append(f'<text x="12" y="{y}" font-size="11" fill="#6b7280">{esc(line)}</text>')
            y += 14
    y += 12
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}" '
            f'{FONT}>\n<rect width="{WIDTH}" height="{y}" fill="#ffffff"/>')
    return head + "\n" + "\n".join(out) + "\n</svg>\n"
