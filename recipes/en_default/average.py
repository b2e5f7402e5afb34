"""Write a model file from a run's last epoch checkpoints (what `vocable train` does at its end), or
from the mean of several model files' weights.

    python average.py exp/gpu-c exp/gpu-c/model.vocable [--last 3]
    python average.py --models a.vocable b.vocable c.vocable soup.vocable

The first is for a run stopped before its end, e.g. device_run.sh's first run on the H200, which the
lease's command limit cut after the training budget but before the final averaging; the model config,
features and tokenizer come from the run's best.vocable. The second averages runs that continued one
model (lease 4's c5a-c: same start, other lr and seed); they must share architecture and tokenizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vocable.errors import run_script
from vocable.modelfile import LoadedModel, load_model_file, save_model
from vocable.train import average_epochs, average_states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", type=Path, nargs="+", help="a run folder, or with --models the model files")
    parser.add_argument("output", type=Path)
    parser.add_argument("--last", type=int, default=3, help="average this many of the last epochs")
    parser.add_argument("--models", action="store_true", help="average the weights of these model files")
    args = parser.parse_args()
    if args.models:
        models = [load_model_file(path) for path in args.inputs]
        template = models[0]
        for path, other in zip(args.inputs[1:], models[1:]):
            if (other.model_config, other.tokenizer.to_dict()) != (template.model_config, template.tokenizer.to_dict()):
                sys.exit(f"error: {path}: another [model] or tokenizer than {args.inputs[0]}")
        state = average_states([m.model.state_dict() for m in models])
        extra = {"averaged_models": [path.name for path in args.inputs]}
    elif len(args.inputs) == 1:
        template = load_model_file(args.inputs[0] / "best.vocable")
        state, extra = average_epochs(args.inputs[0], args.last), {"averaged_epochs": args.last}
    else:
        sys.exit("error: one run folder, or --models with several model files")
    template.model.load_state_dict(state)
    save_derived(args.output, template, template.model, template.model_config, extra, half=True)
    print(f"wrote {args.output}")


def save_derived(path: Path, start: LoadedModel, model, model_config, extra: dict, half: bool) -> None:
    """Write `model` with `start`'s features, tokenizer and meta (its decoding defaults) plus `extra`; the
    dev scores and version in `start`'s meta describe other weights, so they are dropped."""
    meta = {k: v for k, v in start.meta.items() if k not in ("dev_wer", "dev_cer", "vocable_version")}
    save_model(path, model, model_config, start.features, start.tokenizer, {**meta, **extra}, half=half)


if __name__ == "__main__":
    run_script(main)
