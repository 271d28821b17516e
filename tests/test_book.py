"""eva9.book: the data folder a chapter finds from book/, and the run folder each profile's run is kept in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eva9 import book
from eva9.data import ENV_VAR
from eva9.train import ENV_EPOCHS, ENV_PROFILE, profile


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """tmp/work/repo/book (the chapter's working directory) and the data in tmp/work/shared/cifar10."""
    data = tmp_path / "work" / "shared" / "cifar10"
    data.mkdir(parents=True)
    chapter_dir = tmp_path / "work" / "repo" / "book"
    chapter_dir.mkdir(parents=True)
    monkeypatch.chdir(chapter_dir)
    monkeypatch.delenv(ENV_PROFILE, raising=False)
    monkeypatch.delenv(ENV_EPOCHS, raising=False)
    return data


def test_a_relative_data_dir_set_in_the_repository_root_is_found_from_book(checkout, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "../shared/cifar10")  # as written in the repository root
    monkeypatch.setenv("PWD", str(checkout.parents[1] / "repo"))  # the shell started there
    assert book.setup() == checkout.resolve()
    assert Path(os.environ[ENV_VAR]) == checkout.resolve()


def test_without_the_shells_directory_the_parents_of_book_are_searched(checkout, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "../shared/cifar10")
    monkeypatch.delenv("PWD", raising=False)
    assert book.setup() == checkout.resolve()  # book/.. = repo, and repo/../shared/cifar10 exists


def test_a_missing_data_dir_is_left_for_the_data_modules_error_and_no_variable_means_none(checkout, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "../no-such-folder")
    monkeypatch.delenv("PWD", raising=False)
    assert book.setup() == Path("../no-such-folder")
    monkeypatch.delenv(ENV_VAR)
    assert book.setup() is None


def test_run_folders_are_named_by_profile_and_by_epochs_only_when_they_differ():
    assert book.run_dir(profile("smoke")) == Path("runs") / "smoke"
    assert book.run_dir(profile("seed")) == Path("runs") / "seed"
    assert book.run_dir(profile("smoke", epochs=3)) == Path("runs") / "smoke-3ep"
    assert book.run_dir(profile("fast", epochs=30)) == Path("runs") / "fast"


def test_the_profile_in_force_is_the_environments_else_cpu_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setenv(ENV_PROFILE, "fast")
    assert book.profile_name() == "fast"
    monkeypatch.delenv(ENV_PROFILE)
    monkeypatch.setattr(book, "_has_accelerator", lambda: False)
    assert book.profile_name() == "cpu" and "No GPU here" in capsys.readouterr().out
    monkeypatch.setattr(book, "_has_accelerator", lambda: True)
    assert book.profile_name() == "seed"
