"""Offline speech synthesis with espeak-ng, for the unlabeled pretraining corpus.

Two back ends, tried in order:

* the pip package ``espeakng-loader`` (libespeak-ng 1.52 + its data in the wheel), driven in-process
  through ctypes: no apt, no subprocess, about a thousand short clips per second;
* the Debian ``espeak-ng`` command (``apt-get install espeak-ng``), one process per clip.

libespeak-ng keeps global state (one voice, one callback), so one process holds one engine and
every call goes through a lock. Ray Data tasks in separate worker processes each get their own.

That state also makes its output depend on history: the library seeds its noise generator from the
clock, and its glottal flutter and filters carry over from one utterance to the next, so the same
word in the same voice came out different from run to run and with the order in which a worker
process happened to read its units (945 of 1,440 pretraining clips differed between two ingests
of one recipe). :func:`session` therefore reloads the library (fresh static state) and seeds it,
and a reader that speaks a fixed sequence inside one session gets the same waveforms every time.
The command-line back end cannot be seeded: its output is not bit-reproducible.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import io
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator

import numpy as np

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_ESPEAK_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _LibEspeak:
    """libespeak-ng from ``espeakng-loader``, in synchronous mode with a collecting callback."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.sample_rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0))
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with {self.sample_rate} (data path {data!r})")
        self._chunks: list[np.ndarray] = []
        # The ctypes callback object must outlive every call into the library: keep a reference.
        self._cb = _CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    def seed(self, seed: int) -> None:
        self.lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)

    def close(self) -> None:
        """Terminate and unload the library, so the next engine starts from fresh static state."""
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), n: int, events: ctypes.c_void_p) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0: continue synthesis

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        self._chunks = []
        buf = text.encode() + b"\0"
        err = self.lib.espeak_Synth(buf, len(buf), 0, 1, 0, _ESPEAK_CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) for {text!r} in voice {voice!r}")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0


class _CliEspeak:
    """The Debian ``espeak-ng`` command (22.05 kHz WAV on stdout)."""

    sample_rate = 22050

    def seed(self, seed: int) -> None:
        pass  # the command reseeds from the clock in every process

    def close(self) -> None:
        pass

    def __init__(self) -> None:
        self.exe = shutil.which("espeak-ng")
        if self.exe is None:
            raise RuntimeError("espeak-ng not found")

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        import soundfile as sf

        out = subprocess.run(
            [self.exe, "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text],
            capture_output=True,
            check=True,
        ).stdout
        y, sr = sf.read(io.BytesIO(out), dtype="float32")
        self.sample_rate = sr
        return y


_ENGINE: _LibEspeak | _CliEspeak | None = None
_LOCK = threading.RLock()


def engine() -> _LibEspeak | _CliEspeak:
    """This process's synthesiser (created on first use)."""
    global _ENGINE
    if _ENGINE is None:
        errors = []
        for cls in (_LibEspeak, _CliEspeak):
            try:
                _ENGINE = cls()
                break
            except Exception as e:  # try the next back end; report all if none works
                errors.append(f"{cls.__name__}: {type(e).__name__}: {e}")
        else:
            raise RuntimeError(
                "no espeak-ng available: pip install espeakng-loader (or apt-get install espeak-ng); "
                + "; ".join(errors)
            )
    return _ENGINE


def synthesise(text: str, voice: str, rate: int = 175, pitch: int = 50) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng ``voice`` (e.g. ``"it+f3"``) → (float32 mono waveform, rate in Hz).

    ``rate`` is in words per minute (80–450), ``pitch`` 0–99.
    """
    with _LOCK:
        eng = engine()
        y = eng.synth(text, voice, rate, pitch)
        return y, int(eng.sample_rate)


@contextlib.contextmanager
def session(seed: int) -> Iterator[Callable[[str, str, int, int], tuple[np.ndarray, int]]]:
    """A freshly loaded synthesiser seeded with ``seed``, held for the block: the calls made in it
    give the same waveforms in every run and in every process (with the library back end).

    ``with session(seed) as speak: y, sr = speak(text, voice, rate, pitch)``. Reloading costs about
    5 ms, so a reader opens one session per unit of work, not per clip.
    """
    global _ENGINE
    with _LOCK:
        if _ENGINE is not None:
            _ENGINE.close()
            _ENGINE = None
        engine().seed(seed)
        yield synthesise
