"""The S9 assignment: the scaffolding its notebook calls, the probes and the grader (see assignment/README.md)."""
