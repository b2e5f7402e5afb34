"""vocable: offline speech recognition with deep learning, from training to serving.

    import vocable
    print(vocable.load("default").transcribe("speech.wav").text)
"""

__version__ = "0.1.0"

import os

# oneDNN, torch's CPU kernel library, keeps a compiled kernel per input shape, up to 1024 by default: audio of
# every length grew a long-running process by ~0.45 MB per new length (+135 MB over 300 files, a server
# streaming for minutes by hundreds of MB). 32 keeps memory flat at no measured cost in speed. oneDNN reads
# it at its first use, so it holds when vocable is imported before any model runs; a user's setting wins.
if "DNNL_PRIMITIVE_CACHE_CAPACITY" not in os.environ:  # its older name, which the new one would override
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")

from .audio import load_audio  # noqa: E402
from .errors import AudioError, ConfigError, DataError, ModelError, VocableError  # noqa: E402

__all__ = ["load", "load_audio", "Recognizer", "Result", "DecodingOptions", "Streamer", "StreamOptions",
           "format_result", "VocableError", "AudioError", "ConfigError", "DataError", "ModelError", "__version__"]


def __getattr__(name):
    # Imported lazily so `import vocable` works without torch (the ONNX runtime install).
    if name in ("load", "Recognizer", "Result"):
        from . import transcribe
        return getattr(transcribe, name)
    if name == "DecodingOptions":
        from .decoding import DecodingOptions
        return DecodingOptions
    if name in ("Streamer", "StreamOptions"):
        from . import stream
        return getattr(stream, name)
    if name == "format_result":
        from .formats import format_result
        return format_result
    raise AttributeError(f"module 'vocable' has no attribute {name!r}")
