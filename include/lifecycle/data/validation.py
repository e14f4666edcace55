"""Data gate: every incoming batch is checked by a Great Expectations (GX 1.x) suite before anything trains on it.

The suite is derived from the spec's schema (columns, types, ranges, categories, missing shares) plus the spec's
explicit expectations. A passing batch moves to ``validated/``; a failing one moves to ``quarantine/`` with its
GX result (JSON) and a readable HTML report. Nothing in quarantine is ever read by training.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.data.frames import (
    FLOAT_TYPES,
    TEXT_TYPES,
    batch_columns,
    batch_name,
    declared_columns,
    numpy_dtypes,
)
from lifecycle.fileio import atomic_write, crash_point, durable_move
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import ModelSpec

log = logging.getLogger(__name__)


class BatchNotFoundError(FileNotFoundError):
    """No batch landed (or was validated) for the data interval."""


@dataclass
class GateOutcome:
    """What the data gate decided for one batch, and where its evidence lies."""

    model: str
    day: str
    passed: bool
    rows: int
    evaluated: int
    failed: int
    failures: list[str] = field(default_factory=list)
    batch_path: str = ""
    result_path: str = ""
    report_path: str = ""

    @property
    def reason(self) -> str:
        if self.passed:
            return f"{self.evaluated} expectations passed on {self.rows} rows"
        shown = "; ".join(self.failures[:3]) + (f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else "")
        return f"{self.failed} of {self.evaluated} expectations failed: {shown}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "reason": self.reason}


def expectation_specs(spec: ModelSpec) -> list[tuple[str, dict[str, Any]]]:
    """The suite as (expectation type, kwargs) pairs: schema-derived first, then the spec's own."""
    id_column = spec.data.id_column
    out: list[tuple[str, dict[str, Any]]] = [
        ("expect_column_to_exist", {"column": id_column}),
        ("expect_column_values_to_not_be_null", {"column": id_column}),
    ] if id_column else []
    out += [
        ("expect_column_to_exist", {"column": spec.data.target}),
        ("expect_column_values_to_not_be_null", {"column": spec.data.target}),
    ]
    for f in declared_columns(spec):  # the features, and the sensitive columns kept out of them
        out.append(("expect_column_to_exist", {"column": f.name}))
        # An integer column with missing values arrives as float64 (NaN); the range check still applies.
        types = {"numeric": FLOAT_TYPES, "integer": FLOAT_TYPES, "categorical": TEXT_TYPES}[f.kind]
        out.append(("expect_column_values_to_be_in_type_list", {"column": f.name, "type_list": types}))
        if f.max_missing == 0:
            out.append(("expect_column_values_to_not_be_null", {"column": f.name}))
        else:
            out.append(("expect_column_values_to_not_be_null", {"column": f.name, "mostly": 1 - f.max_missing}))
        if f.kind == "categorical":
            out.append(("expect_column_values_to_be_in_set", {"column": f.name, "value_set": f.categories}))
        elif f.min is not None or f.max is not None:
            out.append(("expect_column_values_to_be_between",
                        {"column": f.name, "min_value": f.min, "max_value": f.max}
                        | ({"mostly": 1 - f.max_out_of_range} if f.max_out_of_range else {})))
    out += [(e.expectation, dict(e.kwargs)) for e in spec.expectations]
    return out


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def build_suite(spec: ModelSpec):
    """A GX ExpectationSuite for the spec; an unknown expectation name raises with the spec's name."""
    import great_expectations as gx
    from great_expectations.expectations.registry import get_expectation_impl

    suite = gx.ExpectationSuite(name=f"{spec.name}.batch")
    for name, kwargs in expectation_specs(spec):
        try:
            impl = get_expectation_impl(name)
        except Exception as err:
            raise ValueError(f"spec {spec.name!r}: unknown GX expectation {name!r}") from err
        try:
            suite.add_expectation(impl(**kwargs))
        except Exception as err:
            raise ValueError(f"spec {spec.name!r}: bad arguments for {name} {kwargs}: {err}") from err
    return suite


def _type_failure(col: str | None, observed: Any, accepted: list[str]) -> str:
    """A column whose dtype the spec's kind does not accept: the field, what the spec expects, what was found,
    and the way out. Category codes stored as numbers have an explicit rule: ``lifecycle land`` writes each code
    as its text label (:func:`lifecycle.data.frames.category_label`: ``3``, not ``3.0``), as the drafted spec's
    categories are written."""
    found = str(observed) if observed else "object (mixed or text values)"
    if set(accepted) == set(TEXT_TYPES):
        hint = ("; category codes stored as numbers: land the file with `lifecycle land MODEL DAY FILE`, which "
                "writes each code as its text label (3, not 3.0), or make the feature numeric in the spec"
                if found in FLOAT_TYPES or found.startswith(("int", "uint", "float")) else "")
        return f"{col}: categorical feature: expected text ({', '.join(TEXT_TYPES)}), found dtype {found}{hint}"
    return (f"{col}: numeric feature: expected numbers (float or integer dtypes), found dtype {found}: text or mixed "
            "values in a number column (a stray header, a unit, a comma as decimal mark?)")


def _describe_failure(result: dict[str, Any]) -> str:
    cfg = result["expectation_config"]
    kind, kwargs = cfg["type"], cfg.get("kwargs", {})
    col = kwargs.get("column")
    res = result.get("result") or {}
    exc = (result.get("exception_info") or {})
    if exc.get("raised_exception"):
        msg = str(exc.get("exception_message") or "error").splitlines()[0][:160]
        return f"{col or 'table'}: {kind} could not run ({msg})"
    if kind == "expect_column_to_exist":
        return f"{col}: column is missing"
    if kind == "expect_column_values_to_be_in_type_list":
        return _type_failure(col, res.get("observed_value"), kwargs.get("type_list", []))
    if "unexpected_percent" in res and res.get("unexpected_count"):
        sample = res.get("partial_unexpected_list", [])[:3]
        what = {
            "expect_column_values_to_not_be_null": "missing",
            "expect_column_values_to_be_between": f"outside [{kwargs.get('min_value')}, {kwargs.get('max_value')}]",
            "expect_column_values_to_be_in_set": "not in the allowed set",
            "expect_column_values_to_be_unique": "duplicated",
        }.get(kind, f"violating {kind}")
        allowed = f" (allowed {1 - kwargs['mostly']:.0%})" if "mostly" in kwargs else ""
        return (f"{col}: {res['unexpected_percent']:.1f}% of values {what}{allowed}, e.g. "
                f"{', '.join(repr(v) for v in sample)}")
    observed = res.get("observed_value")
    bounds = {k: kwargs[k] for k in ("min_value", "max_value") if k in kwargs}
    return f"{col or 'table'}: {kind} failed (observed {observed!r}, expected {bounds or kwargs})"


def validate_frame(spec: ModelSpec, frame: pd.DataFrame) -> tuple[bool, dict[str, Any], list[str]]:
    """Run the suite on a DataFrame; return (success, GX result as JSON dict, readable failure lines)."""
    frame = numpy_dtypes(frame)
    missing = {c for c in batch_columns(spec) if c not in frame}
    ctx = _context()
    batch_def = (ctx.data_sources.add_pandas("landing").add_dataframe_asset(spec.name)
                 .add_batch_definition_whole_dataframe("batch"))
    suite = build_suite(spec)
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite).to_json_dict()
    # A missing column fails every expectation on it; say it once.
    failures = [
        _describe_failure(r) for r in result["results"]
        if not r["success"] and (r["expectation_config"]["kwargs"].get("column") not in missing
                                 or r["expectation_config"]["type"] == "expect_column_to_exist")
    ]
    return bool(result["success"]), result, failures


def render_report(outcome: GateOutcome, result: dict[str, Any] | None) -> str:
    """A self-contained HTML page a person can read: verdict, then every expectation with its observation."""
    colour = "#1b7f3b" if outcome.passed else "#b3261e"
    rows = []
    for r in (result or {}).get("results", []):
        cfg = r["expectation_config"]
        kwargs = {k: v for k, v in cfg.get("kwargs", {}).items() if k != "batch_id"}
        res = r.get("result") or {}
        observed = res.get("observed_value", "")
        if res.get("unexpected_count"):
            observed = f"{res['unexpected_count']} unexpected ({res.get('unexpected_percent', 0):.1f}%): " + \
                ", ".join(repr(v) for v in res.get("partial_unexpected_list", [])[:5])
        exc = r.get("exception_info") or {}
        if exc.get("raised_exception"):
            observed = "could not run: " + str(exc.get("exception_message", ""))[:200]
        ok = "pass" if r["success"] else "FAIL"
        rows.append(
            f"<tr class='{ok.lower()}'><td>{ok}</td><td>{html.escape(cfg['type'])}</td>"
            f"<td><code>{html.escape(json.dumps(kwargs, default=str))}</code></td>"
            f"<td>{html.escape(str(observed))}</td></tr>"
        )
    failures = "".join(f"<li>{html.escape(f)}</li>" for f in outcome.failures)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Data gate: {outcome.model} {outcome.day}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}}
tr.fail td{{background:#fdecea}} .verdict{{color:{colour};font-size:1.4em;font-weight:bold}}</style></head><body>
<h1>Data gate: {html.escape(outcome.model)}, batch {outcome.day}</h1>
<p class="verdict">{"PASSED" if outcome.passed else "QUARANTINED"}</p>
<p>{outcome.rows} rows; {outcome.evaluated - outcome.failed} of {outcome.evaluated} expectations passed.
Validated by Great Expectations suite <code>{outcome.model}.batch</code>.</p>
{"<h2>Why it failed</h2><ul>" + failures + "</ul>" if failures else ""}
<h2>Every expectation</h2>
<table><tr><th></th><th>expectation</th><th>arguments</th><th>observed</th></tr>{"".join(rows)}</table>
</body></html>"""


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str))


def gate_batch(spec: ModelSpec, day: dt.date, *, paths: StatePaths | None = None,
               ledger: Ledger | None = None, run_id: str | None = None) -> GateOutcome:
    """Validate the batch landed for ``day``; publish it as validated or quarantine it. Idempotent and resumable.

    Steps: evidence (GX result, HTML report) -> move the batch -> its decision record (``gate.json``) -> the
    ledger row, each a crash point. A rerun after the decision was recorded returns it (and records the ledger row
    if a crash came before it); a rerun after a crash between the move and the record finds the batch where it
    was moved and decides again from there, so no crash leaves a day that can no longer be gated.
    """
    import pandas as pd

    paths = paths or StatePaths.current()
    ledger = ledger or Ledger(paths.ledger_db)
    name = batch_name(day)
    landing = paths.landing(spec.name) / name
    validated = paths.validated(spec.name) / name
    qdir = paths.quarantine(spec.name) / day.isoformat()
    source = landing
    if not landing.exists():
        for recorded in (gate_record(validated), qdir / "gate.json"):
            if recorded.exists():
                log.info("data gate: batch %s of %s already decided; returning the recorded outcome",
                         day, spec.name)
                outcome = GateOutcome(**{k: v for k, v in json.loads(recorded.read_text()).items() if k != "reason"})
                _record(spec, outcome, ledger, run_id)  # a no-op unless a crash came between the record and the row
                return outcome
        moved = [p for p in (validated, qdir / name) if p.exists()]
        if not moved:
            raise BatchNotFoundError(f"no batch landed for {spec.name} on {day}: expected {landing}")
        source = moved[0]
        log.warning("data gate: batch %s of %s was moved to %s without its decision record (a crash); deciding "
                    "again", day, spec.name, source)

    result: dict[str, Any] | None = None
    try:
        frame = pd.read_parquet(source)
    except Exception as err:  # noqa: BLE001  # unreadable file: quarantine it, do not crash the gate
        outcome = GateOutcome(spec.name, day.isoformat(), False, 0, 1, 1,
                              [f"batch file unreadable as Parquet: {type(err).__name__}: {err}"])
    else:
        passed, result, failures = validate_frame(spec, frame)
        stats = result["statistics"]
        outcome = GateOutcome(spec.name, day.isoformat(), passed, len(frame),
                              int(stats["evaluated_expectations"]), int(stats["unsuccessful_expectations"]),
                              failures)

    if outcome.passed:
        report = paths.reports / spec.name / "gx" / f"{day.isoformat()}.html"
        outcome.batch_path, outcome.report_path = str(validated), str(report)
        outcome.result_path = str(validated.with_suffix(".gx.json"))
        gate_json = gate_record(validated)
    else:
        outcome.batch_path = str(qdir / name)
        outcome.result_path, outcome.report_path = str(qdir / "gx_result.json"), str(qdir / "report.html")
        gate_json = qdir / "gate.json"
    _write_json(Path(outcome.result_path), result or {"success": False, "results": [], "error": outcome.failures})
    atomic_write(Path(outcome.report_path), render_report(outcome, result))
    crash_point("gate.evidence_written")
    # Move the batch, then write the decision record: a crash before the move leaves the batch in landing, one
    # after it leaves the batch without its record (not validated for any reader, :func:`is_validated`), and
    # either way a retry decides again; nothing is ever in validated/ without its evidence next to it.
    if source != Path(outcome.batch_path):
        durable_move(source, outcome.batch_path)
    crash_point("gate.batch_moved")
    _write_json(gate_json, outcome.to_dict())
    crash_point("gate.decision_written")
    _record(spec, outcome, ledger, run_id)
    log.info("data gate: %s batch %s of %s: %s", "validated" if outcome.passed else "QUARANTINED",
             day, spec.name, outcome.reason)
    return outcome


def _record(spec: ModelSpec, outcome: GateOutcome, ledger: Ledger, run_id: str | None) -> bool:
    """The decision's ledger row, keyed by model, event and day: recorded once however often it is called."""
    event = "batch_validated" if outcome.passed else "batch_quarantined"
    return ledger.record(spec.name, event, f"batch {outcome.day}: {outcome.reason}",
                         details={"day": outcome.day, "rows": outcome.rows, "report": outcome.report_path},
                         run_id=run_id, key=f"{spec.name}:{event}:{outcome.day}")


def gate_record(batch: Path) -> Path:
    """The decision record written next to a validated batch: ``<day>.gate.json`` beside ``<day>.parquet``."""
    return batch.with_suffix(".gate.json")


def is_validated(batch: Path) -> bool:
    """The one definition of a validated batch: its Parquet file *and* its gate record are in ``validated/``.

    :func:`gate_batch` moves the file first and writes the record last, so a file without its record is a crash
    between the two: not (yet) validated, whatever its folder says (a retry of the gate decides it again). Every
    reader asks this function.
    """
    return batch.exists() and gate_record(batch).exists()


def validated_days(spec: ModelSpec, paths: StatePaths | None = None, *, start: dt.date | None = None,
                   end: dt.date | None = None) -> list[dt.date]:
    """The days with a validated batch (:func:`is_validated`), oldest first, within ``[start, end]`` if given."""
    paths = paths or StatePaths.current()
    folder = paths.validated(spec.name)
    days = []
    for p in sorted(folder.glob("*.parquet")) if folder.exists() else []:
        try:
            day = dt.date.fromisoformat(p.name.removesuffix(".parquet"))
        except ValueError:  # not a batch of ours
            continue
        if (start is None or day >= start) and (end is None or day <= end) and is_validated(p):
            days.append(day)
    return days


def validated_batches(spec: ModelSpec, start: dt.date, end: dt.date,
                      paths: StatePaths | None = None) -> list[Path]:
    """Validated batch files (:func:`is_validated`) for days in [start, end]; quarantined days are simply absent."""
    paths = paths or StatePaths.current()
    folder = paths.validated(spec.name)
    return [folder / batch_name(day) for day in validated_days(spec, paths, start=start, end=end)]
