"""Loading audio files: formats, rates, channels, and every way a file can be bad."""

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.audio import AudioLoadError, load_audio, load_stem_folder

SR = 44100


def sine(freq: float, rate: int, seconds: float = 9.0, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1)


def peak_hz_and_db(audio: np.ndarray) -> tuple[float, float]:
    x = audio[0, SR:-SR]  # away from the resampler's edges
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    k = int(np.argmax(spectrum))
    level = 20 * np.log10(np.std(x) * np.sqrt(2) / 0.5)
    return k * SR / x.size, level


@pytest.mark.parametrize("ext, subtype, rate, channels", [
    ("wav", "PCM_16", 44100, 2),
    ("wav", "FLOAT", 48000, 1),
    ("flac", "PCM_24", 96000, 2),
    ("ogg", "VORBIS", 22050, 2),
    ("mp3", "MPEG_LAYER_III", 44100, 1),
])
def test_formats_rates_and_channels_load_as_stereo_at_the_engine_rate(tmp_path, ext, subtype,
                                                                      rate, channels):
    path = tmp_path / f"track.{ext}"
    sf.write(path, sine(1000.0, rate, channels=channels), rate, subtype=subtype)
    audio = load_audio(path, SR)
    assert audio.dtype == np.float32 and audio.shape[0] == 2
    # MP3 pads the start and end with an encoder delay of a frame or two.
    tolerance = 3000 if ext == "mp3" else 2
    assert abs(audio.shape[1] - 9 * SR) <= tolerance
    freq, level = peak_hz_and_db(audio)
    assert freq == pytest.approx(1000.0, abs=1.0)
    assert level == pytest.approx(0.0, abs=0.5)
    np.testing.assert_array_equal(audio[0], audio[1])


def test_resampling_filters_what_the_new_rate_cannot_hold(tmp_path):
    # 23 kHz is legal at 48 kHz but above 44.1 kHz's Nyquist: it must be removed, not folded
    # down to 21.1 kHz.
    path = tmp_path / "high.wav"
    sf.write(path, sine(23000.0, 48000), 48000, subtype="FLOAT")
    audio = load_audio(path, SR)
    assert 20 * np.log10(np.std(audio[:, SR:-SR]) / (0.5 / np.sqrt(2))) < -40


@pytest.mark.parametrize("make, reason", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "not a file"),
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 10), "not a readable audio"),
    (lambda p: p.write_text("these are the liner notes, not audio\n" * 50), "not a readable audio"),
    (lambda p: sf.write(p, sine(440.0, SR, seconds=2.0), SR), "only 2.0 s of audio"),
    (lambda p: sf.write(p, np.zeros((10 * SR, 6)), SR), "6 channels"),
    (lambda p: sf.write(p, np.full((10 * SR, 2), np.nan), SR, subtype="FLOAT"), "NaN"),
])
def test_bad_files_give_one_error_naming_the_file_and_the_reason(tmp_path, make, reason):
    path = tmp_path / "track.wav"
    make(path)
    with pytest.raises(AudioLoadError, match=reason) as err:
        load_audio(path)
    assert str(path) in str(err.value)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.binary(min_size=0, max_size=64), body=st.binary(min_size=0, max_size=512))
def test_arbitrary_bytes_load_or_fail_cleanly(tmp_path, header, body):
    path = tmp_path / "fuzz.wav"
    path.write_bytes(b"RIFF" + header + b"WAVE" + body)
    try:
        audio = load_audio(path, min_seconds=0.0)
    except AudioLoadError:
        return
    assert audio.shape[0] == 2 and np.all(np.isfinite(audio))


def write_stems(folder, names=("drums", "bass", "vocals", "other"), ext="wav", seconds=9.0):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        sf.write(folder / f"{name}.{ext}", sine(200.0 * (i + 1), SR, seconds=seconds), SR)


def test_a_stem_folder_loads_in_stem_order_padded_to_the_longest(tmp_path):
    folder = tmp_path / "track"
    write_stems(folder)
    sf.write(folder / "Bass.flac", sine(400.0, 48000, seconds=9.5), 48000)  # replaces bass.wav
    (folder / "bass.wav").unlink()
    (folder / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    stems = load_stem_folder(folder)
    assert stems.shape == (4, 2, int(9.5 * SR))
    for i, stem in enumerate(stems):
        assert peak_hz_and_db(stem[:, : 9 * SR])[0] == pytest.approx(200.0 * (i + 1), abs=1.0)
    assert np.all(stems[0, :, 9 * SR:] == 0)  # the shorter drums are padded with silence


def test_stem_folder_errors_name_the_missing_or_doubled_stem(tmp_path):
    folder = tmp_path / "track"
    write_stems(folder, names=("drums", "bass", "other"))
    with pytest.raises(AudioLoadError, match="no 'vocals' stem"):
        load_stem_folder(folder)
    write_stems(folder, names=("vocals",), ext="flac")
    sf.write(folder / "vocals.wav", sine(1.0, SR), SR)
    with pytest.raises(AudioLoadError, match="more than one 'vocals' stem: vocals.flac, vocals"):
        load_stem_folder(folder)
    with pytest.raises(AudioLoadError, match="not a folder"):
        load_stem_folder(folder / "drums.wav")
