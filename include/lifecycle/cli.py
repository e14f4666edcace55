"""``lifecycle``: the core without Airflow (and the service commands behind ``make up`` / ``make down``).

    lifecycle up | down | status              services of the embedded default
    lifecycle airflow ARGS...                 Airflow's CLI on the running stack's metadata DB, e.g.
                                              `lifecycle airflow backfill create --dag-id D --from-date ...`
    lifecycle specs                           validate every model spec
    lifecycle check PATH                      validate one spec file: exit 0 and a summary, else exit 1 and
                                              one `PATH: field: problem` line per problem
    lifecycle init MODEL --from FILE --target COL [--id COL] [--task binary|multiclass|regression]
                   [--out PATH] [--force]     draft a spec from a sample batch (Parquet or CSV), by default
                                              to include/models/MODEL.yaml (never over a file without --force)
    lifecycle land MODEL DAY FILE             copy a Parquet or CSV file into the landing zone as DAY's batch
    lifecycle land-synthetic MODEL DAY [--scenario S]
                                              generate a day's synthetic batch into the landing zone
    lifecycle validate MODEL DAY              run the data gate on a landed batch
    lifecycle train MODEL END_DAY [--epochs N] [--run-id ID]
                                              train, evaluate, gate and register in-process
    lifecycle train-task --model M --window-end DAY --run-id ID [--epochs N] [--overrides JSON]
                         [--reason TEXT] [--xcom PATH]
                                              the train DAG's training step alone (what the Kubernetes
                                              pod runs): prints the result, writes it as JSON to PATH
    lifecycle ledger [--model M] [--json]     print the ledger
    lifecycle history MODEL                   who held the champion alias when, and why (from the ledger)
    lifecycle verify-ledger [--db FILE|URL]   recompute the ledger's hash chain: exit 1 when it was tampered with
    lifecycle report MODEL                    write the HTML lifecycle report
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _optional_int(text: str) -> int | None:
    """``--epochs``: an integer, or empty/``None``/``null`` for none (what a template renders for no value)."""
    if text.strip() in ("", "None", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _json_object(text: str) -> dict | None:
    """``--overrides``: a JSON object, or empty/``None``/``null`` for none."""
    if text.strip() in ("", "None", "null"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifecycle", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start Airflow and the alert receiver and leave them running")
    up.add_argument("--port", type=int, default=None, help="Airflow API server port (default $AIRFLOW_PORT or 8080)")
    sub.add_parser("down", help="stop every process the project started")
    sub.add_parser("status", help="list running services")
    p = sub.add_parser("airflow", help="run Airflow's CLI against this state folder's Airflow (its DB and settings)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("specs", help="validate every spec in include/models")
    p = sub.add_parser("check", help="validate one spec file (exit 1 and PATH: field: problem when invalid)")
    p.add_argument("path")
    p = sub.add_parser("init", help="draft a spec from a sample batch (Parquet or CSV)",
                       description="Draft a spec from a sample batch; the rules it follows are written at the top "
                                   "of the draft (and in lifecycle.data.draft).")
    p.add_argument("model")
    p.add_argument("--from", dest="source", required=True, metavar="FILE", help="a sample batch: .parquet or .csv")
    p.add_argument("--target", required=True, metavar="COL", help="the label column")
    p.add_argument("--id", dest="id_column", metavar="COL",
                   help="the row id column (default: the one column of text unique per row)")
    p.add_argument("--task", choices=["binary", "multiclass", "regression"], help="default: guessed from the target")
    p.add_argument("--out", metavar="PATH", help="where to write it (default: the specs folder's MODEL.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = sub.add_parser("land", help="copy a Parquet or CSV file into the landing zone as a day's batch",
                       description="Copy a Parquet or CSV file into the landing zone as the model's batch for DAY "
                                   "(atomically, as Parquet). The synthetic generator is `land-synthetic`.")
    p.add_argument("model")
    p.add_argument("day", type=_date)
    p.add_argument("file")
    p = sub.add_parser("land-synthetic", help="generate a day's synthetic batch into the landing zone")
    p.add_argument("model")
    p.add_argument("day", type=_date)
    p.add_argument("--scenario", default="stable")
    p = sub.add_parser("validate", help="run the data gate on a landed batch")
    p.add_argument("model")
    p.add_argument("day", type=_date)
    p = sub.add_parser("train", help="train, evaluate, gate and register in-process")
    p.add_argument("model")
    p.add_argument("end_day", type=_date)
    p.add_argument("--epochs", type=int)
    p.add_argument("--run-id", default=None)
    p = sub.add_parser("train-task", help="the train DAG's training step alone (run by the Kubernetes pod)")
    p.add_argument("--model", required=True)
    p.add_argument("--window-end", required=True, type=_date, help="last day of the training window")
    p.add_argument("--run-id", required=True, help="the DAG run id (one MLflow run per DAG run: reruns reuse it)")
    p.add_argument("--epochs", type=_optional_int)
    p.add_argument("--overrides", type=_json_object, help="other training fields, as a JSON object")
    p.add_argument("--reason", default="scheduled")
    p.add_argument("--xcom", help="also write the result here as JSON (/airflow/xcom/return.json in a pod)")
    p = sub.add_parser("ledger", help="print the lifecycle ledger")
    p.add_argument("--model")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("history", help="who held the champion alias when, and why (rebuilt from the ledger)")
    p.add_argument("model")
    p = sub.add_parser("verify-ledger", help="recompute the ledger's hash chain; exit 1 when it was tampered with")
    p.add_argument("--db", help="a SQLite file or a postgresql:// URL (default: the state's ledger)")
    p = sub.add_parser("report", help="write the HTML lifecycle report")
    p.add_argument("model")
    for name, text in (("verify-archive", "read every file of an archived version back and check its manifest"),
                       ("restore", "verify an archived version and register it again as a new version")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model")
        p.add_argument("version", help="the archived (original) version number")
        p.add_argument("--archive-uri", help="s3://bucket/prefix or a folder (default: the spec's; S3 endpoint from "
                                             "$AWS_ENDPOINT_URL, credentials from the usual AWS variables)")
    args = parser.parse_args(argv)

    from lifecycle.paths import StatePaths
    from lifecycle.retirement.archive import ChecksumMismatchError, ForeignArchiveError
    from lifecycle.retirement.restore import RestoreRefusedError
    from lifecycle.spec import SpecError, get_spec, load_specs

    paths = StatePaths.current()
    try:
        if args.cmd == "up":
            from lifecycle.ops.stack import start_stack

            stack = start_stack(paths, api_port=args.port)
            from lifecycle.ops.airflow_env import ADMIN_USER, admin_password

            print(f"Airflow UI: {stack.airflow_url} (user {ADMIN_USER}, password {admin_password(paths)}; kept in "
                  f"{paths.secrets_dir / 'airflow_admin_password'})\ngateway: {stack.gateway_url} (admin token in "
                  f"{paths.root / 'secrets' / 'gateway_token'})\nalert receiver: {stack.alerts_url}\n"
                  "MLflow UI: " + (paths.tracking_uri if paths.tracking_uri.startswith("http") else
                                   f"mlflow ui --backend-store-uri {paths.tracking_uri}") + "\nstop with: make down")
        elif args.cmd == "history":
            from lifecycle.clock import utcnow_iso
            from lifecycle.ledger import Ledger
            from lifecycle.reporting.history import champion_history, render

            spec = get_spec(args.model)
            print(render(spec.name, champion_history(Ledger(paths.ledger_db).events(spec.name)), utcnow_iso()))
        elif args.cmd == "airflow":
            import os
            import subprocess

            from lifecycle.ops.services import venv_bin
            from lifecycle.ops.stack import cli_env

            env = {**os.environ, **cli_env(paths), "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
            return subprocess.run([str(venv_bin() / "airflow"), *args.args], env=env).returncode
        elif args.cmd == "down":
            from lifecycle.ops.services import stop_all

            stopped = stop_all(paths)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.cmd == "status":
            from lifecycle.ops.services import running

            print("\n".join(running(paths)) or "nothing running")
        elif args.cmd == "specs":
            for spec in load_specs():
                print(f"ok: {spec.name} ({len(spec.data.features)} features, gate {dict(spec.gate.thresholds)})")
        elif args.cmd == "check":
            from lifecycle.spec import load_spec

            try:
                spec = load_spec(args.path)
            except SpecError as err:
                print(err)  # one "PATH: field: problem" line per problem
                return 1
            if spec.training.module:  # a user's network: does it import, build and answer in the task's shape?
                from lifecycle.training.trainer import ModuleFactoryError, check_module

                try:
                    print(check_module(spec.training.module, spec.training.module_options, task=spec.task,
                                       outputs=len(spec.data.classes or []) if spec.task == "multiclass" else 1))
                except ModuleFactoryError as err:
                    print(f"{args.path}: {err}")
                    return 1
            kinds = [f.kind for f in spec.data.features]
            print(f"OK: {args.path}: {spec.name}, task {spec.task}, target {spec.data.target}, id "
                  f"{spec.data.id_column}, {len(kinds)} features ("
                  + ", ".join(f"{kinds.count(k)} {k}" for k in ("numeric", "integer", "categorical") if k in kinds)
                  + f"), {len(spec.slices)} slices, gate {dict(spec.gate.thresholds)}")
        elif args.cmd == "init":
            from pathlib import Path

            from lifecycle.data.draft import draft_spec, read_table, write_draft
            from lifecycle.paths import specs_dir

            out = Path(args.out) if args.out else specs_dir() / f"{args.model}.yaml"
            draft = draft_spec(args.model, read_table(args.source), args.target, id_column=args.id_column,
                               task=args.task, source=args.source)
            written = write_draft(draft, out, force=args.force)
            kinds = [c.feature["kind"] for c in draft.features if c.feature]
            print(f"drafted {written}: {len(kinds)} features ("
                  + ", ".join(f"{kinds.count(k)} {k}" for k in ("numeric", "integer", "categorical") if k in kinds)
                  + f"), task {draft.task} ({draft.task_note}), id column {draft.id_column} ({draft.id_note})")
            for col in draft.left_out:
                print(f"  left out {col.column}: {col.note}")
            for warning in draft.warnings:
                print(f"  warning: {warning}")
            print(f"next: review it, then `lifecycle check {written}` and `lifecycle land {draft.model} YYYY-MM-DD "
                  "FILE`")
        elif args.cmd == "land":
            from lifecycle.data.draft import land_file

            print(f"landed {args.file} as {land_file(get_spec(args.model), args.day, args.file, paths)}")
        elif args.cmd == "land-synthetic":
            from lifecycle.data.synthetic import Scenario, land_batch

            print(land_batch(get_spec(args.model), args.day, Scenario.parse(args.scenario), paths))
        elif args.cmd == "validate":
            from lifecycle.data.validation import gate_batch

            outcome = gate_batch(get_spec(args.model), args.day, paths=paths)
            print(("validated: " if outcome.passed else "QUARANTINED: ") + outcome.reason)
            print(f"report: {outcome.report_path}")
            return 0 if outcome.passed else 3
        elif args.cmd == "train":
            from lifecycle.training import flow as tf

            spec = get_spec(args.model)
            run_id = args.run_id or f"cli__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
            trained = tf.train_candidate(spec, args.end_day, run_id, epochs=args.epochs, reason="cli", paths=paths)
            evaluation = tf.evaluate_candidate(spec, trained, paths)
            decision = tf.gate_candidate(spec, evaluation)
            result = tf.register_candidate(spec, trained, evaluation, decision, run_id, paths)
            print(f"{result['model']} v{result['version']}: {result['status']}: {result['reason']}")
        elif args.cmd == "train-task":
            import logging
            from pathlib import Path

            from lifecycle.training.flow import run_training_task

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            result = run_training_task(get_spec(args.model), args.window_end, args.run_id, args.epochs,
                                       args.overrides, args.reason, paths=paths)
            text = json.dumps(result)
            if args.xcom:
                from lifecycle.fileio import atomic_write

                atomic_write(Path(args.xcom), text)
            print(text)
        elif args.cmd == "ledger":
            from lifecycle.ledger import Ledger

            events = Ledger(paths.ledger_db).events(args.model)
            for e in events:
                print(json.dumps(e.public()) if args.json else
                      f"{e.at}  {e.model}  v{e.version or '-'}  {e.event:<18} {e.reason}")
        elif args.cmd == "verify-ledger":
            from pathlib import Path

            from lifecycle.db import is_postgres
            from lifecycle.ledger import Ledger

            target = args.db or paths.ledger_db
            if not is_postgres(target):
                target = Path(target)
                if not target.is_file():
                    raise FileNotFoundError(f"no lifecycle ledger at {target}")
            result = Ledger(target).verify()
            if not result.ok:
                print(f"ledger TAMPERED at row {result.first_bad_id}: {result.problem}")
                return 1
            print(f"ledger OK: {result.rows} rows, chain intact (head {result.head[:12]})")
        elif args.cmd == "report":
            from lifecycle.reporting.build import build_report

            print(build_report(get_spec(args.model), paths, {}))
        elif args.cmd in ("verify-archive", "restore"):
            from lifecycle.retirement.archive import open_store, verify_archive
            from lifecycle.retirement.restore import restore
            from lifecycle.retirement.retire import archive_uri

            spec = get_spec(args.model)
            store = open_store(args.archive_uri or archive_uri(spec, paths))
            if args.cmd == "verify-archive":
                manifest, digest = verify_archive(store, spec.name, args.version)
                print(f"ok: {len(manifest['files'])} files match {store.uri}/{spec.name}/v{args.version}/manifest.json "
                      f"(sha256 {digest})")
            else:
                run_id = f"cli_restore__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
                result = restore(spec, store, args.version, run_id, paths)
                print(f"restored {spec.name} v{args.version} from {result['restored_from']} as v{result['version']} "
                      "(weight 0: load and deploy it through the gateway / the deploy DAG)")
    except SpecError as err:
        print(f"spec error: {err}", file=sys.stderr)
        return 2
    except ChecksumMismatchError as err:
        print(f"refused: archive does not match its manifest: {err}", file=sys.stderr)
        return 4
    except (RestoreRefusedError, ForeignArchiveError) as err:
        print(f"refused: {err}", file=sys.stderr)
        return 4
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
