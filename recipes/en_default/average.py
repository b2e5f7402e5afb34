"""Write a model file from a run's last epoch checkpoints (what `vocable train` does at its end).

    python average.py exp/gpu-c exp/gpu-c/model.vocable [--last 3]

For a run stopped before its end, e.g. device_run.sh's first run on the H200, which the lease's command
limit cut after the training budget but before the final averaging. The model config, features and
tokenizer come from the run's best.vocable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vocable.modelfile import load_model_file, save_model
from vocable.train import average_epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--last", type=int, default=3, help="average this many of the last epochs")
    args = parser.parse_args()
    template = load_model_file(args.run_dir / "best.vocable")
    template.model.load_state_dict(average_epochs(args.run_dir, args.last))
    meta = {k: v for k, v in template.meta.items() if k not in ("dev_wer", "dev_cer", "vocable_version")}
    save_model(args.output, template.model, template.model_config, template.features, template.tokenizer,
               {**meta, "averaged_epochs": args.last}, half=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
