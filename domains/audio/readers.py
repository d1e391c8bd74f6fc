"""Audio sources: audio files (WAV/FLAC/OGG), folders-as-labels, manifest CSVs, the Debian Asterisk
prompts (real speech) and an espeak-ng synthesiser (the offline pretraining corpus).

Every reader yields rows ``{"id", "x", "label", "split", "group", "meta"}`` with ``x`` a float32
``[1, samples]`` waveform at the source's ``sample_rate``. Files are decoded by soundfile and
resampled by librosa (soxr); a file shorter than ``clip_seconds`` is zero-padded (centred), a longer
one is cut into consecutive clips. Readers never filter bad audio: ``validate()`` does, so that
silent, clipped or NaN clips are reported with their reason. A file that cannot be decoded raises,
and ingest quarantines it. ``group`` is the speaker: it never straddles train and test.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np

from domains import io
from domains.base import Row, Source
from domains.io import confine, expand_paths, files_under, hash_split

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga")
#: where Debian's asterisk-core-sounds-*-wav / asterisk-prompt-*-wav packages put their prompts
ASTERISK_ROOT = "/usr/share/asterisk/sounds"
ASTERISK_PACKAGES = (
    "asterisk-core-sounds-en-wav",
    "asterisk-core-sounds-es-wav",
    "asterisk-core-sounds-fr-wav",
    "asterisk-core-sounds-it-wav",
    "asterisk-core-sounds-ru-wav",
    "asterisk-prompt-it-menardi-wav",
)
_VOICE_DIR = re.compile(r"^[a-z]{2}_[A-Z]{2}_[mf]_(\w+)$")  # en_US_f_Allison -> speaker Allison
#: Speech Commands names files <speaker>_nohash_<n>.wav
_SPEAKER_IN_NAME = re.compile(r"^([0-9a-f]{8})_nohash_")
#: a long file's last piece is kept (zero-padded) when it holds at least this fraction of a clip
MIN_TAIL = 0.5
#: espeak-ng languages with digits in the Asterisk evaluation languages, and a few more for variety
DEFAULT_LANGUAGES = ("en-us", "en", "es", "es-419", "fr", "fr-BE", "it", "ru", "pt", "de", "ro", "ca")
DEFAULT_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3")
DIGITS = tuple(str(d) for d in range(10))
#: the Asterisk ``phonetic/<letter>_p.wav`` prompts speak the ICAO/NATO spelling alphabet; a clip's
#: label is the code word (an international word, unlike a digit's name, so a probe fit on other
#: persons can recognise it in a language no training person speaks)
# fmt: off
NATO_WORDS = (
    "alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
)
# fmt: on
NATO_ALPHABET = dict(zip("abcdefghijklmnopqrstuvwxyz", NATO_WORDS, strict=True))
#: the labelled word sets of the Asterisk voices: ``real.words``
ASTERISK_WORDS = ("digits", "phonetic")


# ---------------------------------------------------------------- decoding and clipping


def load_audio(path: str, sample_rate: int) -> np.ndarray:
    """Decode ``path`` with soundfile, mix down to mono and resample to ``sample_rate`` (float32)."""
    import soundfile as sf

    y, sr = sf.read(path, dtype="float32", always_2d=True)  # raises on corrupt/truncated files
    y = y.mean(axis=1)
    return resample(y, sr, sample_rate)


def resample(y: np.ndarray, sr: int, sample_rate: int) -> np.ndarray:
    if sr == sample_rate or y.size == 0:
        return np.ascontiguousarray(y, dtype=np.float32)
    import librosa

    return librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq").astype(np.float32)


def clips(y: np.ndarray, clip_samples: int) -> list[tuple[int, np.ndarray]]:
    """``[(start sample, [1, clip_samples] clip), ...]``: short audio centred and zero-padded, long
    audio cut into consecutive clips (a tail shorter than ``MIN_TAIL`` of a clip is left out).

    Zero-length audio comes back as one ``[1, 0]`` clip so that ``validate`` reports it.
    """
    if y.size == 0:
        return [(0, np.zeros((1, 0), np.float32))]
    out = []
    n_full = max(1, y.size // clip_samples)
    for i in range(n_full + 1):
        seg = y[i * clip_samples : (i + 1) * clip_samples]
        if i > 0 and seg.size < MIN_TAIL * clip_samples:
            break
        pad = clip_samples - seg.size
        x = np.pad(seg, (pad // 2, pad - pad // 2)) if pad > 0 else seg
        out.append((i * clip_samples, x[None, :].astype(np.float32)))
    return out


def _clip_samples(sample_rate: int, clip_seconds: float) -> int:
    if sample_rate < 1000 or clip_seconds <= 0:
        raise ValueError(f"sample_rate={sample_rate} and clip_seconds={clip_seconds} must be positive")
    return int(round(sample_rate * clip_seconds))


def word_clip(y: np.ndarray, n: int, top_db: float) -> np.ndarray:
    """One ``[1, n]`` clip of an isolated word: silence trimmed (librosa ``top_db``), centred and
    zero-padded, or its middle ``n`` samples when the word is longer (a word must stay one row)."""
    import librosa

    if y.size:
        y, _ = librosa.effects.trim(y, top_db=top_db, frame_length=256, hop_length=64)
    if y.size > n:
        start = (y.size - n) // 2
        y = y[start : start + n]
    pad = n - y.size
    return np.pad(y, (pad // 2, pad - pad // 2))[None, :].astype(np.float32)


def _file_rows(unit: dict[str, Any]) -> Iterator[Row]:
    """Rows of one audio file unit ``{path, id, label, split, group, sample_rate, clip_seconds}``;
    a unit with a ``root`` (a manifest's folder) may only read files inside it."""
    if unit.get("root"):
        confine(unit["path"], unit["root"])
    sr, n = unit["sample_rate"], _clip_samples(unit["sample_rate"], unit["clip_seconds"])
    y = load_audio(unit["path"], sr)
    # an isolated-word unit (``word_top_db``) is one row whatever its length; any other file is cut
    pieces = [(0, word_clip(y, n, unit["word_top_db"]))] if unit.get("word_top_db") else clips(y, n)
    for k, (start, x) in enumerate(pieces):
        rid = unit["id"] if len(pieces) == 1 else f"{unit['id']}#{k}"
        meta = {"path": unit["path"], "start_s": start / sr, "sample_rate": sr, **unit.get("meta", {})}
        yield {
            "id": rid,
            "x": x,
            "label": unit.get("label"),
            "split": unit.get("split"),
            "group": unit.get("group") or unit["id"],
            "meta": meta,
        }


# ---------------------------------------------------------------- files (unlabeled)


def _files_units(
    paths: str | Sequence[str],
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    split: str | None = "train",
) -> list[dict[str, Any]]:
    files = expand_paths(paths, AUDIO_EXTENSIONS)
    _clip_samples(sample_rate, clip_seconds)
    return [
        {
            "path": f,
            "id": os.path.splitext(os.path.basename(f))[0] + f"-{zlib.crc32(f.encode()):08x}",
            "split": split,
            "sample_rate": sample_rate,
            "clip_seconds": clip_seconds,
        }
        for f in files
    ]


# ---------------------------------------------------------------- folders as labels


def _folder_units(
    root: str,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    test_fraction: float = 0.2,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    exclude: Sequence[str] = ("_background_noise_",),
) -> list[dict[str, Any]]:
    """``root/<label>/**/<file>`` (Speech Commands, or any class-per-folder layout).

    The speaker is the ``<hash>_nohash_`` prefix of Speech Commands names, else the file stem. The
    split comes from Speech Commands' ``testing_list.txt`` when present, else from a hash of the
    speaker (``test_fraction`` of speakers), so a speaker is never on both sides.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"folder source root {root!r} is not a directory")
    testing = set()
    listing = os.path.join(root, "testing_list.txt")
    if os.path.isfile(listing):
        with open(listing, encoding="utf-8") as f:
            testing = {line.strip() for line in f if line.strip()}
    units = []
    for path in files_under(root, extensions, "root"):
        rel = os.path.relpath(path, root)
        parts = rel.split(os.sep)
        if len(parts) < 2 or parts[0] in exclude:
            continue  # files directly under root have no label folder
        stem = os.path.splitext(parts[-1])[0]
        m = _SPEAKER_IN_NAME.match(parts[-1])
        speaker = m.group(1) if m else f"{parts[0]}/{stem}"
        if testing:
            split = "test" if rel.replace(os.sep, "/") in testing else "train"
        else:
            split = hash_split(speaker, test_fraction)
        units.append(
            {
                "path": path,
                "id": rel.replace(os.sep, "/"),
                "label": parts[0],
                "split": split,
                "group": speaker,
                "sample_rate": sample_rate,
                "clip_seconds": clip_seconds,
            }
        )
    if not units:
        raise FileNotFoundError(f"no <label>/<file> audio under {root!r}")
    return units


# ---------------------------------------------------------------- manifest CSV


def _manifest_units(
    path: str,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    test_fraction: float = 0.2,
) -> list[dict[str, Any]]:
    """A CSV with columns ``path`` (relative to the CSV's folder or absolute), ``label``, ``speaker``
    and optionally ``split``; speakers without a split are assigned by hash (``test_fraction``).
    Every path must resolve inside the CSV's folder (the data root): one that escapes it (``..``, an
    absolute path elsewhere, a symlink pointing out) is quarantined at read time, never read."""
    import pandas as pd

    path = os.path.abspath(os.path.expanduser(path))
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "label", "speaker") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {missing} (needs path,label,speaker[,split])")
    base = os.path.dirname(path)
    units = []
    for i, rec in enumerate(df.to_dict("records")):
        audio = rec["path"] if os.path.isabs(rec["path"]) else os.path.join(base, rec["path"])
        speaker = rec["speaker"] or f"row{i}"
        split = (rec.get("split") or "").lower() or hash_split(speaker, test_fraction)
        units.append(
            {
                "path": os.path.normpath(audio),
                "id": f"{os.path.splitext(rec['path'])[0]}",
                "label": rec["label"] or None,
                "split": split,
                "group": speaker,
                "sample_rate": sample_rate,
                "clip_seconds": clip_seconds,
                "root": base,
                "meta": {"manifest_row": i},
            }
        )
    if not units:
        raise ValueError(f"{path}: manifest has no rows")
    return units


# ---------------------------------------------------------------- Asterisk prompts (real speech)


def asterisk_voices(root: str = ASTERISK_ROOT) -> dict[str, str]:
    """``{voice dir: speaker}`` of the installed Asterisk prompt sets with spoken digits.

    Language aliases (``en``, ``en_US``...) are symlinks to the voice dirs and are skipped; the
    speaker is the person (``en_US_f_Allison`` and ``es_MX_f_Allison`` are both Allison).
    """
    out = {}
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            d = os.path.join(root, name)
            m = _VOICE_DIR.match(name)
            if m and not os.path.islink(d) and os.path.isfile(os.path.join(d, "digits", "0.wav")):
                out[name] = m.group(1)
    return out


def _asterisk_units(
    root: str = ASTERISK_ROOT,
    test_speakers: Sequence[str] = ("Carlo", "June"),
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    min_voices: int = 2,
    exclude_speakers: Sequence[str] = (),
    digits_in_pretraining: bool = True,
    words: Sequence[str] = ("digits",),
    top_db: float = 30.0,
) -> list[dict[str, Any]]:
    """Digits 0-9 of every installed voice, labelled, split by person; with ``words`` naming
    ``phonetic`` too, the voice's spelling-alphabet words (label: the code word, ``meta["task"]:
    "phonetic"``), each trimmed of silence (``top_db``) and centred in one clip (cut to the clip's
    middle when longer). The split, exclusion and ``digits_in_pretraining`` rules apply to both.

    ``exclude_speakers`` leaves those persons' digits and words out entirely: a validation run that
    chooses a configuration without ever scoring the evaluation persons (their unlabeled prompts may
    still be pretraining data).

    Pretraining reads every non-test row, so the training persons' digits are pretraining data
    (unlabeled) by default; a leave-one-person-out fold then scores digits the encoder has seen.
    ``digits_in_pretraining: false`` makes every digit a test row (none reaches pretraining) and
    records the ``test_speakers`` split in ``meta["probe_split"]`` for the domain's speaker-split
    protocol; the shared probes and fine-tuning then have no labelled training row and skip."""
    all_voices = asterisk_voices(root)
    unknown = sorted(set(exclude_speakers) - set(all_voices.values()))
    if unknown:
        raise ValueError(
            f"exclude_speakers {unknown} not among the installed speakers {sorted(set(all_voices.values()))}"
        )
    voices = {v: spk for v, spk in all_voices.items() if spk not in set(exclude_speakers)}
    if len(voices) < min_voices:
        raise FileNotFoundError(
            f"found {len(voices)} Asterisk voice(s) with digits under {root} (need {min_voices}); the real-speech "
            f"evaluation set comes from Debian: sudo apt-get install {' '.join(ASTERISK_PACKAGES)}"
        )
    speakers = set(voices.values())
    unknown = sorted(set(test_speakers) - speakers)
    if unknown:
        raise ValueError(f"test_speakers {unknown} not among the installed speakers {sorted(speakers)}")
    if not set(test_speakers) or set(test_speakers) == speakers:
        raise ValueError("test_speakers must hold out some, but not all, speakers")
    unknown = sorted(set(words) - set(ASTERISK_WORDS))
    if unknown or not words:
        raise ValueError(f"real.words: {unknown or '[]'} — choose from {list(ASTERISK_WORDS)}")
    if top_db <= 0:
        raise ValueError(f"real.top_db: {top_db} must be positive")

    def unit(voice: str, speaker: str, path: str, uid: str, label: str, task: str) -> dict[str, Any]:
        return {
            "path": path,
            "id": uid,
            "label": label,
            "split": "test" if speaker in test_speakers or not digits_in_pretraining else "train",
            "group": speaker,
            "sample_rate": sample_rate,
            "clip_seconds": clip_seconds,
            **({"word_top_db": top_db} if task != "digits" else {}),
            "meta": {
                "voice": voice,
                "language": voice[:5],
                "source": "asterisk",
                "task": task,
                "probe_split": "test" if speaker in test_speakers else "train",
            },
        }

    out = []
    for voice, speaker in voices.items():
        if "digits" in words:
            for d in DIGITS:
                out.append(
                    unit(
                        voice,
                        speaker,
                        os.path.join(root, voice, "digits", f"{d}.wav"),
                        f"asterisk/{voice}/{d}",
                        d,
                        "digits",
                    )
                )
        if "phonetic" in words:
            for letter, word in NATO_ALPHABET.items():
                path = os.path.join(root, voice, "phonetic", f"{letter}_p.wav")
                if os.path.isfile(path):  # a voice may lack a letter; the others still count
                    out.append(
                        unit(voice, speaker, path, f"asterisk/{voice}/phonetic/{word}", word, "phonetic")
                    )
    return out


# ---------------------------------------------------------------- Asterisk prompts (unlabeled real speech)

#: folders of a voice that are evaluation material (spoken digits, letters, the NATO alphabet) or
#: not speech at all (``silence/``): never in the unlabeled pretraining pool
EVALUATION_DIRS = ("digits", "letters", "phonetic", "silence")
#: prompt files per unit: ~2,200 files as ~40 units so ingest spreads decoding over Ray Data tasks
PROMPT_FILES_PER_UNIT = 64


def _sha1(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def asterisk_prompt_files(
    root: str = ASTERISK_ROOT, voices: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """``[{path, voice, speaker}]``: every prompt of the installed voices outside ``EVALUATION_DIRS``.

    A prompt whose bytes equal an evaluation digit's (``digits/0..9.wav`` of any voice) is left out
    too, so that no evaluation recording can reach the pretraining pool under another name.
    """
    found = asterisk_voices(root)
    unknown = sorted(set(voices or ()) - set(found))
    if unknown:
        raise ValueError(f"prompts.voices: {unknown} not among the installed voices {sorted(found)}")
    digit_hashes = {
        _sha1(os.path.join(root, v, "digits", f"{d}.wav"))
        for v in found
        for d in DIGITS
        if os.path.isfile(os.path.join(root, v, "digits", f"{d}.wav"))
    }
    out = []
    for voice, speaker in found.items():
        if voices and voice not in voices:
            continue
        base = os.path.join(root, voice)
        for path in files_under(base, AUDIO_EXTENSIONS, "prompts.root"):
            top = os.path.relpath(path, base).split(os.sep)[0]
            if top in EVALUATION_DIRS or _sha1(path) in digit_hashes:
                continue
            out.append({"path": path, "voice": voice, "speaker": speaker})
    return out


def _prompt_units(
    root: str = ASTERISK_ROOT,
    voices: Sequence[str] | None = None,
    hop_seconds: float = 0.5,
    top_db: float = 30.0,
    min_seconds: float = 0.3,
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    segments: Literal["windows", "pauses"] = "windows",
) -> list[dict[str, Any]]:
    """Unlabeled clips of the Asterisk prompts outside digits/letters/phonetic (see
    :func:`asterisk_prompt_files`): each file silence-trimmed (``top_db`` below its peak), then cut
    into ``clip_seconds`` windows every ``hop_seconds``; a trimmed prompt shorter than ``min_seconds``
    (a beep, a click) is left out, a shorter-than-a-clip one is centred and zero-padded.

    ``segments: pauses`` cuts at the pauses inside a prompt first (librosa ``effects.split``), so
    that a clip holds a word or a short phrase centred in silence, as the evaluation digits do."""
    if segments not in ("windows", "pauses"):
        raise ValueError(f"prompts.segments: {segments!r} is not 'windows' or 'pauses'")
    if hop_seconds <= 0 or top_db <= 0 or min_seconds < 0:
        raise ValueError("prompts: hop_seconds and top_db must be positive, min_seconds >= 0")
    _clip_samples(sample_rate, clip_seconds)
    files = asterisk_prompt_files(root, voices)
    if not files:
        raise FileNotFoundError(
            f"no Asterisk prompts under {root}; install them: sudo apt-get install {' '.join(ASTERISK_PACKAGES)}"
        )
    common = {
        "root": root,
        "segments": segments,
        "hop_seconds": hop_seconds,
        "top_db": top_db,
        "min_seconds": min_seconds,
        "sample_rate": sample_rate,
        "clip_seconds": clip_seconds,
    }
    return [
        {"files": files[i : i + PROMPT_FILES_PER_UNIT], **common}
        for i in range(0, len(files), PROMPT_FILES_PER_UNIT)
    ]


def speech_windows(
    y: np.ndarray, n: int, hop: int, top_db: float, min_samples: int
) -> list[tuple[int, np.ndarray]]:
    """``[(start in the trimmed signal, [1, n] clip)]`` of ``y`` with leading and trailing silence
    trimmed (librosa ``top_db``): windows every ``hop`` samples, the last one flush with the end so
    the tail is covered; shorter speech centred and zero-padded; none under ``min_samples``."""
    import librosa

    if y.size == 0:
        return []
    y, _ = librosa.effects.trim(y, top_db=top_db, frame_length=256, hop_length=64)
    if y.size < max(min_samples, 1):
        return []
    if y.size <= n:
        pad = n - y.size
        return [(0, np.pad(y, (pad // 2, pad - pad // 2))[None, :].astype(np.float32))]
    starts = list(range(0, y.size - n + 1, hop))
    if starts[-1] + n < y.size:
        starts.append(y.size - n)
    return [(s, y[None, s : s + n].astype(np.float32)) for s in starts]


def _read_prompts(unit: dict[str, Any]) -> Iterator[Row]:
    sr = unit["sample_rate"]
    n = _clip_samples(sr, unit["clip_seconds"])
    hop = max(1, int(round(unit["hop_seconds"] * sr)))
    for f in unit["files"]:
        confine(f["path"], unit["root"])
        y = load_audio(f["path"], sr)
        rel = os.path.splitext(os.path.relpath(f["path"], os.path.join(unit["root"], f["voice"])))[0]
        pieces = [(0, y)]
        if unit.get("segments") == "pauses" and y.size:
            import librosa

            cuts = librosa.effects.split(y, top_db=unit["top_db"], frame_length=256, hop_length=64)
            pieces = [(int(a), y[a:b]) for a, b in cuts]
        wins = [
            (offset + s, x)
            for offset, seg in pieces
            for s, x in speech_windows(seg, n, hop, unit["top_db"], int(unit["min_seconds"] * sr))
        ]
        for k, (start, x) in enumerate(wins):
            yield {
                "id": f"prompt/{f['voice']}/{rel}#{k}",
                "x": x,
                "label": None,
                "split": "train",
                # not the speaker's own group: these unlabeled clips of an evaluation person are
                # pretraining data by the protocol (issue 17), and curate's group-leakage rule would
                # otherwise drop them; the person stays in meta
                "group": f"prompts:{f['speaker']}",
                "meta": {
                    "source": "asterisk_prompts",
                    "voice": f["voice"],
                    "speaker": f["speaker"],
                    "path": f["path"],
                    "start_s": start / sr,
                    "sample_rate": sr,
                },
            }


# ---------------------------------------------------------------- espeak-ng (synthetic)


def _espeak_units(
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    words: Sequence[str] = DIGITS,
    repeats: int = 2,
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    rate_wpm: Sequence[int] = (120, 240),
    pitch: Sequence[int] = (20, 80),
    snr_db: Sequence[float] = (10.0, 40.0),
    labelled: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One unit per (language, voice variant): its words, each spoken ``repeats`` times at random
    rates and pitches. Words are written as digits/numerals, which espeak reads in the language."""
    if repeats < 1 or not languages or not variants or not words:
        raise ValueError("espeak source needs languages, variants, words and repeats >= 1")
    _clip_samples(sample_rate, clip_seconds)
    return [
        {
            "language": lang,
            "variant": var,
            "words": list(words),
            "repeats": repeats,
            "sample_rate": sample_rate,
            "clip_seconds": clip_seconds,
            "rate_wpm": list(rate_wpm),
            "pitch": list(pitch),
            "snr_db": list(snr_db),
            "labelled": labelled,
            "seed": seed,
        }
        for lang in languages
        for var in variants
    ]


def _read_espeak(unit: dict[str, Any]) -> Iterator[Row]:
    from domains.audio.synth import session

    voice = f"{unit['language']}+{unit['variant']}"
    rng = np.random.default_rng([unit["seed"], zlib.crc32(voice.encode())])
    rows: list[Row] = []
    # One seeded synthesiser session per unit: its words come out the same in every run, whichever
    # worker reads the unit and whatever it synthesised before (domains/audio/synth.py). The rows
    # are yielded after the session, which holds the process's synthesiser lock.
    with session(zlib.crc32(f"{unit['seed']}/{voice}".encode())) as speak:
        for rep in range(unit["repeats"]):
            for word in unit["words"]:
                rate = int(rng.integers(unit["rate_wpm"][0], unit["rate_wpm"][1] + 1))
                pitch = int(rng.integers(unit["pitch"][0], unit["pitch"][1] + 1))
                rows.append(
                    _espeak_row(unit, rng, voice, rep, word, rate, pitch, *speak(word, voice, rate, pitch))
                )
    yield from rows


def _espeak_row(
    unit: dict[str, Any],
    rng: np.random.Generator,
    voice: str,
    rep: int,
    word: str,
    rate: int,
    pitch: int,
    y: np.ndarray,
    native: int,
) -> Row:
    """One synthesised word (``y`` at ``native`` Hz) resampled and placed in a clip at a random offset
    and level, with noise at a random SNR."""
    sr, n = unit["sample_rate"], _clip_samples(unit["sample_rate"], unit["clip_seconds"])
    y = resample(y, native, sr)[:n]
    # a random place in the clip, as a real recording would not be centred
    offset = int(rng.integers(0, n - y.size + 1))
    # random level (peak -12..-1 dBFS), then white noise at a random SNR relative to the speech
    y = y * (10 ** (rng.uniform(-12, -1) / 20) / max(float(np.abs(y).max()), 1e-6))
    x = np.zeros(n, np.float32)
    x[offset : offset + y.size] = y
    snr = rng.uniform(*unit["snr_db"])
    noise_rms = np.sqrt(max(float(np.mean(y**2)), 1e-12) / 10 ** (snr / 10))
    x += rng.normal(0.0, noise_rms, n).astype(np.float32)
    return {
        "id": f"espeak/{voice}/{rep}/{word}",
        "x": x[None, :],
        # unlabeled by default: the pretraining corpus; the word stays in meta for analysis
        "label": word if unit["labelled"] else None,
        "split": "train",
        "group": f"espeak:{voice}",
        "meta": {
            "source": "espeak",
            "voice": voice,
            "word": word,
            "rate_wpm": rate,
            "pitch": pitch,
            "snr_db": round(snr, 2),
            "sample_rate": sr,
        },
    }


# ---------------------------------------------------------------- composite: the digits recipe


def _digits_units(
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    synthetic: dict[str, Any] | None = None,
    real: dict[str, Any] | None = None,
    prompts: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Synthetic espeak-ng digits (unlabeled, train) + real Asterisk digits (labelled, split by
    speaker) + with ``prompts`` (``{}`` for the defaults) the unlabeled real-speech clips of the
    Asterisk prompts outside digits/letters/phonetic. Fails with the apt-get line when the Asterisk
    packages are missing: evaluation is never quietly replaced by synthetic speech."""
    common = {"sample_rate": sample_rate, "clip_seconds": clip_seconds}
    real_units = [{"kind": "asterisk", **u} for u in _asterisk_units(**{**(real or {}), **common})]
    synth_units = [{"kind": "espeak", **u} for u in _espeak_units(**{**(synthetic or {}), **common})]
    prompt_units = []
    if prompts is not None:
        root = (real or {}).get("root", ASTERISK_ROOT)
        prompt_units = [
            {"kind": "prompts", **u} for u in _prompt_units(**{"root": root, **prompts, **common})
        ]
    return synth_units + prompt_units + real_units


def _read_digits(unit: dict[str, Any]) -> Iterator[Row]:
    kind = unit.get("kind")
    if kind == "espeak":
        yield from _read_espeak(unit)
    elif kind == "asterisk":
        yield from _file_rows(unit)
    elif kind == "prompts":
        yield from _read_prompts(unit)
    else:
        raise ValueError(f"unknown unit kind {kind!r}")


# ---------------------------------------------------------------- registry

SOURCES: dict[str, Source] = {
    "speech_digits": Source(
        "speech_digits",
        _digits_units,
        _read_digits,
        "espeak-ng digits (unlabeled pretraining) + real Asterisk digits split by speaker "
        "(options: sample_rate, clip_seconds, synthetic={espeak options}, real={asterisk options}, "
        "prompts={asterisk_prompts options}: unlabeled real-speech prompts too)",
    ),
    "espeak": Source(
        "espeak",
        _espeak_units,
        _read_espeak,
        "words synthesised offline by espeak-ng over languages x voice variants x rates x pitches, with noise",
    ),
    "asterisk": Source(
        "asterisk",
        _asterisk_units,
        _file_rows,
        "real spoken digits 0-9 from Debian's Asterisk prompt packages (options: root, test_speakers)",
    ),
    "asterisk_prompts": Source(
        "asterisk_prompts",
        _prompt_units,
        _read_prompts,
        "unlabeled real speech: the Asterisk prompts outside digits/letters/phonetic, silence-trimmed and "
        "cut into clips with a hop (options: root, voices, hop_seconds, top_db, min_seconds)",
    ),
    "folder": Source(
        "folder",
        _folder_units,
        _file_rows,
        "root/<label>/<file>.wav|flac|ogg, e.g. Speech Commands (options: root, sample_rate, clip_seconds)",
    ),
    "manifest": Source(
        "manifest",
        _manifest_units,
        _file_rows,
        "CSV with path,label,speaker[,split] (options: path, sample_rate, clip_seconds, test_fraction)",
    ),
    "files": Source(
        "files",
        _files_units,
        _file_rows,
        "unlabeled audio files or folders (options: paths, sample_rate, clip_seconds); long files cut into clips",
    ),
}


#: all rows of a source in this process (tests, notebooks): ``read_source("name", **options)``
read_source = partial(io.read_source, SOURCES, "audio")
