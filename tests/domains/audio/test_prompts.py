"""The unlabeled real-speech source (Asterisk prompts): clip cutting, evaluation folders kept out,
no evaluation digit in the pretraining pool, on a tiny generated Asterisk-like tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from domains.audio.readers import ASTERISK_ROOT, SOURCES, asterisk_voices, read_source, speech_windows
from tests.conftest import requires_data

SR = 8000


def _speech(seconds: float, freq: float, lead_silence: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.concatenate([np.zeros(int(lead_silence * SR)), tone, np.zeros(int(lead_silence * SR))]).astype(
        np.float32
    )


@pytest.fixture
def asterisk(tmp_path: Path) -> Path:
    """Two voices of two people, each with digits/, letters/, phonetic/, silence/ and prompts."""
    for voice, freq in (("en_US_f_Alice", 300.0), ("it_IT_m_Bruno", 500.0)):
        d = tmp_path / voice
        for sub in ("digits", "letters", "phonetic", "silence", "dictate"):
            (d / sub).mkdir(parents=True)
        for k in range(10):
            sf.write(d / "digits" / f"{k}.wav", _speech(0.6, freq + 10 * k), SR)
        sf.write(d / "letters" / "a.wav", _speech(0.5, freq), SR)
        sf.write(d / "phonetic" / "alpha.wav", _speech(0.5, freq), SR)
        sf.write(d / "silence" / "1.wav", np.zeros(SR, np.float32), SR)
        # 2.5 s of speech between 0.5 s of silence on each side; a prompt in a sub-folder; a click
        sf.write(d / "hello-world.wav", _speech(2.5, freq, lead_silence=0.5), SR)
        sf.write(d / "dictate" / "paused.wav", _speech(0.7, freq), SR)
        sf.write(d / "beep.wav", _speech(0.05, 1000.0), SR)
        # the same recording as an evaluation digit under a prompt's name
        shutil.copy(d / "digits" / "3.wav", d / "three-copy.wav")
    (tmp_path / "en").symlink_to(tmp_path / "en_US_f_Alice")  # Asterisk's language alias
    return tmp_path


def test_windows_trim_silence_and_cover_the_tail() -> None:
    y = _speech(2.3, 300.0, lead_silence=0.5)
    wins = speech_windows(y, SR, SR // 2, top_db=30.0, min_samples=int(0.3 * SR))
    # 2.3 s of speech after trimming (librosa keeps up to a frame of margin): windows at 0, 0.5,
    # 1.0 s and one flush with the end at about 1.3 s
    starts = [s for s, _ in wins]
    assert starts[:3] == [0, 4000, 8000] and len(starts) == 4
    assert int(1.3 * SR) <= starts[3] <= int(1.3 * SR) + 2 * 256
    assert all(x.shape == (1, SR) and x.dtype == np.float32 for _, x in wins)
    # no window starts in the leading silence: the first sample is already speech-level
    assert np.abs(wins[0][1][0, :200]).max() > 0.05
    (short,) = speech_windows(_speech(0.5, 300.0, lead_silence=0.2), SR, SR // 2, 30.0, int(0.3 * SR))
    assert short[1].shape == (1, SR) and np.abs(short[1][0, :1000]).max() == 0.0  # centred, padded
    assert speech_windows(_speech(0.05, 300.0), SR, SR // 2, 30.0, int(0.3 * SR)) == []


def test_prompts_exclude_evaluation_material(asterisk: Path) -> None:
    rows = list(read_source("asterisk_prompts", root=str(asterisk), sample_rate=SR, clip_seconds=1.0))
    paths = {r["meta"]["path"] for r in rows}
    names = {Path(p).relative_to(asterisk).as_posix() for p in paths}
    assert names == {
        f"{v}/{f}"
        for v in ("en_US_f_Alice", "it_IT_m_Bruno")
        for f in ("hello-world.wav", "dictate/paused.wav")
    }
    assert all(r["label"] is None and r["split"] == "train" for r in rows)
    # one voice: 2.5 s of speech at hop 0.5 s gives 0, 0.5, 1.0, 1.5 s and one flush with the end
    # (the trim keeps a few ms of margin), + the 0.7 s prompt padded; the 50 ms beep gives none
    assert sum(r["meta"]["voice"] == "en_US_f_Alice" for r in rows) == 6
    assert {r["group"] for r in rows} == {"prompts:Alice", "prompts:Bruno"}
    assert len({r["id"] for r in rows}) == len(rows)


def test_no_evaluation_digit_in_the_pretraining_pool(asterisk: Path) -> None:
    # the demo's composite source lists prompt units beside the labelled digits, none of them a digit
    units = SOURCES["speech_digits"].list_units(
        sample_rate=SR, clip_seconds=1.0, real={"root": str(asterisk), "test_speakers": ["Bruno"]}, prompts={}
    )
    prompt_files = [f["path"] for u in units if u["kind"] == "prompts" for f in u["files"]]
    assert len(prompt_files) == 6 and not any("/digits/" in p or "three-copy" in p for p in prompt_files)
    assert sum(u["kind"] == "asterisk" for u in units) == 20
    digits = list(read_source("asterisk", root=str(asterisk), test_speakers=["Bruno"], sample_rate=SR))
    prompts = list(read_source("asterisk_prompts", root=str(asterisk), sample_rate=SR, hop_seconds=0.05))
    assert len(digits) == 20 and all(r["label"] is not None for r in digits)
    pool = {r["x"].tobytes() for r in prompts}
    # byte-identical clips would mean a digit recording reached the pool (three-copy.wav is left out)
    for r in digits:
        trimmed = speech_windows(r["x"][0], SR, SR // 2, 30.0, 0)
        assert all(x.tobytes() not in pool for _, x in trimmed)
    assert not any("digits" in r["meta"]["path"] or "three-copy" in r["meta"]["path"] for r in prompts)


def test_bad_voice_is_one_line(asterisk: Path) -> None:
    with pytest.raises(ValueError, match="prompts.voices"):
        list(read_source("asterisk_prompts", root=str(asterisk), voices=["xx_XX_f_Nobody"]))


def test_digits_kept_out_of_pretraining_still_give_the_speaker_split(asterisk: Path) -> None:
    import torch

    from domains import EvalContext, get_domain
    from domains.audio.encoders import AudioCNN
    from domains.audio.tasks import evaluate_speech

    digits = list(
        read_source(
            "asterisk",
            root=str(asterisk),
            test_speakers=["Bruno"],
            sample_rate=SR,
            digits_in_pretraining=False,
        )
    )
    # every digit is a test row (pretraining reads only non-test rows); the speaker split is in meta
    assert {r["split"] for r in digits} == {"test"}
    assert {(r["group"], r["meta"]["probe_split"]) for r in digits} == {("Alice", "train"), ("Bruno", "test")}
    prompts = list(read_source("asterisk_prompts", root=str(asterisk), sample_rate=SR))
    enc = AudioCNN(sample_rate=SR, channels=4, hidden_dim=16, out_dim=8).eval()

    def embed(e, xs):  # noqa: ANN001, ANN202
        with torch.no_grad():
            return e(get_domain("audio").collate(xs)).numpy()

    ctx = EvalContext(
        recipe={}, train_rows=prompts, test_rows=digits, encoders={"pretrained": enc}, embed=embed
    )
    m = evaluate_speech(ctx).metrics
    assert m["digits_pretrained"] is False and m["test_speakers"] == ["Bruno"]
    assert set(m["split"]) == {"mfcc_logreg", "pretrained"} and set(
        m["loso"]["pretrained"]["per_speaker"]
    ) == {
        "Alice",
        "Bruno",
    }


@requires_data(len(asterisk_voices()) >= 2, "Debian asterisk-core-sounds-*-wav not installed")
@pytest.mark.parametrize("scale", ["demo", "tiny"])
def test_audio_speech_recipe_keeps_evaluation_material_out_of_pretraining(scale: str) -> None:
    from stages.common.config import list_source_units, load_recipe

    root = Path(__file__).resolve().parents[3]
    recipe = load_recipe(root / "pipelines/audio-speech.yaml", root / "params.yaml", [f"scale={scale}"])
    units = list_source_units(recipe)
    digits = [u for u in units if u["kind"] == "asterisk"]
    # every real digit and spelling word is a test row: pretraining (non-test rows only) never sees one
    assert digits and all(u["split"] == "test" for u in digits)
    assert {u["meta"]["task"] for u in digits} == {"digits", "phonetic"}
    prompt_files = [f["path"] for u in units if u["kind"] == "prompts" for f in u["files"]]
    assert len(prompt_files) > (1000 if scale == "demo" else 500)
    folders = {Path(p).relative_to(ASTERISK_ROOT).parts[1] for p in prompt_files}
    assert not folders & {"digits", "letters", "phonetic", "silence"}


def test_pause_segments_give_words_centred_in_silence(asterisk: Path) -> None:
    two_words = np.concatenate(
        [_speech(0.4, 300.0), np.zeros(int(0.5 * SR), np.float32), _speech(0.4, 350.0)]
    )
    sf.write(asterisk / "en_US_f_Alice" / "two-words.wav", two_words, SR)

    def clips_of(segments: str) -> list[np.ndarray]:
        rows = read_source(
            "asterisk_prompts",
            root=str(asterisk),
            voices=["en_US_f_Alice"],
            sample_rate=SR,
            segments=segments,
        )
        return [r["x"][0] for r in rows if r["meta"]["path"].endswith("two-words.wav")]

    windows, words = clips_of("windows"), clips_of("pauses")
    assert len(windows) == 2  # 1.3 s trimmed: windows at 0 and flush with the end, each across the pause
    assert len(words) == 2
    for x in words:  # each word alone, centred: silence at both ends, speech in the middle
        assert (
            np.abs(x[:1000]).max() == 0.0
            and np.abs(x[-1000:]).max() == 0.0
            and np.abs(x[3500:4500]).max() > 0.1
        )
    with pytest.raises(ValueError, match="prompts.segments"):
        list(read_source("asterisk_prompts", root=str(asterisk), segments="words"))
