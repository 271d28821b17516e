"""Reading a pickled CIFAR-10 batch file without trusting it: no byte of the file reaches numpy's unpickling.

A batch (torchvision's ``cifar-10-batches-py/data_batch_1`` ...) is a pickled dict whose ``data`` is a numpy
array, and unpickling a numpy array normally hands bytes of the file to numpy's C ``__setstate__``, which a crafted
file can make take them as object pointers. Here the few globals a batch names (``numpy.dtype``, ``numpy.ndarray``,
``_reconstruct``, ``_frombuffer``, ``scalar``, ``_codecs.encode``) are pure-Python stand-ins that only record their
arguments, every other global and every opcode a batch never holds is refused, and :func:`read_batch` builds the
arrays itself with ``np.frombuffer`` from a dtype it chose (unsigned 8-bit pixels, integer labels), after checking the
shape (N × 3072), that there are N labels in 0-9, and that every pixel byte is in the file.

Memory is bounded by the file: at most :data:`MAX_FILE_BYTES` are read, the number of pickle operations is
bounded by the file's size (so are the objects they make), copies a stand-in makes count against the same budget,
and ``MARK`` nesting is shallow. Python's pure-Python unpickler (``pickle._Unpickler``) runs the opcodes: it reads
each string from the file only as far as the file goes, and keeps its memo in a dict, so a claimed length or memo
index allocates nothing. Anything else is a :class:`BatchError` with the reason in a few words.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from collections.abc import Callable
from typing import Any, cast

import numpy as np

__all__ = ["BatchError", "MAX_FILE_BYTES", "IMAGE_BYTES", "read_batch"]

MAX_FILE_BYTES = 256 << 20
"""The largest batch file read (the official batches are 31 MB; all 60,000 images in one file would be 184 MB)."""

IMAGE_BYTES = 3 * 32 * 32
"""One image's row in ``data``: the red, green and blue 32×32 planes, one unsigned byte per pixel."""

_BYTES_PER_OPERATION = 64
"""The file may hold one pickle operation per this many bytes (plus :data:`_SPARE_OPERATIONS`); a real batch
holds one per ~1,000 (its labels and file names), so the objects the operations make stay a small multiple of it."""
_SPARE_OPERATIONS = 4096
_MAX_MARKS = 16
"""The deepest nesting of ``MARK`` (a batch nests two: the dict's items, an array's state)."""

_INTEGER_CODES = ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8")
"""The only dtypes a batch's arrays may have: pixels ``u1``, labels any of these integers."""
_BYTE_ORDERS = ("|", "<", ">", "=")

# The opcodes of protocols 0-5 that a batch of arrays, lists, dicts, strings and numbers needs. Not among them: the
# ones that call or build arbitrary objects (INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4, PERSID, BINPERSID), sets
# (whose items could be chosen to collide in one hash bucket) and out-of-band buffers.
_ALLOWED_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
    "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "LIST", "APPEND", "APPENDS",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
}  # fmt: skip


class BatchError(ValueError):
    """A batch file that is not a CIFAR-10 batch; the message says why in a few words (no file name)."""


class RefusedGlobal(BatchError):
    """The file names a function or class that a CIFAR-10 batch never holds (nothing from the file ran)."""


# ----------------------------------------------------------------------------------------------- the stand-ins


class _Marker:
    """What ``numpy.ndarray`` unpickles to: a name ``_reconstruct`` accepts, nothing callable."""

    __slots__ = ()


_NDARRAY = _Marker()


class _DType:
    """What ``numpy.dtype(code, align, copy)`` and its ``__setstate__`` unpickle to: the code and byte order."""

    __slots__ = ("code", "order")

    def __init__(self, *args: Any) -> None:
        if not 1 <= len(args) <= 3 or args[0] not in _INTEGER_CODES:
            raise BatchError(f"it holds an array of dtype {_shown(args[0] if args else None)}, not of integers")
        self.code, self.order = args[0], "|"

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version 3 or 4, byte order, subarray, names, fields, elsize, alignment, flags[, meta])
        if (
            type(state) is not tuple
            or len(state) not in (8, 9)
            or state[0] not in (3, 4)
            or state[1] not in _BYTE_ORDERS
            or state[2:5] != (None, None, None)
            or state[5:8] != (-1, -1, 0)
            or (len(state) == 9 and state[8] not in (None, {}))
        ):
            raise BatchError("it holds a dtype that is not a plain integer")
        self.order = state[1]

    def resolve(self) -> np.dtype:
        """The numpy dtype, made from one of :data:`_INTEGER_CODES` (never from the file's bytes)."""
        return np.dtype(self.code).newbyteorder(self.order)


class _Array:
    """What ``_reconstruct(ndarray, ...)`` and ``__setstate__`` (or ``_frombuffer``) unpickle to: a numpy array built
    here with ``np.frombuffer`` from bytes that are in the file, or None while no state has come."""

    __slots__ = ("array", "_charge")

    def __init__(self, charge: Callable[[int], None]) -> None:
        self.array: np.ndarray | None = None
        self._charge = charge

    def __setstate__(self, state: Any) -> None:
        if type(state) is not tuple or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            raise BatchError("it holds an array state numpy never writes")
        shape, dtype, fortran, raw = state[-4:]
        self.set(raw, dtype, shape, "F" if fortran else "C")

    def set(self, raw: Any, dtype: Any, shape: Any, order: Any) -> None:
        if type(dtype) is not _DType:
            raise BatchError("it holds an array without a plain dtype")
        if type(shape) is not tuple or not 1 <= len(shape) <= 4 or any(type(n) is not int or n < 0 for n in shape):
            raise BatchError("it holds an array with a malformed shape")
        if order not in ("C", "F"):
            raise BatchError("it holds an array with a malformed order")
        if type(raw) is str:  # a Python 2 str, decoded as latin1 by the unpickler
            self._charge(len(raw))
            raw = raw.encode("latin1")
        if type(raw) not in (bytes, bytearray):
            raise BatchError("it holds an array whose items are objects, not bytes")
        resolved = dtype.resolve()
        if len(raw) != math.prod(shape) * resolved.itemsize:
            raise BatchError(
                f"an array of shape {shape} needs {math.prod(shape) * resolved.itemsize:,} bytes, the file holds "
                f"{len(raw):,}"
            )
        self.array = np.frombuffer(raw, dtype=resolved).reshape(shape, order=order)


def _printable(text: str) -> str:
    """At most 60 characters of a name from the file, unprintable ones as '?'."""
    return "".join(c if c.isprintable() else "?" for c in text[:60])


def _shown(value: Any) -> str:
    """A short, one-line description of a value from the file (never its whole repr)."""
    if isinstance(value, (str, bytes)):
        return repr(value[:24]) + ("..." if len(value) > 24 else "")
    return type(value).__name__


# ---------------------------------------------------------------------------------------------- the unpickler

_PLAIN = cast("dict[int, Callable[[Any], None]]", pickle._Unpickler.dispatch)
"""The pure-Python unpickler's own opcode handlers, by opcode byte."""


def _refuse(name: str) -> Callable[[Any], None]:
    def refuse(self: Any) -> None:
        raise BatchError(f"it holds the pickle operation {name}, which a CIFAR-10 batch never does")

    return refuse


def _counted(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(self: _BatchUnpickler) -> None:
        self._operations += 1
        if self._operations > self._max_operations:
            raise BatchError(f"it holds more than {self._max_operations:,} pickle operations, too many for its size")
        handler(self)

    return run


def _dispatch() -> dict[int, Callable[[Any], None]]:
    """The pure-Python unpickler's opcode table, each allowed opcode counted and the others refused."""
    table: dict[int, Callable[[Any], None]] = {}
    for opcode in pickletools.opcodes:
        code = opcode.code.encode("latin1")[0]
        if opcode.name in _ALLOWED_OPCODES:
            table[code] = _counted(getattr(_BatchUnpickler, f"_op_{opcode.name}", _PLAIN[code]))
        else:
            table[code] = _refuse(opcode.name)
    return table


class _BatchUnpickler(pickle._Unpickler):
    """Python's own pure-Python unpickler, with the stand-ins for globals, allowed opcodes and bounds."""

    stack: list[Any]
    metastack: list[list[Any]]

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self._operations = 0
        self._max_operations = len(data) // _BYTES_PER_OPERATION + _SPARE_OPERATIONS
        self._made = 0  # bytes the stand-ins copied
        self._max_made = 2 * len(data) + (1 << 20)
        self._callables = {
            "dtype": _DType,
            "_reconstruct": self._reconstruct,
            "_frombuffer": self._frombuffer,
            "scalar": self._scalar,
            "encode": self._encode,
        }

    def find_class(self, module: str, name: str) -> Any:
        numpy_module = module.replace("numpy._core", "numpy.core")
        if (numpy_module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (numpy_module, name) in {
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }:
            return self._callables[name]
        raise RefusedGlobal(
            f"it asks to run {_printable(module)}.{_printable(name)}, which a CIFAR-10 batch never does"
        )

    def _charge(self, size: int) -> None:
        self._made += size
        if self._made > self._max_made:
            raise BatchError("it asks for more memory than its size can hold")

    def _reconstruct(self, cls: Any, shape: Any, code: Any) -> _Array:
        if cls is not _NDARRAY:
            raise BatchError("it reconstructs something other than an array")
        return _Array(self._charge)

    def _frombuffer(self, raw: Any, dtype: Any, shape: Any, order: Any) -> _Array:
        array = _Array(self._charge)
        array.set(raw, dtype, shape, order)
        return array

    def _scalar(self, dtype: Any, raw: Any) -> int:
        if type(raw) is str:
            raw = raw.encode("latin1")
        if type(dtype) is not _DType or type(raw) is not bytes or len(raw) != dtype.resolve().itemsize:
            raise BatchError("it holds a number that is not a plain integer")
        return int(np.frombuffer(raw, dtype=dtype.resolve())[0])

    def _encode(self, text: Any, encoding: Any = "utf-8") -> bytes:
        if type(text) is not str or encoding not in ("latin1", "latin-1"):
            raise BatchError("it encodes something other than latin1 text")
        self._charge(len(text))
        return text.encode("latin1")

    # Opcodes whose pure-Python handlers are replaced by checked ones: calls reach only the stand-ins, BUILD only
    # their state, dict keys are strings (no chosen hash collisions), and MARK nests shallowly.

    def _op_REDUCE(self) -> None:
        args, func = self.stack.pop(), self.stack[-1]
        if not any(func is known for known in self._callables.values()) or type(args) is not tuple:
            raise BatchError(f"it calls a {type(func).__name__}, which a CIFAR-10 batch never does")
        self.stack[-1] = func(*args)

    def _op_BUILD(self) -> None:
        state, inst = self.stack.pop(), self.stack[-1]
        if type(inst) not in (_DType, _Array):
            raise BatchError(f"it sets the state of a {type(inst).__name__}, which a CIFAR-10 batch never does")
        inst.__setstate__(state)

    def _op_MARK(self) -> None:
        if len(self.metastack) >= _MAX_MARKS:
            raise BatchError(f"it nests deeper than {_MAX_MARKS} levels")
        _PLAIN[pickle.MARK[0]](self)

    def _op_SETITEM(self) -> None:
        _check_keys(self.stack[-2:-1])
        _PLAIN[pickle.SETITEM[0]](self)

    def _op_SETITEMS(self) -> None:
        _check_keys(self.stack[0::2])
        _PLAIN[pickle.SETITEMS[0]](self)

    def _op_DICT(self) -> None:
        _check_keys(self.stack[0::2])
        _PLAIN[pickle.DICT[0]](self)


def _check_keys(keys: list[Any]) -> None:
    if any(type(key) is not str for key in keys):
        raise BatchError("it holds a dict whose keys are not strings")


_BatchUnpickler.dispatch = _dispatch()


# ----------------------------------------------------------------------------------------------- the batch


def _labels(value: Any) -> np.ndarray:
    """The labels as an int64 array: a list of ints or an integer array, every one in 0-9."""
    if type(value) is list:
        if any(type(label) is not int for label in value):
            raise BatchError("its labels are not all integers")
        labels = np.array(value, dtype=np.int64) if all(0 <= label <= 9 for label in value) else None
    elif type(value) is _Array and value.array is not None and value.array.ndim == 1:
        labels = value.array.astype(np.int64)
        # (a uint64 label of 2**63 or more becomes negative here, so it is refused too)
        labels = labels if labels.size == 0 or (labels.min() >= 0 and labels.max() <= 9) else None
    else:
        raise BatchError(f"its labels are a {type(value).__name__}, not a list or an array of integers")
    if labels is None:
        raise BatchError("it has labels outside 0-9, the ten CIFAR-10 classes")
    return labels


def read_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The images (uint8 N×32×32×3, HWC) and labels (int64, in 0-9) of a pickled CIFAR-10 batch; else BatchError."""
    if len(data) > MAX_FILE_BYTES:
        raise BatchError(f"it is {len(data):,} bytes, more than the {MAX_FILE_BYTES:,} a batch file may be")
    try:
        batch = _BatchUnpickler(data).load()
    except BatchError:
        raise
    except EOFError:
        raise BatchError("it ends before its pickle does (a cut or damaged file)") from None
    except Exception as error:  # noqa: BLE001 - the file is not a pickle a batch could be, in one of many ways
        reason = " ".join(str(error).split())[:160]
        raise BatchError(
            f"it is not a readable pickle ({type(error).__name__}{': ' + reason if reason else ''})"
        ) from None
    if type(batch) is not dict:
        raise BatchError(f"it holds a {type(batch).__name__}, not a dict with 'data' and 'labels'")
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise BatchError(f"it has no {' and no '.join(repr(key) for key in missing)} entry")
    pixels = batch["data"]
    if type(pixels) is not _Array:
        raise BatchError(f"its 'data' is a {type(pixels).__name__}, not an array of pixels")
    if pixels.array is None:
        raise BatchError("the pixels of its 'data' array are not in the file")
    array = pixels.array
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != IMAGE_BYTES or array.shape[0] == 0:
        raise BatchError(
            f"its 'data' is a {array.dtype} array of shape {array.shape}, not N×{IMAGE_BYTES} unsigned bytes"
        )
    labels = _labels(batch["labels"])
    if len(labels) != len(array):
        raise BatchError(f"it holds {len(array):,} images but {len(labels):,} labels")
    images = np.ascontiguousarray(array.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels
