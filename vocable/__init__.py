"""vocable: offline speech recognition with deep learning, from training to serving.

    import vocable
    print(vocable.load("default").transcribe("speech.wav").text)
"""

__version__ = "0.1.0"

from .audio import load_audio  # noqa: E402
from .errors import AudioError, ConfigError, DataError, ModelError, VocableError  # noqa: E402

__all__ = ["load", "load_audio", "Recognizer", "Result", "DecodingOptions", "VocableError", "AudioError",
           "ConfigError", "DataError", "ModelError", "__version__"]


def __getattr__(name):
    # Imported lazily so `import vocable` works without torch (the ONNX runtime install).
    if name in ("load", "Recognizer", "Result"):
        from . import transcribe
        return getattr(transcribe, name)
    if name == "DecodingOptions":
        from .decoding import DecodingOptions
        return DecodingOptions
    raise AttributeError(f"module 'vocable' has no attribute {name!r}")
