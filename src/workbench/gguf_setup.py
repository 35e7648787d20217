"""`workbench gguf-setup`: the one step that makes GGUF export work on this machine, offline afterwards.

GGUF export needs two things from llama.cpp, and no prebuilt llama.cpp is assumed:
- llama-cpp-python, installed by the `[gguf]` extra (built from its source: ~15 minutes on 2 cores). It
  loads GGUF files to prove an export answers as the workbench did, and quantizes (`llama_model_quantize`).
- llama.cpp's converter (`convert_hf_to_gguf.py`, its `conversion/` package and its own `gguf-py`). PyPI's
  `gguf` package does not work with the converter that llama-cpp-python vendors, so the converter is taken
  from llama-cpp-python's own source archive, the same version as the installed library, and unpacked
  into the workbench cache (`save_kinds.converter_home`). The archive comes from `--sdist` or, once, from
  pip; exports never download anything.
No ML import.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from workbench.errors import UserError
from workbench.save_kinds import GGUF_SETUP_STEP, converter_home

PACKAGE = "llama-cpp-python"
VENDORED = "vendor/llama.cpp"
WANTED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
"""What is taken out of the archive's vendored llama.cpp (files, and folders ending in /)."""


def installed_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise UserError("not_installed", f"{PACKAGE} is not installed in this environment",
                        f"GGUF export needs it: {GGUF_SETUP_STEP}.") from None


def download_sdist(version: str, folder: Path, say: Callable[[str], None]) -> Path:
    say(f"Fetching {PACKAGE} {version}'s source archive with pip (once)…")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                           f"{PACKAGE}=={version}", "-d", str(folder)], capture_output=True, text=True, check=False)
    found = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError("no_sdist", f"pip could not fetch {PACKAGE}=={version}'s source: {last[0]}",
                        "Download llama_cpp_python-VERSION.tar.gz elsewhere and pass it: workbench gguf-setup --sdist FILE")
    return found[0]


def _members(archive: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    """The converter's files in the archive, with their paths under the converter's home."""
    chosen = []
    for member in archive.getmembers():
        parts = PurePosixPath(member.name).parts
        if len(parts) < 4 or "/".join(parts[1:3]) != VENDORED or not member.isfile():
            continue
        inner = PurePosixPath(*parts[3:])
        text = str(inner)
        if any(text == w or (w.endswith("/") and text.startswith(w)) for w in WANTED):
            chosen.append((member, inner))
    return chosen


def _open(sdist: Path) -> tarfile.TarFile:
    return tarfile.open(sdist, "r:gz")


def unpack_converter(sdist: Path, home: Path) -> Path:
    """The converter out of `sdist` into `home`, replacing what was there only once it is all unpacked."""
    try:
        archive = _open(sdist)
    except (OSError, tarfile.TarError) as exc:
        raise UserError("usage", f"{sdist}: not a readable .tar.gz ({exc})", f"Pass {PACKAGE}'s source archive.") from None
    with archive:
        members = _members(archive)
        names = {str(inner) for _m, inner in members}
        if "convert_hf_to_gguf.py" not in names or not any(n.startswith("gguf-py/") for n in names):
            raise UserError("usage", f"{sdist}: no vendored llama.cpp converter in it",
                            f"Pass {PACKAGE}'s source archive (llama_cpp_python-VERSION.tar.gz).")
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".llama.cpp.partial-", dir=home.parent))
        try:
            for member, inner in members:
                target = staging / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
            (staging / "SOURCE").write_text(f"{sdist.name}\n", encoding="utf-8")
            if home.exists():
                shutil.rmtree(home)
            staging.rename(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


def set_up(sdist: Path | None, say: Callable[[str], None]) -> Path:
    """Check llama-cpp-python, unpack the converter of its own version; returns the converter's home."""
    version = installed_version()
    home = converter_home()
    with tempfile.TemporaryDirectory() as tmp:
        archive = sdist if sdist is not None else download_sdist(version, Path(tmp), say)
        if not archive.is_file():
            raise UserError("usage", f"{archive}: no such file", f"Pass {PACKAGE}'s source archive.")
        if version not in archive.name:
            say(f"Note: {archive.name} is not llama-cpp-python {version} (installed); its converter may not match.")
        say(f"Unpacking llama.cpp's converter from {archive.name} into {home}…")
        return unpack_converter(archive, home)
