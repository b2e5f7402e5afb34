"""Datasets: manifests, importers, batching, augmentation, synthetic speech and feature shards."""

from .manifest import Utterance, read_dataset, read_kaldi_dir, read_manifest, write_manifest

__all__ = ["Utterance", "read_dataset", "read_kaldi_dir", "read_manifest", "write_manifest"]
