"""
The comparison report's charts, drawn by hand as SVG (no plotting library): round tick values,
a colour and a marker of its own for every series, point labels that never overlap.
Only drawing lives here; evaluate.py computes what is drawn.

    svg_chart("runs/report/train_loss.svg", "Training loss", "step", "loss", [("cot", [(0, 4.1), (20, 3.2)], None)])
"""
import html
import math

import files

# ten colours (matplotlib's tab10) and four markers: series k gets colour k % 10 and marker k % 4,
# a pair that no other of the first 20 series has (answer and filler, eight apart, differ in marker)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
MARKERS = ["circle", "square", "triangle", "diamond"]
CHAR_WIDTH = 7  # a 12 px sans-serif character, a little generously: label boxes must not overlap
LINE_HEIGHT = 13  # the least distance between two label baselines
MARKS = 12  # markers on a curve at most


def size_label(params):
    """
    A parameter count for tables and axes: 6.54M, 175B.
    Example: size_label(175e9) == "175B" and size_label(6_540_000) == "6.54M"
    """
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if params >= scale:
            return f"{params / scale:.3g}{unit}"
    return f"{params:g}"


def nice_ticks(lo, hi, n=5):
    """
    About n round tick values (steps of 1, 2 or 5 times a power of ten) spanning [lo, hi] with a
    little margin, never crossing zero that the data does not cross. A single value sits inside
    a range around it; a single zero (a rate that is still 0) at the bottom of 0 to 1.
    Example: nice_ticks(0.03, 0.62) == [0.0, 0.2, 0.4, 0.6, 0.8]
    """
    pad = 0.05
    if hi == lo == 0:
        lo, hi, pad = 0, 1, 0  # -1 to 1 would show an impossible negative half
    elif hi == lo:
        lo, hi = sorted((lo * 0.5, lo * 1.5))
    raw = (hi - lo) / n  # the step fits the data; the margin may add a tick, never coarsen the step
    pad *= hi - lo
    lo, hi = (lo - pad if lo - pad >= 0 or lo < 0 else 0), hi + pad
    step = next(m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10) if m * 10 ** math.floor(math.log10(raw)) >= raw)
    return [round(k * step, 12) for k in range(math.floor(lo / step), math.ceil(hi / step) + 1)]


def log_ticks(lo, hi):
    """
    Powers of ten spanning [lo, hi] (both > 0), with a decade more on a side where a value would
    sit on the frame, and a decade on each side of a single power of ten.
    Example: log_ticks(6.5e6, 175e9) == [1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12]
    """
    ticks = [10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    return [ticks[0] / 10] * (ticks[0] == lo) + ticks + [ticks[-1] * 10] * (ticks[-1] == hi)


def series_style(k):
    """
    The colour and marker of the k-th series: no two of the first 20 series share both.
    Example: series_style(8) == ("#7f7f7f", "circle")
    """
    return COLORS[k % len(COLORS)], MARKERS[k % len(MARKERS)]


def marker(shape, x, y, r, color):
    """
    One marker as an SVG element centred on (x, y), about 2r wide.
    Example: marker("square", 100, 50, 4, "#1f77b4")
    """
    shapes = {"circle": f'<circle r="{r}"/>',
              "square": f'<rect x="{-0.9 * r:.1f}" y="{-0.9 * r:.1f}" width="{1.8 * r:.1f}" height="{1.8 * r:.1f}"/>',
              "triangle": f'<polygon points="0,{-1.3 * r:.1f} {1.2 * r:.1f},{0.8 * r:.1f} {-1.2 * r:.1f},{0.8 * r:.1f}"/>',
              "diamond": f'<polygon points="0,{-1.3 * r:.1f} {1.3 * r:.1f},0 0,{1.3 * r:.1f} {-1.3 * r:.1f},0"/>'}
    return f'<g class="marker" transform="translate({x:.1f} {y:.1f})" fill="{color}">{shapes[shape]}</g>'


def spread_labels(boxes, gap=LINE_HEIGHT, lowest=math.inf):
    """
    Baselines for text labels that overlap no other: boxes are (left, right, wanted baseline) in
    pixels, y growing downwards. Top first, a label whose span meets a placed label's and sits
    within gap of it moves down to gap below it; then, bottom first, the same moving up, with
    nothing below lowest (the plot's floor), so labels of points on the floor stack upwards.
    Example: spread_labels([(0, 50, 100), (10, 60, 104), (200, 250, 104)]) == [100, 113, 104]
    """
    ys = [y for _, _, y in boxes]
    for sign in (1, -1):  # down, then up: the second pass is the first on the chart turned upside down
        placed = {}
        for i in sorted(range(len(boxes)), key=lambda i: sign * ys[i]):
            y = ys[i] if sign == 1 else min(ys[i], lowest)
            for j in sorted(placed, key=lambda j: sign * placed[j]):  # nearest first, so one pass settles it
                if boxes[j][0] < boxes[i][1] and boxes[i][0] < boxes[j][1] and abs(y - placed[j]) < gap:
                    y = placed[j] + sign * gap
            placed[i] = y
        ys = [placed[i] for i in range(len(boxes))]
    return ys


def svg_chart(path, title, xlabel, ylabel, series, lines=True, hline=None, logx=False, notes=()):
    """
    A small SVG chart written by hand (no plotting library): series is [(label, [(x, y), ...],
    [(lo, hi), ...] or None)]; lines=False draws labelled points with error bars; hline=(label, y)
    adds a dashed reference line; logx puts x on a log scale (ticks at powers of ten, as sizes);
    notes are lines of text under the chart. The legend is as wide as its longest label.
    Example: svg_chart("loss.svg", "training loss", "step", "loss", [("cot", [(0, 4.1), (20, 3.2)], None)])
    """
    longest = max((len(label) for label, _, _ in series), default=0)
    L, T, R = 70, 40, max(170, 40 + CHAR_WIDTH * longest)
    W, H = L + 480 + R, 420 + 16 * len(notes) + 10 * bool(notes)
    B = H - 370  # the plot keeps its height; notes go below the x label
    xs = [x for _, pts, _ in series for x, _ in pts] or [0, 1]
    ys = [y for _, pts, _ in series for _, y in pts] + [v for _, _, err in series for lh in (err or []) for v in lh]
    ys = (ys or [0]) + ([hline[1]] if hline else [])  # no points: from 0, not a range around the line alone
    if logx:
        xs = [x for x in xs if x > 0] or [1, 10]
        xt = log_ticks(min(xs), max(xs))
    else:
        xt = nice_ticks(min(xs), max(xs))
    yt = nice_ticks(min(ys), max(ys))
    (x0, x1), (y0, y1) = (xt[0], xt[-1]), (yt[0], yt[-1])
    tx = (lambda x: math.log10(x)) if logx else (lambda x: x)
    sx = lambda x: L + (tx(x) - tx(x0)) / (tx(x1) - tx(x0)) * (W - L - R)
    sy = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>', f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{e(title)}</text>',
           f'<text x="{(L + W - R) / 2}" y="{H - B + 40}" text-anchor="middle">{e(xlabel)}</text>',
           f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">{e(ylabel)}</text>']
    for vx in xt:  # grid and tick labels
        out += [f'<line x1="{sx(vx):.1f}" y1="{T}" x2="{sx(vx):.1f}" y2="{H - B}" stroke="#eee"/>',
                f'<text x="{sx(vx):.1f}" y="{H - B + 16}" text-anchor="middle">{size_label(vx) if logx else format(vx, "g")}</text>']
    for k, note in enumerate(notes):
        out.append(f'<text x="{L}" y="{H - B + 64 + 16 * k}" font-size="11" fill="#555">{e(note)}</text>')
    for vy in yt:
        out += [f'<line x1="{L}" y1="{sy(vy):.1f}" x2="{W - R}" y2="{sy(vy):.1f}" stroke="#eee"/>',
                f'<text x="{L - 6}" y="{sy(vy) + 4:.1f}" text-anchor="end">{vy:g}</text>']
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
    if hline:
        out += [f'<line x1="{L}" y1="{sy(hline[1]):.1f}" x2="{W - R}" y2="{sy(hline[1]):.1f}" stroke="#555" stroke-dasharray="6 4"/>',
                f'<text x="{L + 4}" y="{sy(hline[1]) - 4:.1f}" fill="#555">{e(hline[0])}</text>']
    labels = []  # (series, x, y of its first point): scatter points are named beside the point
    for k, (label, pts, err) in enumerate(series):
        elements, first = draw_series(k, label, pts, err, lines, sx, sy, (W - R, T + 18 * k + 6))
        out += elements
        labels += [first] if first else []
    out += point_labels(labels, series, (L + W - R) / 2, H - B - 4)
    if not any(pts for _, pts, _ in series):  # say so, rather than leave an empty frame to puzzle over
        out.append(f'<text x="{(L + W - R) / 2}" y="{(T + H - B) / 2}" text-anchor="middle" fill="#555">no data to show</text>')
    files.write_atomic(path, "\n".join(out + ["</svg>"]) + "\n")


def draw_series(k, label, pts, err, lines, sx, sy, legend):
    """
    The SVG elements of series k: its line (if lines), error bars and markers, with sx, sy mapping
    data to pixels, and its legend entry at legend (x, y in pixels); and (k, x, y) of its first
    point to name beside it (scatter series only), else None.
    Example: elements, first = draw_series(0, "cot", [(0, 4.1), (20, 3.2)], None, True, sx, sy, (550, 46))
    """
    c, shape = series_style(k)
    out = []
    if lines and pts:
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{" ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)}"/>')
    for j, (x, y) in enumerate(pts):
        if err:
            out.append(f'<line x1="{sx(x):.1f}" y1="{sy(err[j][0]):.1f}" x2="{sx(x):.1f}" y2="{sy(err[j][1]):.1f}" stroke="{c}"/>')
        # markers too on lines (a one-point curve still shows, and the marker tells two
        # curves of one colour apart), but on a long curve only at about MARKS of its points
        if not lines or (j * MARKS // len(pts)) != ((j - 1) * MARKS // len(pts)):
            out.append(marker(shape, sx(x), sy(y), 3 if lines else 5, c))
    lx, ly = legend  # the legend: marker (and line) in the series' style, then its name
    out += [f'<line x1="{lx + 8}" y1="{ly}" x2="{lx + 28}" y2="{ly}" stroke="{c}" stroke-width="2"/>'] * lines
    out += [marker(shape, lx + 18, ly, 4, c), f'<text x="{lx + 34}" y="{ly + 4}">{html.escape(label)}</text>']
    return out, ((k, sx(pts[0][0]), sy(pts[0][1])) if not lines and pts else None)


def point_labels(labels, series, middle, lowest):
    """
    The text beside each scatter series' first point, (k, x, y) in pixels: right of the point left
    of the middle, left of it right of the middle (off the legend), moved down where it would
    overlap another label (up from the plot's floor, lowest), with a thin line back to its point when moved.
    Example: point_labels([(0, 120.0, 80.0)], [("cot", [(10, 0.2)], None)], 310, 366)
    """
    boxes = []
    for k, x, y in labels:
        width = CHAR_WIDTH * len(series[k][0])
        boxes.append((x - 8 - width, x - 8, y - 6) if x > middle else (x + 8, x + 8 + width, y - 6))
    out = []
    for (k, x, y), (left, right, _), ly in zip(labels, boxes, spread_labels(boxes, lowest=lowest)):
        c, anchor = series_style(k)[0], ("end" if x > middle else "start")
        if abs(ly - (y - 6)) > 1:  # moved: a leader line from the point to the start of its label
            out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{right if x > middle else left:.1f}" y2="{ly - 4:.1f}" stroke="{c}" stroke-width="0.7"/>')
        out.append(f'<text x="{right if x > middle else left:.1f}" y="{ly:.1f}" fill="{c}" text-anchor="{anchor}">{html.escape(series[k][0])}</text>')
    return out
