"""The pickled-batch reader trusts no byte of a file: the official archive's batches (Python 2 pickles), the
lossless shared copy and batches pickled here in protocols 2, 4 and 5 load exactly as numpy's own unpickling
loads them, while a crafted file (an object dtype, pixels not in the file, a huge claim, labels outside 0-9, a
call to anything but the stand-ins) is one CIFAR10Error line naming the file, within a memory bound; and 600
seeded mutations of a real batch file are each a correct array or a CIFAR10Error, never a crash, a hang or
another exception.

The crafted files and the mutations are read in a child process, so a crash (SIGSEGV) is reported as one."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_image

from eva9.data import CIFAR10Error, cifar10, datasets

ROOT = Path(__file__).resolve().parents[1]


def batch_dict(n: int = 6, labels_as: str = "list", seed: int = 0, fortran: bool = False) -> dict:
    """A small batch as torchvision's files hold it: N×3072 uint8 rows, labels, file names."""
    labels = [(seed + 3 * i) % 10 for i in range(n)]
    data = np.stack([fake_image(label, seed + i) for i, label in enumerate(labels)]).transpose(0, 3, 1, 2)
    data = data.reshape(n, -1)
    return {
        "batch_label": f"batch {seed}",
        "labels": labels if labels_as == "list" else np.array(labels, dtype=labels_as),
        "data": np.asfortranarray(data) if fortran else data,
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }


def reference(path: Path) -> tuple[np.ndarray, list[int]]:
    """What numpy's own unpickling reads from a trusted file (as torchvision's CIFAR10 does), in our layout."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    return batch["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), [int(x) for x in batch["labels"]]


def assert_same(path: Path) -> None:
    images, labels = datasets.read_batch_file(path)
    expected_images, expected_labels = reference(path)
    assert images.dtype == np.uint8 and images.shape == expected_images.shape
    assert np.array_equal(images, expected_images) and labels == expected_labels


def python2_pickle(batch: dict) -> bytes:
    """The bytes Python 2's cPickle writes (protocol 2) for a batch of str keys, lists of ints and strs, and one
    uint8 array, as in the official archive: strs are SHORT_BINSTRING/BINSTRING, the array a _reconstruct call
    whose dtype is built from ('u1', 0, 1) and whose raw data is a str."""
    out = bytearray(pickle.PROTO + b"\x02")
    memo = [0]

    def put() -> None:
        out.extend(
            pickle.BINPUT + bytes([memo[0]]) if memo[0] < 256 else pickle.LONG_BINPUT + struct.pack("<I", memo[0])
        )
        memo[0] += 1

    def string(raw: bytes) -> None:
        if len(raw) < 256:
            out.extend(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            out.extend(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        put()

    def integer(n: int) -> None:
        if 0 <= n < 256:
            out.extend(pickle.BININT1 + bytes([n]))
        elif 0 <= n < 65536:
            out.extend(pickle.BININT2 + struct.pack("<H", n))
        else:
            out.extend(pickle.BININT + struct.pack("<i", n))

    def value(v) -> None:
        if isinstance(v, str):
            string(v.encode("latin1"))
        elif isinstance(v, int):
            integer(v)
        elif isinstance(v, list):
            out.extend(pickle.EMPTY_LIST)
            put()
            for start in range(0, len(v), 1000):  # cPickle appends in batches of 1000
                out.extend(pickle.MARK)
                for item in v[start : start + 1000]:
                    value(item)
                out.extend(pickle.APPENDS)
        else:
            array(v)

    def array(a: np.ndarray) -> None:
        out.extend(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
        put()
        out.extend(pickle.GLOBAL + b"numpy\nndarray\n")
        put()
        integer(0)
        out.extend(pickle.TUPLE1)
        put()
        string(b"b")
        out.extend(pickle.TUPLE3)
        put()
        out.extend(pickle.REDUCE)
        put()
        out.extend(pickle.MARK)
        integer(1)
        integer(a.shape[0])
        integer(a.shape[1])
        out.extend(pickle.TUPLE2)
        put()
        out.extend(pickle.GLOBAL + b"numpy\ndtype\n")
        put()
        string(b"u1")
        integer(0)
        integer(1)
        out.extend(pickle.TUPLE3)
        put()
        out.extend(pickle.REDUCE)
        put()
        out.extend(pickle.MARK)
        integer(3)
        string(b"|")
        out.extend(pickle.NONE * 3 + pickle.BININT + struct.pack("<i", -1) + pickle.BININT + struct.pack("<i", -1))
        integer(0)
        out.extend(pickle.TUPLE)
        put()
        out.extend(pickle.BUILD + pickle.NEWFALSE)
        string(a.tobytes())
        out.extend(pickle.TUPLE)
        put()
        out.extend(pickle.BUILD)

    out.extend(pickle.EMPTY_DICT)
    put()
    out.extend(pickle.MARK)
    for key, v in batch.items():
        string(key.encode("latin1"))
        value(v)
    out.extend(pickle.SETITEMS + pickle.STOP)
    return bytes(out)


# ------------------------------------------------------------------------------------------ the same arrays


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("labels_as", ["list", "int64", "uint8"])
def test_a_batch_pickled_here_loads_as_numpy_loads_it(tmp_path, protocol, labels_as):
    for fortran in (False, True):
        path = tmp_path / f"batch_{protocol}_{labels_as}_{fortran}"
        path.write_bytes(pickle.dumps(batch_dict(7, labels_as, seed=protocol, fortran=fortran), protocol=protocol))
        assert_same(path)


def test_a_python2_batch_as_the_official_archive_holds_it_loads_as_numpy_loads_it(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(python2_pickle(batch_dict(1100)))  # more than 1000 labels: two APPENDS batches
    assert_same(path)
    assert b"numpy.core.multiarray\n_reconstruct" in path.read_bytes()  # what the archive's files name


def test_the_real_batches_load_as_numpy_loads_them(cifar_root):
    folder = cifar_root / "cifar-10-batches-py" if (cifar_root / "cifar-10-batches-py").is_dir() else cifar_root
    paths = sorted(folder.glob("*_batch*"))
    if not paths:
        pytest.skip(f"{cifar_root} holds no pickled batches")
    for path in paths:
        assert_same(path)


# ----------------------------------------------------------------------------------------- crafted files

_OPS = pickle


def _array_pickle(shape: tuple[int, ...], code: bytes, raw: bytes | None, state: bytes | None = None) -> bytes:
    """Protocol-2 opcodes building an array the way numpy pickles one; ``raw=None``: no __setstate__ at all."""
    out = _OPS.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n" + _OPS.GLOBAL + b"numpy\nndarray\n"
    out += _OPS.BININT1 + b"\x00" + _OPS.TUPLE1 + _OPS.SHORT_BINBYTES + b"\x01b" + _OPS.TUPLE3 + _OPS.REDUCE
    if raw is None:
        return out
    out += _OPS.MARK + _OPS.BININT1 + b"\x01" + _OPS.MARK
    for n in shape:
        out += _OPS.BININT + struct.pack("<i", n)
    out += _OPS.TUPLE + _OPS.GLOBAL + b"numpy\ndtype\n" + _OPS.SHORT_BINUNICODE + bytes([len(code)]) + code
    out += _OPS.NEWFALSE + _OPS.NEWTRUE + _OPS.TUPLE3 + _OPS.REDUCE
    out += state if state is not None else b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += _OPS.NEWFALSE + _OPS.BINBYTES + struct.pack("<I", len(raw)) + raw + _OPS.TUPLE + _OPS.BUILD
    return out


def _batch_pickle(data: bytes, labels: list[int] | bytes) -> bytes:
    """A protocol-2 dict {'data': <data opcodes>, 'labels': <a list, or the given opcodes>}."""
    if isinstance(labels, list):
        labels = _OPS.EMPTY_LIST + _OPS.MARK + b"".join(_OPS.BININT + struct.pack("<i", x) for x in labels)
        labels += _OPS.APPENDS
    body = _OPS.SHORT_BINUNICODE + b"\x04data" + data + _OPS.SHORT_BINUNICODE + b"\x06labels" + labels
    return _OPS.PROTO + b"\x02" + _OPS.EMPTY_DICT + _OPS.MARK + body + _OPS.SETITEMS + _OPS.STOP


def crafted_files() -> dict[str, bytes]:
    """Files a hostile sender might hand a reader, each of its own kind; none is a CIFAR-10 batch."""
    n = 4
    pixels = bytes(range(256)) * (n * 3072 // 256)
    labels = [i % 10 for i in range(n)]
    many = 20_000
    return {
        # object dtype with its flags cleared: numpy would take these bytes as object pointers
        "object pointers": _batch_pickle(
            _array_pickle((n, 3072), b"O8", b"\x41" * (n * 3072 * 8), b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ"
                          b"\xff\xff\xff\xffK\x00tb"), labels),  # fmt: skip
        # no pixels in the file at all: numpy's _reconstruct alone hands out uninitialised memory of that shape
        "pixels not in the file": _batch_pickle(
            _array_pickle((many, 3072), b"u1", None), _array_pickle((many,), b"u1", bytes(i % 10 for i in range(many)))
        ),
        "labels outside 0-9": _batch_pickle(_array_pickle((n, 3072), b"u1", pixels), [0, 1, 10, 3]),
        "negative labels": _batch_pickle(_array_pickle((n, 3072), b"u1", pixels), [0, -1, 2, 3]),
        "fewer labels than images": _batch_pickle(_array_pickle((n, 3072), b"u1", pixels), [0, 1, 2]),
        "float pixels": _batch_pickle(_array_pickle((n, 768), b"f4", pixels), labels),
        "not 3072 per image": _batch_pickle(_array_pickle((n * 2, 1536), b"u1", pixels), labels * 2),
        "labels as floats": _batch_pickle(
            _array_pickle((n, 3072), b"u1", pixels), _array_pickle((n,), b"f8", struct.pack("<4d", 0, 1, 2, 3))
        ),
        # a claim of 64 GiB of bytes in a few dozen: the C unpickler allocates the claim before it reads
        "a claimed length": _OPS.PROTO + b"\x04" + _OPS.BINBYTES8 + struct.pack("<Q", 1 << 36) + b"tiny" + _OPS.STOP,
        # a memo index of 2**25: the C unpickler grows (and zeroes) its memo table to twice that
        "a far memo index": _OPS.PROTO + b"\x02" + _OPS.EMPTY_DICT + _OPS.LONG_BINPUT + struct.pack("<I", 1 << 25)
        + _OPS.STOP,
        "deep marks": _OPS.PROTO + b"\x02" + _OPS.MARK * 100_000 + _OPS.STOP,
        "a call to eval": _OPS.PROTO + b"\x02" + _OPS.GLOBAL + b"builtins\neval\n" + _OPS.SHORT_BINUNICODE + b"\x011"
        + _OPS.TUPLE1 + _OPS.REDUCE + _OPS.STOP,
        "a numpy function": _OPS.PROTO + b"\x02" + _OPS.GLOBAL + b"numpy\nfromfile\n" + _OPS.STOP,
        "a set of colliding ints": _OPS.PROTO + b"\x04" + _OPS.EMPTY_SET + _OPS.MARK
        + b"".join(_OPS.LONG1 + b"\x09" + (k * (2**61 - 1)).to_bytes(9, "little") for k in range(1, 2000))
        + _OPS.ADDITEMS + _OPS.STOP,
        "empty": b"",
    }  # fmt: skip


PROBE = r"""
import json, signal, sys, tracemalloc, traceback
from pathlib import Path
from eva9.data import CIFAR10Error, cifar10

class Hang(BaseException):
    pass

def hang(signum, frame):
    raise Hang

signal.signal(signal.SIGALRM, hang)
for name, folder in json.loads(sys.argv[1]).items():
    size = (Path(folder) / "test_batch").stat().st_size
    print(json.dumps({"case": name, "started": True}), flush=True)
    tracemalloc.start()
    signal.alarm(20)
    try:
        cifar10("test", root=folder)
        outcome, message = "loaded", ""
    except CIFAR10Error as error:
        outcome, message = "CIFAR10Error", str(error)
    except Hang:
        outcome, message = "hang", ""
    except BaseException as error:
        outcome, message = type(error).__name__, traceback.format_exc()
    signal.alarm(0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"case": name, "outcome": outcome, "message": message, "peak": peak, "size": size}), flush=True)
"""


def run_probe(script: str, *args: str, timeout: float = 300) -> tuple[int, list[dict]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_crafted_batch_files_are_one_cifar10error_line_naming_the_file_within_a_memory_bound(tmp_path):
    folders = {}
    for i, (name, content) in enumerate(crafted_files().items()):
        folder = tmp_path / f"copy{i}" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        (folder / "test_batch").write_bytes(content)
        folders[name] = str(folder)
    code, lines = run_probe(PROBE, json.dumps(folders))
    results = {line["case"]: line for line in lines if "outcome" in line}
    started = [line["case"] for line in lines if "started" in line]
    assert code == 0, f"the reader died (exit {code}) reading the crafted file {started[-1]!r}"
    assert set(results) == set(folders)
    for name, result in results.items():
        assert result["outcome"] == "CIFAR10Error", f"{name}: {result['outcome']} {result['message']}"
        message = result["message"]
        assert "\n" not in message and str(Path(folders[name]) / "test_batch") in message, f"{name}: {message}"
        assert len(message) < 1000, f"{name}: {message}"
        bound = 8 * result["size"] + (4 << 20)  # a small multiple of the file, and a few MiB for the reader itself
        assert result["peak"] < bound, f"{name}: {result['peak']:,} bytes for a file of {result['size']:,}"
    assert "posix" not in results["a call to eval"]["message"]
    assert "builtins.eval" in results["a call to eval"]["message"]
    assert "outside 0-9" in results["labels outside 0-9"]["message"]
    assert "4 images but 3 labels" in results["fewer labels than images"]["message"]
    assert "not in the file" in results["pixels not in the file"]["message"]


def test_a_crafted_file_is_refused_before_anything_is_trained(tmp_path, capsys):
    from eva9.cli import main

    folder = tmp_path / "copy" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = pickle.dumps(batch_dict(10), protocol=4)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(good)
    (folder / "test_batch").write_bytes(crafted_files()["labels outside 0-9"])
    out = tmp_path / "run"
    args = ["--train-per-class", "1", "--test-per-class", "1", "--batch-size", "5", "--workers", "0", "--device", "cpu"]
    assert main(["train", "--profile", "smoke", "--data-dir", str(folder), "--out", str(out), "--quiet", *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder / "test_batch") in err and "outside 0-9" in err, err
    assert not out.exists()


# -------------------------------------------------------------------------------------------- mutations

MUTATIONS = r"""
import json, pickle, pickletools, random, signal, sys, traceback
from pathlib import Path
import numpy as np
from eva9.data import CIFAR10Error
from eva9.data import datasets

class Hang(BaseException):
    pass

def hang(signum, frame):
    raise Hang

signal.signal(signal.SIGALRM, hang)
folder, attempts, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
bases = [(folder / name).read_bytes() for name in sorted(p.name for p in folder.iterdir())]
codes = [op.code.encode("latin1") for op in pickletools.opcodes]
rng = random.Random(seed)
counts, failures = {}, []

def positions(data):
    ops = [pos for _, _, pos in pickletools.genops(data)]
    return ops, [pos for pos, end in zip(ops, ops[1:] + [len(data)]) if end - pos < 64 for pos in range(pos, end)]

def mutate(data, ops, small):
    kind = rng.choice(["flip", "flip", "cut", "swap", "insert", "delete", "duplicate", "length"])
    data = bytearray(data)
    if kind == "flip":
        where = rng.choice(small) if rng.random() < 0.8 else rng.randrange(len(data))
        data[where] ^= rng.randrange(1, 256)
    elif kind == "cut":
        del data[rng.randrange(len(data)):]
    elif kind == "swap":
        data[rng.choice(ops)] = rng.choice(codes)[0]
    elif kind == "insert":
        where = rng.choice(ops)
        data[where:where] = rng.choice(codes) + bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
    elif kind in ("delete", "duplicate"):
        i = rng.randrange(len(ops))
        start, end = ops[i], ops[i + 1] if i + 1 < len(ops) else len(data)
        data[start:end] = b"" if kind == "delete" else data[start:end] * 2
    else:  # a length or index argument replaced by a large number
        where = rng.choice(ops) + 1
        data[where:where + 4] = rng.choice([0xFFFFFFFF, 1 << 31, 1 << 24, 3073]).to_bytes(4, "little")
    return kind, bytes(data)

for attempt in range(attempts):
    base = rng.choice(bases)
    ops, small = positions(base)
    data, kinds = base, []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind, data = mutate(data, ops, small)
        kinds.append(kind)
        try:
            ops, small = positions(data)
        except Exception:
            break  # no longer parses as a pickle: later mutations would only cut it further
    path = folder.parent / "mutated"
    path.write_bytes(data)
    signal.alarm(10)
    try:
        images, labels = datasets.read_batch_file(path)
        ok = (images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (32, 32, 3)
              and len(labels) == len(images) > 0 and all(type(x) is int and 0 <= x <= 9 for x in labels))
        outcome = "array" if ok else "a wrong array"
    except CIFAR10Error as error:
        outcome = "CIFAR10Error" if str(path) in str(error) and "\n" not in str(error) else "a bad message"
    except Hang:
        outcome = "hang"
    except BaseException:
        outcome = "exception: " + traceback.format_exc(limit=3)
    signal.alarm(0)
    counts[outcome.split(":")[0]] = counts.get(outcome.split(":")[0], 0) + 1
    if outcome not in ("array", "CIFAR10Error"):
        failures.append({"attempt": attempt, "kinds": kinds, "outcome": outcome, "file": data.hex()[:400]})
print(json.dumps({"counts": counts, "failures": failures[:5]}))
"""


def test_600_seeded_mutations_of_a_real_batch_are_each_an_array_or_one_cifar10error(tmp_path):
    folder = tmp_path / "bases"
    folder.mkdir()
    for protocol in (2, 4, 5):
        for labels_as in ("list", "int64"):
            batch = batch_dict(3, labels_as, seed=protocol)
            (folder / f"p{protocol}_{labels_as}").write_bytes(pickle.dumps(batch, protocol=protocol))
    (folder / "python2").write_bytes(python2_pickle(batch_dict(3, seed=9)))
    code, lines = run_probe(MUTATIONS, str(folder), "600", "26")
    assert code == 0 and lines, f"the reader died (exit {code}) on a mutated batch"
    summary = lines[-1]
    assert summary["failures"] == [], summary
    assert sum(summary["counts"].values()) == 600
    assert summary["counts"].get("array", 0) > 20 and summary["counts"].get("CIFAR10Error", 0) > 200, summary


def test_read_batch_file_names_the_file_and_says_why(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=4))
    with pytest.raises(CIFAR10Error, match="no 'labels' entry") as error:
        datasets.read_batch_file(path)
    assert str(path) in str(error.value)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CIFAR10Error, match="holds a list, not a dict"):
        datasets.read_batch_file(path)
    assert len(cifar10("test", root=_folder_with(tmp_path, batch_dict(5)))) == 5


def _folder_with(tmp_path: Path, batch: dict) -> Path:
    folder = tmp_path / "ok" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    return folder
