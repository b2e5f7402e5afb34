"""Write a Conformer model file of twice the depth that transcribes exactly as the given one, to train on.

    python grow.py ../../vocable/assets/en-default.vocable exp/deep12.vocable
    ... vocable.cli train conformer-cpu-ft.toml --set run.init_from='"exp/deep12.vocable"' --set model.n_layers=12

Each block is followed by a copy of itself whose residual branches start at zero (vocable.models.conformer.
deepened): a larger model that begins where the small one stopped instead of from scratch.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from vocable.errors import VocableError
from vocable.modelfile import load_model_file
from vocable.models.conformer import Conformer, deepened

from average import save_derived  # this folder's script: run grow.py from anywhere, Python finds it beside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a Conformer .vocable file or bundled model name")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    start = load_model_file(args.model)
    if not isinstance(start.model, Conformer):
        sys.exit(f"error: {args.model}: a {start.model_config.arch} model; grow.py deepens Conformers only")
    config = dataclasses.replace(start.model_config, n_layers=2 * start.model_config.n_layers)
    save_derived(args.output, start, deepened(start.model.float()), config, {"grown_from": str(args.model)}, half=False)
    print(f"wrote {args.output}: {config.n_layers} blocks")


if __name__ == "__main__":
    try:
        main()
    except (VocableError, OSError) as error:  # a missing or broken model file: one line, not a traceback
        sys.exit(f"error: {error}")
