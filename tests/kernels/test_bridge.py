"""The bridge's and the sandbox's judgments that need no kernel: checks, and answers for a lost reply."""

from __future__ import annotations

from kernels.bridge import check_expression, check_result
from kernels.sandbox import Execution, KernelSandbox


def test_it_evaluates_a_check_as_a_single_truth_value_even_with_a_trailing_comment():
    namespace = {"total": 55}

    assert eval(check_expression("total == 55  # the sum"), namespace) is True  # noqa: S307
    assert eval(check_expression("total == 54"), namespace) is False  # noqa: S307


def test_it_reads_a_passed_check_only_from_a_true_result():
    def reply(text: str) -> dict:
        return {"status": "ok", "user_expressions": {"check": {"status": "ok", "data": {"text/plain": text}}}}

    assert check_result(reply("True")) == {"passed": True, "detail": "the check is true"}
    assert check_result(reply("False"))["passed"] is False
    assert check_result(reply("'True'"))["passed"] is False  # a string that looks true is not true


def test_it_says_why_a_check_did_not_pass():
    raised = {"status": "ok", "user_expressions": {"check": {"status": "error", "ename": "NameError", "evalue": "x"}}}

    assert check_result(raised) == {"passed": False, "detail": "the check raised NameError: x"}
    assert check_result({"status": "error"})["detail"] == "the cell stopped with an error, so the check did not run"
    assert check_result({"status": "ok"})["detail"] == "the check did not run"


def test_it_answers_a_lost_reply_as_ours_not_the_learners():
    sandbox = KernelSandbox(owner="test:host", labels={})

    done = sandbox._done(reply=None, run=Execution(execution_id="e"), timed_out=False, timeout_s=60)

    assert done["status"] == "failed"
    assert "Run it again" in done["message"]
