"""Pure logic of the notebook kinds: how runner observations become verdicts (the runner itself is exercised
in the sandbox by test_flagship_notebook.py)."""

from labs.checks.notebook import first_text_difference, problem_of, result_outputs


def cell(index, status="ok", tags=(), outputs=()):
    return {"index": index, "status": status, "tags": list(tags), "outputs": list(outputs)}


def test_a_clean_run_has_no_problem():
    doc = {"kernel_started": True, "cells": [cell(0), cell(1)], "stopped": None}
    assert problem_of(doc, 30) is None


def test_a_dead_kernel_is_an_error_never_a_pass():
    doc = {"kernel_started": True, "cells": [cell(0), cell(1, "died")], "stopped": {"cell": 1, "status": "died"}}
    assert problem_of(doc, 30) == ("error", "the kernel died while running code cell 2 (it exited or was killed)")


def test_a_kernel_that_never_starts_is_an_error():
    status, message = problem_of({"kernel_started": False, "cells": []}, 30)
    assert status == "error"
    assert "did not start" in message


def test_a_raising_cell_fails_with_its_exception():
    error = {"type": "error", "ename": "NameError", "evalue": "name 'intercep' is not defined", "traceback": []}
    doc = {
        "kernel_started": True,
        "cells": [cell(0, "error", outputs=[error])],
        "stopped": {"cell": 0, "status": "error"},
    }
    assert problem_of(doc, 30) == ("fail", "code cell 1 raised NameError: name 'intercep' is not defined")


def test_a_slow_cell_fails_with_the_limit():
    doc = {"kernel_started": True, "cells": [cell(0, "timeout")], "stopped": {"cell": 0, "status": "timeout"}}
    assert problem_of(doc, 12) == ("fail", "code cell 1 did not finish within 12 s")


def test_result_outputs_keep_only_tagged_cells_text():
    doc = {
        "cells": [
            cell(0, outputs=[{"type": "stream", "text": "noise\n"}]),
            cell(
                1,
                tags=["result"],
                outputs=[{"type": "stream", "text": "mse=1\n"}, {"type": "execute_result", "text": "2"}],
            ),
        ]
    }
    assert result_outputs(doc) == [(1, "mse=1\n2")]
    assert first_text_difference("a\nmse=1\n", "a\nmse=2\n") == "line 2: 'mse=1' vs 'mse=2'"
