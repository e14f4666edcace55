"""Reading an interval of gateway logs: interval bounds, several files, batch requests, torn and damaged lines,
outcomes reported twice or for other intervals."""
from __future__ import annotations

import datetime as dt

import orjson

from lifecycle.monitoring.logs import read_interval

START = dt.datetime(2026, 2, 1, 10, tzinfo=dt.UTC)
ROW = {"age": 40, "income": 50000.0, "debt_to_income": 0.3, "credit_utilization": 0.5, "num_open_accounts": 5,
       "months_employed": None, "loan_amount": 9000.0, "home_ownership": "RENT", "loan_purpose": "car",
       "region": "north"}


def write(path, records, tail=b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n" + tail)


def pred(rid, ts, n=1, version="1"):
    return {"request_id": rid, "ts": ts, "model": "credit_default", "version": version, "rows": [ROW] * n,
            "probability": [0.2] * n, "label": [0] * n, "latency_ms": 1.0}


def test_reads_only_the_interval_across_files_with_batches_and_damage(state, spec):
    t = START.timestamp()
    hour10 = state.root / "serving/predictions/credit_default/date=2026-02-01/hour=10"
    hour11 = state.root / "serving/predictions/credit_default/date=2026-02-01/hour=11"
    write(hour10 / "1.jsonl", [pred("a", t + 1), pred("b", t + 2, n=3, version="2")], tail=b'{"request_id": "torn')
    write(hour10 / "2.jsonl", [pred("c", t + 3)])
    (hour10 / "3.jsonl").write_bytes(orjson.dumps(pred("d", t + 4)) + b"\nnot json\n" + orjson.dumps(pred("e", t + 5))
                                     + b"\n")
    write(hour11 / "1.jsonl", [pred("late", t + 3600 + 10)])  # outside [10:00, 11:00)
    fb = state.root / "serving/feedback/credit_default/date=2026-02-01/hour=10/1.jsonl"
    write(fb, [{"request_id": "a", "ts": t + 9, "label": [1]}, {"request_id": "a", "ts": t + 10, "label": [0]},
               {"request_id": "b", "ts": t + 9, "label": [1, 0, 1]}, {"request_id": "c", "ts": t + 9, "label": [1, 1]},
               {"request_id": "late", "ts": t + 9, "label": [1]}])
    interval = read_interval(spec, START, START + dt.timedelta(hours=1), state)
    frame = interval.frame
    assert sorted(frame["request_id"]) == ["a", "b", "b", "b", "c", "d", "e"]
    assert frame["version"].tolist().count("2") == 3
    assert frame["months_employed"].isna().all() and frame["age"].eq(40).all()
    assert frame["home_ownership"].eq("RENT").all()
    labelled = interval.labelled
    # a once (the first outcome, as the gateway counts it), b three times; c has the wrong length, late is outside
    assert len(labelled) == 4
    assert labelled["label"].tolist().count(1) == 3


def test_an_empty_interval_is_an_empty_frame(state, spec):
    interval = read_interval(spec, START, START + dt.timedelta(hours=1), state)
    assert len(interval.frame) == 0 and len(interval.labelled) == 0
    assert set(spec.data.feature_names) <= set(interval.frame.columns)


def test_torn_and_damaged_lines_are_read_alike_by_both_readers(state, spec, caplog):
    """One reading rule (serving.predlog) behind the gateway's reader and monitoring's Arrow reader: a torn last
    line is ignored even when it parses (its newline had not landed), a damaged middle line is skipped with a
    warning naming file and line; both are counted the same way."""
    from lifecycle.serving.predlog import ReadStats, read_log

    t = START.timestamp()
    hour10 = state.root / "serving/predictions/credit_default/date=2026-02-01/hour=10"
    write(hour10 / "1.jsonl", [pred("a", t + 1)], tail=orjson.dumps(pred("whole-but-torn", t + 2)))
    write(hour10 / "2.jsonl", [pred("b", t + 3)], tail=b'{"request_id": "torn')
    (hour10 / "3.jsonl").write_bytes(orjson.dumps(pred("c", t + 4)) + b'\n{"request_id": "x\n'
                                     + orjson.dumps(pred("d", t + 5)) + b"\n")
    end = START + dt.timedelta(hours=1)
    gateway = ReadStats()
    records = read_log(state.root / "serving", "predictions", "credit_default", START, end, gateway)
    interval = read_interval(spec, START, end, state)
    assert sorted(r["request_id"] for r in records) == sorted(interval.frame["request_id"]) == ["a", "b", "c", "d"]
    assert gateway == interval.skipped == ReadStats(torn=2, damaged=1)
    assert f"{hour10 / '3.jsonl'}:2" in caplog.text


def test_rows_served_out_of_spec_are_marked_and_kept_out_of_drift(state, spec):
    """``serving.out_of_spec: flag`` logs ``out_of_spec: [{"row", "fields"}]``; the reader marks exactly those
    rows, so the monitor can leave them out of drift statistics."""
    t = START.timestamp()
    flagged = pred("f", t + 1, n=3) | {"out_of_spec": [{"row": 1, "fields": ["age"]}]}
    write(state.root / "serving/predictions/credit_default/date=2026-02-01/hour=10/1.jsonl",
          [pred("a", t + 1, n=2), flagged])
    frame = read_interval(spec, START, START + dt.timedelta(hours=1), state).frame
    marked = frame.loc[frame["out_of_spec"], "request_id"].tolist()
    assert marked == ["f"] and frame["out_of_spec"].sum() == 1 and len(frame) == 5
