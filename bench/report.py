"""Results: the console table, bench/results.md and the PNG chart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .load import LoadResult

SCENARIOS = {
    "get": "Authenticated GET (proxied to the upstream)",
    "redirect": "Unauthenticated GET (redirect to sign-in)",
    "auth": "Forward-auth check (no upstream)",
    "routes": "Public GET by route-table size (proxied to the upstream)",
}
APACHE = "apache"
NGINX = "nginx"


@dataclass
class Row:
    scenario: str  # key of SCENARIOS
    contender: str  # short key: "nginx", "apache", "proxy-cookie-1w", ...
    label: str  # what the table shows
    result: LoadResult | None = None
    note: str = ""  # why there is no result, or a remark
    runs: list[float] = field(default_factory=list)  # req/s of every measured run

    @property
    def spread(self) -> str:
        """Lowest and highest req/s of the runs, as a ± percentage of the median."""
        if len(self.runs) < 2 or self.result is None or not self.result.rps:
            return ""
        half = (max(self.runs) - min(self.runs)) / 2 / self.result.rps * 100
        return f"±{half:.0f}%"

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class Extra:
    """A figure outside the load table: streaming, WebSockets, the session check."""

    what: str
    value: str
    reference: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    extras: list[Extra] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def ref(self, scenario: str, contender: str) -> LoadResult | None:
        for row in self.rows:
            if row.scenario == scenario and row.contender == contender:
                return row.result
        return None


def _ratio(value: float, ref: float | None) -> str:
    return f"{value / ref:.2f}×" if ref else "–"


def table_rows(report: Report) -> list[list[str]]:
    """One list of cells per load row; ratios are value / reference (req/s: higher is better,
    latency: lower is better)."""
    out = []
    for row in report.rows:
        r = row.result
        if r is None:
            out.append([SCENARIOS[row.scenario].split(" (")[0], row.label, row.note])
            continue
        oidc, nginx = report.ref(row.scenario, APACHE), report.ref(row.scenario, NGINX)
        cells = [SCENARIOS[row.scenario].split(" (")[0], row.label, f"{r.rps:,.0f}", row.spread,
                 _ratio(r.rps, oidc.rps if oidc else None),
                 _ratio(r.rps, nginx.rps if nginx else None),
                 f"{r.p50_ms:.2f}", _ratio(r.p50_ms, oidc.p50_ms if oidc else None),
                 _ratio(r.p50_ms, nginx.p50_ms if nginx else None),
                 f"{r.p99_ms:.2f}", _ratio(r.p99_ms, oidc.p99_ms if oidc else None),
                 _ratio(r.p99_ms, nginx.p99_ms if nginx else None),
                 r.errors_text + ("" if r.tool == "wrk" else f" ({r.tool})")]
        out.append(cells)
    return out


HEADER = ["scenario", "contender", "req/s", "spread", "×oidc", "×nginx", "p50 ms", "×oidc",
          "×nginx", "p99 ms", "×oidc", "×nginx", "errors"]


def text_table(report: Report) -> str:
    rows = table_rows(report)
    lines = []
    widths = [max([len(HEADER[i])] + [len(r[i]) for r in rows if len(r) > i and
                                      (i < 2 or len(r) == len(HEADER))])
              for i in range(len(HEADER))]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*HEADER))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        if len(r) < len(HEADER):  # no result: the note spans the figure columns
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}")
        else:
            lines.append(fmt.format(*r))
    extras = [f"{e.what}: {e.value}" + (f"  [{e.reference}]" if e.reference else "") +
              (f"  target {e.target}: {_met(e.met)}" if e.target else "")
              for e in report.extras]
    return "\n".join(lines + ([""] + extras if extras else []))


def _met(met: bool | None) -> str:
    return {True: "met", False: "not met", None: "n/a"}[met]


def markdown(report: Report, *, title: str, command: str, chart: str | None) -> str:
    out = [f"# {title}", "", f"Produced by `{command}`.", ""]
    out += ["## Load (64 connections)", "",
            "Ratios divide this row's figure by the same figure of Apache + mod_auth_openidc "
            "(×oidc) or plain nginx (×nginx) in the same scenario. For req/s higher is better; "
            "for latency a ratio above 1 means slower. Spread: half the distance between the "
            "lowest and highest req/s of the measured runs, relative to the median shown.", ""]
    out.append("| " + " | ".join(HEADER) + " |")
    out.append("|" + "|".join("---" if i < 2 else "--:" for i in range(len(HEADER))) + "|")
    for r in table_rows(report):
        if len(r) < len(HEADER):
            out.append(f"| {r[0]} | {r[1]} | {r[2]} |" + " |" * (len(HEADER) - 3))
        else:
            out.append("| " + " | ".join(r) + " |")
    if report.extras:
        out += ["", "## Targets, streaming, WebSockets, session check", "",
                "| measurement | result | reference | target | met |", "|---|--:|---|---|---|"]
        for e in report.extras:
            out.append(f"| {e.what} | {e.value} | {e.reference} | {e.target} | "
                       f"{_met(e.met) if e.target else ''} |")
    if chart:
        out += ["", f"![req/s and p99 latency per contender]({chart})"]
    if report.failures:
        out += ["", "## Failures", ""] + [f"- {f}" for f in report.failures]
    out += ["", "## How each contender ran", ""] + [f"- {n}" for n in report.notes]
    profile = Path(__file__).with_name("profile.md")
    if profile.exists():  # the profile notes that explain the figures (kept by hand)
        out += ["", profile.read_text().rstrip()]
    return "\n".join(out) + "\n"


def chart(report: Report, path: Path) -> bool:
    """req/s and p99 per contender, one group of bars per scenario. False without matplotlib."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    scenarios = [s for s in SCENARIOS if any(r.scenario == s and r.ok for r in report.rows)]
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(13, 3.2 * len(scenarios) + 0.6),
                             squeeze=False)
    for i, scenario in enumerate(scenarios):
        rows: Sequence[Row] = [r for r in report.rows if r.scenario == scenario and r.ok]
        labels = [r.label for r in rows]
        colors = [_color(r.contender) for r in rows]
        for j, (metric, unit) in enumerate((("rps", "req/s"), ("p99_ms", "p99 latency, ms"))):
            ax = axes[i][j]
            values = [getattr(r.result, metric) for r in rows]
            bars = ax.barh(labels, values, color=colors)
            ax.bar_label(bars, labels=[f"{v:,.0f}" if metric == "rps" else f"{v:.1f}"
                                       for v in values], padding=3, fontsize=8)
            ax.invert_yaxis()
            ax.set_xscale("log")  # nginx is 10-100x the rest: linear bars hide the contest
            ax.xaxis.set_minor_formatter(plt.NullFormatter())  # "2×10¹" labels overlap
            ax.set_xlabel(unit + " (log scale)")
            ax.margins(x=0.18)
            ax.tick_params(axis="y", labelsize=8)
            if j == 0:
                ax.set_title(SCENARIOS[scenario], loc="left", fontsize=10)
    fig.suptitle("azure-auth-proxy vs Apache + mod_auth_openidc vs plain nginx "
                 "(wrk, 64 connections, loopback, 2 cores)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _color(contender: str) -> str:
    if contender == NGINX or contender == "upstream":
        return "#7f8c8d"
    if contender == APACHE:
        return "#c0392b"
    return "#2471a3" if "cookie" in contender else "#17a589"
