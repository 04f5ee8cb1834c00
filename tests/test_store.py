"""Per-user weight files: atomic, locked, crash-safe, hostile ids harmless, bad files never overwritten."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
from rfm.runtime.store import StoreError, UserRecord, UserStore

from rfm.errors import UsageError

FP = "f" * 64


def append_many(root: str, user: str, n: int, d: int) -> None:
    """What RewardModel.adapt does to the store: lock, read, append, write."""
    store = UserStore(FP, d, root)
    for i in range(n):
        with store.locked(user):
            record = store.read(user) or UserRecord(user, FP, np.zeros(d), np.zeros((0, d)))
            record.deltas = np.vstack([record.deltas, np.full((1, d), float(i))])
            record.feedback_total += 1
            record.w = record.deltas.mean(0)
            store.write(record)


def test_concurrent_writers_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=append_many, args=(str(tmp_path), "alice", 25, 4)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    record = UserStore(FP, 4, tmp_path).read("alice")
    assert record.feedback_total == 75 and len(record.deltas) == 75


def write_forever(root: str) -> None:
    store = UserStore(FP, 64, root, max_deltas=4000)
    i = 0
    while True:
        with store.locked("bob"):
            store.write(UserRecord("bob", FP, np.full(64, float(i)), np.random.default_rng(i).normal(size=(3000, 64)),
                                   feedback_total=i))
        i += 1


def test_killed_writer_leaves_a_valid_file(tmp_path):
    ctx = mp.get_context("spawn")
    store = UserStore(FP, 64, tmp_path)
    for attempt in range(3):
        proc = ctx.Process(target=write_forever, args=(str(tmp_path),))
        proc.start()
        deadline = time.time() + 30
        while not store.path("bob").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2 + 0.13 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        record = store.read("bob")  # parses: the previous or the new version, never half of one
        assert record is not None and len(record.deltas) == 3000
        assert np.all(record.w == record.w[0])


@pytest.mark.parametrize("user", ["../x", "/etc/passwd", "a\x00b", "..", "x" * 4000, "ünïcødé/../..", "C:\\x"])
def test_hostile_user_ids_stay_inside_the_store(tmp_path, user):
    store = UserStore(FP, 2, tmp_path / "store")
    path = store.path(user)
    assert path.parent == store.folder and len(path.name) == 45
    with store.locked(user):
        store.write(UserRecord(user, FP, np.ones(2), np.zeros((0, 2))))
    assert store.read(user).user_id == user
    assert [r.user_id for r in store.users()] == [user]
    assert store.delete(user) and store.read(user) is None
    assert sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file()) == []


def test_overlong_and_empty_ids_are_usage_errors(tmp_path):
    store = UserStore(FP, 2, tmp_path)
    with pytest.raises(UsageError):
        store.path("")
    with pytest.raises(UsageError):
        store.path("x" * 5000)


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"format": "other"}', b"NaN",
                                     None])
def test_corrupt_or_foreign_files_are_named_and_untouched(tmp_path, content):
    store = UserStore(FP, 2, tmp_path)
    path = store.path("carol")
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:  # a valid file of another artifact
        other = UserStore("0" * 64, 2, tmp_path)
        with other.locked("carol"):
            other.write(UserRecord("carol", "0" * 64, np.ones(2), np.zeros((0, 2))))
        content = other.path("carol").read_bytes()
    path.write_bytes(content)
    with pytest.raises(StoreError, match=str(path.name)):
        store.read("carol")
    assert path.read_bytes() == content


def test_nan_in_a_file_or_a_write_is_rejected(tmp_path):
    store = UserStore(FP, 2, tmp_path)
    record = UserRecord("dan", FP, np.ones(2), np.zeros((0, 2)))
    with store.locked("dan"):
        store.write(record)
    data = json.loads(store.path("dan").read_text())
    data["w"] = [float("nan"), 1.0]
    store.path("dan").write_text(json.dumps(data))
    with pytest.raises(StoreError, match=r"NaN|non-finite"):
        store.read("dan")
    with pytest.raises(UsageError):
        store.write(UserRecord("erin", FP, np.array([np.inf, 0.0]), np.zeros((0, 2))))


def test_stored_deltas_are_bounded(tmp_path):
    store = UserStore(FP, 2, tmp_path, max_deltas=10)
    with store.locked("fay"):
        store.write(UserRecord("fay", FP, np.ones(2), np.arange(40.0).reshape(20, 2), feedback_total=20))
    record = store.read("fay")
    assert len(record.deltas) == 10 and record.deltas[0, 0] == 20.0 and record.feedback_total == 20


def hold_lock_exclusively(root: str, n: int) -> None:
    """Inside the lock, create a marker that must not exist: two holders at once would fail here."""
    store = UserStore(FP, 4, root)
    marker = os.path.join(root, "inside")
    for _ in range(n):
        with store.locked("carol"):
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            time.sleep(0.001)
            os.close(fd)
            os.unlink(marker)


def delete_repeatedly(root: str, n: int) -> None:
    store = UserStore(FP, 4, root)
    for _ in range(n):
        with store.locked("carol"):
            store.write(UserRecord("carol", FP, np.zeros(4), np.zeros((1, 4))))
        store.delete("carol")


def test_delete_removes_the_lock_yet_writers_stay_mutually_exclusive(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=hold_lock_exclusively, args=(str(tmp_path), 150)) for _ in range(2)]
    procs.append(ctx.Process(target=delete_repeatedly, args=(str(tmp_path), 150)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = UserStore(FP, 4, tmp_path)
    with store.locked("carol"):
        store.write(UserRecord("carol", FP, np.zeros(4), np.zeros((1, 4))))
    assert store.delete("carol")
    assert not [p for p in store.folder.iterdir() if p.name.startswith(store.path("carol").stem)]


def test_list_reports_unreadable_files_and_still_lists_the_rest(tmp_path):
    store = UserStore(FP, 2, tmp_path)
    for user in ("ann", "ben"):
        with store.locked(user):
            store.write(UserRecord(user, FP, np.zeros(2), np.zeros((0, 2))))
    bad = store.path("ben")
    bad.write_text(bad.read_text().replace('"feedback_total": 0', '"feedback_total": 1e999'))
    records, problems = store.scan()
    assert [r.user_id for r in records] == ["ann"] and len(problems) == 1 and bad.name in str(problems[0])


def test_user_files_are_owner_only_and_stale_temp_files_go(tmp_path):
    store = UserStore(FP, 2, tmp_path)
    path = store.path("dan")
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = path.parent / f".{path.name}.abc.tmp"
    stale.write_text("left by a killed writer")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with store.locked("dan"):
        store.write(UserRecord("dan", FP, np.zeros(2), np.zeros((0, 2))))
    assert not stale.exists()
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600


def test_a_model_update_refits_users_from_their_stored_choices(tiny_artifact, tmp_path):
    from rfm.runtime import RewardModel

    old = UserStore("0" * 64, 3, tmp_path)  # the same user under an earlier artifact (another d, even)
    choices = [("p", "a long, kind and careful answer", "no"), ("q", "yes, gladly: here it is", "meh")]
    with old.locked("zed"):
        old.write(UserRecord("zed", "0" * 64, np.ones(3), np.ones((2, 3)), feedback_total=2, choices=choices))
    model = RewardModel.load(tiny_artifact, device="cpu", store=tmp_path)
    w = model.weights("zed")  # first use under the new artifact
    record = model.store.read("zed")
    assert record is not None and record.choices == choices and record.migrated_from == "0" * 64
    assert np.allclose(w, model.fit(record.deltas)) and not np.allclose(w, model.population["mean"])
    assert old.read("zed").feedback_total == 2  # the old file is left as it was
    assert model.store.delete("zed")  # delete means everywhere: no later model brings zed back
    assert old.read("zed") is None and model.store.read("zed") is None
    assert np.allclose(model.weights("zed"), model.population["mean"])


def test_users_export_then_import_on_another_store_round_trips(tiny_artifact, tmp_path):
    from click.testing import CliRunner
    from rfm.runtime import RewardModel

    from rfm.cli.main import cli

    model = RewardModel.load(tiny_artifact, device="cpu", store=tmp_path / "a")
    model.adapt("yan", [("p", "a thorough answer", "no"), ("q", "short", "a long rambling reply " * 5)])
    before = model.store.read("yan")
    runner = CliRunner()
    out = tmp_path / "yan.json"
    result = runner.invoke(cli, ["users", "export", str(tiny_artifact), "yan", "-o", str(out), "--store",
                                 str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["users", "import", str(tiny_artifact), str(out), "--store", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    after = UserStore(before.fingerprint, len(before.w), tmp_path / "b").read("yan")
    assert np.array_equal(after.w, before.w) and np.array_equal(after.deltas, before.deltas)
    assert after.choices == before.choices and after.feedback_total == before.feedback_total
    result = runner.invoke(cli, ["users", "import", str(tiny_artifact), str(out), "--store", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--replace" in result.output
