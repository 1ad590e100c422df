"""Style cache limit (faceblit_core.cache): LRU eviction, size limit, concurrent runs, `faceblit cache`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core import cache as C
from faceblit_core.errors import ConfigError
from faceblit_core.style import prepare_style_report

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def _fake(folder: Path, name: str, size: int, age_s: float) -> Path:
    """An entry-named file of ``size`` bytes last used ``age_s`` seconds ago."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}{C.ENTRY_SUFFIX}"
    p.write_bytes(b"x" * size)
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def _style(tmp_path: Path, seed: int) -> tuple[Path, np.ndarray]:
    """A 64×80 noise style with a ring of 68 points: the exemplar check refuses such a
    36 px "face", so the calls here pass ``force=True`` (they test the cache, not the exemplar)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (80, 64, 3), dtype=np.uint8)
    path = tmp_path / f"s{seed}.png"
    assert cv2.imwrite(str(path), img)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    pts = np.stack([32 + 18 * np.cos(t), 40 + 22 * np.sin(t)], axis=1).astype(np.float32)
    return path, pts


def test_limit_parsing(monkeypatch):
    monkeypatch.delenv(C.MAX_BYTES_ENV, raising=False)
    assert C.max_bytes() == C.DEFAULT_MAX_BYTES == 2 << 30
    assert C.max_bytes("500M") == 500 * MIB and C.max_bytes("2G") == 2 << 30 and C.max_bytes("1.5GiB") == 3 << 29
    assert C.max_bytes("123") == 123 and C.max_bytes("0") == 0
    monkeypatch.setenv(C.MAX_BYTES_ENV, "64k")
    assert C.max_bytes() == 64 << 10
    monkeypatch.setenv(C.MAX_BYTES_ENV, "lots")
    with pytest.raises(ConfigError, match=r"\$FACEBLIT_CACHE_MAX_BYTES: expected a size"):
        C.max_bytes()


def test_a_malformed_limit_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv(C.MAX_BYTES_ENV, "2 gigs")
    s, pts = _style(tmp_path, 1)
    with pytest.raises(ConfigError, match="FACEBLIT_CACHE_MAX_BYTES"):
        prepare_style_report(s, landmarks=pts, cache_dir=tmp_path / "c", lut_radius=2.0, force=True)
    assert not (tmp_path / "c").exists()


def test_prune_evicts_least_recently_used_first_until_the_limit(tmp_path):
    d = tmp_path / "c"
    old = _fake(d, "a" * 64, 3000, age_s=400)
    mid = _fake(d, "b" * 64, 3000, age_s=300)
    new = _fake(d, "c" * 64, 3000, age_s=200)
    kept = _fake(d, "d" * 64, 3000, age_s=500)  # oldest, but the one just written
    (d / "notes.txt").write_text("not an entry")
    r = C.prune(d, 7000, keep=[kept])
    assert [e.path for e in r.removed] == [old, mid]  # oldest first, `kept` skipped
    assert r.bytes_before == 12000 and r.bytes_after == 6000 <= 7000
    assert new.exists() and kept.exists() and (d / "notes.txt").exists()
    assert C.prune(d, 7000).removed == []  # already within the limit


def test_stale_temporaries_go_only_when_their_writer_is_gone(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    stale, young, live = (d / f".{n}.x.tmp" for n in ("stale", "young", "live"))
    for p in (stale, young, live):
        p.write_bytes(b"half")
    past = time.time() - 3600
    os.utime(stale, (past, past))
    os.utime(live, (past, past))
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys
        f = open({str(live)!r}, "rb"); fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True); sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        C.prune(d, 0)
        assert not stale.exists() and young.exists() and live.exists()  # a writer is still writing `live`
    finally:
        holder.communicate("")
    C.prune(d, 0)
    assert not live.exists()


def test_written_entries_respect_the_limit_and_a_hit_counts_as_use(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    # Each entry is ~64 MiB (the 256³ table): room for two.
    monkeypatch.setenv(C.MAX_BYTES_ENV, "150M")
    (a, pa), (b, pb), (c, pc) = (_style(tmp_path, i) for i in range(3))
    ra = prepare_style_report(a, landmarks=pa, cache_dir=d, lut_radius=2.0, force=True)
    time.sleep(0.05)
    rb = prepare_style_report(b, landmarks=pb, cache_dir=d, lut_radius=2.0, force=True)
    time.sleep(0.05)
    assert prepare_style_report(a, landmarks=pa, cache_dir=d, lut_radius=2.0, force=True).cache_hit  # a used after b
    time.sleep(0.05)
    del ra  # nothing holds a's table any more
    rc = prepare_style_report(c, landmarks=pc, cache_dir=d, lut_radius=2.0, force=True)
    names = {e.path.name for e in C.list_entries(d)}
    assert names == {f"{rc.asset.key}{C.ENTRY_SUFFIX}", f"{prepare_style_report(a, landmarks=pa, cache_dir=d, lut_radius=2.0, force=True).asset.key}{C.ENTRY_SUFFIX}"}
    assert "evicted 1 least recently used cache entry" in rc.note
    assert sum(e.size for e in C.list_entries(d)) <= 150 * MIB
    assert not rb.cache_file.exists()


_HOLDER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from faceblit_core.style import prepare_style_report
    pts = np.loadtxt(sys.argv[2], dtype=np.float32)
    r = prepare_style_report(sys.argv[1], landmarks=pts, cache_dir=sys.argv[3], lut_radius=2.0, force=True)
    assert r.cache_hit
    want = int(r.asset.lut[::7, ::5, ::3].astype(np.int64).sum())
    print("holding", flush=True)
    sys.stdin.read()  # the test prunes meanwhile
    # the table is still whole after the prune
    print(int(r.asset.lut[::7, ::5, ::3].astype(np.int64).sum()) == want, flush=True)
    """
)


def test_an_entry_in_use_by_another_run_is_never_removed(tmp_path):
    d = tmp_path / "cache"
    s, pts = _style(tmp_path, 7)
    np.savetxt(tmp_path / "pts.txt", pts)
    entry = prepare_style_report(s, landmarks=pts, cache_dir=d, lut_radius=2.0, force=True).cache_file
    run = subprocess.Popen([sys.executable, "-c", _HOLDER, str(s), str(tmp_path / "pts.txt"), str(d)], cwd=REPO,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "holding", run.stderr.read()
        assert [e.in_use for e in C.list_entries(d)] == [True]
        r = C.prune(d, 0)  # as `faceblit cache --clear`
        assert r.removed == [] and [e.path for e in r.busy] == [entry] and entry.exists()
    finally:
        out, err = run.communicate("", timeout=60)
    assert run.returncode == 0 and out.split()[-1] == "True", err
    assert [e.in_use for e in C.list_entries(d)] == [False]
    assert [e.path for e in C.prune(d, 0).removed] == [entry] and not entry.exists()


_LOADER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from faceblit_core.style import prepare_style_report
    pts = np.loadtxt(sys.argv[2], dtype=np.float32)
    want = np.load(sys.argv[4])
    hits = builds = 0
    for _ in range(int(sys.argv[5])):
        r = prepare_style_report(sys.argv[1], landmarks=pts, cache_dir=sys.argv[3], lut_radius=2.0, force=True)
        assert np.array_equal(r.asset.lut[::3, ::3, ::3], want), "wrong table"
        hits += r.cache_hit
        builds += not r.cache_hit
        del r
    print(hits, builds)
    """
)


def test_runs_and_prunes_at_once_never_fail_or_read_half_an_entry(tmp_path):
    d = tmp_path / "cache"
    s, pts = _style(tmp_path, 9)
    np.savetxt(tmp_path / "pts.txt", pts)
    first = prepare_style_report(s, landmarks=pts, cache_dir=d, lut_radius=2.0, force=True)
    np.save(tmp_path / "want.npy", first.asset.lut[::3, ::3, ::3])
    del first
    run = subprocess.Popen([sys.executable, "-c", _LOADER, str(s), str(tmp_path / "pts.txt"), str(d), str(tmp_path / "want.npy"), "4"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    removed = 0
    while run.poll() is None:
        removed += len(C.prune(d, 0).removed)
        time.sleep(0.01)
    out, err = run.communicate()
    assert run.returncode == 0, err[-2000:]
    hits, builds = map(int, out.split())
    assert hits + builds == 4 and removed >= 1
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def _cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_cache_command_shows_where_and_what_then_prunes_and_clears(tmp_path):
    d = tmp_path / "c"
    r = _cli("cache", "--cache-dir", str(d), env_extra={C.MAX_BYTES_ENV: ""})
    assert r.returncode == 0, r.stderr
    assert f"cache: {d} (not created yet)" in r.stdout and "0 entries, 0 B of 2.0 GiB (default)" in r.stdout
    _fake(d, "1" * 64, 3 * MIB, age_s=3000)
    _fake(d, "2" * 64, 2 * MIB, age_s=100)
    r = _cli("cache", "--cache-dir", str(d), env_extra={C.MAX_BYTES_ENV: "4M"})
    lines = r.stdout.splitlines()
    assert lines[0] == f"cache: {d}"
    assert lines[1].startswith("  " + "2" * 16) and "2.0 MiB" in lines[1] and "last used 20" in lines[1]  # newest first
    assert lines[2].startswith("  " + "1" * 16) and "3.0 MiB" in lines[2]
    assert lines[3] == "2 entries, 5.0 MiB of 4.0 MiB ($FACEBLIT_CACHE_MAX_BYTES)"
    r = _cli("cache", "--prune", "--cache-dir", str(d), env_extra={C.MAX_BYTES_ENV: "4M"})
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "removed 1 entry (3.0 MiB)"
    assert "1 entry, 2.0 MiB of 4.0 MiB" in r.stdout and "1" * 16 not in r.stdout
    r = _cli("cache", "--clear", "--cache-dir", str(d))
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "removed 1 entry (2.0 MiB)" and "0 entries, 0 B" in r.stdout
    assert not list(d.glob("*" + C.ENTRY_SUFFIX))
    r = _cli("cache", "--clear", "--prune", "--cache-dir", str(d))
    assert r.returncode == 2 and r.stderr.strip() == "faceblit: error: --clear and --prune: give one of them (see 'faceblit cache --help')"
    r = _cli("cache", "--cache-dir", str(d), env_extra={C.MAX_BYTES_ENV: "much"})
    assert r.returncode == 2 and r.stderr.startswith("faceblit: error: $FACEBLIT_CACHE_MAX_BYTES: expected a size") and "Traceback" not in r.stderr
    a_file = tmp_path / "notes.png"
    a_file.write_bytes(b"x")
    r = _cli("cache", "--cache-dir", str(a_file))
    assert r.returncode == 2 and r.stderr.strip() == f"faceblit: error: {a_file}: --cache-dir is a file, not a folder (see 'faceblit cache --help')"
