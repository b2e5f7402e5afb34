"""FSDD recipe, stage 1: Kaldi folders in ../shared/data/fsdd → JSONL manifests in data/.

train.jsonl   takes 5-49 of every speaker except --holdout
dev.jsonl     takes 0-4 of the training speakers (the official test split: same speakers)
heldout.jsonl every take of the --holdout speaker (unseen voice), when one is given
"""

import argparse
from pathlib import Path

from vocable.errors import run_script
from vocable.data import read_kaldi_dir, write_manifest
from vocable.data.loader import fill_durations

HERE = Path(__file__).parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", default=str(HERE / "../../../shared/data/fsdd"), help="FSDD Kaldi-style root")
    parser.add_argument("--holdout", default="", help="speaker to leave out of training (e.g. theo)")
    parser.add_argument("--out", default=str(HERE / "data"))
    args = parser.parse_args()
    root, out = Path(args.fsdd), Path(args.out)
    train, test = read_kaldi_dir(root / "train"), read_kaldi_dir(root / "test")
    speakers = sorted({u.speaker for u in train + test})
    if args.holdout and args.holdout not in speakers:  # a typo would hold out nobody and train on everyone
        parser.error(f"--holdout {args.holdout}: no such speaker (FSDD has {', '.join(speakers)})")
    fill_durations(train + test)
    write_manifest(out / "train.jsonl", [u for u in train if u.speaker != args.holdout])
    write_manifest(out / "dev.jsonl", [u for u in test if u.speaker != args.holdout])
    if args.holdout:
        write_manifest(out / "heldout.jsonl", [u for u in train + test if u.speaker == args.holdout])
    print(f"wrote manifests to {out}")


if __name__ == "__main__":
    run_script(main)
