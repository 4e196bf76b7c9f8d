"""The main job on its built-in default, and the generator it plays."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pythonosc.udp_client import SimpleUDPClient

import main
from analysis.synth import render_track
from engine.session import fit
from model.checkpoint import DEFAULT_CHECKPOINT
from tests.conftest import stem_decks


def test_synth_track_is_reproducible_with_exact_ground_truth():
    a = render_track(seed=3, bpm=128.0, tonic=2, mode="major", bars=4)
    b = render_track(seed=3, bpm=128.0, tonic=2, mode="major", bars=4)
    np.testing.assert_array_equal(a.stems, b.stems)
    assert a.stems.shape == (4, 2, round(16 * 60 / 128 * 44100))
    assert a.key_name == "D major"
    np.testing.assert_allclose(np.diff(a.beat_times), 60 / 128)
    assert np.max(np.abs(a.mix)) <= 0.5 + 1e-6
    assert all(np.std(stem) > 1e-3 for stem in a.stems)  # every stem plays
    other_seed = render_track(seed=4, bpm=128.0, tonic=2, mode="major", bars=4)
    assert not np.array_equal(other_seed.stems[2], a.stems[2])


def test_main_renders_the_demo_transition_from_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "mix.wav"
    assert main.main(["--render", str(out)]) == 0
    text = capsys.readouterr().out
    # The shipped checkpoint wrote the transition: a missing or unreadable file would have
    # the rule-based policy stand in, and say so.
    assert f"model {DEFAULT_CHECKPOINT} on " in text
    assert ", model candidate 1/3, " in text
    assert "policy" not in text
    mix, sr = sf.read(out)
    assert sr == 44100 and mix.shape[1] == 2
    assert mix.shape[0] / sr > 150  # 32 + 16 + 32 bars at 124 BPM
    assert np.max(np.abs(mix)) < 1.0  # no clipping
    # The music never drops out: every second of the mix has signal (the break is the quietest).
    per_second = np.sqrt(np.mean(mix[: len(mix) // sr * sr].reshape(-1, sr, 2) ** 2, axis=(1, 2)))
    assert np.min(per_second) > 0.003
    # What takes seconds is said before it starts (a first run used to be silent for a minute).
    steps = ["] demo: two generated tracks", "] starting the engine", "] deck A: analysing",
             "] deck B: analysing", "] planning the transition: 3 candidates",
             "] rendering 154.8 s of audio", "] wrote"]
    where = [text.find(step) for step in steps]
    assert -1 not in where and where == sorted(where), text
    assert f"wrote {out}" in text


def test_the_demo_has_no_flag_of_its_own(capsys):
    """The demo is what runs without decks; a --demo flag that nothing read is refused."""
    with pytest.raises(SystemExit) as exit_:
        main.main(["--demo"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --demo" in capsys.readouterr().err


def test_main_analyzes_a_file_and_reports_bad_input_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    track = render_track(seed=9, bpm=132.0, tonic=7, mode="major", bars=8)
    path = tmp_path / "track.wav"
    sf.write(path, track.mix.T, 44100)
    assert main.main(["--analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "132.0" in out and "G major (9B)" in out and "drop" in out
    assert main.main(["--analyze", str(tmp_path / "missing.wav")]) == 1
    assert "missing.wav: no such file" in capsys.readouterr().err
    assert main.main(["--analyze", str(path), "--separator", "demucs",
                      "--demucs-weights", str(tmp_path / "none")]) == 1
    assert "htdemucs.json: no such file" in capsys.readouterr().err


def test_main_live_on_jack_plays_records_and_transitions(tmp_path, capsys, monkeypatch,
                                                        jack_server):
    """The live command end to end: worker process, PortAudio stream on JACK, auto trigger,
    recording; the recording holds every frame played."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    decks = stem_decks(tmp_path)
    record = tmp_path / "live.wav"
    code = main.main(["--deck-a", str(decks[0]), "--deck-b", str(decks[1]), "--device",
                      str(jack_server), "--record", str(record), "--bars", "2",
                      "--auto-trigger", "3", "--seconds", "30", "--steps", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "transition started" in out and "transition finished" in out
    played = int(out.split("recorded ")[1].split(" of ")[1].split(" frames")[0])
    assert sf.info(record).frames == played > 10 * 44100
    assert "dropped" not in out


def test_the_status_line_fits_the_terminal_and_always_shows_load_and_xruns():
    """Both decks with key lock make a line longer than most terminals: it is cut before the
    engine's health, which a performer (and bench/engine.py) must always see."""
    line = ("A: play bar  35.2 115.00 BPM  9A key lock | B: stop bar   0.2 119.99 BPM  3B key "
            "lock +73ct, stretching | next: 16 bars, 3 candidates, cand 1 | load 4%/7% p99 | "
            "xruns 12")
    for width in (80, 120, 160):
        shown = fit(line, width)
        assert len(shown) == width and shown.startswith("A: play bar  35.2")
        assert shown.endswith(" | load 4%/7% p99 | xruns 12")
    assert fit(line, 200) == line
    assert fit("A: empty | B: empty | xruns 3", 20).endswith(" | xruns 3")
    # The callbacks the engine's threads held up, once there are any, are health too.
    assert fit(line + " | GIL waits 2", 120).endswith(" | xruns 12 | GIL waits 2")


def test_ctrl_c_leaves_a_complete_recording_of_what_was_played(tmp_path, jack_server):
    """A live run with --record, interrupted as a user would (SIGINT, Ctrl-C in a terminal)
    while deck A plays: it exits cleanly and the file is a valid WAV that holds every frame
    played, the music included up to the interrupt. Started as a shell starts a job in the
    background, with SIGINT ignored: main.py takes Ctrl-C back."""
    decks = stem_decks(tmp_path)
    record = tmp_path / "live.wav"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--deck-a", str(decks[0]), "--deck-b", str(decks[1]),
         "--device", str(jack_server), "--record", str(record), "--checkpoint", "none",
         "--seconds", "90"],
        cwd=Path(main.__file__).parent, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(
        iter(lambda: os.read(proc.stdout.fileno(), 4096), b"")))
    reader.start()
    try:
        deadline = time.monotonic() + 80
        while time.monotonic() < deadline and proc.poll() is None \
                and b"A: play bar   3." not in b"".join(chunks):  # 2 bars of A played
            time.sleep(0.05)
        assert proc.poll() is None, b"".join(chunks).decode()[-2000:]
        # What the writer has put in the file so far (PCM_24 stereo: 6 bytes a frame after a
        # 44-byte header, whose length field is only right once the file is closed).
        written = (record.stat().st_size - 44) // 6
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
    out = b"".join(chunks).decode()
    assert proc.returncode == 0, out[-2000:]
    summary = out.split("recorded ")[-1].split(" frames played")[0]
    kept, played = (int(x) for x in summary.split(" of "))
    assert kept == played and "dropped" not in out, out[-2000:]
    info = sf.info(record)
    assert info.format == "WAV" and info.subtype == "PCM_24" and info.frames == played
    assert info.frames >= written > 0  # nothing written before the interrupt went missing
    mix, sr = sf.read(record)
    assert mix.shape == (played, 2) and sr == 44100
    # Deck A (12 bars, 22.5 s) still played when the interrupt came: the file ends in music.
    assert np.sqrt(np.mean(mix[-sr // 2:] ** 2)) > 0.01


def test_render_works_on_other_rates_and_a_drumless_intro(tmp_path, capsys, monkeypatch):
    """Real tracks are not the generator's: other sample rates, an intro without drums."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    paths = []
    for name, seed, rate in (("a.wav", 41, 48000), ("b.flac", 42, 22050)):
        track = render_track(seed=seed, bpm=122.0, tonic=4, mode="minor", bars=24,
                             sample_rate=rate)
        stems = track.stems.copy()
        stems[0, :, : int(8 * 4 * 60 / 122 * rate)] = 0.0  # eight bars without drums
        sf.write(tmp_path / name, stems.sum(axis=0).T, rate)
        paths.append(tmp_path / name)
    out = tmp_path / "mix.wav"
    assert main.main(["--deck-a", str(paths[0]), "--deck-b", str(paths[1]), "--render",
                      str(out), "--bars", "4", "--steps", "4"]) == 0
    text = capsys.readouterr().out
    assert "122.0 BPM" in text and "transition finished" in text
    mix, sr = sf.read(out)
    assert sr == 44100 and mix.shape[0] / sr > 60


def test_a_deck_that_fails_to_load_is_named_and_the_other_plays(tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    good = tmp_path / "good.wav"
    sf.write(good, render_track(seed=5, bars=12).mix.T, 44100)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk")
    assert main.main(["--deck-a", str(good), "--deck-b", str(broken), "--render",
                      str(tmp_path / "mix.wav")]) == 1
    captured = capsys.readouterr()
    assert "deck B: " in captured.out and "broken.wav" in captured.out
    assert "deck A: good.wav" in captured.out


def test_main_live_takes_a_trigger_over_osc_and_closes_its_port(tmp_path, capsys, monkeypatch,
                                                                jack_server):
    """--osc as a user runs it: the session starts the server with the engine, a datagram from
    another client triggers the transition, and leaving the session frees the port."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    decks = stem_decks(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SimpleUDPClient("127.0.0.1", port)
    stop = threading.Event()

    def press() -> None:  # until the session answers; before it listens, datagrams are lost
        stop.wait(4.0)
        while not stop.wait(0.5):
            client.send_message("/transition/trigger", [])

    presser = threading.Thread(target=press)
    presser.start()
    try:
        code = main.main(["--deck-a", str(decks[0]), "--deck-b", str(decks[1]), "--device",
                          str(jack_server), "--bars", "2", "--seconds", "25", "--checkpoint",
                          "none", "--quantize", "off", "--osc", str(port)])
    finally:
        stop.set()
        presser.join()
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"OSC on 127.0.0.1:{port}" in out
    assert "transition started" in out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # the server closed its socket


def test_a_named_checkpoint_that_does_not_load_fails_at_once(tmp_path, capsys):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    out = tmp_path / "mix.wav"
    for named in (broken, tmp_path / "missing.safetensors"):
        assert main.main(["--render", str(out), "--checkpoint", str(named)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --checkpoint: ") and named.name in err
        assert "\n" not in err
    assert not out.exists()  # nothing was rendered


def test_bad_arguments_fail_before_any_work(tmp_path, capsys):
    for render, why in ((tmp_path / "nowhere" / "mix.wav", "no folder"),
                        (tmp_path / "mix.xyz", "cannot write this file")):
        assert main.main(["--render", str(render)]) == 2
        err = capsys.readouterr().err
        assert f"error: --render {render}: {why}" in err and not render.exists()
    with pytest.raises(SystemExit) as exit_:
        main.main(["--latency", "fast", "--render", str(tmp_path / "mix.wav")])
    assert exit_.value.code == 2
    assert "'fast': give low, high or seconds" in capsys.readouterr().err


def test_a_rendered_transition_starts_on_the_bar_it_was_planned_for(tmp_path, capsys,
                                                                    monkeypatch):
    """--transition-at 1 on an 8-bar deck A: the transition starts on bar 1 as planned (it was
    logged and played a bar late), shortened to what A has, and B plays to its end."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "short").mkdir()
    (tmp_path / "long").mkdir()
    deck_a, deck_b = stem_decks(tmp_path / "short", bars=8)[0], stem_decks(tmp_path / "long")[1]
    out = tmp_path / "mix.wav"
    assert main.main(["--deck-a", str(deck_a), "--deck-b", str(deck_b), "--render",
                      str(out), "--bars", "16", "--transition-at", "1", "--checkpoint",
                      "none"]) == 0
    text = capsys.readouterr().out
    assert "on bar 1, beat 1 of deck A" in text, text
    assert "shortened to 8 bars (deck A ends)" in text and "transition finished" in text, text
    mix, sr = sf.read(out)
    assert len(mix) / sr > 12 * 4 * 60 / 128 - 0.5  # B's 12 bars from A's bar 1
    assert np.sqrt(np.mean(mix[-sr:] ** 2)) > 0.01
