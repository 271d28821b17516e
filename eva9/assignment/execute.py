"""Execute a notebook in a fresh kernel, cell by cell, with a time limit per cell and a cap on its outputs.

``python -m eva9.assignment.execute NOTEBOOK OUT`` is what the grader runs inside the sandbox: every cell runs,
errors or not; a cell that runs past its time limit is interrupted and the next one runs; a cell's outputs stop
at :data:`MAX_OUTPUT_CHARS` (a note says so), so a million printed lines cost at most a megabyte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

__all__ = ["MAX_OUTPUT_CHARS", "execute"]

MAX_OUTPUT_CHARS = 1_000_000
"""The most characters (text, and images as base64) one cell keeps among its outputs: a figure is some 50,000."""


def _size(output) -> int:
    """About how many characters an output holds (its text, or every value of its data)."""
    text = output.get("text", "")
    data = output.get("data", {})
    return len(text if isinstance(text, str) else "".join(text)) + sum(len(str(v)) for v in data.values())


TRUNCATED = "[eva9 grader: output truncated]\n"


class CappedClient(NotebookClient):
    """A NotebookClient whose cells keep at most :data:`MAX_OUTPUT_CHARS` of output each."""

    def output(self, outs, msg, display_id, cell_index):
        """Keep the output while the cell's budget lasts, the last one cut to fit; then one note, then nothing."""
        budget = MAX_OUTPUT_CHARS - sum(_size(o) for o in outs)
        if budget <= 0:
            if not any(o.get("text") == TRUNCATED for o in outs):
                outs.append(nbformat.v4.new_output("stream", name="stderr", text=TRUNCATED))
            return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None and _size(out) > budget:  # one huge message: keep its head
            if isinstance(out.get("text"), str):
                out["text"] = out["text"][:budget]
            for key, value in list(out.get("data", {}).items()):
                if len(str(value)) > budget:
                    out["data"][key] = str(value)[:budget] if key.startswith("text/") else ""
            outs.append(nbformat.v4.new_output("stream", name="stderr", text=TRUNCATED))
        return out


def execute(notebook: str | Path, out: str | Path, *, cell_timeout: int = 60) -> None:
    """Run every cell of ``notebook`` (errors and timeouts do not stop it) and write the executed copy to ``out``."""
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = CappedClient(
        nb,
        timeout=cell_timeout,
        interrupt_on_timeout=True,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(notebook).parent)}},
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="execute a notebook, capped and time-limited per cell")
    parser.add_argument("notebook")
    parser.add_argument("out")
    parser.add_argument("--cell-timeout", type=int, default=60)
    args = parser.parse_args(argv)
    execute(args.notebook, args.out, cell_timeout=args.cell_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
