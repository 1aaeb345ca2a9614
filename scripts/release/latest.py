#!/usr/bin/env python3
"""Reads the releases of CHANGELOG.md: each `## [X.Y.Z] - YYYY-MM-DD` section names its commit on a line
`Commit: <40 hex digits>` (in backticks).

    python3 scripts/release/latest.py          # prints "VERSION COMMIT" of the newest release
    python3 scripts/release/latest.py --check  # also checks every release's commit exists in this clone

Exits 1 with one line saying what is wrong when the changelog has no release, a release without a commit, or a
commit this clone does not have (a shallow clone: fetch the history). Imported by tests/chart (by path).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHANGELOG = ROOT / "CHANGELOG.md"
SECTION = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$", re.MULTILINE)
COMMIT = re.compile(r"^Commit: `(?P<commit>[0-9a-f]{40})`\s*$", re.MULTILINE)


class ChangelogError(Exception):
    """CHANGELOG.md does not name its releases' commits as it must."""


def releases(text: str) -> list[tuple[str, str]]:
    """(version, commit) of every release, newest first, as CHANGELOG.md lists them."""
    sections = list(SECTION.finditer(text))
    found = []
    for index, section in enumerate(sections):
        version = section["version"]
        if version == "Unreleased":
            continue
        end = sections[index + 1].start() if index + 1 < len(sections) else len(text)
        commits = COMMIT.findall(text, section.end(), end)
        if section["date"] is None or len(commits) != 1:
            raise ChangelogError(f"CHANGELOG.md: release {version} needs a date and exactly one "
                                 f"'Commit: `<40 hex digits>`' line, found {len(commits)}")
        found.append((version, commits[0]))
    if not found:
        raise ChangelogError("CHANGELOG.md names no release")
    return found


def latest(text: str | None = None) -> tuple[str, str]:
    """(version, commit) of the newest release."""
    return releases(CHANGELOG.read_text() if text is None else text)[0]


def check_commits(found: list[tuple[str, str]]) -> None:
    for version, commit in found:
        exists = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                                capture_output=True).returncode == 0
        if not exists:
            raise ChangelogError(f"CHANGELOG.md: release {version} names commit {commit}, which this clone does "
                                 "not have (a shallow clone? fetch the full history)")


def main() -> int:
    try:
        found = releases(CHANGELOG.read_text())
        if "--check" in sys.argv[1:]:
            check_commits(found)
    except ChangelogError as error:
        print(error, file=sys.stderr)
        return 1
    print(*found[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
