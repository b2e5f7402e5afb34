"""vocable: offline speech recognition with deep learning, from training to serving."""

__version__ = "0.1.0"

from .audio import load_audio  # noqa: E402
from .errors import AudioError, ConfigError, DataError, ModelError, VocableError  # noqa: E402
from .transcribe import Recognizer, Result, load  # noqa: E402

__all__ = ["load", "load_audio", "Recognizer", "Result", "VocableError", "AudioError", "ConfigError",
           "DataError", "ModelError", "__version__"]
