"""The champion/challenger comparison report: one HTML page (Jinja2 + plotly), written next to its script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from modelgate.policy import Verdict
from modelgate.spec import ModelSpec, Task

_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ spec.name }} v{{ verdict.challenger_version }}: {{ decision }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4}.ok{color:#17803d}.bad{color:#b42318}.decision{font-size:1.4rem;font-weight:600}
</style></head><body>
<p><a href="/modelgate/models/{{ spec.name|urlencode }}" target="_top">← Models › {{ spec.name }}</a></p>
<h1>{{ spec.name }}: challenger v{{ verdict.challenger_version }} vs
{% if verdict.champion_version %}champion v{{ verdict.champion_version }}{% elif evaluation.baseline %}no champion
(baseline: {{ evaluation.baseline }}){% else %}no champion{% endif %}</h1>
<p class="decision {{ 'ok' if verdict.promote else 'bad' }}">{{ decision }}</p>
<p>{{ verdict.reason }}</p>
<p>Holdout: {{ evaluation.holdout_rows }} rows (the latest {{ (spec.holdout_fraction * 100)|round|int }}%
of the window{% if verdict.champion_version %}, from the champion's window end on: neither model was fitted on
them{% endif %}). Primary metric <b>{{ evaluation.primary.metric }}</b>, significance level
{{ spec.evaluation.significance_level }}, minimum improvement {{ spec.evaluation.min_improvement }}.</p>
<h2>Checks</h2>
<table><tr><th>check</th><th>result</th><th>detail</th></tr>
{% for c in verdict.checks %}<tr><td>{{ c.name }}</td><td class="{{ 'ok' if c.passed else 'bad' }}">
{{ 'pass' if c.passed else 'fail' }}</td><td style="text-align:left">{{ c.detail }}</td></tr>{% endfor %}
</table>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>{{ 'baseline' if evaluation.baseline else 'champion' }}</th><th>challenger</th>
<th>CI of difference</th></tr>
{% for m in evaluation.metrics.values() %}<tr><td>{{ m.metric }}</td><td>{{ fmt(m.champion) }}</td>
<td>{{ fmt(m.challenger) }}</td><td>{% if m.ci_low is not none %}[{{ fmt(m.ci_low) }}, {{ fmt(m.ci_high) }}]{% endif %}
{% if m.p_value is not none %} {{ m.test }} p={{ fmt(m.p_value) }}{% endif %}</td></tr>{% endfor %}
</table>
{% if evaluation.slices %}<h2>Slices</h2>
<table><tr><th>slice</th><th>metric</th><th>rows</th><th>champion</th><th>challenger</th></tr>
{% for s in evaluation.slices %}<tr><td>{{ s.column }} = {{ s.value }}</td>
<td>{{ s.metric + ' (the class against the rest)' if s.metric else evaluation.primary.metric }}</td>
<td>{{ s.rows }}</td>
<td>{{ fmt(s.champion) }}</td><td>{{ fmt(s.challenger) }}</td></tr>{% endfor %}</table>{% endif %}
{% for figure in figures %}{{ figure|safe }}{% endfor %}
</body></html>
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)  # the environment autoescapes: escaping here too would show &amp;lt;


def _figures(spec: ModelSpec, verdict: Verdict, y: Any, champion: Any, challenger: Any) -> list[str]:
    import numpy as np
    import plotly.graph_objects as go

    figures = []
    if len(y) < 2 or len(np.unique(y)) < 2:  # nothing was compared (insufficient evidence)
        return []
    if spec.task is Task.BINARY:
        from sklearn.metrics import roc_curve

        roc = go.Figure()
        for name, scores in (("champion", champion), ("challenger", challenger)):
            if scores is None:
                continue
            fpr, tpr, _ = roc_curve(y, scores)
            roc.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=name))
        roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot"}))
        roc.update_layout(
            title="ROC on the holdout", xaxis_title="false positive rate", yaxis_title="true positive rate"
        )
        figures.append(roc)
    elif spec.task is Task.MULTICLASS:  # who is taken for whom, as shares of each true class
        from modelgate.evaluation import confusion

        labels = spec.class_names
        for name, scores in (("champion", champion), ("challenger", challenger)):
            if scores is None:
                continue
            matrix = confusion(y, scores)
            heat = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues"))
            heat.update_layout(
                title=f"{name}: predicted class per true class (share of its rows)",
                xaxis_title="predicted",
                yaxis_title="true",
            )
            figures.append(heat)
    else:
        residuals = go.Figure()
        for name, scores in (("champion", champion), ("challenger", challenger)):
            if scores is not None:
                residuals.add_trace(go.Histogram(x=y - scores, name=name, opacity=0.6))
        residuals.update_layout(title="Residuals on the holdout", barmode="overlay")
        figures.append(residuals)
    slices = verdict.evaluation.slices
    if slices:
        labels = [f"{s.column}={s.value}" for s in slices]
        bars = go.Figure()
        bars.add_trace(go.Bar(x=labels, y=[s.champion for s in slices], name="champion"))
        bars.add_trace(go.Bar(x=labels, y=[s.challenger for s in slices], name="challenger"))
        metrics = sorted({s.metric or verdict.evaluation.primary.metric for s in slices})
        bars.update_layout(title=f"{' / '.join(metrics)} per slice", barmode="group")
        figures.append(bars)
    return [
        fig.to_html(full_html=False, include_plotlyjs="directory" if i == 0 else False) for i, fig in enumerate(figures)
    ]


def write_evaluation_report(
    spec: ModelSpec, verdict: Verdict, y: Any, champion: Any, challenger: Any, holdout: Any, path: Path
) -> Path:
    """Write the report; plotly.min.js is written once beside it (no network needed to view it)."""
    env = Environment(autoescape=select_autoescape(default=True))
    page = env.from_string(_TEMPLATE).render(
        spec=spec,
        verdict=verdict,
        evaluation=verdict.evaluation,
        decision="PROMOTE" if verdict.promote else "REJECT",
        figures=_figures(spec, verdict, y, champion, challenger),
        fmt=_fmt,
    )
    return _write_page(path, page)


def _write_page(path: Path, page: str) -> Path:
    """The page, replaced whole (never half-written), with plotly.min.js once beside it."""
    import plotly.offline

    path.parent.mkdir(parents=True, exist_ok=True)
    script = path.parent / "plotly.min.js"
    if not script.exists():
        script.write_text(plotly.offline.get_plotlyjs())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path


_BACKTEST_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ r.model }}: backtest</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child{text-align:left}.chosen{font-weight:600;background:#eef6ee}
pre{background:#f6f6f6;padding:.8rem;overflow:auto}
</style></head><body>
<p><a href="/modelgate/models/{{ r.model|urlencode }}" target="_top">← Models › {{ r.model }}</a></p>
<h1>{{ r.model }}: how often should it retrain?</h1>
<p>{{ r.intervals }} intervals of its own history, from {{ r.first.strftime('%Y-%m-%d') }} to
{{ r.last.strftime('%Y-%m-%d') }}. Every policy replays all of them with the loop's own functions; the choice
reads only those ending by <b>{{ r.split.strftime('%Y-%m-%d') }}</b> (the first two thirds), and the table shows
the last third, which nothing of the choice has seen. {{ r.metric }} is pooled over every scored row.</p>
<p><b>Recommended: {{ r.recommendation.name }}</b> &mdash; {{ r.recommendation.why }}</p>
{% if r.diff %}<pre>{{ r.diff }}</pre>{% else %}<p>No spec change.</p>{% endif %}
<table><tr><th>policy</th><th>{{ r.metric }}</th><th>accuracy</th><th>retrains</th><th>promoted</th>
<th>alarms / 50</th><th>fit s</th><th>tuning {{ r.metric }}</th><th>tuning retrains</th></tr>
{% for row in r.results %}<tr class="{{ 'chosen' if row.candidate.name == r.recommendation.name else '' }}">
<td>{{ row.candidate.name }}</td><td>{{ fmt(row.held_out.primary) }}</td><td>{{ fmt(row.held_out.accuracy) }}</td>
<td>{{ row.held_out.retrains }}</td><td>{{ row.held_out.promotions }}</td><td>{{ row.held_out.alarms_per_50 }}</td>
<td>{{ row.held_out.train_seconds }}</td><td>{{ fmt(row.tune.primary) }}</td><td>{{ row.tune.retrains }}</td></tr>
{% endfor %}</table>
{{ figure|safe }}
</body></html>
"""


def _backtest_figure(result: Any) -> str:
    import plotly.graph_objects as go

    figure = go.Figure()
    for row in result.results:
        points = row.series
        chosen = row.candidate.name in ("spec", "every", "never", result.recommendation.name)
        figure.add_trace(
            go.Scatter(
                x=[p.end for p in points],
                y=[p.primary for p in points],
                mode="lines+markers",
                name=row.candidate.name,
                visible=True if chosen else "legendonly",
                marker={
                    "symbol": ["diamond" if p.trained else "circle" for p in points],
                    "size": [9 if p.trained else 4 for p in points],
                },  # fmt: skip
                hovertemplate="%{x|%Y-%m-%d}: %{y:.4f}<extra>" + row.candidate.name + "</extra>",
            )
        )
    # the held-out part starts here (add_vline's annotation can't take a datetime: plotly 5)
    figure.add_shape(type="line", x0=result.split, x1=result.split, yref="paper", y0=0, y1=1, line_dash="dot")
    figure.add_annotation(x=result.split, yref="paper", y=1, text="held out from here", showarrow=False)
    figure.update_layout(
        title=f"{result.metric} per interval (diamonds: retrained that interval)",
        xaxis_title="interval end",
        yaxis_title=result.metric,
        height=520,
    )
    return str(figure.to_html(full_html=False, include_plotlyjs="directory"))


def write_backtest_report(result: Any, path: Path) -> Path:
    """The backtest as one HTML page (the summary table, the metric per interval per policy, the spec diff)."""
    env = Environment(autoescape=select_autoescape(default=True))
    page = env.from_string(_BACKTEST_TEMPLATE).render(r=result, figure=_backtest_figure(result), fmt=_fmt)
    return _write_page(path, page)
