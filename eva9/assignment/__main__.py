"""``python -m eva9.assignment build|grade``: make the student notebook and the autograder; grade a folder."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .grader import Settings, grade_folder

MASTER = Path("assignment/s9_assignment.ipynb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eva9.assignment", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="Otter Assign: the student notebook and the autograder's tests")
    build.add_argument("--master", default=str(MASTER))
    build.add_argument("--out", default="_build/assignment")
    grade = commands.add_parser("grade", help="grade every submission folder in SUBMISSIONS")
    grade.add_argument("submissions")
    grade.add_argument("--autograder", default="_build/assignment/autograder")
    grade.add_argument("--out", default="_build/grades")
    grade.add_argument("--cell-timeout", type=int, default=60, help="seconds per notebook cell (default 60)")
    grade.add_argument("--notebook-timeout", type=int, default=600, help="seconds per notebook (default 600)")
    grade.add_argument(
        "--test-per-class",
        type=int,
        default=100,
        help="official test images per class for the accuracy; 0 = all 10,000 (default 100)",
    )
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    grade.add_argument("--no-isolation", action="store_true", help="no namespaces: only for trusted submissions")
    args = parser.parse_args(argv)
    if args.command == "build":
        return subprocess.call([sys.executable, "-m", "otter", "assign", args.master, args.out])
    settings = Settings(
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        test_per_class=args.test_per_class,
        isolate=not args.no_isolation,
        jobs=args.jobs,
    )
    try:
        results = grade_folder(args.submissions, args.autograder, args.out, settings)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for r in results:
        print(
            f"{r.student}: {r.total:g} / {sum(r.possible.values()):g}"
            + (f"  ({'; '.join(r.reasons)})" if r.reasons else "")
        )
    print(f"wrote {Path(args.out) / 'grades.csv'} and {Path(args.out) / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
