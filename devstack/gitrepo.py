"""A git repository on this machine for GitOps tests: a bare repository that Argo CD reads by its
file:// URL (no git server, nothing on the network), and a working clone of it where a test
writes manifests, commits and pushes, as a user pushes to their GitOps repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

BRANCH = "main"


class LocalGitRepo:
    def __init__(self, root: Path, branch: str = BRANCH):
        self.root = Path(root)
        self.branch = branch
        self.bare = self.root / "remote.git"
        self.work = self.root / "work"
        self.root.mkdir(parents=True, exist_ok=True)
        self._git(["init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.bare)], cwd=self.root)
        self._git(["clone", "--quiet", self.url, str(self.work)], cwd=self.root)
        self._git(["checkout", "--quiet", "-B", branch])

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def write(self, path: str, content: str | dict[str, Any] | list[dict[str, Any]]) -> Path:
        """Write a file of the working clone; a manifest (or a list of them) is written as YAML."""
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            content = yaml.safe_dump(content, sort_keys=False)
        elif isinstance(content, list):
            content = yaml.safe_dump_all(content, sort_keys=False)
        target.write_text(content)
        return target

    def remove(self, path: str) -> None:
        self._git(["rm", "--quiet", "-r", path])

    def commit_and_push(self, message: str) -> str:
        """Commit everything in the working clone, push it, and return the new commit's sha."""
        self._git(["add", "--all"])
        self._git(["commit", "--quiet", "--allow-empty", "-m", message])
        self._git(["push", "--quiet", "origin", f"HEAD:{self.branch}"])
        return self.head()

    def head(self) -> str:
        return self._git(["rev-parse", "HEAD"]).strip()

    def _git(self, args: list[str], cwd: Path | None = None) -> str:
        # Hermetic: no user or system git configuration, a fixed identity.
        env = {
            **os.environ,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "devstack",
            "GIT_AUTHOR_EMAIL": "devstack@walwarden.invalid",
            "GIT_COMMITTER_NAME": "devstack",
            "GIT_COMMITTER_EMAIL": "devstack@walwarden.invalid",
        }
        result = subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result.stdout
