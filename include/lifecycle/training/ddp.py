"""One DDP worker of a distributed training run; started by ``torchrun`` (see ``trainflow.train_distributed``).

Rank 0 runs the ordinary ``train_candidate`` (MLflow run, checkpoints, logging, the pyfunc) and tells the other
ranks which checkpoint folder the run trains into; the other ranks prepare the same arrays on their own and
join the same ``train`` call, which is DDP once a process group exists. Backend: NCCL on GPUs, gloo on CPU.

A ``training.module`` factory is imported by every rank (each builds the network from the same seed, so all
start from the same weights): its module must be importable in the worker processes, which inherit the
environment (``PYTHONPATH``) and working directory of the task that starts ``torchrun``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--end", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--reason", default="scheduled")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--overrides", default="{}")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as dist

    from lifecycle.fileio import atomic_write
    from lifecycle.spec import get_spec
    from lifecycle.training import flow as tf
    from lifecycle.training.trainer import load_factory, train

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=30))
    rank = dist.get_rank()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    spec = get_spec(args.model)
    overrides = json.loads(args.overrides)
    try:
        module = tf.effective_training(spec, args.epochs, overrides).module
        if module is not None:  # each rank builds the network itself: a factory it cannot import fails here, named
            load_factory(module)
        if rank == 0:
            def announce(folder: Path | None) -> None:
                dist.broadcast_object_list([None if folder is None else str(folder)], src=0)

            result = tf.train_candidate(spec, args.end, args.run_id, epochs=args.epochs, overrides=overrides,
                                        reason=args.reason, announce=announce)
            result["processes"] = dist.get_world_size()
            atomic_write(args.out, json.dumps(result))
        else:
            cfg = tf.effective_training(spec, args.epochs, overrides)
            data = tf.prepare_data(spec, cfg, tf.training_window(spec, args.end))
            folder = [None]
            dist.broadcast_object_list(folder, src=0)
            if folder[0] is not None:  # None: rank 0 found the run already finished
                train(tf.hyper(cfg), data.x_train, data.y_train, data.x_val, data.y_val,
                      checkpoint_dir=Path(folder[0]), **data.target.head())
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
