"""Where convert writes: checked before any work, written in a hidden folder beside it, and put in
place only when complete. Nothing that tinydeploy did not write is ever deleted.

`-o DIR` may be a new folder, an empty one, or a previous tinydeploy output whose files are all
still as tinydeploy wrote them (manifest.foreign_files); anything else is refused unless
--force, and then the old folder is moved aside to DIR.old-N and kept. The current folder, one
that contains it or the home folder, `/`, and a folder that holds the model or another input of
this run are refused outright. Parent folders created for a run that fails are removed again.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.errors import UserError, quoted
from .manifest import SETTINGS_FILE, foreign_files

ATOMIC_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def _refuse_protected(out_dir: Path, resolved: Path, protected: list[Path]) -> None:
    here, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved == Path(resolved.anchor) or _contains(resolved, here):
        raise UserError(f"-o {quoted(out_dir)} is the current folder or contains it: name a folder for the "
                        f"output, e.g. -o out/model")
    if _contains(resolved, home):
        raise UserError(f"-o {quoted(out_dir)} is the home folder or contains it: name a folder for the output")
    for path in protected:
        if path is not None and _contains(resolved, Path(path).resolve()):
            raise UserError(f"-o {quoted(out_dir)} holds {quoted(path)}, an input of this run: replacing the "
                            f"folder would remove it; choose another -o")


def _aside_name(out_dir: Path) -> Path:
    n = 1
    while os.path.lexists(out_dir.with_name(f"{out_dir.name}.old-{n}")):
        n += 1
    return out_dir.with_name(f"{out_dir.name}.old-{n}")


@dataclass
class OutputFolder:
    path: Path
    state: str                 # "absent", "empty", "ours" (a previous output) or "foreign" (with --force)
    moved_aside: Path | None = None
    created: list[Path] = field(default_factory=list)

    @classmethod
    def prepare(cls, out_dir: str | Path, protected: list[Path | None] = (), force: bool = False) -> "OutputFolder":
        """Check `-o` before any work is done; raises UserError for a folder it may not replace."""
        out_dir = Path(out_dir)
        if str(out_dir) in ("", ".") or out_dir.name in ("", ".", ".."):
            raise UserError(f"-o {quoted(out_dir)} is not a name for a new folder: e.g. -o out/model")
        resolved = out_dir.parent.resolve() / out_dir.name
        _refuse_protected(out_dir, resolved, list(protected))
        if not os.path.lexists(out_dir):
            return cls(out_dir, "absent")
        if os.path.islink(out_dir):
            raise UserError(f"-o {quoted(out_dir)} is a symbolic link: name the folder itself")
        if not out_dir.is_dir():
            raise UserError(f"-o {quoted(out_dir)} exists and is not a folder")
        if not os.listdir(out_dir):
            return cls(out_dir, "empty")
        has_manifest = os.path.lexists(out_dir / SETTINGS_FILE)
        foreign = foreign_files(out_dir) if has_manifest else sorted(os.listdir(out_dir))[:3]
        if not foreign:
            return cls(out_dir, "ours")
        if not force:
            what = "changed since tinydeploy wrote them" if has_manifest else "tinydeploy did not write"
            raise UserError(f"-o {quoted(out_dir)} holds files {what} ({', '.join(map(quoted, foreign))}"
                            f"{', ...' if len(foreign) == 3 else ''}); choose another folder, or add --force to "
                            f"move it aside to {quoted(_aside_name(out_dir))} first")
        return cls(out_dir, "foreign")

    @contextlib.contextmanager
    def staging(self):
        """A new hidden folder beside the output to write into; on success it becomes the output,
        on any failure or signal it and the parents this run created are removed."""
        self._make_parents()
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        except BaseException:
            self._remove_parents()
            raise
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            self._remove_parents()
            raise
        self._commit(tmp)

    def _make_parents(self) -> None:
        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not os.path.lexists(p)]
        for parent in reversed(missing):
            try:
                parent.mkdir()
            except OSError as exc:
                self._remove_parents()
                raise UserError(f"-o {quoted(self.path)}: cannot create {quoted(parent)} "
                                f"({os.strerror(exc.errno) if exc.errno else exc})") from None
            self.created.append(parent)

    def _remove_parents(self) -> None:
        for parent in reversed(self.created):
            with contextlib.suppress(OSError):
                parent.rmdir()   # only if still empty
        self.created = []

    def _commit(self, tmp: Path) -> None:
        """Swap the finished folder in with the signals that would interrupt it held back, so the
        output is always either the old folder or the new one."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, ATOMIC_SIGNALS)
        try:
            if self.state in ("absent", "empty"):
                os.rename(tmp, self.path)   # replaces an empty folder atomically
                return
            aside = (self.path.with_name(f".{self.path.name}.old.{os.getpid()}") if self.state == "ours"
                     else _aside_name(self.path))
            os.rename(self.path, aside)
            os.rename(tmp, self.path)
            if self.state == "ours":
                shutil.rmtree(aside, ignore_errors=True)
            else:
                self.moved_aside = aside
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"-o {quoted(self.path)}: cannot put the output in place "
                            f"({os.strerror(exc.errno) if exc.errno else exc})") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
