"""Write a larger Conformer model file that transcribes exactly as the given one, to train on.

    python grow.py ../../vocable/assets/en-default.vocable exp/deep12.vocable
    ... vocable.cli train conformer-cpu-ft.toml --set run.init_from='"exp/deep12.vocable"' --set model.n_layers=12

Each block is followed by a copy of itself whose residual branches start at zero (vocable.models.conformer.
deepened): a larger model that begins where the small one stopped instead of from scratch.
With `--self-condition K` the depth stays and self-conditioned CTC is added after block K instead
(train with --set model.self_condition=K); its feedback layer starts at zero.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from vocable.errors import run_script
from vocable.modelfile import load_model_file
from vocable.models import build_model
from vocable.models.conformer import Conformer, deepened

from average import save_derived  # this folder's script: run grow.py from anywhere, Python finds it beside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a Conformer .vocable file or bundled model name")
    parser.add_argument("output", type=Path)
    parser.add_argument("--self-condition", type=int, metavar="BLOCK",
                        help="add self-conditioned CTC after this block instead of doubling the depth")
    args = parser.parse_args()
    start = load_model_file(args.model)
    if not isinstance(start.model, Conformer):
        sys.exit(f"error: {args.model}: a {start.model_config.arch} model; grow.py grows Conformers only")
    if args.self_condition is None:
        config = dataclasses.replace(start.model_config, n_layers=2 * start.model_config.n_layers)
        model = deepened(start.model.float())
    else:
        config = dataclasses.replace(start.model_config, self_condition=args.self_condition)
        config.validate("--self-condition")
        model = build_model(config, start.features.dim, start.tokenizer.vocab_size)
        missing, unexpected = model.load_state_dict(start.model.float().state_dict(), strict=False)
        assert not unexpected and all(name.startswith("condition.") for name in missing), (missing, unexpected)
    save_derived(args.output, start, model, config, {"grown_from": str(args.model)}, half=False)
    conditioned = f", self-conditioned after block {config.self_condition}" if config.self_condition else ""
    print(f"wrote {args.output}: {config.n_layers} blocks{conditioned}")


if __name__ == "__main__":
    run_script(main)
