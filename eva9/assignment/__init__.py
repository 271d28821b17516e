"""The S9 assignment: what its notebook calls, what the grader records of a submission, and the grader.

The master notebook is ``assignment/s9_assignment.ipynb`` (Otter Assign's format; ``make assignment`` builds the
student notebook and the autograder's tests). Modules: :mod:`~eva9.assignment.scaffold` (the data, network,
training and figures the notebook gives the student), :mod:`~eva9.assignment.probe` (run in the sandbox: how the
student's ``s9.py`` and notebook behave, as plain numbers), :mod:`~eva9.assignment.sandbox` (namespaces via
``unshare``), :mod:`~eva9.assignment.execute` (a notebook in a fresh kernel, time-limited and capped),
:mod:`~eva9.assignment.checks` (what the hidden tests measure) and :mod:`~eva9.assignment.grader`
(``python -m eva9.assignment grade DIR``). ``assignment/README.md`` is the teacher's guide and the threat model.
"""
