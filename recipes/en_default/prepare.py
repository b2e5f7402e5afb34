"""English default model, stage 1: manifests from ../shared/data and the text for synthetic speech.

Writes into data/:
    so762-train.jsonl / so762-dev.jsonl  speechocean762 split by SPEAKER: DEV_PER_GROUP speakers from each
                                         gender x (child < 13 / adult) group are held out for evaluation
    fsdd-train.jsonl / fsdd-test.jsonl   FSDD takes 5-49 / 0-4
    librivox.jsonl, alsa.jsonl           evaluation only (never trained on)
    synth-text.txt                       sentences to synthesise; no evaluation sentence among them
"""

import argparse
import random
from pathlib import Path

from vocable.errors import run_script
from vocable.data import read_kaldi_dir, write_manifest
from vocable.data.loader import fill_durations
from vocable.tokenizer import normalize_english

HERE = Path(__file__).parent
DEV_PER_GROUP = 4  # 16 dev speakers: 4 girls/women x boys/men x children/adults
TEXT_SOURCES = {  # share of synthesised sentences per corpus in ../shared/data/text
    "wordnet_gloss_examples.txt": 0.45,
    "nltk_pd_corpus.txt": 0.30,
    "world_english_bible.txt": 0.15,
}
DIGIT_SHARE = 0.10  # "three two two seven": speechocean762 and FSDD prompts read digits
WORDS_RANGE = (2, 18)  # words per synthesised sentence


def split_speakers(utts, seed: int):
    groups = {}
    for u in utts:
        age = u.meta.get("age")
        band = "child" if isinstance(age, int) and age < 13 else "adult"
        groups.setdefault((u.meta.get("gender", "?"), band), set()).add(u.speaker)
    rng = random.Random(seed)
    dev = set()
    for key in sorted(groups):
        dev.update(rng.sample(sorted(groups[key]), min(DEV_PER_GROUP, len(groups[key]))))
    return [u for u in utts if u.speaker not in dev], [u for u in utts if u.speaker in dev]


def synth_sentences(text_dir: Path, count: int, exclude: set[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    sentences = []
    for name, share in TEXT_SOURCES.items():
        lines = [normalize_english(line) for line in (text_dir / name).read_text(encoding="utf-8").splitlines()]
        lines = sorted({s for s in lines if WORDS_RANGE[0] <= len(s.split()) <= WORDS_RANGE[1] and s not in exclude})
        sentences += rng.sample(lines, min(len(lines), int(count * share)))
    digits = "zero one two three four five six seven eight nine".split()
    sentences += [" ".join(rng.choice(digits) for _ in range(rng.randint(1, 6)))
                  for _ in range(int(count * DIGIT_SHARE))]
    rng.shuffle(sentences)
    return sentences


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(HERE / "../../../shared/data"))
    parser.add_argument("--out", default=str(HERE / "data"))
    parser.add_argument("--sentences", type=int, default=20000, help="sentences to write for synthesis")
    parser.add_argument("--seed", type=int, default=762)
    args = parser.parse_args()
    shared, out = Path(args.shared), Path(args.out)

    so762 = read_kaldi_dir(shared / "speechocean762-train")
    fsdd_train, fsdd_test = read_kaldi_dir(shared / "fsdd/train"), read_kaldi_dir(shared / "fsdd/test")
    librivox = [u for u in read_kaldi_dir(shared / "librivox-clips") if u.text.strip()]
    alsa = read_kaldi_dir(shared / "alsa-prompts")
    fill_durations(so762 + fsdd_train + fsdd_test + librivox + alsa)
    train, dev = split_speakers(so762, args.seed)
    for name, utts in [("so762-train", train), ("so762-dev", dev), ("fsdd-train", fsdd_train),
                       ("fsdd-test", fsdd_test), ("librivox", librivox), ("alsa", alsa)]:
        write_manifest(out / f"{name}.jsonl", utts)
        print(f"{name:12s} {len(utts):5d} utterances {sum(u.duration for u in utts) / 3600:6.2f} h "
              f"{len({u.speaker for u in utts})} speakers")

    evaluation = {normalize_english(u.text) for u in dev + librivox + alsa + fsdd_test}
    sentences = synth_sentences(shared / "text", args.sentences, evaluation, args.seed)
    (out / "synth-text.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    print(f"synth-text   {len(sentences)} sentences")


if __name__ == "__main__":
    run_script(main)
