"""The run directory's files people read: candidates (CSV, JSON), the Pareto front, the winner, the
plot and the report. Each is written atomically and regenerated at the end and on resume."""
from __future__ import annotations

import csv
import io
import json
import math

from search_space.files import atomic_write

from .results import Candidate, SearchResult

__all__ = ["CSV_COLUMNS", "write_outputs", "plot_pareto", "candidate_row", "report_markdown", "md_table", "evidence",
           "score_text", "score_header", "validation_line", "budget_text"]

CSV_COLUMNS = ("arch_id", "trial", "n_trials", "preset", "score", "score_std", "latency_ms", "latency_std_ms",
               "energy_mj", "energy_std_mj", "params", "macs", "feasible", "violation", "pareto", "chosen",
               "measured_ms", "measured_status", "latency_refit_ms", "config")


def write_outputs(result: SearchResult) -> None:
    """Every file of the run directory except the study and ``command.json`` (module docstring)."""
    d = result.run_dir
    rows = [c.to_dict() for c in sorted(result.candidates, key=lambda c: c.trial)]
    atomic_write(d / "candidates.json", json.dumps(rows, indent=1))
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**{k: ("" if v is None else v) for k, v in r.items()}, "config": json.dumps(r["config"])})
    atomic_write(d / "candidates.csv", buf.getvalue())
    atomic_write(d / "pareto.json", json.dumps([c.to_dict() for c in result.pareto], indent=1))
    best = d / "best.json"
    if result.best is not None:
        atomic_write(best, result.best.cfg.to_json())
    elif best.exists():
        best.unlink()  # a resume with measurements may find that nothing is feasible any more
    try:
        atomic_write(d / "pareto.png", plot_pareto(result))
    except ImportError:
        result.notes.append("pareto.png not drawn: matplotlib is not installed (pip install matplotlib)")
    atomic_write(d / "report.md", report_markdown(result))


def plot_pareto(result: SearchResult) -> bytes:
    """The scored candidates, the feasible front with latency error bars, the budget and the presets (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    cands = result.candidates
    infeas = [c for c in cands if not c.feasible]
    feas = [c for c in cands if c.feasible]
    if infeas:
        ax.scatter([c.effective_latency_ms for c in infeas], [c.score for c in infeas], s=10, c="0.75",
                   label="infeasible")
    if feas:
        ax.scatter([c.effective_latency_ms for c in feas], [c.score for c in feas], s=12, c="tab:blue", alpha=0.6,
                   label="feasible")
    if result.pareto:
        xs = [c.effective_latency_ms for c in result.pareto]
        ax.errorbar(xs, [c.score for c in result.pareto], xerr=[c.latency_std_ms for c in result.pareto],
                    fmt="-o", c="tab:orange", ms=4, lw=1.2, elinewidth=0.8, label="Pareto front (± latency std)")
    for c in cands:
        if c.latency_known:
            ax.annotate("", xy=(c.measured_ms, c.score), xytext=(c.latency_ms, c.score),
                        arrowprops={"arrowstyle": "->", "color": "k", "lw": 0.8})
    if any(c.measured_ms is not None for c in cands):
        ax.plot([], [], "k-", lw=0.8, label="predicted -> measured")
    for name, p in result.presets.items():
        ax.scatter([p.latency_ms], [p.score], marker="*", s=160, c="tab:red", edgecolors="k", zorder=5)
        ax.annotate(name.replace("edgevit_", "EdgeViT-").upper().replace("EDGEVIT", "EdgeViT"),
                    (p.latency_ms, p.score), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if result.presets:
        ax.scatter([], [], marker="*", s=80, c="tab:red", edgecolors="k", label="official EdgeViT (predicted)")
    if result.best is not None:
        b = result.best
        ax.scatter([b.effective_latency_ms], [b.score], s=120, facecolors="none", edgecolors="tab:green", lw=2,
                   zorder=6, label=f"chosen {b.arch_id}")
    if cfg.budget_ms is not None:
        ax.axvline(cfg.budget_ms, ls="--", c="k", lw=0.8, label=f"budget {cfg.budget_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency on {cfg.device} (ms, predicted unless measured)")
    ax.set_ylabel(f"accuracy score ({result.accuracy_unit})")
    ax.set_title(f"{result.run_dir.name}: {len(cands)} candidates, {result.n_trials} trials, {cfg.sampler}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def budget_text(result: SearchResult, c: Candidate) -> str:
    """How sure the budget is for ``c`` under its latency model: the probability of meeting it, and the
    bound it was judged on with ``confidence`` ("" without a latency budget or for a clean measurement)."""
    cfg = result.config
    if cfg.budget_ms is None or c.latency_known:
        return ""
    out = f"P(latency <= {cfg.budget_ms:g} ms) {c.p_within(cfg.budget_ms):.2f} under its model"
    if cfg.confidence is not None:
        out += (f"; judged at mean + {cfg.z:.2f} sigma = {c.latency_bound_ms(cfg.z):.2f} ms "
                f"(confidence {cfg.confidence:g})")
    return out


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def evidence(c: Candidate, domain=None) -> str:
    """Empty when the candidate lies where the accuracy score was validated; else what lies outside,
    e.g. ``outside: params 21.1 M > 20.0 M`` (its score is then an extrapolation)."""
    if domain is None:
        return ""
    out = domain.outside(c.params, c.macs, c.cfg.resolution)
    return "outside: " + "; ".join(out) if out else ""


def _is_top1(unit: str) -> bool:
    return "top-1" in (unit or "")


def score_text(c: Candidate, unit: str = "") -> str:
    """The score as what it is: an estimated top-1 with its 1-sigma interval, or a rank."""
    if _is_top1(unit):
        std = f" ± {_fmt(c.score_std, '.1f')}" if _fmt(c.score_std) else ""
        return _fmt(c.score, ".1f") + std
    return _fmt(c.score, ".3f") + (f" ± {_fmt(c.score_std, '.3f')}" if _fmt(c.score_std) else "")


def score_header(unit: str = "") -> str:
    return "est. top-1 %" if _is_top1(unit) else "score (rank)" if unit else "score"


def validation_line(result: SearchResult) -> str:
    """What the score is and on what it was validated, in one line."""
    what = ("an estimated top-1 (± 1 sigma)" if _is_top1(result.accuracy_unit)
            else "a rank (percentile among reference EdgeViTs), not a top-1")
    d = result.accuracy_domain
    if d is None:
        return f"the score is {what}; no validation range is known for it"
    n_out = sum(bool(evidence(c, d)) for c in result.pareto)
    return (f"the score is {what}; validated on {d.what} ({d.range_text()}); {n_out} of {len(result.pareto)} "
            "Pareto candidates lie outside that range (flagged: their score is an extrapolation)")


def candidate_row(c: Candidate, domain=None, unit: str = "") -> dict[str, str]:
    """The columns people see for a candidate (report and terminal table); ``domain`` and ``unit``
    (the accuracy score's) make the score say what it is and flag candidates outside its evidence."""
    return {
        "id": c.arch_id + (f" ({c.preset})" if c.preset else ""),
        "score": score_text(c, unit),
        "latency ms": f"{c.latency_ms:.2f} ± {c.latency_std_ms:.2f}",
        "measured ms": _fmt(c.measured_ms) if c.measured_status in (None, "ok") else str(c.measured_status),
        "energy mJ": _fmt(c.energy_mj) if c.energy_mj is not None else "unknown",
        "params M": f"{c.params / 1e6:.2f}",
        "GMACs": f"{c.macs / 1e9:.3f}",
        "res": str(c.cfg.resolution),
        "depths": "-".join(str(x) for x in c.cfg.depths),
        "widths": "-".join(str(x) for x in c.cfg.widths),
        "evidence": evidence(c, domain) or ("inside" if domain is not None else ""),
    }


def _named(row: dict[str, str], unit: str) -> dict[str, str]:
    """The row with its score column named after what the score is."""
    return {(score_header(unit) if k == "score" else k): v for k, v in row.items()}


def md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def report_markdown(result: SearchResult) -> str:
    cfg = result.config
    budgets = ", ".join(x for x in (f"{cfg.budget_ms:g} ms" if cfg.budget_ms else "",
                                    f"{cfg.budget_mj:g} mJ" if cfg.budget_mj else "") if x) or "none"
    t = result.timings
    out = [f"# Search {result.run_dir.name}\n",
           f"- device: **{cfg.device}**; budget: **{budgets}**"
           + (f" with confidence {cfg.confidence:g} (mean + {cfg.z:.2f} sigma)" if cfg.confidence is not None else "")
           + f"; objectives: {', '.join(cfg.objectives)}",
           f"- latency calibration: {result.calibration}",
           f"- {result.accuracy}",
           f"- {validation_line(result)}",
           f"- {result.energy}",
           f"- sampler {cfg.sampler} (seed {cfg.seed}, population {cfg.population_size}), mode {cfg.mode} "
           f"({'the score alone, budgets as constraints' if cfg.mode == 'budget' else 'every objective'}), "
           f"{result.n_trials} trials, "
           f"{len(result.candidates)} distinct candidates, {len(result.feasible)} feasible; workers {cfg.workers} "
           f"({'Ray' if cfg.ray else 'in-process'})",
           f"- time: search {t.get('search', 0):.1f} s (scoring {t.get('score', 0):.1f} s, driver "
           f"{t.get('ask', 0) + t.get('tell', 0):.1f} s), models {t.get('models', 0):.1f} s"
           + (f", measurement {t['measure']:.1f} s" if t.get("measure") else ""),
           "- files: command.json, journal.log (the Optuna study: optuna-dashboard journal.log), candidates.csv/json, "
           "pareto.json, "
           "best.json, pareto.png\n"]
    out.append("## Chosen model\n")
    if result.best is not None:
        b = result.best
        lat = f"measured {b.measured_ms:.2f} ms" if b.latency_known else \
            f"predicted {b.latency_ms:.2f} ± {b.latency_std_ms:.2f} ms"
        sure = budget_text(result, b)
        out.append(f"`{b.arch_id}` (trial {b.trial}): {score_header(result.accuracy_unit)} "
                   f"{score_text(b, result.accuracy_unit)}, {lat}{f' ({sure})' if sure else ''}, "
                   f"{b.params / 1e6:.2f} M params, "
                   f"{b.macs / 1e9:.3f} GMACs, resolution {b.cfg.resolution}, depths {b.cfg.depths}, widths "
                   f"{b.cfg.widths}. Configuration: `best.json`.\n")
        ev = evidence(b, result.accuracy_domain)
        if ev:
            out.append(f"**The chosen model lies outside the evidence of its accuracy score** ({ev}): its score "
                       "is an extrapolation; prefer a candidate inside the range, or train it and look.\n")
    elif result.fastest is not None:
        f = result.fastest
        out.append(f"No candidate meets the budget. The fastest found is `{f.arch_id}` at {f.latency_bound_ms(cfg.z):.2f} ms"
                   f"{' (mean + z sigma)' if cfg.confidence is not None else ''} "
                   f"(score {f.score:.3f}); raise the budget to at least that.\n")
    out.append("## Pareto front (feasible)\n")
    dom, unit = result.accuracy_domain, result.accuracy_unit
    out.append(md_table([_named(candidate_row(c, dom, unit), unit) for c in result.pareto]))
    if result.presets:
        out.append("\n## Official EdgeViT presets under the same models\n")
        out.append(md_table([{"preset": n, **_named(candidate_row(c, dom, unit), unit), "feasible": "yes" if c.feasible else "no"}
                              for n, c in result.presets.items()]))
    if result.measured:
        out.append("\n## Predicted against measured\n")
        rows = []
        for d in result.measured:
            ms = d.get("latency_ms", d.get("median_ms"))  # drift-normalised where the store gives it
            err = f"{(d['predicted_ms'] - ms) / ms:+.1%}" if ms else ""
            rows.append({"id": d["arch_id"], "status": d["status"], "predicted ms": _fmt(d["predicted_ms"]),
                         "refit ms": _fmt(d.get("refit_ms")), "measured ms": _fmt(ms),
                         "raw median ms": _fmt(d.get("median_ms")), "prediction error": err,
                         "within budget": ("" if cfg.budget_ms is None or not ms else
                                           "yes" if ms <= cfg.budget_ms else "no")})
        out.append(md_table(rows))
    if result.notes:
        out.append("\n## Notes\n")
        out += [f"- {n}" for n in result.notes]
    return "\n".join(out) + "\n"
